package postgres_test

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

// TestSearchCountFollowsEveryChange checks the counts the admin search keeps
// (countMemo): a kept count is the answer only while the snapshot sees the facts
// it was read at, and every kind of change to what a count reads (a
// registration, a rename, a role change, a suspension, a soft delete, a purge,
// an update of many users in one statement, a TRUNCATE) changes the facts, so the next search counts again and is
// right. A write that changes none of the counted columns leaves the facts alone,
// and a transaction stamps them once however many users it changes.
func TestSearchCountFollowsEveryChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, w, dir, facts := searchFactsFixture(t)
	// updatedAt: an order the search never keeps (orderMemo), so the count is the
	// count memo's.
	smith := userservice.UserSearch{Page: 1, Limit: 20, Search: "smith", SortBy: "updatedAt", SortOrder: "asc"}
	students := userservice.UserSearch{Page: 1, Limit: 20, Role: userservice.RoleStudent}
	suspended := userservice.UserSearch{Page: 1, Limit: 20, Status: userservice.StatusSuspended}
	deleted := userservice.UserSearch{Page: 1, Limit: 20, Status: userservice.StatusDeleted}
	total := func(q userservice.UserSearch) int {
		t.Helper()
		_, p, err := dir.SearchUsers(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return p.Total
	}
	expect := func(what string, q userservice.UserSearch, want int) {
		t.Helper()
		if got := total(q); got != want {
			t.Fatalf("%s: total %d, want %d", what, got, want)
		}
		// The count is kept at the facts of now, and a second search reuses it.
		f, kept, ok := postgres.KnownCount(dir, q)
		if !ok || kept != want || f != facts() {
			t.Fatalf("%s: kept %d at %q (%v), want %d at the current facts %q", what, kept, f, ok, want, facts())
		}
		if got := total(q); got != want {
			t.Fatalf("%s, again: total %d, want %d", what, got, want)
		}
	}

	expect("the fixture", smith, 3)
	expect("the fixture's students", students, 7)

	// Proof that a kept count is used, and only at its facts: one planted at the
	// current facts is the answer; the same number at other facts is not.
	postgres.SetKnownCount(dir, smith, facts(), 99)
	if got := total(smith); got != 99 {
		t.Fatalf("a count kept at the current facts was not reused: total %d", got)
	}
	postgres.SetKnownCount(dir, smith, facts()+"x", 99)
	expect("a count kept at other facts", smith, 3)

	// Writes that change no counted column: the facts stay, the count is reused.
	f0 := facts()
	s := registered(t, w, "plain@example.com", "")
	f1 := facts()
	if f1 == f0 {
		t.Fatal("a registration left the search facts unchanged")
	}
	expect("after another user's registration", smith, 3)
	expect("after a student's registration", students, 8)
	o := apply(t, s, userservice.EditProfile{Input: userservice.UpdateUser{
		Bio: userservice.Optional[string]{Set: true, Value: "bio"}}}, metaAt(30))
	mustCommit(t, w, o.Mutation)
	s = o.State
	o = apply(t, s, userservice.RecordLogin{SessionID: "s1", At: at(31)}, metaAt(31))
	mustCommit(t, w, o.Mutation)
	s = o.State
	if f := facts(); f != f1 {
		t.Fatalf("a bio and a login changed the search facts from %q to %q", f1, f)
	}

	// Each change of what the count reads.
	o = apply(t, s, userservice.EditProfile{Input: userservice.UpdateUser{
		LastName: userservice.Optional[string]{Set: true, Value: "Goldsmith"}}}, metaAt(32))
	mustCommit(t, w, o.Mutation)
	s = o.State
	expect("after a rename into the term", smith, 4)
	expect("after a rename, students", students, 8)

	o = apply(t, s, userservice.ChangeRole{Role: userservice.RoleInstructor}, metaAt(33))
	mustCommit(t, w, o.Mutation)
	s = o.State
	expect("after a role change", students, 7)
	expect("after a role change, the term", smith, 4)

	o = apply(t, s, userservice.ChangeStatus{Status: userservice.StatusSuspended}, metaAt(34))
	mustCommit(t, w, o.Mutation)
	s = o.State
	expect("after a suspension", smith, 4)
	expect("after a suspension, the suspended", suspended, 2)
	o = apply(t, s, userservice.SoftDelete{}, metaAt(35))
	mustCommit(t, w, o.Mutation)
	s = o.State
	expect("after a soft delete", smith, 3)
	expect("after a soft delete, the deleted", deleted, 3)

	// Writers other than the Writer: a purge, an update of many users in one
	// transaction (stamped once), a TRUNCATE.
	purge, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{`DELETE FROM preferences WHERE user_id = $1`, `DELETE FROM sessions WHERE user_id = $1`,
		`DELETE FROM enrollments WHERE user_id = $1`, `DELETE FROM users WHERE id = $1`} {
		if _, err := purge.Exec(ctx, sql, s.User.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := purge.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	expect("after a purge", deleted, 2)

	tx, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// pg_stat_xact_user_tables also holds this backend's counts not yet flushed
	// from earlier transactions: the stamps are the difference.
	stamps := func() int {
		t.Helper()
		var n int
		if err := tx.QueryRow(ctx, `SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relid = 'search_facts'::regclass`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := stamps()
	tag, err := tx.Exec(ctx, `UPDATE users SET last_name = 'Smith' WHERE status <> 'deleted' AND last_name <> 'Smith'`)
	if err != nil {
		t.Fatal(err)
	}
	// The deferred stamps run here instead of at COMMIT, so that the
	// transaction's own statistics can be read before it ends.
	if _, err := tx.Exec(ctx, `SET CONSTRAINTS ALL IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	if n := stamps() - before; n != 1 || tag.RowsAffected() < 2 {
		t.Fatalf("one transaction renaming %d users stamped the facts %d times, want once", tag.RowsAffected(), n)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	expect("after renaming every user in one transaction", smith, 10) // every user not deleted

	if _, err := db.Pool().Exec(ctx, `TRUNCATE users CASCADE`); err != nil {
		t.Fatal(err)
	}
	expect("after a TRUNCATE", smith, 0)
	expect("after a TRUNCATE, the deleted", deleted, 0)
}

// TestSearchCountsOfAttributeFiltersAreNotKept: attributes are not among the
// search facts, so a search filtered by one always counts.
func TestSearchCountsOfAttributeFiltersAreNotKept(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	dir, err := postgres.NewDirectory(db)
	if err != nil {
		t.Fatal(err)
	}
	q := userservice.UserSearch{Page: 1, Limit: 20, Attrs: []userservice.AttrFilter{{Namespace: "lms", Key: "cohort", Text: "a", Value: []byte(`"a"`)}}}
	if _, _, err := dir.SearchUsers(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := postgres.KnownCount(dir, q); ok {
		t.Fatal("the count of a search filtered by an attribute was kept")
	}
}

// TestSearchOrderFollowsEveryChange checks the orders of a term's matches that
// the admin search keeps (orderMemo): every page, in every kept order and both
// directions, is what a directory that keeps nothing reads, the first time and
// when reused; a kept order is used only at its facts; a change of any column
// that orders or selects the matches (a case-only rename included, which leaves
// search_text alone) changes the facts, and a change of any other column does
// not, while the rows read by id still show it.
func TestSearchOrderFollowsEveryChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, w, dir, facts := searchFactsFixture(t)
	exec := func(sql string) {
		t.Helper()
		if _, err := db.Pool().Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	search := func(d *postgres.Directory, q userservice.UserSearch) ([]userservice.User, userservice.Pagination) {
		t.Helper()
		users, p, err := d.SearchUsers(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return users, p
	}
	// Every page of "example" (8 users not deleted, 3 a page, and one past the
	// end) in each kept order, against a directory that keeps nothing.
	everyPage := func(what string) {
		t.Helper()
		for _, sortBy := range []string{"lastName", "firstName", "email", "createdAt"} {
			for _, order := range []string{"asc", "desc"} {
				for page := 1; page <= 4; page++ {
					q := userservice.UserSearch{Page: page, Limit: 3, Search: "example", SortBy: sortBy, SortOrder: order}
					fresh, err := postgres.NewDirectory(db)
					if err != nil {
						t.Fatal(err)
					}
					wantUsers, wantPage := search(fresh, q)
					for round := range 2 {
						users, p := search(dir, q)
						if !reflect.DeepEqual(users, wantUsers) || !reflect.DeepEqual(p, wantPage) {
							t.Fatalf("%s: %s %s page %d, search %d: %v %+v, want %v %+v", what, sortBy, order, page, round+1,
								ids(users), p, ids(wantUsers), wantPage)
						}
					}
					if f, kept, ok := postgres.KnownOrder(dir, q); !ok || f != facts() || len(kept) != wantPage.Total {
						t.Fatalf("%s: %s order kept %v with %d ids at %q, want %d at the current facts", what, sortBy, ok, len(kept), f, wantPage.Total)
					}
				}
			}
		}
	}
	everyPage("the fixture")

	// Proof that a kept order is used, and only at its facts: the order planted
	// reversed at the current facts is the answer; at other facts it is not.
	q := userservice.UserSearch{Page: 1, Limit: 3, Search: "example", SortBy: "lastName", SortOrder: "asc"}
	_, kept, _ := postgres.KnownOrder(dir, q)
	want, _ := search(dir, q)
	desc := q
	desc.SortOrder = "desc"
	wantReversed, _ := search(dir, desc) // the same kept order, read from its end
	reversed := slices.Clone(kept)
	slices.Reverse(reversed)
	postgres.SetKnownOrder(dir, q, facts(), reversed)
	if got, _ := search(dir, q); !slices.Equal(ids(got), ids(wantReversed)) {
		t.Fatalf("an order kept at the current facts was not used: %v, want %v", ids(got), ids(wantReversed))
	}
	postgres.SetKnownOrder(dir, q, facts()+"x", reversed)
	if got, _ := search(dir, q); !slices.Equal(ids(got), ids(want)) {
		t.Fatalf("an order kept at other facts was used: %v, want %v", ids(got), ids(want))
	}

	// A change of a column neither ordering nor selecting: the facts stay, the
	// order is reused, the rows are the snapshot's own.
	f0 := facts()
	exec(`UPDATE users SET bio = 'new bio', updated_at = now() WHERE email = 'bob@example.com'`)
	if facts() != f0 {
		t.Fatal("a bio changed the search facts")
	}
	everyPage("after a bio")
	got, _ := search(dir, userservice.UserSearch{Page: 1, Limit: 20, Search: "bob@", SortBy: "email"})
	if len(got) != 1 || got[0].Bio == nil || *got[0].Bio != "new bio" {
		t.Fatalf("a row read through a kept order is not the snapshot's: %+v", got)
	}

	// Each change of what orders or selects the matches.
	for _, c := range []struct{ what, sql string }{
		{"a case-only rename", `UPDATE users SET last_name = 'sMITH' WHERE email = 'alice.smith@example.com'`},
		{"a case-only first name", `UPDATE users SET first_name = 'aLICE' WHERE email = 'abrown@example.com'`},
		{"an email", `UPDATE users SET email = 'aheidi@example.com' WHERE email = 'heidi@example.com'`},
		{"a creation time", `UPDATE users SET created_at = created_at - interval '1 year' WHERE email = 'judy@example.com'`},
		{"a suspension", `UPDATE users SET status = 'suspended' WHERE email = 'bob@example.com'`},
		{"a deletion", `UPDATE users SET status = 'deleted' WHERE email = 'dave@example.com'`},
	} {
		before := facts()
		exec(c.sql)
		if facts() == before {
			t.Fatalf("%s left the search facts unchanged", c.what)
		}
		everyPage("after " + c.what)
	}
	registered(t, w, "zed.smith@example.com", "")
	everyPage("after a registration")
}

// searchFactsFixture returns a database with the search fixture, a Writer, a
// Directory and a function that reads the search facts now.
func searchFactsFixture(t *testing.T) (*postgres.DB, *postgres.Writer, *postgres.Directory, func() string) {
	t.Helper()
	db := pgtest.New(t)
	seedSearch(t, db)
	w := newWriter(t, db, postgres.WriterConfig{})
	dir, err := postgres.NewDirectory(db)
	if err != nil {
		t.Fatal(err)
	}
	facts := func() string {
		t.Helper()
		var f string
		if err := db.Pool().QueryRow(context.Background(), "SELECT "+postgres.SearchFactsSQL).Scan(&f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	return db, w, dir, facts
}
