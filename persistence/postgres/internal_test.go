package postgres

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lms-platform/userservice"
)

func TestEscapeLike(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"50%", `50\%`},
		{"a_b", `a\_b`},
		{`back\slash`, `back\\slash`},
		{`%_\`, `\%\_\\`},
	}
	for _, tt := range tests {
		if got := escapeLike(tt.in); got != tt.want {
			t.Errorf("escapeLike(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMapError(t *testing.T) {
	unique := func(constraint string) error {
		return fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "23505", ConstraintName: constraint})
	}
	tests := []struct {
		name    string
		err     error
		code    string
		message string
		is      error
	}{
		{"email", unique("users_email_key"), userservice.ECodeConflict, "Email address is already registered", nil},
		{"username", unique("users_username_key"), userservice.ECodeConflict, "Username is already taken", nil},
		{"auth id", unique("users_auth_id_key"), userservice.ECodeConflict, "User already exists with this auth ID", nil},
		{"processed message", unique("processed_messages_pkey"), userservice.ECodeConflict, "", userservice.ErrDuplicateMessage},
		{"idempotency key", unique("idempotency_keys_pkey"), userservice.ECodeConflict, "", userservice.ErrIdempotencyKeyTaken},
		{"enrollment", unique("enrollments_user_course_key"), userservice.ECodeAlreadyEnrolled, "", nil},
		{"fence", userservice.ErrStaleVersion, userservice.ECodeUnavailable, "", userservice.ErrStaleVersion},
		{"other unique", unique("something_else"), userservice.ECodeConflict, "", nil},
		{"foreign key", &pgconn.PgError{Code: "23503"}, userservice.ECodeConflict, "", nil},
		{"check violation", &pgconn.PgError{Code: "23514", ColumnName: "time_spent_seconds"}, userservice.ECodeValidation, "", nil},
		{"not null", &pgconn.PgError{Code: "23502", ColumnName: "email"}, userservice.ECodeValidation, "", nil},
		{"bad encoding", &statementError{field: "bio", err: &pgconn.PgError{Code: "22021"}}, userservice.ECodeValidation, "", nil},
		{"bad json", &pgconn.PgError{Code: "22P02"}, userservice.ECodeValidation, "", nil},
		{"connection", errors.New("connection reset"), userservice.ECodeUnavailable, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mapError(tt.err)
			if userservice.ErrorCode(got) != tt.code {
				t.Errorf("code = %s, want %s (%v)", userservice.ErrorCode(got), tt.code, got)
			}
			if tt.message != "" && userservice.ErrorMessage(got) != tt.message {
				t.Errorf("message = %q, want %q", userservice.ErrorMessage(got), tt.message)
			}
			if tt.is != nil && !errors.Is(got, tt.is) {
				t.Errorf("err = %v, want %v", got, tt.is)
			}
			if code := tt.code; (code == userservice.ECodeUnavailable && tt.is == nil || code == userservice.ECodeValidation ||
				tt.name == "other unique" || tt.name == "foreign key") && !errors.Is(got, tt.err) {
				t.Errorf("the cause is lost: %v", got)
			}
		})
	}
	if mapError(nil) != nil {
		t.Error("mapError(nil) != nil")
	}
}

// TestMapErrorNamesTheField: a data error names the field its statement writes,
// else PostgreSQL's column in the contract's spelling, else the body.
func TestMapErrorNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		err   error
		field string
	}{
		{&statementError{field: "preferences", err: &pgconn.PgError{Code: "22P02", ColumnName: "value"}}, "preferences"},
		{fmt.Errorf("w: %w", &pgconn.PgError{Code: "22001", ColumnName: "first_name"}), "firstName"},
		{&pgconn.PgError{Code: "23514", ColumnName: "time_spent_seconds"}, "timeSpentSeconds"},
		{&statementError{err: &pgconn.PgError{Code: "22021"}}, "body"},
	} {
		var de *userservice.Error
		if !errors.As(mapError(tc.err), &de) || de.Code != userservice.ECodeValidation || len(de.Details) != 1 || de.Details[0].Field != tc.field {
			t.Errorf("%v: %v, want a 400 naming %s", tc.err, de, tc.field)
		}
	}
	if got := unstorableText("a", "ok", "b", (*string)(nil), "c", "x\x00", "d", "\xff"); got != "c" {
		t.Errorf("unstorableText: %q, want c", got)
	}
	bad := "\xff"
	if got := unstorableText("a", "ok", "b", &bad); got != "b" {
		t.Errorf("unstorableText: %q, want b", got)
	}
}

func TestAttributable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{userservice.ErrStaleVersion, true},
		{&pgconn.PgError{Code: "23505"}, true},
		{&pgconn.PgError{Code: "22P02"}, true},
		{&pgconn.PgError{Code: "40P01"}, false}, // deadlock: not the mutation's fault
		{&pgconn.PgError{Code: "40001"}, false},
		{errors.New("connection reset"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := attributable(tt.err); got != tt.want {
			t.Errorf("attributable(%v) = %t, want %t", tt.err, got, tt.want)
		}
	}
}

// TestCountMemoBounded: the memo never holds more than countMemoSize counts, and
// keeps the one it just learned.
func TestCountMemoBounded(t *testing.T) {
	m := countMemo{m: make(map[countKey]countEntry)}
	for i := range 3 * countMemoSize {
		k := countKey{search: fmt.Sprint(i)}
		m.learn(k, true, countEntry{}, countEntry{facts: "f", total: i})
		if len(m.m) > countMemoSize {
			t.Fatalf("%d counts kept, bound %d", len(m.m), countMemoSize)
		}
		if e, ok := m.get(k, true); !ok || e.total != i {
			t.Fatalf("the count just learned (%d) is not kept: %+v %v", i, e, ok)
		}
	}
	m.learn(countKey{search: "no facts"}, true, countEntry{}, countEntry{total: 1})
	if _, ok := m.get(countKey{search: "no facts"}, true); ok {
		t.Fatal("a count without facts was kept")
	}
	m.learn(countKey{search: "not memo"}, false, countEntry{}, countEntry{facts: "f", total: 1})
	if _, ok := m.get(countKey{search: "not memo"}, true); ok {
		t.Fatal("a count that may not be kept was kept")
	}
}

// TestOrderMemoBounded: the lists kept never hold more than orderMemoIDs ids
// together, the list just learned is kept, and lists without facts, too long or
// not to be kept are not.
func TestOrderMemoBounded(t *testing.T) {
	m := orderMemo{m: make(map[orderKey]orderEntry)}
	list := func(n int) [][16]byte { return make([][16]byte, n) }
	for i := range 3 * orderMemoIDs / 1000 {
		k := orderKey{search: fmt.Sprint(i), col: "email"}
		m.learn(k, true, orderEntry{facts: "f", ids: list(1000 + i%7)})
		held := 0
		for _, e := range m.m {
			held += len(e.ids)
		}
		if held != m.ids || held > orderMemoIDs {
			t.Fatalf("lists hold %d ids, counted %d, bound %d", held, m.ids, orderMemoIDs)
		}
		if e, ok := m.get(k, true); !ok || len(e.ids) != 1000+i%7 {
			t.Fatalf("the list just learned (%d) is not kept", i)
		}
	}
	// Learning a key again replaces its list and its share of the bound.
	k := orderKey{search: "again"}
	m.learn(k, true, orderEntry{facts: "f", ids: list(10)})
	before := m.ids
	m.learn(k, true, orderEntry{facts: "g", ids: list(3)})
	if e, _ := m.get(k, true); e.facts != "g" || m.ids != before-7 {
		t.Fatalf("relearned: %q, %d ids held, want g and %d", e.facts, m.ids, before-7)
	}
	for name, e := range map[string]orderEntry{
		"without facts": {ids: list(1)},
		"too long":      {facts: "f", ids: list(orderListMax + 1)},
	} {
		m.learn(orderKey{search: name}, true, e)
		if _, ok := m.get(orderKey{search: name}, true); ok {
			t.Fatalf("a list %s was kept", name)
		}
	}
	m.learn(orderKey{search: "not kept"}, false, orderEntry{facts: "f", ids: list(1)})
	if _, ok := m.get(orderKey{search: "not kept"}, true); ok {
		t.Fatal("a list that may not be kept was kept")
	}
	// Many short lists: the entries are bounded too.
	for i := range 3 * orderMemoSize {
		k := orderKey{search: fmt.Sprint("short ", i)}
		m.learn(k, true, orderEntry{facts: fmt.Sprint("f", i%3), ids: list(1)})
		if len(m.m) > orderMemoSize {
			t.Fatalf("%d lists kept, bound %d", len(m.m), orderMemoSize)
		}
		if _, ok := m.get(k, true); !ok {
			t.Fatalf("the list just learned (%d) is not kept", i)
		}
	}
}

// TestOrderPageIDs: pages of a kept order in both directions, with the one row
// past the page, and nothing past the end however far.
func TestOrderPageIDs(t *testing.T) {
	e := orderEntry{facts: "f"}
	for i := range 7 {
		e.ids = append(e.ids, [16]byte{byte(i)})
	}
	first := func(ids [][16]byte) []int {
		out := []int{}
		for _, id := range ids {
			out = append(out, int(id[0]))
		}
		return out
	}
	for _, c := range []struct {
		page, limit int
		desc        bool
		want        []int
	}{
		{1, 3, false, []int{0, 1, 2, 3}},
		{2, 3, false, []int{3, 4, 5, 6}},
		{3, 3, false, []int{6}},
		{4, 3, false, []int{}},
		{1, 3, true, []int{6, 5, 4, 3}},
		{3, 3, true, []int{0}},
		{1, 7, false, []int{0, 1, 2, 3, 4, 5, 6}},
		{1, 100, true, []int{6, 5, 4, 3, 2, 1, 0}},
		{2, 7, false, []int{}},
		{1 << 60, 100, false, []int{}},
	} {
		if got := first(e.pageIDs(c.page, c.limit, c.desc)); !slices.Equal(got, c.want) {
			t.Errorf("page %d of %d (desc %v): %v, want %v", c.page, c.limit, c.desc, got, c.want)
		}
	}
}
