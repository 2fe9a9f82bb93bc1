package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

func TestWriterCommitsABatchOfManyUsers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{}) // full batches of 256 registrations, ~5,000 statements each
	const n = 600
	ms := make([]*userservice.Mutation, n)
	for i := range ms {
		ms[i] = apply(t, nil, newUser(fmt.Sprintf("user%03d@example.com", i), fmt.Sprintf("user%03d", i)), metaAt(i)).Mutation
	}
	for i, err := range commitAll(t, w, ms...) {
		if err != nil {
			t.Fatalf("mutation %d: %v", i, err)
		}
	}
	if got := count(t, db, `SELECT count(*) FROM users`); got != n {
		t.Errorf("users = %d, want %d", got, n)
	}
	if got, want := count(t, db, `SELECT count(*) FROM preferences`), n*len(userservice.DefaultPreferences); got != want {
		t.Errorf("preferences = %d, want %d", got, want)
	}
	if got := count(t, db, `SELECT count(*) FROM outbox WHERE routing_key = 'user.created'`); got != n {
		t.Errorf("outbox rows = %d, want %d", got, n)
	}
}

func TestWriterFencesStaleMutations(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{BatchWait: 200 * time.Millisecond})
	a := registered(t, w, "a@example.com", "alice")
	b := registered(t, w, "b@example.com", "bob")

	// Another writer moves a to version 2 behind this actor's back.
	moved := apply(t, a, userservice.ChangeRole{Role: userservice.RoleInstructor}, metaAt(1))
	mustCommit(t, w, moved.Mutation)

	course := userservice.NewID()
	stale := apply(t, a, userservice.Enroll{CourseID: course}, metaAt(2)) // computed from version 1
	good := apply(t, b, userservice.Enroll{CourseID: course}, metaAt(2))
	errs := commitAll(t, w, stale.Mutation, good.Mutation)

	if !errors.Is(errs[0], userservice.ErrStaleVersion) {
		t.Errorf("stale mutation: err = %v, want ErrStaleVersion", errs[0])
	}
	if errs[1] != nil {
		t.Errorf("good mutation in the same batch: %v", errs[1])
	}
	if got := count(t, db, `SELECT version FROM users WHERE id = $1`, a.User.ID); got != 2 {
		t.Errorf("a's version = %d, want 2", got)
	}
	if got := count(t, db, `SELECT count(*) FROM enrollments WHERE user_id = $1`, a.User.ID); got != 0 {
		t.Errorf("stale mutation wrote %d enrollments", got)
	}
	if got := count(t, db, `SELECT count(*) FROM outbox WHERE event_id = $1`, stale.Mutation.Events[0].ID); got != 0 {
		t.Errorf("stale mutation wrote %d outbox rows", got)
	}
	if got := count(t, db, `SELECT count(*) FROM enrollments WHERE user_id = $1`, b.User.ID); got != 1 {
		t.Errorf("b's enrollments = %d, want 1", got)
	}
}

func TestWriterFailsOnlyTheConflictingMutation(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{BatchWait: 200 * time.Millisecond})
	existing := registered(t, w, "taken@example.com", "TakenName")

	tests := []struct {
		name    string
		cmd     func() userservice.Register
		code    string
		message string
	}{
		{"duplicate email", func() userservice.Register { return newUser("taken@example.com", "") },
			userservice.ECodeConflict, "Email address is already registered"},
		{"duplicate username in another case", func() userservice.Register { return newUser("new1@example.com", "takenname") },
			userservice.ECodeConflict, "Username is already taken"},
		{"duplicate authId", func() userservice.Register {
			r := newUser("new2@example.com", "")
			r.Input.AuthID = existing.User.AuthID
			return r
		}, userservice.ECodeConflict, "User already exists with this auth ID"},
		{"duplicate id", func() userservice.Register {
			r := newUser("new3@example.com", "")
			r.ID = existing.User.ID
			return r
		}, userservice.ECodeConflict, "User already exists"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			goods := []*userservice.Mutation{
				apply(t, nil, newUser(fmt.Sprintf("ok%d-1@example.com", i), ""), metaAt(1)).Mutation,
				apply(t, nil, newUser(fmt.Sprintf("ok%d-2@example.com", i), ""), metaAt(1)).Mutation,
			}
			bad := apply(t, nil, tt.cmd(), metaAt(1)).Mutation
			errs := commitAll(t, w, goods[0], bad, goods[1])
			if errs[0] != nil || errs[2] != nil {
				t.Errorf("good mutations failed: %v, %v", errs[0], errs[2])
			}
			var de *userservice.Error
			if !errors.As(errs[1], &de) || de.Code != tt.code || de.Message != tt.message {
				t.Fatalf("bad mutation: err = %v, want %s %q", errs[1], tt.code, tt.message)
			}
			if got := count(t, db, `SELECT count(*) FROM outbox WHERE event_id = $1`, bad.Events[0].ID); got != 0 {
				t.Errorf("bad mutation wrote %d outbox rows", got)
			}
			for _, g := range goods {
				if got := count(t, db, `SELECT count(*) FROM users WHERE id = $1`, g.UserID); got != 1 {
					t.Errorf("good user %s not written", g.UserID)
				}
			}
		})
	}
}

