package postgres_test

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

// seedUser describes one user of the search fixture. Names are capitalized ASCII
// words and emails distinct in their first letters, so that every collation sorts
// them as Go does.
type seedUser struct {
	first, last, email, username, display string
	role                                  userservice.Role
	status                                userservice.Status
	created                               int // step of createdAt
	active                                int // step of lastActiveAt, 0 for never
}

var searchFixture = []seedUser{
	{"Alice", "Smith", "alice.smith@example.com", "alice_s", "Ally", userservice.RoleStudent, userservice.StatusActive, 1, 50},
	{"Bob", "Jones", "bob@example.com", "bobby", "", userservice.RoleInstructor, userservice.StatusActive, 2, 0},
	{"Carol", "White", "carol@corp.io", "", "Carol W", userservice.RoleAdmin, userservice.StatusActive, 3, 40},
	{"Dave", "Smithson", "dave@example.com", "dave100", "50% Dave", userservice.RoleStudent, userservice.StatusInactive, 4, 0},
	{"Eve", "Adams", "eve_adams@example.com", "eve.a", "Eve", userservice.RoleStudent, userservice.StatusSuspended, 5, 40},
	{"Frank", "Moore", "frank@example.com", "frank", "Frank", userservice.RoleStudent, userservice.StatusDeleted, 6, 30},
	{"Grace", "Hopper", "grace@navy.mil", "ghopper", "Amazing Grace", userservice.RoleInstructor, userservice.StatusActive, 7, 0},
	{"Alice", "Brown", "abrown@example.com", "abrown", "", userservice.RoleStudent, userservice.StatusActive, 7, 20},
	{"Heidi", "Klum", "heidi@example.com", "heidi_k", "H_K", userservice.RoleStudent, userservice.StatusActive, 9, 10},
	{"Ivan", "Petrov", "ivan@example.ru", "IvanP", "Ivan\nthe Great", userservice.RoleStudent, userservice.StatusActive, 10, 0},
	{"Judy", "Smith", "judy@example.com", "judy", "", userservice.RoleStudent, userservice.StatusActive, 7, 60},
	{"Mallory", "Smith", "mallory@example.com", "mallory", "", userservice.RoleAdmin, userservice.StatusDeleted, 12, 0},
}

// seedSearch commits the fixture through the Writer and returns the users as
// committed.
func seedSearch(tb testing.TB, db *postgres.DB) []userservice.User {
	tb.Helper()
	w := newWriter(tb, db, postgres.WriterConfig{})
	var users []userservice.User
	for _, f := range searchFixture {
		role := f.role
		reg := userservice.Register{ID: userservice.NewID(), Input: userservice.CreateUser{
			AuthID: userservice.NewID(), Email: f.email, FirstName: f.first, LastName: f.last, Role: &role}}
		if f.username != "" {
			reg.Input.Username = strp(f.username)
		}
		if f.display != "" {
			reg.Input.DisplayName = strp(f.display)
		}
		o := apply(tb, nil, reg, metaAt(f.created))
		mustCommit(tb, w, o.Mutation)
		s := o.State
		if f.status != userservice.StatusActive {
			o = apply(tb, s, userservice.ChangeStatus{Status: f.status}, metaAt(f.created+20))
			mustCommit(tb, w, o.Mutation)
			s = o.State
		}
		if f.active != 0 {
			o = apply(tb, s, userservice.RecordLogin{SessionID: "s", At: at(f.active)}, metaAt(f.active))
			mustCommit(tb, w, o.Mutation)
			s = o.State
		}
		users = append(users, s.User)
	}
	return users
}

// matches is the search's meaning, written independently of the SQL.
func matches(u userservice.User, q userservice.UserSearch) bool {
	if q.Status == "" && u.Status == userservice.StatusDeleted || q.Status != "" && u.Status != q.Status {
		return false
	}
	if q.Role != "" && u.Role != q.Role {
		return false
	}
	if q.Search == "" {
		return true
	}
	term := strings.ToLower(q.Search)
	for _, f := range []*string{&u.FirstName, &u.LastName, &u.Email, u.Username, u.DisplayName} {
		if f != nil && strings.Contains(strings.ToLower(*f), term) {
			return true
		}
	}
	return false
}

