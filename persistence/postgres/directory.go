package postgres

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	json "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice"
)

// Directory answers the questions that cross users: the admin search, the audit
// log, authId look-ups. Every answer reflects every committed write: the counts
// and the orders of matches it keeps (countMemo, orderMemo) are reused only in a
// snapshot that sees the same search facts. It is safe for concurrent use.
type Directory struct {
	db     *DB
	counts countMemo
	orders orderMemo
}

var _ userservice.Directory = (*Directory)(nil)

// NewDirectory returns a Directory reading from db.
func NewDirectory(db *DB) (*Directory, error) {
	if db == nil {
		return nil, errors.New("cannot create directory: nil DB")
	}
	return &Directory{
		db:     db,
		counts: countMemo{m: make(map[countKey]countEntry)},
		orders: orderMemo{m: make(map[orderKey]orderEntry)},
	}, nil
}

// UserIDByAuthID returns the id of the user with that authId, or
// userservice.ErrUserNotFound.
func (d *Directory) UserIDByAuthID(ctx context.Context, authID string) (string, error) {
	return userIDByAuthID(ctx, d.db, authID)
}

// sortColumns maps the API's sortBy values to columns: the only way a sort reaches
// the SQL text.
var sortColumns = map[string]string{
	"createdAt":    "created_at",
	"updatedAt":    "updated_at",
	"firstName":    "first_name",
	"lastName":     "last_name",
	"email":        "email",
	"lastActiveAt": "last_active_at",
}

// searchFilter matches the escaped term ($1) as a case-insensitive substring of
// users.search_text, the lower-cased fields joined by newlines (migration 00080),
// through its trigram index. A term without a newline matches the text exactly
// when it matches one field: the joins are newlines, and a newline inside a field
// only cuts it further.
const searchFilter = `search_text LIKE '%' || lower($1::text) || '%'`

// searchFilterAcrossLines is searchFilter for a term with a newline: each field
// re-checked on its own, so that the term never matches across two fields.
const searchFilterAcrossLines = searchFilter + `
	AND (lower(first_name) LIKE '%' || lower($1::text) || '%'
		OR lower(last_name) LIKE '%' || lower($1::text) || '%'
		OR email LIKE '%' || lower($1::text) || '%'
		OR lower(username) LIKE '%' || lower($1::text) || '%'
		OR lower(display_name) LIKE '%' || lower($1::text) || '%')`

