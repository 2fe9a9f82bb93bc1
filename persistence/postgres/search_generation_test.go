package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

// TestSearchGeneration checks the key of the search cache: it names the database,
// the schema and the snapshot; every commit changes it (also one that only moved
// lastActiveAt); it does not change by itself; and a search reports the
// generation of the snapshot it read. Other tests commit to the same server all
// the time, so "no commit in between" is found by reading the generation on both
// sides of what is checked, as often as needed.
func TestSearchGeneration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{TouchInterval: 20 * time.Millisecond})
	dir, err := postgres.NewDirectory(db)
	if err != nil {
		t.Fatal(err)
	}
	gen := func() string {
		t.Helper()
		g, err := dir.SearchGeneration(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	// quiet runs f until no commit happened around it, and returns the generation.
	quiet := func(f func() string) (before, got string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			before = gen()
			got = f()
			if gen() == before {
				return before, got
			}
		}
		t.Fatal("the server never went without a commit around one query")
		return "", ""
	}
	q := userservice.UserSearch{Page: 1, Limit: 20, SortBy: "createdAt", SortOrder: "asc"}

	g0 := gen()
	if !strings.Contains(g0, "/"+db.Schema()+"/") {
		t.Errorf("generation %q does not name the schema %s", g0, db.Schema())
	}
	if before, again := quiet(gen); again != before {
		t.Errorf("the generation changed from %q to %q with no commit", before, again)
	}
	if before, at := quiet(func() string {
		_, _, at, err := dir.SearchUsersAt(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return at
	}); at != before {
		t.Errorf("a search read at generation %q reported %q", before, at)
	}

	g1 := gen()
	s := registered(t, w, "gen@example.com", "")
	if g2 := gen(); g2 == g1 {
		t.Fatal("a group commit left the generation unchanged")
	}
	edit := apply(t, s, userservice.EditProfile{Input: userservice.UpdateUser{
		Bio: userservice.Optional[string]{Set: true, Value: "b"}}}, metaAt(2))
	g3 := gen()
	mustCommit(t, w, edit.Mutation)
	if gen() == g3 {
		t.Fatal("an update left the generation unchanged")
	}

	g4 := gen()
	w.TouchLastActive(s.User.ID, at(9))
	deadline := time.Now().Add(10 * time.Second)
	for count(t, db, `SELECT count(*) FROM users WHERE last_active_at IS NOT NULL`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the lastActiveAt flush did not land")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if gen() == g4 {
		t.Error("a lastActiveAt flush left the generation unchanged")
	}
}
