package postgres

import "github.com/lms-platform/userservice"

// SearchSQL exposes the admin search's SQL to the measurements in the external
// tests; fromMatches is the page's choice that SearchUsersAt makes after the count.
func SearchSQL(q userservice.UserSearch, fromMatches bool) (countSQL, pageSQL string, args, pageArgs []any) {
	page, limit := normalizePage(q.Page, q.Limit)
	sq := buildSearch(q, page, limit, fromMatches)
	return sq.countSQL, sq.pageSQL, sq.args, sq.pageArgs
}

// PageFromMatches exposes pageFromMatches to the tests.
var PageFromMatches = pageFromMatches