// escapeLike escapes LIKE's wildcards and its escape character, so that the term
// matches literally.
func escapeLike(s string) string {
	if !strings.ContainsAny(s, `\%_`) {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// searchSQL builds the WHERE clause and its arguments. Only fixed text and
// placeholders go into the SQL.
func searchSQL(q userservice.UserSearch) (where string, args []any) {
	var conds []string
	if q.Search != "" {
		args = append(args, escapeLike(q.Search))
		if strings.Contains(q.Search, "\n") {
			conds = append(conds, searchFilterAcrossLines)
		} else {
			conds = append(conds, searchFilter)
		}
	}
	if q.Role != "" {
		args = append(args, string(q.Role))
		conds = append(conds, "role = $"+strconv.Itoa(len(args)))
	}
	if q.Status != "" {
		args = append(args, string(q.Status))
		conds = append(conds, "status = $"+strconv.Itoa(len(args)))
	} else {
		conds = append(conds, "status <> 'deleted'") // deleted users show only when asked for
	}
	// Attribute filters (issue 15): one containment per namespace,
	// {ns: {key: value, …}}, each a bitmap scan of the GIN expression index
	// user_attributes_doc_idx (migration 00050) and a semi-join.
	for _, doc := range attrDocuments(q.Attrs) {
		args = append(args, doc)
		conds = append(conds, "id IN (SELECT user_id FROM user_attributes WHERE doc @> $"+
			strconv.Itoa(len(args))+"::text::jsonb)")
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// attrDocuments groups the filters by namespace (in their order) into one
// containment document each: {"ns": {"key": value, …}}.
func attrDocuments(filters []userservice.AttrFilter) []string {
	var order []string
	objs := map[string]map[string]json.RawMessage{}
	for _, f := range filters {
		if objs[f.Namespace] == nil {
			order = append(order, f.Namespace)
			objs[f.Namespace] = map[string]json.RawMessage{}
		}
		objs[f.Namespace][f.Key] = f.Value
	}
	out := make([]string, len(order))
	for i, ns := range order {
		b, _ := json.Marshal(map[string]any{ns: objs[ns]}) // raw values the edge made: valid JSON
		out[i] = string(b)
	}
	return out
}

// orderSQL builds the ORDER BY clause of col (from sortColumn), with id as the
// tie-breaker and users never active last in either direction. fromMatches
// sorts by an expression equal to the column that no index provides, so that the
// page is the top of the term's matches (found through the trigram index) rather
// than a walk of the column's index that filters every row on the way: that walk
// stops early for a common term but reads the whole table for a rare one, or for
// one whose matches sort last (all the "weber"s of a lastName order: 14.7 ms on
// 10,000 users, against 0.4 ms from the matches). SearchUsersAt asks for it when
// the term's matches are few against the table (pageFromMatches).
func orderSQL(col string, desc, fromMatches bool) string {
	_, key, id := sortSource(col, fromMatches)
	nulls := ""
	if col == "last_active_at" {
		nulls = " NULLS LAST"
	}
	if fromMatches {
		if timeColumns[col] {
			key = "(" + key + " + interval '0')"
		} else {
			key = "(" + key + " || '')"
		}
	}
	return " ORDER BY " + key + dir(desc) + nulls + ", " + id + dir(desc)
}

// sortSource returns the FROM clause of a page in col's order and the columns
// that order walks: (col, id) of users, except for updated_at and
// last_active_at, whose orders are kept in user_updated_order and
// user_active_order by triggers (migrations 00070 and 00100) so that an index
// on them does not make every profile write or recorded activity a non-HOT
// update of users. Their changed_at and active_at equal users.updated_at and
// users.last_active_at and their user_id users.id, so the order and the keys
// are the same; the WHERE clause's unqualified columns are all users' (neither
// table has a column of the same name). A page sorted from the term's matches
// (fromMatches) walks no index: it sorts users' own column, with no join.
func sortSource(col string, fromMatches bool) (from, key, id string) {
	if fromMatches {
		return " FROM users", col, "id"
	}
	switch col {
	case "updated_at":
		return " FROM users JOIN user_updated_order ON user_updated_order.user_id = users.id", "changed_at", "user_id"
	case "last_active_at":
		return activeOrderFrom, "active_at", "user_id"
	}
	return " FROM users", col, "id"
}

// activeOrderFrom is the FROM clause of a page in lastActiveAt order: users with
// user_active_order (migration 00100), whose active_at equals
// users.last_active_at, NULL for users never active, and whose index
// (active_at, user_id) keeps the order.
const activeOrderFrom = " FROM users JOIN user_active_order ON user_active_order.user_id = users.id"

// normalizePage applies the defaults and bounds of the API to page and limit.
func normalizePage(page, limit int) (int, int) {
	if page < 1 {
		page = 1
	}
	if limit < 1 {
		limit = userservice.DefaultPageSize
	}
	return page, min(limit, userservice.MaxPageSize)
}

// searchQuery is the SQL of one search: the count and the page.
type searchQuery struct {
	countSQL, pageSQL string
	args, pageArgs    []any
}

// sortColumn returns the column and direction of q's order.
func sortColumn(q userservice.UserSearch) (col string, desc bool) {
	col, ok := sortColumns[q.SortBy]
	if !ok {
		col = "created_at"
	}
	return col, !strings.EqualFold(q.SortOrder, "asc")
}

// timeColumns are the sort columns of type timestamptz (the others are text).
var timeColumns = map[string]bool{"created_at": true, "updated_at": true, "last_active_at": true}

// buildSearch builds the count and the page. The page reads limit+1 rows (the
// extra one only says whether a next page exists) and, after the user's columns,
// the sort key, from which the next cursor's position is taken exactly.
//
// With q.After the page is keyset-paginated: the rows strictly after the
// position in (sort key, id) order, a range scan of the (column, id) index however
// deep the page; otherwise OFFSET as before. lastActiveAt sorts users never
// active last in both directions, which no single row comparison expresses, so
// its keyset page is two index range scans: the non-null keys after the position,
// then the NULLs by id.
func buildSearch(q userservice.UserSearch, page, limit int, fromMatches bool) searchQuery {
	where, args := searchSQL(q)
	col, desc := sortColumn(q)
	fromMatches = fromMatches && pagesFromMatches(col)
	order := orderSQL(col, desc, fromMatches)
	sq := searchQuery{countSQL: "SELECT count(*) FROM users" + where, args: args}
	pageArgs := append([]any{}, args...)
	arg := func(v any) string {
		pageArgs = append(pageArgs, v)
		return "$" + strconv.Itoa(len(pageArgs))
	}
	cols := userColumns + ", " + col + " AS sort_key"
	if q.After == nil && page == 1 && col == "last_active_at" {
		// The first page as the two range scans below, with no position: the
		// (active_at, user_id) index has NULLs last ascending and first
		// descending, so "DESC NULLS LAST" alone would sort every match.
		n := arg(limit + 1)
		sq.pageSQL = lastActiveUnion(cols, where, "", dir(desc), n)
		sq.pageArgs = pageArgs
		return sq
	}
	from, key, id := sortSource(col, fromMatches)
	if q.After == nil {
		sq.pageSQL = "SELECT " + cols + from + where + order +
			" LIMIT " + arg(limit+1) + " OFFSET " + arg((page-1)*limit)
		sq.pageArgs = pageArgs
		return sq
	}
	cmp, dir := " > ", dir(desc)
	if desc {
		cmp = " < "
	}
	cast := "::text"
	if timeColumns[col] {
		cast = "::timestamptz"
	}
	after := q.After
	switch {
	case col == "last_active_at" && after.Null:
		sq.pageSQL = "SELECT " + cols + activeOrderFrom + where + " AND active_at IS NULL AND user_id" + cmp + arg(after.ID) + "::uuid" +
			" ORDER BY user_id" + dir + " LIMIT " + arg(limit+1)
	case col == "last_active_at":
		key, id, n := arg(after.Key), arg(after.ID), arg(limit+1)
		sq.pageSQL = lastActiveUnion(cols, where, " AND (active_at, user_id)"+cmp+"("+key+cast+", "+id+"::uuid)", dir, n)
	default:
		sq.pageSQL = "SELECT " + cols + from + where +
			" AND (" + key + ", " + id + ")" + cmp + "(" + arg(after.Key) + cast + ", " + arg(after.ID) + "::uuid)" +
			order + " LIMIT " + arg(limit+1)
	}
	sq.pageArgs = pageArgs
	return sq
}

func dir(desc bool) string {
	if desc {
		return " DESC"
	}
	return " ASC"
}

// lastActiveUnion is a page in lastActiveAt order as two range scans of
// user_active_order_idx: the users active (after the position, when after is
// set), then those never active, by id; each limited, merged and limited again.
func lastActiveUnion(cols, where, after, dir, limit string) string {
	return "SELECT * FROM ((SELECT " + cols + activeOrderFrom + where + " AND active_at IS NOT NULL" + after +
		" ORDER BY active_at" + dir + ", user_id" + dir + " LIMIT " + limit + ")" +
		" UNION ALL (SELECT " + cols + activeOrderFrom + where + " AND active_at IS NULL" +
		" ORDER BY user_id" + dir + " LIMIT " + limit + ")) page ORDER BY sort_key" + dir + " NULLS LAST, id" + dir + " LIMIT " + limit
}

// positionOf renders a sort key scanned from PostgreSQL as a cursor position:
// timestamps keep their microseconds, so that the next page starts exactly after
// the row.
func positionOf(id string, key any) *userservice.Position {
	p := &userservice.Position{ID: id}
	switch k := key.(type) {
	case *time.Time:
		if k == nil {
			p.Null = true
		} else {
			p.Key = k.UTC().Format(time.RFC3339Nano)
		}
	case *string:
		if k == nil {
			p.Null = true
		} else {
			p.Key = *k
		}
	}
	return p
}

// SearchUsers runs the admin search: a case-insensitive substring of first name,
// last name, email, username or display name, filtered by role and status (deleted
// users only with status=deleted), in the requested order, one page of it with the
// total. A page past the end is empty, with the right total.
//
// The page and the count are two statements pipelined in one round trip and one
// snapshot. A count(*) OVER () window in the page query instead must read and sort
// every match before the LIMIT, where the page alone stops after a page's worth of
// rows on the sort index: on 10,000 users (BenchmarkSearchUsers10k) a common term
// took 3.8 ms at the median against 15.9 ms with the window, the plain list 1.1 ms
// against 2.6 ms; only a rare term was faster with the window (0.3 ms against 0.7).
func (d *Directory) SearchUsers(ctx context.Context, q userservice.UserSearch) ([]userservice.User, userservice.Pagination, error) {
	users, page, _, err := d.SearchUsersAt(ctx, q)
	return users, page, err
}

// searchGenerationSQL names the data a statement sees: the database, the schema,
// the server's start time and the MVCC snapshot. Two statements that read the same
// snapshot see exactly the same committed rows (a snapshot lists which
// transactions count as committed: any commit, or any new transaction that
// writes, changes it), so an answer read under one generation is the answer
// under it. Full 64-bit transaction ids never repeat within a cluster; the start
// time separates a restored or replaced server, and the database and schema the
// services that share a Redis.
const searchGenerationSQL = `SELECT current_database() || '/' || current_schema() || '/' ||
	pg_postmaster_start_time()::text || '/' || pg_current_snapshot()::text`

// SearchGeneration returns the current search generation: two reads that return
// the same generation see the same rows, so a search answer computed at one
// generation answers every search made while that generation is current. It
// writes nothing: the write path pays nothing for the search cache.
func (d *Directory) SearchGeneration(ctx context.Context) (string, error) {
	ctx, cancel := d.db.timeout(ctx)
	defer cancel()
	var gen string
	if err := d.db.pool.QueryRow(ctx, searchGenerationSQL).Scan(&gen); err != nil {
		return "", unavailable("cannot read the search generation", err)
	}
	return gen, nil
}

// customPlansSQL makes the search's transaction plan every statement for its own
// arguments. pgx prepares each statement once per connection, and after five
// executions PostgreSQL may switch a prepared statement to its generic plan, made
// without the term: for `search_text LIKE '%' || $1 || '%'` that plan cannot
// know how many rows match, and it is a sequential scan of users (8 ms on 10,000
// users for a term with 244 matches, against 0.6 ms through the trigram index),
// which the search then paid on every call. A custom plan costs its planning
// (about 1 ms) and picks the trigram index, the sort index or the matches by the
// term. SET LOCAL ends with the transaction: the writer's statements keep their
// generic plans.
const customPlansSQL = "SET LOCAL plan_cache_mode = force_custom_plan"

// beginSearch queues the start of a search: its read-only snapshot, custom
// plans for its statements, and the generation the snapshot reads.
func beginSearch(b *pgx.Batch, gen *string) {
	b.Queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
	b.Queue(customPlansSQL)
	b.Queue(searchGenerationSQL).QueryRow(func(row pgx.Row) error { return row.Scan(gen) })
}

// SearchUsersAt is SearchUsers that also returns the search generation of the
// snapshot the answer was read in (see SearchGeneration).
func (d *Directory) SearchUsersAt(ctx context.Context, q userservice.UserSearch) ([]userservice.User, userservice.Pagination, string, error) {
	page, limit := normalizePage(q.Page, q.Limit)
	col, desc := sortColumn(q)
	ctx, cancel := d.db.timeout(ctx)
	defer cancel()
	r := &searchRun{d: d, q: q, page: page, limit: limit, col: col, desc: desc, users: make([]userservice.User, 0, limit+1)}
	if err := r.run(ctx); err != nil {
		return nil, userservice.Pagination{}, "", unavailable("cannot search users", err)
	}
	users := r.users
	more := len(users) > limit
	if more {
		users = users[:limit]
	}
	p := userservice.NewPagination(page, limit, r.total)
	p.HasNext = more
	if q.Count == userservice.CountNone {
		p.Uncounted, p.TotalPages = true, 0
	}
	if more {
		p.Next = r.last
	}
	return users, p, r.gen, nil
}

// searchRun is one admin search: its query and what it has read.
type searchRun struct {
	d           *Directory
	q           userservice.UserSearch
	page, limit int
	col         string
	desc        bool

	gen   string
	total int
	users []userservice.User    // the page, and the row after it when there is one
	last  *userservice.Position // the position of the page's last row
}

// readPage scans a page's rows: the user's columns, then the sort key.
func (r *searchRun) readPage(rows pgx.Rows) error {
	for rows.Next() {
		var key any = new(*string)
		if timeColumns[r.col] {
			key = new(*time.Time)
		}
		u, err := scanUser(rows, key)
		if err != nil {
			return err
		}
		if len(r.users) < r.limit {
			switch k := key.(type) {
			case **time.Time:
				r.last = positionOf(u.ID, *k)
			case **string:
				r.last = positionOf(u.ID, *k)
			}
		}
		r.users = append(r.users, u)
	}
	return rows.Err()
}

// run reads the search in one read-only snapshot on one connection. A page whose
// order is kept (orderMemo) is read by id in one round trip, and kept only if the
// snapshot sees the order's facts; otherwise the search starts again in a new
// snapshot. A connection an error leaves inside a transaction is closed by the
// pool on release, never reused.
func (r *searchRun) run(ctx context.Context) error {
	conn, err := r.d.db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	okey, keepOrder := orderKeyOf(r.q, r.col)
	if order, ok := r.d.orders.get(okey, keepOrder); ok {
		var facts string
		b := &pgx.Batch{}
		b.Queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
		b.Queue(searchGenerationSQL + ", " + searchFactsSQL).QueryRow(func(row pgx.Row) error { return row.Scan(&r.gen, &facts) })
		if ids := order.pageIDs(r.page, r.limit, r.desc); len(ids) > 0 {
			b.Queue(pageByIDsSQL(r.col), ids).Query(r.readPage)
		}
		b.Queue("COMMIT")
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if facts == order.facts {
			searchOrdersReused.Inc()
			r.total = len(order.ids)
			return nil
		}
		r.users, r.last = r.users[:0], nil
	}

	counted := r.q.Count != userservice.CountNone
	ckey, keepCount := countKeyOf(r.q)
	known, haveKnown := r.d.counts.get(ckey, keepCount)
	var facts string // the search facts the count was read at
	size := known.size
	matches, fromMatches := known.total, false
	b := &pgx.Batch{}
	beginSearch(b, &r.gen)
	if counted && r.q.Search != "" && pagesFromMatches(r.col) && !haveKnown {
		// How the page is read depends on how many users match: count first.
		queueCount(b, buildSearch(r.q, r.page, r.limit, false), countEntry{}, &facts, &r.total)
		queueSize(b, &size)
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		b = &pgx.Batch{}
		matches, fromMatches = r.total, pageFromMatches(r.total, size, r.page*r.limit+1)
	} else {
		// A count known at some search facts decides how the page is read (any
		// choice reads the same rows) and is reused when the snapshot sees the
		// same facts; otherwise it is counted again.
		fromMatches = haveKnown && r.q.Search != "" && pageFromMatches(known.total, known.size, r.page*r.limit+1)
		if counted {
			queueCount(b, buildSearch(r.q, r.page, r.limit, fromMatches), known, &facts, &r.total)
			if r.q.Search != "" && size == 0 {
				queueSize(b, &size)
			}
		}
	}
	if keepOrder && fromMatches && matches <= orderListMax {
		// The page from the matches: read them all in order, keep the order, and
		// read the page by id.
		var order orderEntry
		sql, args := orderListSQL(r.q, r.col)
		b.Queue(sql, args...).QueryRow(func(row pgx.Row) error { return row.Scan(&order.facts, &order.ids) })
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		searchOrdersRead.Inc()
		r.d.orders.learn(okey, keepOrder, order)
		b = &pgx.Batch{}
		if ids := order.pageIDs(r.page, r.limit, r.desc); len(ids) > 0 {
			b.Queue(pageByIDsSQL(r.col), ids).Query(r.readPage)
		}
	} else {
		sq := buildSearch(r.q, r.page, r.limit, fromMatches)
		b.Queue(sq.pageSQL, sq.pageArgs...).Query(r.readPage)
	}
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	if counted {
		r.d.counts.learn(ckey, keepCount, known, countEntry{facts: facts, total: r.total, size: size})
	}
	return nil
}

// queueSize queues the read of users' size as the planner knows it (reltuples:
// an estimate, -1 before the first ANALYZE), for pageFromMatches.
func queueSize(b *pgx.Batch, size *float64) {
	b.Queue(`SELECT reltuples::float8 FROM pg_class WHERE oid = 'users'::regclass`).QueryRow(func(row pgx.Row) error { return row.Scan(size) })
}

// Counts reused and counted by the admin search (see countMemo).
var (
	searchCountsReused  = metrics.NewCounter(`user_service_search_counts_total{result="reused"}`)
	searchCountsCounted = metrics.NewCounter(`user_service_search_counts_total{result="counted"}`)
)

// searchFactsSQL names the search facts a snapshot sees: the stamps of
// search_facts, which every transaction that changes a user's search_text, role,
// status, names, email or creation time rewrites (migrations 00110 and 00120),
// and the server's start time (a server restored to an earlier point hands out
// transaction ids again). Two snapshots that read the same value see the same
// values of those columns for every user, so a count or an order read in one is
// the count or the order in the other.
const searchFactsSQL = `(SELECT pg_postmaster_start_time()::text || '/' || string_agg(xact::text, ',' ORDER BY slot) FROM search_facts)`

// queueCount queues a search's count, reading the search facts with it: when
// they are known's, known's total is the answer and the count is not run (a
// scalar subquery in a CASE branch not taken is never executed); otherwise the
// users are counted. facts and total receive the snapshot's facts and the count.
func queueCount(b *pgx.Batch, sq searchQuery, known countEntry, facts *string, total *int) {
	n := len(sq.args)
	args := append(append(make([]any, 0, n+2), sq.args...), known.facts, int64(known.total))
	sql := `SELECT f.facts, CASE WHEN f.facts = $` + strconv.Itoa(n+1) + `::text THEN $` + strconv.Itoa(n+2) +
		`::bigint ELSE (` + sq.countSQL + `) END FROM (SELECT ` + searchFactsSQL + ` AS facts) f`
	b.Queue(sql, args...).QueryRow(func(row pgx.Row) error {
		var n int64
		if err := row.Scan(facts, &n); err != nil {
			return err
		}
		*total = int(n)
		if known.facts != "" && *facts == known.facts {
			searchCountsReused.Inc()
		} else {
			searchCountsCounted.Inc()
		}
		return nil
	})
}

// countMemo keeps the latest count of each search (term, role, status) with the
// search facts it was read at (searchFactsSQL). A search sends the known count
// and facts with its count statement, and PostgreSQL answers with the known
// count when its snapshot sees the same facts, so the answer is always the
// snapshot's own: the memo saves work (a term every user matches reads every
// user, 3-5 ms on 10,000), never freshness. The writes of a running platform
// (progress, enrollments, preferences, profiles' other fields) leave the facts
// alone. Searches with attribute filters are not kept: user_attributes are not
// among the facts. Bounded by countMemoSize entries; it is safe for concurrent
// use.
type countMemo struct {
	mu sync.Mutex
	m  map[countKey]countEntry
}

// countMemoSize bounds the memo: about 0.5 KB an entry.
const countMemoSize = 4096

type countKey struct {
	search string
	role   userservice.Role
	status userservice.Status
}

type countEntry struct {
	facts string
	total int
	size  float64 // users' reltuples when the count was made: pageFromMatches's size
}

// countKeyOf returns q's key and whether its count may be kept.
func countKeyOf(q userservice.UserSearch) (countKey, bool) {
	return countKey{search: q.Search, role: q.Role, status: q.Status}, q.Count != userservice.CountNone && len(q.Attrs) == 0
}

// get returns the count kept for k, if keep (countKeyOf's second result).
func (m *countMemo) get(k countKey, keep bool) (countEntry, bool) {
	if !keep {
		return countEntry{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[k]
	return e, ok
}

// learn keeps now for k, if keep, unless it equals was (nothing to write) or
// has no facts.
func (m *countMemo) learn(k countKey, keep bool, was, now countEntry) {
	if !keep || now.facts == "" || now == was {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, present := m.m[k]; !present && len(m.m) >= countMemoSize {
		for old := range m.m { // an eighth of the entries, picked by map order
			delete(m.m, old)
			if len(m.m) <= countMemoSize*7/8 {
				break
			}
		}
	}
	m.m[k] = now
}

// pagesFromMatches says whether col's pages can be read from a term's matches:
// all but lastActiveAt's, which are two limited scans of their own
// (lastActiveUnion).
func pagesFromMatches(col string) bool { return col != "last_active_at" }

// pageFromMatches says whether a page of a term with matches users among about
// size reads the matches and sorts them (cost: every match) rather than walking
// the sort column's index until it has passed rows matches (cost: about rows ×
// size / matches, when the matches are spread evenly over the order, and up to
// the whole table when they are not). The two meet where matches² = rows × size;
// the matches are preferred up to twice that, as their cost is known in advance
// and the walk's is a guess that fails exactly for terms that cluster in the
// order (one last name). On 10,000 users, 20 a page: up to about 1,100 matches
// for page 1; a term every user matches walks the index (0.1 ms instead of
// sorting 10,000 rows in 20 ms).
func pageFromMatches(matches int, size float64, rows int) bool {
	size = max(size, float64(matches)) // reltuples is an estimate, -1 before the first ANALYZE
	m := float64(matches)
	return m*m <= 2*float64(rows)*size
}

// AuditLog returns one page of the user's audit records, newest first, and the
// total.
func (d *Directory) AuditLog(ctx context.Context, userID string, pq userservice.PageQuery) ([]userservice.AuditRecord, int, error) {
	id, ok := userservice.ParseID(userID)
	if !ok {
		return []userservice.AuditRecord{}, 0, nil
	}
	page, limit := normalizePage(pq.Page, pq.Limit)
	ctx, cancel := d.db.timeout(ctx)
	defer cancel()
	out := make([]userservice.AuditRecord, 0, limit)
	var total int
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
	b.Queue(`SELECT count(*) FROM audit_log WHERE user_id = $1`, id).QueryRow(func(row pgx.Row) error { return row.Scan(&total) })
	b.Queue(`SELECT `+auditColumns+` FROM audit_log
	WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3`, id, limit, (page-1)*limit).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			a, err := scanAudit(rows, id)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return rows.Err()
	})
	b.Queue("COMMIT")
	if err := d.db.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, unavailable("cannot read the audit log", err)
	}
	return out, total, nil
}

func decodeObject(s *string) (map[string]any, error) {
	if s == nil {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(*s), &m); err != nil {
		return nil, err
	}
	return m, nil
}

// Sessions returns one page of the user's sessions, newest first, and their
// total, read in one repeatable-read snapshot so that the page and the total
// agree. The page walks sessions_user_started_idx.
func (d *Directory) Sessions(ctx context.Context, userID string, pq userservice.PageQuery) ([]userservice.Session, int, error) {
	id, ok := userservice.ParseID(userID)
	if !ok {
		return []userservice.Session{}, 0, nil
	}
	page, limit := normalizePage(pq.Page, pq.Limit)
	ctx, cancel := d.db.timeout(ctx)
	defer cancel()
	out := make([]userservice.Session, 0, limit)
	var total int
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
	b.Queue(`SELECT count(*) FROM sessions WHERE user_id = $1`, id).QueryRow(func(row pgx.Row) error { return row.Scan(&total) })
	b.Queue(`SELECT `+sessionColumns+` FROM sessions
	WHERE user_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2 OFFSET $3`, id, limit, (page-1)*limit).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			s, err := scanSession(rows)
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		return rows.Err()
	})
	b.Queue("COMMIT")
	if err := d.db.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, unavailable("cannot read the sessions", err)
	}
	return out, total, nil
}