func TestWriterSeveralBadMutationsInOneBatch(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{BatchWait: 200 * time.Millisecond})
	a := registered(t, w, "a@example.com", "")
	login := apply(t, a, userservice.RecordLogin{SessionID: "s1", At: at(1)}, withMessage(metaAt(1), "msg-1"))
	mustCommit(t, w, login.Mutation)

	var ms []*userservice.Mutation
	var want []error
	for i := range 5 {
		ms = append(ms, apply(t, nil, newUser(fmt.Sprintf("good%d@example.com", i), ""), metaAt(2)).Mutation)
		want = append(want, nil)
	}
	dupEmail := apply(t, nil, newUser("a@example.com", ""), metaAt(2)).Mutation
	stale := apply(t, a, userservice.ChangeRole{Role: userservice.RoleAdmin}, metaAt(2)).Mutation
	dupMessage := apply(t, login.State, userservice.RecordLogin{SessionID: "s1", At: at(1)}, withMessage(metaAt(2), "msg-1")).Mutation
	ms = append([]*userservice.Mutation{dupEmail, stale}, ms...)
	ms = append(ms, dupMessage)
	want = append([]error{userservice.Errorf(userservice.ECodeConflict, "Email address is already registered"), userservice.ErrStaleVersion}, want...)
	want = append(want, userservice.ErrDuplicateMessage)

	errs := commitAll(t, w, ms...)
	for i := range ms {
		if userservice.ErrorCode(errs[i]) != userservice.ErrorCode(want[i]) || userservice.ErrorMessage(errs[i]) != userservice.ErrorMessage(want[i]) {
			t.Errorf("mutation %d: err = %v, want %v", i, errs[i], want[i])
		}
	}
	if got := count(t, db, `SELECT count(*) FROM users`); got != 6 {
		t.Errorf("users = %d, want 6", got)
	}
}

func withMessage(m userservice.Meta, id string) userservice.Meta {
	m.MessageID = id
	return m
}

func TestWriterDuplicateMessageWritesNothing(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{})
	s := registered(t, w, "a@example.com", "")
	first := apply(t, s, userservice.RecordLogin{SessionID: "s1", At: at(1)}, withMessage(metaAt(1), "msg-1"))
	mustCommit(t, w, first.Mutation)

	again := apply(t, first.State, userservice.RecordLogin{SessionID: "s2", At: at(2)}, withMessage(metaAt(2), "msg-1"))
	if err := commitAll(t, w, again.Mutation)[0]; !errors.Is(err, userservice.ErrDuplicateMessage) {
		t.Fatalf("err = %v, want ErrDuplicateMessage", err)
	}
	if got := count(t, db, `SELECT count(*) FROM sessions WHERE session_id = 's2'`); got != 0 {
		t.Errorf("duplicate wrote %d sessions", got)
	}
	if got := count(t, db, `SELECT version FROM users WHERE id = $1`, s.User.ID); got != 2 {
		t.Errorf("version = %d, want 2", got)
	}
	ok, err := db.IsProcessed(context.Background(), "msg-1")
	if err != nil || !ok {
		t.Errorf("IsProcessed(msg-1) = %t, %v; want true", ok, err)
	}
	if ok, _ := db.IsProcessed(context.Background(), "msg-2"); ok {
		t.Error("IsProcessed(msg-2) = true")
	}
}

