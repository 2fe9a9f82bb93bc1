package messaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lms-platform/userservice"
)

// TestRelayKeepsPublishedEvents: with EventRetention the relay moves each
// confirmed row to event_log (sequence from the envelope, payload as stored),
// and the leader prunes events older than the retention (issue 15, change feed).
func TestRelayKeepsPublishedEvents(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	exchange, _, in := tapNewExchange(t)
	ctx := context.Background()

	old := userservice.NewID()
	if _, err := pool.Exec(ctx, `INSERT INTO event_log (user_id, sequence, outbox_id, event_id, routing_key, payload, created_at, position)
		VALUES ($1, 1, 1, $2, 'user.updated', '{}', now() - interval '2 hours', 1),
		       ($1, 2, 2, $3, 'user.updated', '{}', now() - interval '10 minutes', 2)`, old, userservice.NewID(), userservice.NewID()); err != nil {
		t.Fatal(err)
	}
	u := userservice.NewID()
	events := []testEvent{{u, userservice.EventUserCreated, 0}, {u, userservice.EventUserUpdated, 1}, {u, userservice.EventUserUpdated, 2}}
	_, payloads := insertOutbox(t, pool, events)
	r := newTestRelay(t, pool, exchange, func(c *RelayConfig) {
		c.EventRetention, c.PruneInterval = time.Hour, 20*time.Millisecond
	})
	runInBackground(t, r.Run)
	receive(t, in, len(events), 10*time.Second)

	count := func(sql string, args ...any) int {
		var n int
		if err := pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	eventually(t, 10*time.Second, "rows moved and the old event pruned", func() bool {
		return outboxRows(t, pool) == 0 && count(`SELECT count(*) FROM event_log WHERE user_id = $1`, u) == 3 &&
			count(`SELECT count(*) FROM event_log WHERE user_id = $1`, old) == 1
	})
	rows, err := pool.Query(ctx, `SELECT sequence, routing_key, payload, position FROM event_log WHERE user_id = $1 ORDER BY sequence, outbox_id`, u)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var seq int64
		var key string
		var payload []byte
		var pos int64
		if err := rows.Scan(&seq, &key, &payload, &pos); err != nil {
			t.Fatal(err)
		}
		if seq != int64(i+1) || key != events[i].Type || !bytes.Equal(payload, payloads[i]) {
			t.Errorf("event %d: sequence %d, type %s, payload %s", i, seq, key, payload)
		}
		if pos != int64(i+3) { // after the two events inserted first
			t.Errorf("event %d: position %d, want %d", i, pos, i+3)
		}
	}
	if err := rows.Err(); err != nil || i != 3 {
		t.Fatalf("%d events read: %v", i, err)
	}
}

// BenchmarkRelayMark measures what keeping published events costs the relay: one
// batch of 256 confirmed rows deleted (EventRetention 0) against moved to
// event_log. The write path (the group commit) is the same either way.
//
//	go test -run '^$' -bench RelayMark -benchtime 200x ./messaging/
func BenchmarkRelayMark(b *testing.B) {
	const batch = 256
	for _, retention := range []time.Duration{0, time.Hour} {
		name := "delete"
		if retention > 0 {
			name = "move-to-event-log"
		}
		b.Run(name, func(b *testing.B) {
			pool := newTestPool(b)
			r := newTestRelay(b, pool, "unused", func(c *RelayConfig) { c.EventRetention = retention })
			conn, err := pool.Acquire(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Release()
			r.db = conn
			events := make([]testEvent, batch)
			for i := range events {
				events[i] = testEvent{userservice.NewID(), userservice.EventUserUpdated, i}
			}
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				insertOutbox(b, pool, events)
				var ids []int64
				rows, err := pool.Query(ctx, `SELECT id FROM outbox ORDER BY id`)
				if err != nil {
					b.Fatal(err)
				}
				for rows.Next() {
					var id int64
					_ = rows.Scan(&id)
					ids = append(ids, id)
				}
				rows.Close()
				b.StartTimer()
				if err := r.mark(ctx, ids, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*batch), "µs/row")
		})
	}
}

// TestRelayMovesTheStoredSequence: the move takes event_log's sequence from the
// outbox column the writer fills (migration 00090), and from the payload for rows
// written before it: the envelope's sequence, else metadata.userVersion.
func TestRelayMovesTheStoredSequence(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	exchange, _, in := tapNewExchange(t)
	ctx := context.Background()
	u := userservice.NewID()
	// The column wins over a payload that says otherwise; without it the payload
	// is read.
	if _, err := pool.Exec(ctx, `INSERT INTO outbox (event_id, user_id, routing_key, payload, sequence) VALUES
		($2, $1, 'user.updated', '{"sequence": 99, "metadata": {"userVersion": 98}}', 5),
		($3, $1, 'user.updated', '{"sequence": 7, "metadata": {"userVersion": 98}}', NULL),
		($4, $1, 'user.updated', '{"metadata": {"userVersion": 8}}', NULL)`,
		u, userservice.NewID(), userservice.NewID(), userservice.NewID()); err != nil {
		t.Fatal(err)
	}
	r := newTestRelay(t, pool, exchange, func(c *RelayConfig) { c.EventRetention = time.Hour })
	runInBackground(t, r.Run)
	receive(t, in, 3, 10*time.Second)
	var got []int64
	eventually(t, 10*time.Second, "three rows moved", func() bool {
		rows, err := pool.Query(ctx, `SELECT sequence FROM event_log WHERE user_id = $1 ORDER BY outbox_id`, u)
		if err != nil {
			t.Fatal(err)
		}
		if got, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			t.Fatal(err)
		}
		return len(got) == 3
	})
	if want := []int64{5, 7, 8}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("event_log sequences = %v, want %v", got, want)
	}
}

