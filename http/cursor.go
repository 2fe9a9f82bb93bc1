package http

import (
	"net/url"
	"time"

	"github.com/lms-platform/userservice"
)

// Keyset pagination at the edge (issue 15): a list answers pagination.nextCursor
// and an RFC 8288 Link rel="next" whenever a next page exists; a request with
// `cursor` continues after the cursor's position, under the filters it was issued
// for (CONTRACT.md, second round: a cursor with other filters answers 400).

// cursorQuery resolves the `cursor` parameter of list against q (see
// userservice.CursorSigner.Resolve).
func (r *request) cursorQuery(list string, q url.Values, params []string) (url.Values, *userservice.Cursor, error) {
	return r.s.cursors.Resolve(list, q, params)
}

// linkNext turns page.Next into the signed nextCursor and the Link header of the
// next page. q is the resolved query (the cursor's filters filled in), so a
// cursor keeps binding the filters of the first page.
func (r *request) linkNext(list string, q url.Values, params []string, page *userservice.Pagination) {
	page.Keyset = true
	if page.Next == nil || !page.HasNext {
		page.NextCursor = nil
		return
	}
	c := r.s.cursors.Encode(userservice.Cursor{
		List: list, Filters: userservice.Filters(q, params), Page: page.Page + 1, Pos: *page.Next,
	})
	page.NextCursor = &c
	next := url.Values{}
	for k, v := range userservice.Filters(q, params) {
		next.Set(k, v)
	}
	for _, k := range []string{"limit", "count"} { // kept from page to page, not bound
		if q.Has(k) {
			next.Set(k, q.Get(k))
		}
	}
	next.Set("cursor", c)
	// A relative reference resolves against the request's URI (RFC 8288, 3.1).
	link := "<" + string(r.fc.Path()) + "?" + next.Encode() + `>; rel="next"`
	r.fc.Response.Header.Set("Link", link)
}

// enrollmentsAfter returns the enrollments (newest first, as SortedEnrollments
// orders them) strictly after pos.
func enrollmentsAfter(items []userservice.Enrollment, pos userservice.Position) ([]userservice.Enrollment, error) {
	at, err := time.Parse(time.RFC3339Nano, pos.Key)
	if err != nil || pos.Null {
		return nil, userservice.ErrInvalidCursor
	}
	for i, e := range items {
		if e.EnrolledAt.Before(at) || (e.EnrolledAt.Equal(at) && e.ID < pos.ID) {
			return items[i:], nil
		}
	}
	return items[:0], nil
}

// enrollmentPosition is the cursor position of e in an enrollment list.
func enrollmentPosition(e userservice.Enrollment) *userservice.Position {
	return &userservice.Position{Key: e.EnrolledAt.UTC().Format(time.RFC3339Nano), ID: e.ID}
}