func TestWriterStoresIdempotencyWithTheChange(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{})
	s := registered(t, w, "a@example.com", "")
	meta := metaAt(1)
	meta.Now = userservice.Now() // a key older than a day is expired and may be taken again
	meta.Idempotency = &userservice.IdempotencyRequest{CallerID: "caller", Key: "k1", RequestHash: "h1",
		Render: func(*userservice.Outcome) (int, []byte) { return 201, []byte(`{"ok":true}`) }}
	first := apply(t, s, userservice.Enroll{CourseID: userservice.NewID()}, meta)
	mustCommit(t, w, first.Mutation)

	second := apply(t, first.State, userservice.Enroll{CourseID: userservice.NewID()}, meta)
	if err := commitAll(t, w, second.Mutation)[0]; !errors.Is(err, userservice.ErrIdempotencyKeyTaken) {
		t.Fatalf("err = %v, want ErrIdempotencyKeyTaken", err)
	}
	store, _ := postgres.NewIdempotencyStore(db)
	rec, err := store.GetIdempotency(context.Background(), "caller", "k1", time.Hour)
	if err != nil || rec == nil {
		t.Fatalf("GetIdempotency = %v, %v", rec, err)
	}
	if rec.Status != 201 || string(rec.Body) != `{"ok":true}` || rec.RequestHash != "h1" {
		t.Errorf("record = %+v", rec)
	}
	if got := count(t, db, `SELECT count(*) FROM enrollments`); got != 1 {
		t.Errorf("enrollments = %d, want 1", got)
	}
}

func TestWriterOutboxCarriesTheExactEnvelope(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{})
	s := registered(t, w, "a@example.com", "")
	enroll := apply(t, s, userservice.Enroll{CourseID: userservice.NewID()}, metaAt(1))
	progress := 100.0
	done := apply(t, enroll.State, userservice.SetProgress{CourseID: enroll.Mutation.EnrollmentUpserts[0].CourseID,
		Input: userservice.UpdateProgress{Progress: &progress}}, metaAt(2))
	mustCommit(t, w, enroll.Mutation)
	mustCommit(t, w, done.Mutation)

	events := append(append([]userservice.Event{}, enroll.Mutation.Events...), done.Mutation.Events...)
	rows := outboxRows(t, db, events)
	for i, r := range rows[:min(len(rows), len(events))] {
		expectOutboxRow(t, i, r, events[i], s.User.ID)
		var env map[string]any
		if err := json.Unmarshal(r.payload, &env); err != nil {
			t.Fatalf("payload is not JSON: %v", err)
		}
		for _, k := range []string{"id", "type", "source", "data", "timestamp", "correlationId", "metadata"} {
			if _, ok := env[k]; !ok {
				t.Errorf("envelope lacks %q: %s", k, r.payload)
			}
		}
	}
	if wantTypes := []string{userservice.EventEnrolled, userservice.EventProgressUpdated, userservice.EventCourseCompleted}; len(rows) != len(wantTypes) {
		t.Errorf("outbox rows = %d, want %d (%v)", len(rows), len(wantTypes), wantTypes)
	}
}

func eventIDs(evs []userservice.Event) []string {
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
	}
	return ids
}