// expected filters and sorts users as SearchUsers must.
func expected(users []userservice.User, q userservice.UserSearch) []string {
	var out []userservice.User
	for _, u := range users {
		if matches(u, q) {
			out = append(out, u)
		}
	}
	key := func(u userservice.User) (string, *time.Time) {
		switch q.SortBy {
		case "firstName":
			return u.FirstName, nil
		case "lastName":
			return u.LastName, nil
		case "email":
			return u.Email, nil
		case "updatedAt":
			return "", &u.UpdatedAt.Time
		case "lastActiveAt":
			if u.LastActiveAt == nil {
				return "", nil
			}
			return "", &u.LastActiveAt.Time
		}
		return "", &u.CreatedAt.Time
	}
	desc := q.SortOrder != "asc"
	slices.SortFunc(out, func(a, b userservice.User) int {
		sa, ta := key(a)
		sb, tb := key(b)
		if q.SortBy == "lastActiveAt" && (ta == nil) != (tb == nil) {
			if ta == nil {
				return 1 // never active: last in either order
			}
			return -1
		}
		c := cmp.Compare(sa, sb)
		if c == 0 && ta != nil && tb != nil {
			c = ta.Compare(*tb)
		}
		if c == 0 {
			c = cmp.Compare(a.ID, b.ID)
		}
		if desc {
			c = -c
		}
		return c
	})
	ids := make([]string, len(out))
	for i, u := range out {
		ids[i] = u.ID
	}
	return ids
}

func ids(users []userservice.User) []string {
	out := make([]string, len(users))
	for i, u := range users {
		out[i] = u.ID
	}
	return out
}

