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

// TestUpdatedOrderFollowsUsers checks migration 00070: user_updated_order holds
// every user's updated_at after registrations, profile edits and writes that
// leave updated_at alone; a profile write that moves updated_at is a HOT update
// of users (no index of users names updated_at); and a keyset page in updatedAt
// order walks user_updated_order_idx.
func TestUpdatedOrderFollowsUsers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var states []*userservice.State
	for i, email := range []string{"o1@example.com", "o2@example.com", "o3@example.com"} {
		o := apply(t, nil, newUser(email, ""), metaAt(i+1))
		mustCommit(t, w, o.Mutation)
		states = append(states, o.State)
	}
	// A profile edit moves updated_at; a preference write does not.
	bio := "edited"
	o := apply(t, states[0], userservice.EditProfile{Input: userservice.UpdateUser{
		Bio: userservice.Optional[string]{Set: true, Value: bio}}}, metaAt(10))
	mustCommit(t, w, o.Mutation)
	o = apply(t, states[1], userservice.SetPreferences{Category: "ui", Input: userservice.UpsertPreferences{
		Preferences: []userservice.PreferenceInput{{Key: "theme", Value: []byte(`"dark"`)}}}}, metaAt(11))
	mustCommit(t, w, o.Mutation)

	if n := count(t, db, `SELECT count(*) FROM users u LEFT JOIN user_updated_order o ON o.user_id = u.id
		WHERE o.changed_at IS DISTINCT FROM u.updated_at`); n != 0 {
		t.Errorf("%d users whose user_updated_order row differs from updated_at", n)
	}
	if n := count(t, db, `SELECT count(*) FROM user_updated_order`); n != 3 {
		t.Errorf("%d rows in user_updated_order, want 3", n)
	}
	// Rows written by hand follow too: a bulk insert, an update of updated_at
	// and of other columns, a delete.
	for _, sql := range []string{
		strings.Replace(strings.Replace(insertUsersSQL, "$2", "1000", 1), "$1", "50", 1),
		`UPDATE users SET updated_at = updated_at + interval '1 day' WHERE email LIKE 'u1%1@example.com'`,
		`UPDATE users SET bio = 'y', version = version + 1 WHERE email LIKE 'u1%2@example.com'`,
		`DELETE FROM users WHERE email LIKE 'u1%3@example.com'`,
	} {
		if ct, err := db.Pool().Exec(ctx, sql); err != nil || ct.RowsAffected() == 0 {
			t.Fatalf("%s: %v, %d rows", sql, err, ct.RowsAffected())
		}
		if n := count(t, db, `SELECT count(*) FROM users u FULL JOIN user_updated_order o ON o.user_id = u.id
			WHERE o.changed_at IS DISTINCT FROM u.updated_at`); n != 0 {
			t.Errorf("after %.40q: %d users and order rows that differ", sql, n)
		}
	}
	if n := count(t, db, `SELECT count(*) FROM user_updated_order WHERE changed_at = $1`, at(10).Time); n != 1 {
		t.Errorf("%d rows at the edit's time, want 1", n)
	}

	// A write that moves updated_at and no indexed column is HOT, and the
	// trigger follows it in the same transaction.
	tx, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	id := states[2].User.ID
	expectHOT(t, ctx, tx, `UPDATE users SET bio = 'x', updated_at = now() + interval '1 hour' WHERE id = $1`, id)
	var same bool
	if err := tx.QueryRow(ctx, `SELECT o.changed_at = u.updated_at FROM users u JOIN user_updated_order o ON o.user_id = u.id
		WHERE u.id = $1`, id).Scan(&same); err != nil || !same {
		t.Errorf("after the UPDATE, in its transaction: same %v, err %v", same, err)
	}
	_ = tx.Rollback(ctx)

	// The plan of a keyset page in updatedAt order (sequential scans off: the
	// table is tiny here) is a range scan of user_updated_order_idx.
	dir, _ := postgres.NewDirectory(db)
	q := userservice.UserSearch{Limit: 1, SortBy: "updatedAt", SortOrder: "desc", Count: userservice.CountNone}
	_, p, err := dir.SearchUsers(ctx, q)
	if err != nil || p.Next == nil {
		t.Fatalf("first page: next %v, err %v", p.Next, err)
	}
	q.After = p.Next
	_, sql, _, args := postgres.SearchSQL(q, false)
	if plan := pgtest.Plan(t, db.Pool(), sql, args...); !strings.Contains(plan, "user_updated_order_idx") {
		t.Errorf("the updatedAt page does not walk user_updated_order_idx:\n%s", plan)
	}
}