// TestRelayMoveKeepsAnEventAlreadyLogged: the move inserts without ON CONFLICT;
// when event_log holds a moved row's key all the same, the mark is sent again
// keeping the stored event, and every row leaves the outbox (a relay without the
// second statement would fail that mark forever and publish the batch again and
// again).
func TestRelayMoveKeepsAnEventAlreadyLogged(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	exchange, _, in := tapNewExchange(t)
	ctx := context.Background()
	u := userservice.NewID()
	events := []testEvent{{u, userservice.EventUserCreated, 0}, {u, userservice.EventUserUpdated, 1}, {u, userservice.EventUserUpdated, 2}}
	_, payloads := insertOutbox(t, pool, events)
	// The second row's key, already in event_log (as after a restore that took the
	// outbox sequence back).
	if _, err := pool.Exec(ctx, `INSERT INTO event_log (user_id, sequence, outbox_id, event_id, routing_key, payload, created_at, position)
		SELECT user_id, 2, id, event_id, routing_key, '"stored"', created_at, 1000 FROM outbox WHERE user_id = $1 ORDER BY id OFFSET 1 LIMIT 1`, u); err != nil {
		t.Fatal(err)
	}
	r := newTestRelay(t, pool, exchange, func(c *RelayConfig) { c.EventRetention = time.Hour })
	runInBackground(t, r.Run)
	receive(t, in, len(events), 10*time.Second)
	eventually(t, 10*time.Second, "every row moved", func() bool { return outboxRows(t, pool) == 0 })

	rows, err := pool.Query(ctx, `SELECT payload FROM event_log WHERE user_id = $1 ORDER BY sequence, outbox_id`, u)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{payloads[0], []byte(`"stored"`), payloads[2]}
	if len(got) != len(want) {
		t.Fatalf("event_log holds %d events of the user, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("event %d: payload %s, want %s", i, got[i], want[i])
		}
	}
}

// TestIsMoveConflict: only the primary key of event_log (an event already
// logged) sends the move again keeping the stored event; a position taken by a
// second mover fails the mark, so that its rows stay in the outbox.
func TestIsMoveConflict(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "23505", ConstraintName: "event_log_pkey"}, true},
		{fmt.Errorf("batch: %w", &pgconn.PgError{Code: "23505", ConstraintName: "event_log_pkey"}), true},
		{&pgconn.PgError{Code: "23505", ConstraintName: "event_log_position_key"}, false},
		{&pgconn.PgError{Code: "40001", ConstraintName: "event_log_pkey"}, false},
		{errors.New("event_log_pkey"), false},
		{nil, false},
	} {
		if got := isMoveConflict(c.err); got != c.want {
			t.Errorf("isMoveConflict(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestRelayPrunesEventLogByPosition: the prune walks event_log oldest position
// first and deletes what is older than the retention; an event newer than the
// retention is never deleted.
func TestRelayPrunesEventLogByPosition(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	exchange, _, _ := tapNewExchange(t)
	ctx := context.Background()
	u := userservice.NewID()
	if _, err := pool.Exec(ctx, `INSERT INTO event_log (user_id, sequence, outbox_id, event_id, routing_key, payload, created_at, position)
		SELECT $1, p, p, gen_random_uuid(), 'user.updated', '{}', now() - age * interval '1 minute', p
		FROM unnest(ARRAY[1, 2, 3, 4, 5], ARRAY[180, 120, 10, 150, 5]) AS t(p, age)`, u); err != nil {
		t.Fatal(err)
	}
	left := func() []int64 {
		rows, err := pool.Query(ctx, `SELECT position FROM event_log WHERE user_id = $1 ORDER BY position`, u)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	r := newTestRelay(t, pool, exchange, func(c *RelayConfig) {
		c.EventRetention, c.PruneInterval = time.Hour, 20*time.Millisecond
	})
	if ok, err := r.tryLead(ctx); err != nil || !ok {
		t.Fatalf("tryLead = %v, %v", ok, err)
	}
	t.Cleanup(r.resign)
	for range 2 { // a second round finds nothing more
		n, err := r.pruneEventLog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := left(); len(got) != 2 || got[0] != 3 || got[1] != 5 {
			t.Fatalf("after a prune (%d deleted) positions %v are left, want [3 5]", n, got)
		}
	}
	if _, err := pool.Exec(ctx, `UPDATE event_log SET created_at = now() - interval '2 hours' WHERE position = 3`); err != nil {
		t.Fatal(err)
	}
	if _, err := r.pruneEventLog(ctx); err != nil {
		t.Fatal(err)
	}
	if got := left(); len(got) != 1 || got[0] != 5 {
		t.Fatalf("positions %v are left, want [5]", got)
	}
}