func TestWriterCloseFlushesTheQueue(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w, err := postgres.NewWriter(db, postgres.WriterConfig{BatchWait: time.Minute, BatchMax: 1000}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	w.Start()
	const n = 20
	var wg sync.WaitGroup
	wg.Add(n)
	errs := make(chan error, n)
	for i := range n {
		m := apply(t, nil, newUser(fmt.Sprintf("u%d@example.com", i), ""), metaAt(i)).Mutation
		w.Commit(m, func(err error) { errs <- err; wg.Done() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Close waited %v: it must not wait for BatchWait", d)
	}
	waitGroup(t, &wg, 10*time.Second)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("queued mutation: %v", err)
		}
	}
	if got := count(t, db, `SELECT count(*) FROM users`); got != n {
		t.Errorf("users = %d, want %d", got, n)
	}

	t.Run("refuses mutations after Close", func(t *testing.T) {
		m := apply(t, nil, newUser("late@example.com", ""), metaAt(0)).Mutation
		got := make(chan error, 1)
		w.Commit(m, func(err error) { got <- err })
		select {
		case err := <-got:
			if errCode(err) != userservice.ECodeUnavailable {
				t.Errorf("err = %v, want %s", err, userservice.ECodeUnavailable)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("done not called")
		}
	})
}

func TestWriterBatchWait(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	timed := func(t *testing.T, w *postgres.Writer, n int) time.Duration {
		t.Helper()
		ms := make([]*userservice.Mutation, n)
		for i := range ms {
			ms[i] = apply(t, nil, newUser(userservice.NewID()+"@example.com", ""), metaAt(i)).Mutation
		}
		start := time.Now()
		for i, err := range commitAll(t, w, ms...) {
			if err != nil {
				t.Fatalf("mutation %d: %v", i, err)
			}
		}
		return time.Since(start)
	}
	t.Run("with no BatchWait a lone mutation does not wait", func(t *testing.T) {
		w := newWriter(t, db, postgres.WriterConfig{})
		timed(t, w, 1) // warm the connection and the statement cache
		if d := timed(t, w, 1); d > 2*time.Second {
			t.Errorf("single commit took %v", d)
		}
	})
	t.Run("a lone mutation commits soon after BatchWait", func(t *testing.T) {
		w := newWriter(t, db, postgres.WriterConfig{BatchWait: 2 * time.Millisecond})
		timed(t, w, 1) // warm the connection and the statement cache
		if d := timed(t, w, 1); d > 2*time.Second {
			t.Errorf("single commit took %v", d)
		}
	})
	t.Run("a batch waits BatchWait for company", func(t *testing.T) {
		w := newWriter(t, db, postgres.WriterConfig{BatchWait: 300 * time.Millisecond})
		if d := timed(t, w, 1); d < 250*time.Millisecond {
			t.Errorf("commit after %v, before BatchWait", d)
		}
	})
	t.Run("a full batch does not wait", func(t *testing.T) {
		w := newWriter(t, db, postgres.WriterConfig{BatchWait: 30 * time.Second, BatchMax: 2})
		if d := timed(t, w, 2); d > 10*time.Second {
			t.Errorf("full batch waited %v", d)
		}
	})
}

// With no BatchWait a free committer takes a mutation at once; the mutations that
// arrive while every committer is busy wait for one and leave together.
func TestWriterBatchesWhileCommittersAreBusy(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{Committers: 1})
	ctx := context.Background()
	tx, first := stuckCommit(t, db, w, 0)

	const n = 20
	ms := make([]*userservice.Mutation, n)
	for i := range ms {
		ms[i] = apply(t, nil, newUser(fmt.Sprintf("later%d@example.com", i), ""), metaAt(2)).Mutation
	}
	later := make(chan []error, 1)
	go func() { later <- commitAll(t, w, ms...) }()
	time.Sleep(200 * time.Millisecond) // all queued behind the busy committer
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatalf("first mutation: %v", err)
	}
	for i, err := range <-later {
		if err != nil {
			t.Fatalf("mutation %d: %v", i, err)
		}
	}
	// Rows written by one transaction share its xmin.
	if got := count(t, db, `SELECT count(DISTINCT xmin::text) FROM users WHERE email LIKE 'later%'`); got != 1 {
		t.Errorf("the %d mutations queued behind a busy committer took %d transactions, want 1", n, got)
	}
}

