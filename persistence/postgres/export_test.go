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

// SearchFactsSQL exposes the search facts' query to the tests.
const SearchFactsSQL = searchFactsSQL

// KnownCount returns the count d keeps for q's term and filters, with its facts.
func KnownCount(d *Directory, q userservice.UserSearch) (facts string, total int, ok bool) {
	k, memo := countKeyOf(q)
	e, ok := d.counts.get(k, memo)
	return e.facts, e.total, ok
}

// SetKnownCount makes d keep total for q's term and filters at facts.
func SetKnownCount(d *Directory, q userservice.UserSearch, facts string, total int) {
	k, memo := countKeyOf(q)
	was, _ := d.counts.get(k, memo)
	d.counts.learn(k, memo, countEntry{}, countEntry{facts: facts, total: total, size: was.size})
}

// KnownOrder returns the order d keeps for q's term, filters and sort column,
// with its facts.
func KnownOrder(d *Directory, q userservice.UserSearch) (facts string, ids [][16]byte, ok bool) {
	col, _ := sortColumn(q)
	k, keep := orderKeyOf(q, col)
	e, ok := d.orders.get(k, keep)
	return e.facts, e.ids, ok
}

// SetKnownOrder makes d keep ids as the order of q's term, filters and sort
// column at facts.
func SetKnownOrder(d *Directory, q userservice.UserSearch, facts string, ids [][16]byte) {
	col, _ := sortColumn(q)
	k, keep := orderKeyOf(q, col)
	d.orders.learn(k, keep, orderEntry{facts: facts, ids: ids})
}

// ForgetOrders drops every order d keeps.
func ForgetOrders(d *Directory) {
	d.orders.mu.Lock()
	defer d.orders.mu.Unlock()
	clear(d.orders.m)
	d.orders.ids = 0
}

// SizedArgs exposes withSizedArgs to the tests: args with the first presized,
// encoded into room.
func SizedArgs(args []any, room *[]byte) []any { return withSizedArgs(args, room) }
