package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

// TestSearchGeneration checks the key of the search cache: it stays while nothing
// changes, changes with every group commit and every lastActiveAt flush that moved
// a row, and a search reports the generation of the snapshot it read.
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
	q := userservice.UserSearch{Page: 1, Limit: 20, SortBy: "createdAt", SortOrder: "asc"}

	g0 := gen()
	if g0 == "" || gen() != g0 {
		t.Fatalf("generation %q, then %q: not stable without writes", g0, gen())
	}
	if _, _, readAt, err := dir.SearchUsersAt(ctx, q); err != nil || readAt != g0 {
		t.Fatalf("search at generation %q (err %v), current %q", readAt, err, g0)
	}

	s := registered(t, w, "gen@example.com", "")
	g1 := gen()
	if g1 == g0 {
		t.Fatal("a group commit left the generation unchanged")
	}
	users, _, readAt, err := dir.SearchUsersAt(ctx, q)
	if err != nil || readAt != g1 || len(users) != 1 {
		t.Fatalf("search after the commit: %d users at %q (err %v), current %q", len(users), readAt, err, g1)
	}

	edit := apply(t, s, userservice.EditProfile{Input: userservice.UpdateUser{
		Bio: userservice.Optional[string]{Set: true, Value: "b"}}}, metaAt(2))
	mustCommit(t, w, edit.Mutation)
	g2 := gen()
	if g2 == g1 {
		t.Fatal("an update left the generation unchanged")
	}

	w.TouchLastActive(s.User.ID, at(9))
	deadline := time.Now().Add(10 * time.Second)
	for gen() == g2 {
		if time.Now().After(deadline) {
			t.Fatal("a lastActiveAt flush left the generation unchanged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	g3 := gen()
	// A flush that moves no row (an older time) changes nothing.
	w.TouchLastActive(s.User.ID, at(3))
	time.Sleep(200 * time.Millisecond)
	if g := gen(); g != g3 {
		t.Errorf("a flush that changed no row moved the generation from %q to %q", g3, g)
	}
}