// Beside a large running commit a second committer starts only once that commit
// has run OverlapAfter: before, what arrives waits to leave whole with the next
// free committer; after, a stuck commit (here, waiting for a row lock) does not
// hold up the others. Beside a small commit it starts at once.
func TestWriterOverlapsOnlyAStuckCommit(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	run := func(t *testing.T, company int, overlapAfter time.Duration) (laterDone bool, elapsed time.Duration, overlaps uint64) {
		t.Helper()
		// BatchWait gathers the stuck commit's company into its batch.
		w := newWriter(t, db, postgres.WriterConfig{Committers: 2, OverlapAfter: overlapAfter, BatchWait: 100 * time.Millisecond})
		ctx := context.Background()
		tx, first := stuckCommit(t, db, w, company)
		before := overlapCount(t)
		later := make(chan error, 1)
		start := time.Now()
		w.Commit(apply(t, nil, newUser(userservice.NewID()+"@example.com", ""), metaAt(2)).Mutation, func(err error) { later <- err })
		select {
		case err := <-later:
			laterDone, elapsed = true, time.Since(start)
			if err != nil {
				t.Fatalf("later mutation: %v", err)
			}
		case <-time.After(2 * time.Second):
		}
		overlaps = overlapCount(t) - before
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		for err := range first {
			if err != nil {
				t.Fatalf("stuck batch: %v", err)
			}
		}
		if !laterDone {
			if err := <-later; err != nil {
				t.Fatalf("later mutation: %v", err)
			}
		}
		return laterDone, elapsed, overlaps
	}
	t.Run("a large commit running less than OverlapAfter is not overlapped", func(t *testing.T) {
		// (The overlap count is the process's, which parallel tests also move.)
		if done, d, _ := run(t, 9, time.Hour); done {
			t.Fatalf("the later mutation committed after %v beside a commit running for less than OverlapAfter", d)
		}
	})
	t.Run("a large commit running longer than OverlapAfter is", func(t *testing.T) {
		done, d, n := run(t, 9, 300*time.Millisecond)
		if !done {
			t.Fatal("the later mutation waited more than 2 s for a stuck commit, with OverlapAfter 300ms")
		}
		if d < 250*time.Millisecond {
			t.Errorf("the later mutation committed after %v, before OverlapAfter", d)
		}
		if n < 1 {
			t.Errorf("%d overlaps counted, want 1", n)
		}
	})
	t.Run("a small commit is overlapped at once", func(t *testing.T) {
		if done, d, _ := run(t, 0, time.Hour); !done || d > time.Second {
			t.Fatalf("the later mutation waited for a small stuck commit (committed: %t, after %v)", done, d)
		}
	})
}

// stuckCommit registers a user, holds its row in a transaction of its own and
// commits an enrollment of that user through w, with company new users queued
// right after it (a BatchWait puts them in its batch), returning once that commit
// waits for the row: the holding transaction (rolling it back lets the commit
// through) and the outcomes of the batch's mutations, closed after the last.
func stuckCommit(t *testing.T, db *postgres.DB, w *postgres.Writer, company int) (pgx.Tx, <-chan error) {
	t.Helper()
	blocked := registered(t, w, userservice.NewID()+"@example.com", "")
	tx, holder := holdRow(t, db, blocked.User.ID)
	outcomes := make(chan error, 1+company)
	var wg sync.WaitGroup
	wg.Add(1 + company)
	done := func(err error) { outcomes <- err; wg.Done() }
	w.Commit(apply(t, blocked, userservice.Enroll{CourseID: userservice.NewID()}, metaAt(1)).Mutation, done)
	for range company {
		w.Commit(apply(t, nil, newUser(userservice.NewID()+"@example.com", ""), metaAt(1)).Mutation, done)
	}
	go func() { wg.Wait(); close(outcomes) }()
	waitFor(t, func() bool {
		return count(t, db, `SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))`, holder) > 0
	})
	return tx, outcomes
}

// overlapCount reads user_service_write_overlaps_total.
func overlapCount(tb testing.TB) uint64 {
	tb.Helper()
	var buf bytes.Buffer
	metrics.WritePrometheus(&buf, false)
	for line := range strings.SplitSeq(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "user_service_write_overlaps_total "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	return 0
}

func TestWriterRejectsInconsistentMutations(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{BatchWait: 100 * time.Millisecond})
	good := apply(t, nil, newUser("good@example.com", ""), metaAt(0)).Mutation
	bad := apply(t, nil, newUser("bad@example.com", ""), metaAt(0)).Mutation
	bad.User.Version = 5
	errs := commitAll(t, w, bad, good)
	if errCode(errs[0]) != userservice.ECodeInternal {
		t.Errorf("bad: err = %v, want %s", errs[0], userservice.ECodeInternal)
	}
	if errs[1] != nil {
		t.Errorf("good: %v", errs[1])
	}
}

