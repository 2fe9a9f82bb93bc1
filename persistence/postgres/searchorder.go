package postgres

import (
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/lms-platform/userservice"
)

// Orders of a term's matches reused and read by the admin search (see orderMemo).
var (
	searchOrdersReused = metrics.NewCounter(`user_service_search_orders_total{result="reused"}`)
	searchOrdersRead   = metrics.NewCounter(`user_service_search_orders_total{result="read"}`)
)

// orderMemo keeps, for a search's term, role, status and sort column, the ids of
// all its matches in the column's ascending order, with the search facts they
// were read at (searchFactsSQL). While a snapshot sees the same facts, the
// matches and their order are the same, so any page of the search, in either
// direction, is a slice of the list, and its rows are read by id (a primary-key
// look-up per row) instead of finding and sorting the matches again (a trigram
// scan, a LIKE per candidate and a sort: 0.8-1.8 ms for a few hundred matches on
// 10,000 users). The rows themselves are always the snapshot's own; only which
// users and in what order come from the list, and they are used only when the
// snapshot's facts are the list's.
//
// The facts cover what the list depends on: the term matches search_text, role
// and status filter, and the columns kept here (createdAt, firstName, lastName,
// email) order it; migration 00120 makes every change of those columns stamp the
// facts, a case-only rename included. updatedAt and lastActiveAt change with
// every profile write and every login, so their orders are never kept; nor are
// searches with attribute filters (user_attributes are not among the facts), a
// cursor page (its position need not be one of the list's), or a term whose
// matches are many (their pages walk the sort column's index and stop early;
// pageFromMatches), which also bounds one list. All lists together hold at most
// orderMemoIDs ids, in at most orderMemoSize entries, and entries read at the
// same facts share one copy of them. It is safe for concurrent use.
type orderMemo struct {
	mu    sync.Mutex
	m     map[orderKey]orderEntry
	ids   int    // ids held by all entries
	facts string // the facts last learned, shared by the entries read at them
}

const (
	// orderMemoIDs bounds the ids all lists hold together: 4 MiB of ids.
	orderMemoIDs = 1 << 18
	// orderMemoSize bounds the entries (each with its key and, unless shared,
	// its facts: about 0.5 KB besides its ids).
	orderMemoSize = 4096
	// orderListMax bounds one list.
	orderListMax = 10_000
)

type orderKey struct {
	search string
	role   userservice.Role
	status userservice.Status
	col    string
}

type orderEntry struct {
	facts string
	ids   [][16]byte // every match, ascending by (col, id)
}

// orderKept lists the sort columns whose order the facts cover.
var orderKept = map[string]bool{"created_at": true, "first_name": true, "last_name": true, "email": true}

// orderKeyOf returns q's key and whether its order may be kept: a term, no
// attribute filter, no cursor, a kept column.
func orderKeyOf(q userservice.UserSearch, col string) (orderKey, bool) {
	k := orderKey{search: q.Search, role: q.Role, status: q.Status, col: col}
	return k, q.Search != "" && len(q.Attrs) == 0 && q.After == nil && orderKept[col]
}

func (m *orderMemo) get(k orderKey, keep bool) (orderEntry, bool) {
	if !keep {
		return orderEntry{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[k]
	return e, ok
}

// learn keeps e for k, if keep, e has facts and its list is not too long,
// dropping other entries (picked by map order) while the ids would pass
// orderMemoIDs or the entries orderMemoSize.
func (m *orderMemo) learn(k orderKey, keep bool, e orderEntry) {
	if !keep || e.facts == "" || len(e.ids) > orderListMax {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.facts == m.facts {
		e.facts = m.facts
	} else {
		m.facts = e.facts
	}
	if old, ok := m.m[k]; ok {
		m.ids -= len(old.ids)
		delete(m.m, k)
	}
	for old, oe := range m.m {
		if m.ids+len(e.ids) <= orderMemoIDs && len(m.m) < orderMemoSize {
			break
		}
		m.ids -= len(oe.ids)
		delete(m.m, old)
	}
	m.m[k] = e
	m.ids += len(e.ids)
}

// pageIDs returns the ids of a page of limit rows plus one (the extra one only
// says whether a next page exists), in the requested direction.
func (e orderEntry) pageIDs(page, limit int, desc bool) [][16]byte {
	n := len(e.ids)
	if page-1 > n/limit { // past the end, however large page is
		return nil
	}
	from := (page - 1) * limit
	if from >= n {
		return nil
	}
	to := min(from+limit+1, n)
	out := make([][16]byte, 0, to-from)
	for i := from; i < to; i++ {
		if desc {
			out = append(out, e.ids[n-1-i])
		} else {
			out = append(out, e.ids[i])
		}
	}
	return out
}

// orderListSQL returns the statement that reads the search facts and the ids of
// every match in col's ascending order: the matches found through the trigram
// index and sorted, as a page from the matches is (orderSQL's fromMatches).
func orderListSQL(q userservice.UserSearch, col string) (string, []any) {
	where, args := searchSQL(q)
	return "SELECT " + searchFactsSQL + ", array(SELECT id FROM users" + where + orderSQL(col, false, true) + ")", args
}

// pageByIDsSQL reads the users of ids, in their order, with col as the sort key.
func pageByIDsSQL(col string) string {
	return "SELECT " + userColumns + ", " + col + " AS sort_key FROM unnest($1::uuid[]) WITH ORDINALITY AS page_ids(page_id, page_n)" +
		" JOIN users ON users.id = page_ids.page_id ORDER BY page_ids.page_n"
}
