package postgres

import "github.com/lms-platform/userservice"

// SearchSQL exposes the admin search's SQL to the measurements in the external tests.
func SearchSQL(q userservice.UserSearch) (countSQL, pageSQL string, args, pageArgs []any) {
	page, limit := normalizePage(q.Page, q.Limit)
	sq := buildSearch(q, page, limit)
	return sq.countSQL, sq.pageSQL, sq.args, sq.pageArgs
}