func TestWriterReportsUnavailableWhenPostgreSQLIsDown(t *testing.T) {
	t.Parallel()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: "postgres://nobody@127.0.0.1:1/none?sslmode=disable", ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close) // after the writer's Close, registered next
	w := newWriter(t, db, postgres.WriterConfig{CommitTimeout: 3 * time.Second})
	ms := []*userservice.Mutation{
		apply(t, nil, newUser("a@example.com", ""), metaAt(0)).Mutation,
		apply(t, nil, newUser("b@example.com", ""), metaAt(0)).Mutation,
	}
	for i, err := range commitAll(t, w, ms...) {
		if errCode(err) != userservice.ECodeUnavailable {
			t.Errorf("mutation %d: err = %v, want %s", i, err, userservice.ECodeUnavailable)
		}
	}
	w.TouchLastActive(ms[0].UserID, at(1)) // dropped with a log line, never blocks
}

func TestTouchLastActive(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{TouchInterval: 20 * time.Millisecond})
	s := registered(t, w, "a@example.com", "")
	lastActive := func() time.Time {
		t.Helper()
		var ts *time.Time
		if err := db.Pool().QueryRow(context.Background(), `SELECT last_active_at FROM users WHERE id = $1`, s.User.ID).Scan(&ts); err != nil {
			t.Fatal(err)
		}
		if ts == nil {
			return time.Time{}
		}
		return ts.UTC()
	}
	waitFor := func(want time.Time) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !lastActive().Equal(want) {
			if time.Now().After(deadline) {
				t.Fatalf("last_active_at = %v, want %v", lastActive(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	w.TouchLastActive(s.User.ID, at(5))
	w.TouchLastActive(s.User.ID, at(9))
	w.TouchLastActive(s.User.ID, at(7)) // coalesced: the latest wins
	waitFor(at(9).Time)
	if got := count(t, db, `SELECT version FROM users WHERE id = $1`, s.User.ID); got != 1 {
		t.Errorf("version = %d, want 1: touching must not change it", got)
	}

	w.TouchLastActive(s.User.ID, at(3)) // never moves back
	time.Sleep(100 * time.Millisecond)
	waitFor(at(9).Time)

	// A commit carrying an older lastActiveAt keeps the newer one.
	login := apply(t, s, userservice.RecordLogin{SessionID: "s", At: at(4)}, metaAt(4))
	mustCommit(t, w, login.Mutation)
	waitFor(at(9).Time)

	// A row that another transaction holds (a group commit, say) is not waited
	// for: the flush leaves it for a later one, which raises it once it is free.
	ctx := context.Background()
	tx, holder := holdRow(t, db, s.User.ID)
	w.TouchLastActive(s.User.ID, at(20))
	time.Sleep(200 * time.Millisecond) // ten flushes
	if n := count(t, db, `SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))`, holder); n != 0 {
		t.Errorf("%d statements wait for the held row: a flush must not wait for a row lock", n)
	}
	if got := lastActive(); !got.Equal(at(9).Time) {
		t.Fatalf("last_active_at = %v while the row was held, want %v", got, at(9).Time)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(at(20).Time)
}

func TestLoadStateRoundTrip(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{})
	loader, err := postgres.NewLoader(db)
	if err != nil {
		t.Fatal(err)
	}
	courseA, courseB := userservice.NewID(), userservice.NewID()
	p33, p100 := 33.3, 100.0
	spent := int64(120)
	dropped := userservice.EnrollmentDropped
	prefs := userservice.UpsertPreferences{Preferences: []userservice.PreferenceInput{
		{Category: strp(userservice.CategoryUI), Key: "theme", Value: json.RawMessage(`{"b": 1, "a": [1, 2.50, "x"]}`)},
		{Category: strp(userservice.CategoryLearning), Key: "custom_key", Value: json.RawMessage(`null`)},
	}}
	if err := prefs.Validate(""); err != nil {
		t.Fatal(err)
	}
	reg := newUser("round@example.com", "RoundTrip")
	reg.Input.DisplayName, reg.Input.Bio = strp("Round Trip"), strp("bio")
	steps := []userservice.Command{
		reg,
		userservice.Enroll{CourseID: courseA},
		userservice.Enroll{CourseID: courseB},
		userservice.SetProgress{CourseID: courseA, Input: userservice.UpdateProgress{Progress: &p33, TimeSpentSeconds: &spent}},
		userservice.SetProgress{CourseID: courseA, Input: userservice.UpdateProgress{Progress: &p100}},
		userservice.EditEnrollment{CourseID: courseB, Input: userservice.UpdateEnrollment{EnrollmentStatus: &dropped}},
		userservice.SetPreferences{Input: prefs},
		userservice.RemovePreference{Category: userservice.CategoryNotifications, Key: "marketing_emails"},
		userservice.RecordLogin{SessionID: "s1", IPAddress: strp("10.0.0.1"), UserAgent: strp("ua"), At: at(8)},
		userservice.RecordLogin{SessionID: "s2", At: at(9)},
		userservice.RecordLogout{SessionID: "s1", At: at(10)},
		userservice.ChangeRole{Role: userservice.RoleInstructor},
		userservice.ChangeStatus{Status: userservice.StatusInactive},
		userservice.EditProfile{Input: userservice.UpdateUser{FirstName: userservice.Optional[string]{Set: true, Value: "Grace"},
			Phone: userservice.Optional[string]{Set: true, Value: "+15551234567"}, Bio: userservice.Optional[string]{Set: true, Null: true}}},
		userservice.Unenroll{CourseID: courseB},
		userservice.Enroll{CourseID: courseB},
		userservice.RecordLogin{SessionID: "s1", At: at(16)},
		userservice.RemoveCategory{Category: userservice.CategoryPrivacy},
		userservice.RecordPasswordChange{At: at(18)},
	}
	var s *userservice.State
	events := 0
	for i, cmd := range steps {
		o := apply(t, s, cmd, metaAt(i))
		mustCommit(t, w, o.Mutation)
		s, events = o.State, events+len(o.Mutation.Events)
	}

	got, err := loader.LoadState(context.Background(), s.User.ID)
	if err != nil {
		t.Fatalf("LoadState: %v", err)
	}
	if !reflect.DeepEqual(got, s) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(s, "", " ")
		t.Errorf("loaded state differs from the applied one\n got: %s\nwant: %s", g, w)
	}
	if p, _ := got.Preferences.Get(userservice.PrefKey{Category: userservice.CategoryUI, Key: "theme"}); string(p.Value) != `{"b":1,"a":[1,2.50,"x"]}` {
		t.Errorf("preference value = %s, want it byte for byte", p.Value)
	}
	if n := count(t, db, `SELECT count(*) FROM outbox WHERE user_id = $1`, s.User.ID); n != events {
		t.Errorf("outbox rows = %d, want %d", n, events)
	}
	// 3 changes audited, plus the sessions_revoked that one of them caused
	// (issue 14: a role change or suspension ends the open sessions).
	if n := count(t, db, `SELECT count(*) FROM audit_log WHERE user_id = $1`, s.User.ID); n != 4 {
		t.Errorf("audit rows = %d, want 4", n)
	}
}

func TestWriterRetriesAloneAfterManyBadMutations(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{BatchWait: 200 * time.Millisecond})
	registered(t, w, "taken@example.com", "")
	before := fallbacks(t)

	var ms []*userservice.Mutation
	for i := range 12 { // more failures than one batch retries around
		ms = append(ms, apply(t, nil, newUser("taken@example.com", ""), metaAt(i)).Mutation)
		if i%4 == 0 {
			ms = append(ms, apply(t, nil, newUser(fmt.Sprintf("good%d@example.com", i), ""), metaAt(i)).Mutation)
		}
	}
	errs := commitAll(t, w, ms...)
	good := 0
	for i, m := range ms {
		switch {
		case m.User.Email != "taken@example.com" && errs[i] != nil:
			t.Errorf("good mutation %d: %v", i, errs[i])
		case m.User.Email == "taken@example.com" && userservice.ErrorMessage(errs[i]) != "Email address is already registered":
			t.Errorf("duplicate %d: err = %v", i, errs[i])
		case errs[i] == nil:
			good++
		}
	}
	if got := count(t, db, `SELECT count(*) FROM users`); got != 1+good || good != 3 {
		t.Errorf("users = %d with %d good mutations, want 4 with 3", got, good)
	}
	if after := fallbacks(t); after <= before {
		t.Errorf("user_service_write_fallbacks_total = %v, was %v: the batch should have fallen back", after, before)
	}
}

// fallbacks reads user_service_write_fallbacks_total from the exported metrics.
func fallbacks(tb testing.TB) float64 {
	tb.Helper()
	var buf bytes.Buffer
	metrics.WritePrometheus(&buf, false)
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "user_service_write_fallbacks_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return f
		}
	}
	tb.Fatal("user_service_write_fallbacks_total not exported")
	return 0
}

