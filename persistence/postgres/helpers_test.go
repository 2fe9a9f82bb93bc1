package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
)

// testLogger logs through t, so that the writer's warnings show with the test.
func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newWriter starts a Writer on db and closes it when the test ends.
func newWriter(tb testing.TB, db *postgres.DB, cfg postgres.WriterConfig) *postgres.Writer {
	tb.Helper()
	w, err := postgres.NewWriter(db, cfg, testLogger(tb))
	if err != nil {
		tb.Fatalf("NewWriter: %v", err)
	}
	w.Start()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.Close(ctx); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return w
}

// commitAll commits the mutations back to back, so that they share batches, and
// returns each one's error once all are done.
func commitAll(tb testing.TB, w *postgres.Writer, ms ...*userservice.Mutation) []error {
	tb.Helper()
	errs := make([]error, len(ms))
	calls := make([]int, len(ms))
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(len(ms))
	for i, m := range ms {
		w.Commit(m, func(err error) {
			mu.Lock()
			errs[i] = err
			calls[i]++
			mu.Unlock()
			wg.Done()
		})
	}
	waitGroup(tb, &wg, 60*time.Second)
	for i, n := range calls {
		if n != 1 {
			tb.Fatalf("done of mutation %d called %d times", i, n)
		}
	}
	return errs
}

func waitGroup(tb testing.TB, wg *sync.WaitGroup, d time.Duration) {
	tb.Helper()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(d):
		tb.Fatalf("mutations not done after %v", d)
	}
}

// mustCommit commits one mutation and fails the test on error.
func mustCommit(tb testing.TB, w *postgres.Writer, m *userservice.Mutation) {
	tb.Helper()
	if err := commitAll(tb, w, m)[0]; err != nil {
		tb.Fatalf("commit: %v", err)
	}
}

var baseTime = time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC)

// at is a distinct instant for step i.
func at(i int) userservice.Time {
	return userservice.NewTime(baseTime.Add(time.Duration(i)*time.Second + 123*time.Millisecond))
}

func metaAt(i int) userservice.Meta {
	actor := "0190a000-0000-7000-8000-000000000001"
	return userservice.Meta{ActorID: &actor, CorrelationID: fmt.Sprintf("corr-%d", i), Now: at(i)}
}

func strp(s string) *string { return &s }

// newUser is a Register command with unique ids and the given email and username.
func newUser(email, username string) userservice.Register {
	in := userservice.CreateUser{AuthID: userservice.NewID(), Email: email, FirstName: "Ada", LastName: "Lovelace"}
	if username != "" {
		in.Username = strp(username)
	}
	return userservice.Register{ID: userservice.NewID(), Input: in}
}

// apply applies cmd and fails the test if it is refused or changes nothing.
func apply(tb testing.TB, s *userservice.State, cmd userservice.Command, meta userservice.Meta) *userservice.Outcome {
	tb.Helper()
	o, err := userservice.Apply(s, cmd, meta)
	if err != nil {
		tb.Fatalf("Apply(%T): %v", cmd, err)
	}
	if o.Mutation == nil {
		tb.Fatalf("Apply(%T) changed nothing", cmd)
	}
	return o
}

// registered registers a user, commits it and returns its state.
func registered(tb testing.TB, w *postgres.Writer, email, username string) *userservice.State {
	tb.Helper()
	o := apply(tb, nil, newUser(email, username), metaAt(0))
	mustCommit(tb, w, o.Mutation)
	return o.State
}

func count(tb testing.TB, db *postgres.DB, sql string, args ...any) int {
	tb.Helper()
	var n int
	if err := db.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

func errCode(err error) string { return userservice.ErrorCode(err) }

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not reached after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// holdRow locks the user's row in a transaction of its own, rolled back when the
// test ends (or earlier by the test), and returns it with its backend's pid, for
// pg_blocking_pids.
func holdRow(tb testing.TB, db *postgres.DB, userID string) (pgx.Tx, int) {
	tb.Helper()
	ctx := context.Background()
	tx, err := db.Pool().Begin(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = tx.Rollback(ctx) })
	var pid int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid() FROM users WHERE id = $1 FOR UPDATE`, userID).Scan(&pid); err != nil {
		tb.Fatal(err)
	}
	return tx, pid
}

// outboxRow is one outbox row as the tests read it.
type outboxRow struct {
	eventID, userID, routingKey string
	payload                     []byte
	sequence                    *int64 // the envelope's, beside it (migration 00090)
}

// outboxRows reads the outbox rows of events, in id order (the relay's order).
func outboxRows(tb testing.TB, db *postgres.DB, events []userservice.Event) []outboxRow {
	tb.Helper()
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	rows, err := db.Pool().Query(context.Background(),
		`SELECT event_id, user_id, routing_key, payload, sequence FROM outbox WHERE event_id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outboxRow, error) {
		var r outboxRow
		err := row.Scan(&r.eventID, &r.userID, &r.routingKey, &r.payload, &r.sequence)
		return r, err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// expectOutboxRow fails unless outbox row i is ev's exact envelope (as the writer
// encodes it) for user, with ev's sequence in its column.
func expectOutboxRow(tb testing.TB, i int, r outboxRow, ev userservice.Event, user string) {
	tb.Helper()
	want, _ := gojson.Marshal(&ev)
	if r.eventID != ev.ID || r.userID != user || r.routingKey != ev.Type || !bytes.Equal(r.payload, want) {
		tb.Errorf("outbox row %d = (%s, %s, %s, %s), want (%s, %s, %s, %s)", i, r.eventID, r.userID, r.routingKey, r.payload,
			ev.ID, user, ev.Type, want)
	}
	if r.sequence == nil || *r.sequence != ev.Sequence {
		tb.Errorf("outbox row %d: sequence column %v, want %d", i, r.sequence, ev.Sequence)
	}
}

// expectHOT runs sql in tx and fails unless it updated exactly one row of users,
// as a HOT update (no index of users names a column it changed). The xact
// counters include what this backend counted and has not yet reported (earlier
// transactions on the connection): it compares deltas.
func expectHOT(t *testing.T, ctx context.Context, tx pgx.Tx, sql string, args ...any) {
	t.Helper()
	counters := func() (upd, hot int) {
		t.Helper()
		if err := tx.QueryRow(ctx, `SELECT pg_stat_get_xact_tuples_updated('users'::regclass),
			pg_stat_get_xact_tuples_hot_updated('users'::regclass)`).Scan(&upd, &hot); err != nil {
			t.Fatal(err)
		}
		return upd, hot
	}
	upd0, hot0 := counters()
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		t.Fatal(err)
	}
	upd1, hot1 := counters()
	if upd1-upd0 != 1 || hot1-hot0 != 1 {
		t.Errorf("%.60q counted %d updates of users, %d of them HOT; want 1 and 1: an index of users names a column it changed",
			sql, upd1-upd0, hot1-hot0)
	}
}
