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

// TestActiveOrderFollowsUsers checks migration 00100: user_active_order holds
// every user's last_active_at (NULL for users never active) after
// registrations, logins, recorded activity and hand-written rows; recording
// activity is a HOT update of users (no index of users names last_active_at);
// and the keyset pages in lastActiveAt order walk user_active_order_idx.
func TestActiveOrderFollowsUsers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{TouchInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	differ := func() int {
		t.Helper()
		return count(t, db, `SELECT count(*) FROM users u FULL JOIN user_active_order o ON o.user_id = u.id
			WHERE o.user_id IS NULL OR u.id IS NULL OR o.active_at IS DISTINCT FROM u.last_active_at`)
	}
	var states []*userservice.State
	for i, email := range []string{"a1@example.com", "a2@example.com", "a3@example.com"} {
		o := apply(t, nil, newUser(email, ""), metaAt(i+1))
		mustCommit(t, w, o.Mutation)
		states = append(states, o.State)
	}
	if n := count(t, db, `SELECT count(*) FROM user_active_order WHERE active_at IS NULL`); n != 3 {
		t.Errorf("%d never-active rows after three registrations, want 3", n)
	}
	// A login moves last_active_at through the group commit; a touch through
	// the writer's flush.
	login := apply(t, states[0], userservice.RecordLogin{SessionID: "s", At: at(10)}, metaAt(10))
	mustCommit(t, w, login.Mutation)
	w.TouchLastActive(states[1].User.ID, at(11))
	deadline := time.Now().Add(10 * time.Second)
	for count(t, db, `SELECT count(*) FROM user_active_order WHERE active_at IS NOT NULL`) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the touch did not reach user_active_order")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := differ(); n != 0 {
		t.Errorf("%d users whose user_active_order row differs from last_active_at", n)
	}
	// Rows written by hand follow too: a bulk insert, an update of
	// last_active_at, to NULL, of other columns, a delete.
	for _, sql := range []string{
		strings.Replace(strings.Replace(insertUsersSQL, "$2", "1000", 1), "$1", "50", 1),
		`UPDATE users SET last_active_at = now() WHERE email LIKE 'u1%1@example.com'`,
		`UPDATE users SET last_active_at = NULL WHERE email LIKE 'u1%1@example.com' AND email LIKE '%21@%'`,
		`UPDATE users SET bio = 'y', version = version + 1 WHERE email LIKE 'u1%2@example.com'`,
		`DELETE FROM users WHERE email LIKE 'u1%3@example.com'`,
	} {
		if ct, err := db.Pool().Exec(ctx, sql); err != nil || ct.RowsAffected() == 0 {
			t.Fatalf("%s: %v, %d rows", sql, err, ct.RowsAffected())
		}
		if n := differ(); n != 0 {
			t.Errorf("after %.50q: %d users and order rows that differ", sql, n)
		}
	}

	// Recording activity changes no indexed column of users: HOT, and the
	// trigger follows it in the same transaction.
	tx, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	id := states[2].User.ID
	expectHOT(t, ctx, tx, `UPDATE users SET last_active_at = now() + interval '1 hour' WHERE id = $1`, id)
	var same bool
	if err := tx.QueryRow(ctx, `SELECT o.active_at = u.last_active_at FROM users u JOIN user_active_order o ON o.user_id = u.id
		WHERE u.id = $1`, id).Scan(&same); err != nil || !same {
		t.Errorf("after the UPDATE, in its transaction: same %v, err %v", same, err)
	}
	_ = tx.Rollback(ctx)

	// The plans of the lastActiveAt pages (sequential scans off: the tables are
	// tiny here) are range scans of user_active_order_idx: the first page, a
	// page after an active user, a page after a never-active one.
	for _, order := range []string{"desc", "asc"} {
		q := userservice.UserSearch{Limit: 1, SortBy: "lastActiveAt", SortOrder: order, Count: userservice.CountNone}
		_, sql, _, args := postgres.SearchSQL(q, false)
		if plan := pgtest.Plan(t, db.Pool(), sql, args...); !strings.Contains(plan, "user_active_order_idx") {
			t.Errorf("%s: the first lastActiveAt page does not walk user_active_order_idx:\n%s", order, plan)
		}
		for _, after := range []*userservice.Position{
			{ID: id, Key: at(10).Time.Format(time.RFC3339Nano)},
			{ID: id, Null: true},
		} {
			q.After = after
			_, sql, _, args := postgres.SearchSQL(q, false)
			if plan := pgtest.Plan(t, db.Pool(), sql, args...); !strings.Contains(plan, "user_active_order_idx") {
				t.Errorf("%s after %+v: the lastActiveAt page does not walk user_active_order_idx:\n%s", order, after, plan)
			}
		}
	}
}