// TestWriterDataErrorsAreTheMutationsOwn: a value PostgreSQL refuses (SQLSTATE
// class 22: bytes that are not UTF-8 or NUL in text, \u0000 in jsonb) fails only
// its own mutation, with a 400 that names the field, never a 503; the other
// mutations of its batch commit.
func TestWriterDataErrorsAreTheMutationsOwn(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{BatchWait: 200 * time.Millisecond})
	a := registered(t, w, "data-a@example.com", "")
	b := registered(t, w, "data-b@example.com", "")
	c := registered(t, w, "data-c@example.com", "")

	edit := func(s *userservice.State, bio string) *userservice.Mutation {
		return apply(t, s, userservice.EditProfile{Input: userservice.UpdateUser{Bio: userservice.Optional[string]{Set: true, Value: bio}}}, metaAt(2)).Mutation
	}
	pref := func(s *userservice.State, value string) *userservice.Mutation {
		in := userservice.UpsertPreferences{Preferences: []userservice.PreferenceInput{{Key: "theme", Value: json.RawMessage(value)}}}
		if err := in.Validate(userservice.CategoryUI); err != nil {
			t.Fatal(err)
		}
		return apply(t, s, userservice.SetPreferences{Category: userservice.CategoryUI, Input: in}, metaAt(2)).Mutation
	}
	var goods []*userservice.Mutation
	for i := range 4 {
		goods = append(goods, apply(t, nil, newUser(fmt.Sprintf("data-good%d@example.com", i), ""), metaAt(2)).Mutation)
	}
	bads := []struct {
		m     *userservice.Mutation
		field string
	}{
		{edit(a, "caf\xe9"), "bio"},
		{edit(b, "a\x00b"), "bio"},
		{pref(c, "{\"label\":\"\xff\"}"), "preferences"},
	}
	ms := []*userservice.Mutation{goods[0], bads[0].m, goods[1], bads[1].m, goods[2], bads[2].m, goods[3]}
	errs := commitAll(t, w, ms...)
	for i, m := range ms {
		var want *struct {
			m     *userservice.Mutation
			field string
		}
		for j := range bads {
			if bads[j].m == m {
				want = &bads[j]
			}
		}
		if want == nil {
			if errs[i] != nil {
				t.Errorf("good mutation %d: %v", i, errs[i])
			}
			if got := count(t, db, `SELECT count(*) FROM users WHERE id = $1`, m.UserID); got != 1 {
				t.Errorf("good user %s not written", m.UserID)
			}
			continue
		}
		var de *userservice.Error
		if !errors.As(errs[i], &de) || de.Code != userservice.ECodeValidation || len(de.Details) != 1 || de.Details[0].Field != want.field {
			t.Errorf("bad mutation %d: err = %#v, want VALIDATION_ERROR naming %s", i, errs[i], want.field)
			continue
		}
		if got := count(t, db, `SELECT version FROM users WHERE id = $1`, m.UserID); got != int(m.BaseVersion) {
			t.Errorf("bad mutation %d: version %d, want %d (nothing written)", i, got, m.BaseVersion)
		}
		if got := count(t, db, `SELECT count(*) FROM outbox WHERE user_id = $1 AND event_id = ANY($2)`, m.UserID, eventIDs(m.Events)); got != 0 {
			t.Errorf("bad mutation %d wrote %d outbox rows", i, got)
		}
	}
}
