package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

// TestRetention (issue 14): one run deletes, in batches, exactly the rows past
// each table's period: ended sessions, idempotency records, processed-message
// ids and audit records; open sessions, young rows and the tables with no
// period stay; a second process does nothing while the first holds the lock.
func TestRetention(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	w := newWriter(t, db, postgres.WriterConfig{})
	u := registered(t, w, "retention@example.com", "retention")
	now := time.Now()
	day := 24 * time.Hour
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool().Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	// Sessions (90 days): 3 ended long ago, 1 ended recently, 1 open since long ago.
	for i, s := range []struct {
		started time.Time
		ended   *time.Time
	}{
		{now.Add(-200 * day), ptrTime(now.Add(-100 * day))}, {now.Add(-200 * day), ptrTime(now.Add(-95 * day))},
		{now.Add(-200 * day), ptrTime(now.Add(-91 * day))}, {now.Add(-100 * day), ptrTime(now.Add(-day))},
		{now.Add(-300 * day), nil},
	} {
		exec(`INSERT INTO sessions (id, user_id, session_id, started_at, ended_at) VALUES ($1, $2, $3, $4, $5)`,
			userservice.NewID(), u.User.ID, fmt.Sprint("s", i), s.started, s.ended)
	}
	// Idempotency records (2 days): 5 old, 2 young.
	for i := range 7 {
		age := 3 * day
		if i >= 5 {
			age = time.Hour
		}
		exec(`INSERT INTO idempotency_keys (caller_id, key, request_hash, status, body, created_at) VALUES ('c', $1, '', 200, '', $2)`,
			fmt.Sprint("k", i), now.Add(-age))
	}
	// Processed messages (7 days): 1 old, 1 young.
	exec(`INSERT INTO processed_messages (message_id, processed_at) VALUES ('m-old', $1), ('m-new', $2)`, now.Add(-8*day), now.Add(-time.Hour))
	// Audit (no period here): an old record stays.
	exec(`INSERT INTO audit_log (id, user_id, action, created_at) VALUES ($1, $2, 'user.role_changed', $3)`,
		userservice.NewID(), u.User.ID, now.Add(-1000*day))

	r, err := postgres.NewRetention(db, postgres.RetentionConfig{
		Sessions: 90 * day, Idempotency: 2 * day, ProcessedMessages: 7 * day, Batch: 2,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}

	// While another session holds the lock, nothing runs.
	conn, err := db.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext(current_schema()))`, 0x55535254); err != nil {
		t.Fatal(err)
	}
	if deleted, ran, err := r.RunOnce(ctx, now); err != nil || ran || len(deleted) != 0 {
		t.Errorf("with the lock taken: ran %v, deleted %v, err %v", ran, deleted, err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext(current_schema()))`, 0x55535254); err != nil {
		t.Fatal(err)
	}
	conn.Release()

	deleted, ran, err := r.RunOnce(ctx, now)
	if err != nil || !ran {
		t.Fatalf("RunOnce: ran %v, err %v", ran, err)
	}
	want := map[string]int64{"sessions": 3, "idempotency_keys": 5, "processed_messages": 1}
	for k, v := range want {
		if deleted[k] != v {
			t.Errorf("deleted %v, want %v", deleted, want)
			break
		}
	}
	for _, c := range []struct {
		sql  string
		want int
	}{
		{`SELECT count(*) FROM sessions WHERE session_id IN ('s3', 's4')`, 2}, // recent and open
		{`SELECT count(*) FROM sessions`, 2},
		{`SELECT count(*) FROM idempotency_keys WHERE key IN ('k5', 'k6')`, 2},
		{`SELECT count(*) FROM idempotency_keys`, 2},
		{`SELECT count(*) FROM processed_messages WHERE message_id = 'm-new'`, 1},
		{`SELECT count(*) FROM processed_messages WHERE message_id LIKE 'm-%'`, 1},
		{`SELECT count(*) FROM audit_log WHERE action = 'user.role_changed'`, 1},
	} {
		if n := count(t, db, c.sql); n != c.want {
			t.Errorf("%s = %d, want %d", c.sql, n, c.want)
		}
	}
	// A second run finds nothing due.
	if deleted, _, err := r.RunOnce(ctx, now); err != nil || deleted["sessions"]+deleted["idempotency_keys"]+deleted["processed_messages"] != 0 {
		t.Errorf("second run deleted %v, %v", deleted, err)
	}
	// The audit period applies once set.
	r, _ = postgres.NewRetention(db, postgres.RetentionConfig{Audit: 365 * day}, testLogger(t))
	if deleted, _, err := r.RunOnce(ctx, now); err != nil || deleted["audit_log"] != 1 {
		t.Errorf("audit retention deleted %v, %v; want the one old record", deleted, err)
	}
}

func ptrTime(t time.Time) *time.Time { return &t }