func TestSearchUsers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	users := seedSearch(t, db)
	dir, _ := postgres.NewDirectory(db)
	search := func(t *testing.T, q userservice.UserSearch) ([]userservice.User, userservice.Pagination) {
		t.Helper()
		got, p, err := dir.SearchUsers(context.Background(), q)
		if err != nil {
			t.Fatalf("SearchUsers(%+v): %v", q, err)
		}
		return got, p
	}

	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			name string
			q    userservice.UserSearch
			want int // matches expected, as a check on the fixture itself
		}{
			{"everyone but the deleted", userservice.UserSearch{}, 10},
			{"first or last name", userservice.UserSearch{Search: "smith"}, 3},
			{"case-insensitive", userservice.UserSearch{Search: "ALICE"}, 2},
			{"email domain", userservice.UserSearch{Search: "corp.io"}, 1},
			{"username", userservice.UserSearch{Search: "gHoP"}, 1},
			{"display name", userservice.UserSearch{Search: "amazing"}, 1},
			{"digits", userservice.UserSearch{Search: "100"}, 1},
			{"percent is literal", userservice.UserSearch{Search: "%"}, 1},
			{"percent in a phrase", userservice.UserSearch{Search: "50% d"}, 1},
			{"underscore is literal", userservice.UserSearch{Search: "_"}, 3},
			{"backslash is literal", userservice.UserSearch{Search: `\`}, 0},
			{"no match across fields", userservice.UserSearch{Search: "alice\nsmith"}, 0},
			{"a newline inside a field", userservice.UserSearch{Search: "ivan\nthe"}, 1},
			{"no match across a field with a newline", userservice.UserSearch{Search: "ivanp\nivan"}, 0},
			{"a field with a newline, plain term", userservice.UserSearch{Search: "the gr"}, 1},
			{"no match", userservice.UserSearch{Search: "zzz"}, 0},
			{"role", userservice.UserSearch{Role: userservice.RoleInstructor}, 2},
			{"status", userservice.UserSearch{Status: userservice.StatusSuspended}, 1},
			{"deleted only when asked", userservice.UserSearch{Status: userservice.StatusDeleted}, 2},
			{"deleted with a search", userservice.UserSearch{Status: userservice.StatusDeleted, Search: "smith"}, 1},
			{"search and role", userservice.UserSearch{Search: "smith", Role: userservice.RoleStudent}, 3},
			{"search and role, none", userservice.UserSearch{Search: "smith", Role: userservice.RoleAdmin}, 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.q.Limit = 100
				want := expected(users, tt.q)
				if len(want) != tt.want {
					t.Fatalf("fixture: %d expected matches, want %d", len(want), tt.want)
				}
				got, p := search(t, tt.q)
				if !slices.Equal(ids(got), want) {
					t.Errorf("ids = %v, want %v", ids(got), want)
				}
				if p.Total != len(want) {
					t.Errorf("total = %d, want %d", p.Total, len(want))
				}
			})
		}
	})

	t.Run("sort", func(t *testing.T) {
		for _, by := range userservice.SortFields {
			for _, order := range []string{"asc", "desc"} {
				t.Run(by+" "+order, func(t *testing.T) {
					q := userservice.UserSearch{Limit: 100, SortBy: by, SortOrder: order}
					got, _ := search(t, q)
					if want := expected(users, q); !slices.Equal(ids(got), want) {
						t.Errorf("order = %v, want %v", ids(got), want)
					}
				})
				// A term with an exact count sorts its matches (orderSQL's fromMatches).
				t.Run(by+" "+order+" with a term", func(t *testing.T) {
					q := userservice.UserSearch{Limit: 100, SortBy: by, SortOrder: order, Search: "e"}
					got, _ := search(t, q)
					if want := expected(users, q); !slices.Equal(ids(got), want) {
						t.Errorf("order = %v, want %v", ids(got), want)
					}
				})
			}
		}
	})

	// One a page: the first page of a term walks the sort index (few rows
	// wanted against many matches), later ones sort the matches (pageFromMatches).
	t.Run("a term, one a page", func(t *testing.T) {
		for _, by := range userservice.SortFields {
			q := userservice.UserSearch{Limit: 1, SortBy: by, SortOrder: "asc", Search: "e"}
			want := expected(users, q)
			var all []string
			for page := 1; page <= len(want)+1; page++ {
				q.Page = page
				got, p := search(t, q)
				all = append(all, ids(got)...)
				if p.Total != len(want) {
					t.Errorf("%s page %d: total = %d, want %d", by, page, p.Total, len(want))
				}
			}
			if !slices.Equal(all, want) {
				t.Errorf("%s: pages = %v, want %v", by, all, want)
			}
		}
	})

	t.Run("pagination", func(t *testing.T) {
		q := userservice.UserSearch{Limit: 3, SortBy: "createdAt", SortOrder: "asc"}
		want := expected(users, q)
		var all []string
		for page := 1; page <= 5; page++ {
			q.Page = page
			got, p := search(t, q)
			wantP := userservice.Pagination{Page: page, Limit: 3, Total: 10, TotalPages: 4, HasNext: page < 4, HasPrev: page > 1}
			if (p.Next != nil) != p.HasNext {
				t.Errorf("page %d: next position %v with hasNext %v", page, p.Next, p.HasNext)
			}
			p.Next = nil
			if p != wantP {
				t.Errorf("page %d: pagination = %+v, want %+v", page, p, wantP)
			}
			if page == 5 && (got == nil || len(got) != 0) {
				t.Errorf("page past the end = %v, want []", got)
			}
			all = append(all, ids(got)...)
		}
		if !slices.Equal(all, want) {
			t.Errorf("pages = %v, want %v", all, want)
		}
	})

	t.Run("users carry every field", func(t *testing.T) {
		got, _ := search(t, userservice.UserSearch{Search: "eve_adams", Status: userservice.StatusSuspended})
		if len(got) != 1 {
			t.Fatalf("got %d users", len(got))
		}
		var want userservice.User
		for _, u := range users {
			if u.Email == "eve_adams@example.com" {
				want = u
			}
		}
		if !reflect.DeepEqual(got[0], want) {
			t.Errorf("user = %+v, want %+v", got[0], want)
		}
		if got[0].Version != 3 {
			t.Errorf("version = %d, want 3", got[0].Version)
		}
	})

	t.Run("reflects the latest commit", func(t *testing.T) {
		w := newWriter(t, db, postgres.WriterConfig{})
		s := registered(t, w, "newcomer@example.com", "zelda")
		if got, _ := search(t, userservice.UserSearch{Search: "zelda"}); len(got) != 1 || got[0].ID != s.User.ID {
			t.Errorf("fresh user not found: %v", ids(got))
		}
	})
}

func TestAuditLog(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{})
	dir, _ := postgres.NewDirectory(db)
	s := registered(t, w, "a@example.com", "")
	for i, cmd := range []userservice.Command{
		userservice.ChangeRole{Role: userservice.RoleInstructor},
		userservice.ChangeStatus{Status: userservice.StatusSuspended},
		userservice.SoftDelete{},
	} {
		o := apply(t, s, cmd, metaAt(i+1))
		mustCommit(t, w, o.Mutation)
		s = o.State
	}
	ctx := context.Background()
	first, total, err := dir.AuditLog(ctx, s.User.ID, userservice.PageQuery{Page: 1, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	second, _, _ := dir.AuditLog(ctx, s.User.ID, userservice.PageQuery{Page: 2, Limit: 2})
	past, pastTotal, _ := dir.AuditLog(ctx, s.User.ID, userservice.PageQuery{Page: 3, Limit: 2})
	if total != 3 || pastTotal != 3 || len(first) != 2 || len(second) != 1 || len(past) != 0 {
		t.Fatalf("total %d/%d, pages of %d, %d, %d; want 3, 2, 1, 0", total, pastTotal, len(first), len(second), len(past))
	}
	actions := []string{first[0].Action, first[1].Action, second[0].Action}
	if want := []string{userservice.AuditUserDeleted, userservice.AuditStatusChanged, userservice.AuditRoleChanged}; !slices.Equal(actions, want) {
		t.Errorf("actions = %v, want newest first %v", actions, want)
	}
	role := second[0]
	if !reflect.DeepEqual(role.Before, map[string]any{"role": "student"}) || !reflect.DeepEqual(role.After, map[string]any{"role": "instructor"}) {
		t.Errorf("before %v after %v", role.Before, role.After)
	}
	if role.ActorID == nil || *role.ActorID != *metaAt(0).ActorID || role.CorrelationID != "corr-1" || !role.CreatedAt.Equal(at(1).Time) || role.UserID != s.User.ID {
		t.Errorf("record = %+v", role)
	}
	if recs, n, err := dir.AuditLog(ctx, userservice.NewID(), userservice.PageQuery{Page: 1, Limit: 10}); err != nil || n != 0 || len(recs) != 0 {
		t.Errorf("unknown user: %v, %d, %v", recs, n, err)
	}
}

// TestSearchUsersKeyset walks every sort order page by page through the
// positions the search returns, with ties (lastName Smith), users never active
// (NULL lastActiveAt, last in both directions) and a filter, and expects the same
// order as one big page, with count=none too.
func TestSearchUsersKeyset(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	users := seedSearch(t, db)
	dir, _ := postgres.NewDirectory(db)
	for _, by := range userservice.SortFields {
		for _, order := range []string{"asc", "desc"} {
			for _, filter := range []userservice.UserSearch{{}, {Search: "smith"}, {Status: userservice.StatusDeleted}} {
				for _, count := range []string{userservice.CountExact, userservice.CountNone} {
					q := userservice.UserSearch{Limit: 2, SortBy: by, SortOrder: order, Search: filter.Search, Status: filter.Status, Count: count}
					t.Run(fmt.Sprintf("%s %s %q %s %s", by, order, q.Search, q.Status, count), func(t *testing.T) {
						want := expected(users, q)
						var got []string
						for page := 1; ; page++ {
							if page > 20 {
								t.Fatal("no last page after 20 pages")
							}
							us, p, err := dir.SearchUsers(context.Background(), q)
							if err != nil {
								t.Fatalf("SearchUsers(%+v): %v", q, err)
							}
							got = append(got, ids(us)...)
							if count == userservice.CountNone != p.Uncounted {
								t.Errorf("page %d: uncounted %v", page, p.Uncounted)
							}
							if count == userservice.CountExact && p.Total != len(want) {
								t.Errorf("page %d: total %d, want %d", page, p.Total, len(want))
							}
							if p.HasNext != (p.Next != nil) || p.HasNext != (len(got) < len(want)) {
								t.Fatalf("page %d: hasNext %v, next %v after %d of %d", page, p.HasNext, p.Next, len(got), len(want))
							}
							if !p.HasNext {
								break
							}
							q.After, q.Page = p.Next, page+1
						}
						if !slices.Equal(got, want) {
							t.Errorf("walked %v, want %v", got, want)
						}
					})
				}
			}
		}
	}
}

// The search's term is found through the trigram index of users.search_text
// (migration 00080), with or without a newline in the term.
func TestSearchUsesTheTrigramIndex(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	seedSearch(t, db)
	for _, term := range []string{"smith", "ivan\nthe"} {
		countSQL, pageSQL, args, pageArgs := postgres.SearchSQL(userservice.UserSearch{Search: term, Limit: 20, SortBy: "lastName"}, true)
		if plan := pgtest.Plan(t, db.Pool(), countSQL, args...); !strings.Contains(plan, "users_search_text_trgm") {
			t.Errorf("the count for %q does not use users_search_text_trgm:\n%s", term, plan)
		}
		// The page is the top of the matches, not a walk of users_last_name_idx,
		// even when the planner is told to avoid sorting wherever it can.
		if plan := pgtest.PlanWith(t, db.Pool(), []string{"enable_sort = off"}, pageSQL, pageArgs...); !strings.Contains(plan, "users_search_text_trgm") || strings.Contains(plan, "users_last_name_idx") {
			t.Errorf("the page for %q does not sort the trigram index's matches:\n%s", term, plan)
		}
	}
}

func TestPageFromMatches(t *testing.T) {
	for _, tt := range []struct {
		matches int
		size    float64
		rows    int
		want    bool
	}{
		{244, 10000, 21, true},      // one last name: sort its matches
		{10005, 10000, 61, false},   // every user: walk the index
		{1100, 10000, 61, true},     // 1,210,000 <= 1,220,000
		{1200, 10000, 61, false},    // 1,440,000 > 1,220,000
		{8, 12, 2, false},           // tiny table, first row of eight
		{8, 12, 7, true},            // the seventh
		{5, -1, 21, true},           // never analyzed: the table is at least the matches
		{0, 0, 21, true},            // nothing matches
		{50000, 1000000, 21, false}, // a common term among a million: walk
	} {
		if got := postgres.PageFromMatches(tt.matches, tt.size, tt.rows); got != tt.want {
			t.Errorf("PageFromMatches(%d, %v, %d) = %v, want %v", tt.matches, tt.size, tt.rows, got, tt.want)
		}
	}
}
