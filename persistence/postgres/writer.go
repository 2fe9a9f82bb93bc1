package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lms-platform/userservice"
)

// Write metrics. The queue length is shared by every Writer of the process.
var (
	writeBatchSize      = metrics.NewPrometheusHistogramExt("user_service_write_batch_size", metrics.ExponentialBuckets(1, 2, 11))
	writeCommitDuration = metrics.NewPrometheusHistogram("user_service_write_commit_duration_seconds")
	writeQueueLength    = metrics.NewGauge("user_service_write_queue_length", nil)
	writeFallbacks      = metrics.NewCounter("user_service_write_fallbacks_total")
	writeOverlaps       = metrics.NewCounter("user_service_write_overlaps_total")
	writeSetBatches     = metrics.NewCounter("user_service_write_set_batches_total")
	writeSetRetries     = metrics.NewCounter("user_service_write_set_retries_total")
	writeErrorsConflict = metrics.NewCounter(`user_service_write_errors_total{kind="conflict"}`)
	writeErrorsStale    = metrics.NewCounter(`user_service_write_errors_total{kind="stale"}`)
	writeErrorsOther    = metrics.NewCounter(`user_service_write_errors_total{kind="unavailable"}`)
	touchFlushed        = metrics.NewCounter("user_service_last_active_flushed_total")
	touchDropped        = metrics.NewCounter("user_service_last_active_dropped_total")

	// The spec's "user registration and enrollment metrics", counted as committed.
	registrations = metrics.NewCounter("user_service_registrations_total")
	enrollments   = metrics.NewCounter("user_service_enrollments_total")
	completions   = metrics.NewCounter("user_service_course_completions_total")
)

// WriterConfig holds the knobs of the group commit.
type WriterConfig struct {
	// BatchMax is the most mutations committed in one transaction (WRITE_BATCH_MAX).
	BatchMax int
	// BatchWait is how long a batch that a free committer could take at once
	// waits for company after its first mutation arrived (WRITE_BATCH_WAIT). Zero:
	// it leaves at once; batches still form while every committer is busy.
	BatchWait time.Duration
	// Committers is the most transactions in flight at once; beside a large one
	// another starts only as OverlapAfter says.
	Committers int
	// OverlapAfter is how long a large commit (overlapMinBatch mutations or more)
	// runs alone before a free committer may start another beside it. A commit
	// that runs that long is stuck (waiting for a row lock, a slow disk); sooner,
	// a second commit would only split the batch the first's end would have taken
	// whole, and each commit costs PostgreSQL a fixed share of CPU. Beside a small
	// commit a free committer starts at once: there, latency matters more.
	OverlapAfter time.Duration
	// CommitTimeout bounds one batch transaction, from the first statement to COMMIT.
	CommitTimeout time.Duration
	// TouchInterval is how often coalesced lastActiveAt updates are flushed.
	TouchInterval time.Duration
}

// Defaults of WriterConfig.
const (
	DefaultBatchMax      = 256
	DefaultBatchWait     = 0
	DefaultCommitters    = 2
	DefaultOverlapAfter  = 10 * time.Millisecond
	DefaultCommitTimeout = 10 * time.Second
	DefaultTouchInterval = time.Second
)

// overlapMinBatch is the smallest running commit that a free committer does not
// start beside at once (see WriterConfig.OverlapAfter). The batches of a loaded
// service are larger (22-23 mutations in the closed-loop write benchmarks); at
// 1,000 requests a second of the mix they hold 2 on average, and a write that
// waited for the running commit to end added a third to the mix's p95.
const overlapMinBatch = 8

// maxExcludeRounds bounds how often a failed batch is retried without the
// mutation that failed it before every mutation is retried alone.
const maxExcludeRounds = 8

// touchChunk bounds the users of one lastActiveAt statement, and so how long a
// group commit may wait for the rows it locked: 0.1-0.25 ms a row on the
// benchmark machine while each was a non-HOT update of users (before migration
// 00100 moved the lastActiveAt order out of users' indexes; now a HOT update and
// the trigger's update of user_active_order), so a chunk holds its rows for a
// few milliseconds at most (5,000 a statement held them for 40-60 ms a second
// under the mix at 1,000 req/s, and writes to them waited).
const touchChunk = 16

// run is a batch being committed: when it started and its mutations (0: none).
type run struct {
	start time.Time
	size  int
}

// pending is one queued mutation.
type pending struct {
	m    *userservice.Mutation
	done func(error)
}

// Writer is the group-committing userservice.Committer. Mutations queue up; each
// of Committers goroutines, when free, takes what has queued (at most BatchMax
// mutations, after at most BatchWait for company) and commits it in one
// transaction. It is safe for concurrent use.
type Writer struct {
	db     *DB
	cfg    WriterConfig
	logger *slog.Logger

	mu      sync.Mutex
	queue   []pending
	firstAt time.Time // arrival of the oldest queued mutation
	running []run     // per committer: the batch it commits, if any
	closed  bool
	wake    chan struct{} // capacity 1: a free committer has something to look at

	touchMu sync.Mutex
	touches map[string]time.Time
	stop    chan struct{} // closed by Close

	startOnce, closeOnce sync.Once
	wg                   sync.WaitGroup
}

var _ userservice.Committer = (*Writer)(nil)

// NewWriter returns a Writer committing to db. Mutations queue until Start; Close
// flushes them on shutdown.
func NewWriter(db *DB, cfg WriterConfig, logger *slog.Logger) (*Writer, error) {
	if db == nil {
		return nil, errors.New("cannot create writer: nil DB")
	}
	if logger == nil {
		return nil, errors.New("cannot create writer: nil logger")
	}
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = DefaultBatchMax
	}
	if cfg.BatchWait < 0 {
		return nil, fmt.Errorf("cannot create writer: negative BatchWait %v", cfg.BatchWait)
	}
	if cfg.Committers <= 0 {
		cfg.Committers = DefaultCommitters
	}
	if cfg.OverlapAfter <= 0 {
		cfg.OverlapAfter = DefaultOverlapAfter
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = DefaultCommitTimeout
	}
	if cfg.TouchInterval <= 0 {
		cfg.TouchInterval = DefaultTouchInterval
	}
	return &Writer{
		db: db, cfg: cfg, logger: logger,
		wake:    make(chan struct{}, 1),
		running: make([]run, cfg.Committers),
		touches: map[string]time.Time{},
		stop:    make(chan struct{}),
	}, nil
}

// Start starts the committers and the lastActiveAt flusher. Calling it again does
// nothing.
func (w *Writer) Start() {
	w.startOnce.Do(func() {
		w.wg.Add(1 + w.cfg.Committers)
		for i := range w.cfg.Committers {
			go w.commitLoop(i)
		}
		go w.touchLoop()
	})
}

// Close stops accepting mutations, commits everything queued, flushes the
// lastActiveAt updates and stops. It returns early with an error when ctx ends
// first; the queued mutations are still committed in the background.
func (w *Writer) Close(ctx context.Context) error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		w.signal()
		close(w.stop)
	})
	w.Start() // so that a writer closed before it started still flushes its queue
	finished := make(chan struct{})
	go func() { w.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cannot flush the write queue: %w", ctx.Err())
	}
}

// Commit queues m for the next group commit. It never blocks on I/O. done is called
// exactly once, from another goroutine, after COMMIT returned: with nil when m is
// committed, a 4xx-coded *userservice.Error or userservice.ErrStaleVersion when
// nothing of m was written because of m itself, or an ECodeUnavailable error when
// the outcome is unknown.
func (w *Writer) Commit(m *userservice.Mutation, done func(error)) {
	if done == nil {
		panic("postgres: Commit with a nil done")
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		go done(unavailable("cannot commit", errors.New("the writer is closed")))
		return
	}
	if len(w.queue) == 0 {
		w.firstAt = time.Now()
	}
	w.queue = append(w.queue, pending{m: m, done: done})
	n := len(w.queue)
	writeQueueLength.Inc()
	w.mu.Unlock()
	if n == 1 || n >= w.cfg.BatchMax {
		w.signal()
	}
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// nextBatch waits for mutations and takes the next batch: at most BatchMax of
// them, once BatchWait has passed since the oldest arrived (at once when it is
// zero). A committer calls it only when it is free, so a batch is cut when it can
// be committed: under load, what arrived during the previous commit. While a
// large commit runs (overlapMinBatch mutations or more), a batch is cut only once
// that commit has run OverlapAfter (or BatchMax mutations wait); until then the
// committer that ends it takes what arrived meanwhile. Once the writer is closed
// it takes what is queued without waiting, and reports false when nothing is
// left. committer is the caller's index; it reports the batch's end with
// doneBatch.
func (w *Writer) nextBatch(committer int, timer *time.Timer) ([]pending, bool) {
	for {
		w.mu.Lock()
		n, closed := len(w.queue), w.closed
		if n == 0 {
			w.mu.Unlock()
			if closed {
				return nil, false // the other committers see w.stop closed too
			}
			select {
			case <-w.wake:
			case <-w.stop:
			}
			continue
		}
		wait := w.cfg.BatchWait - time.Since(w.firstAt)
		overlap := false // beside a large running commit
		for _, r := range w.running {
			if r.size >= overlapMinBatch {
				overlap = true
				wait = max(wait, w.cfg.OverlapAfter-time.Since(r.start))
			}
		}
		if n < w.cfg.BatchMax && !closed && wait > 0 {
			w.mu.Unlock()
			timer.Reset(wait)
			select {
			case <-w.wake:
				timer.Stop()
			case <-w.stop:
				timer.Stop()
			case <-timer.C:
			}
			continue
		}
		if overlap {
			writeOverlaps.Inc()
		}
		take := min(n, w.cfg.BatchMax)
		w.running[committer] = run{start: time.Now(), size: take}
		batch := make([]pending, take)
		copy(batch, w.queue)
		rest := copy(w.queue, w.queue[take:])
		clear(w.queue[rest:])
		w.queue = w.queue[:rest]
		if rest > 0 {
			w.signal() // for another free committer; the rest has waited already
		}
		writeQueueLength.Add(float64(-take))
		w.mu.Unlock()
		return batch, true
	}
}

func (w *Writer) commitLoop(committer int) {
	defer w.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch, ok := w.nextBatch(committer, timer)
		if !ok {
			return
		}
		w.commitBatch(batch)
		w.doneBatch(committer)
	}
}

// doneBatch records that the committer's batch has been committed, and wakes a
// committer that waits for it to end.
func (w *Writer) doneBatch(committer int) {
	w.mu.Lock()
	w.running[committer] = run{}
	n := len(w.queue)
	w.mu.Unlock()
	if n > 0 {
		w.signal()
	}
}

// commitBatch commits batch in one transaction. When that fails because of one
// mutation (a constraint, a fence), the rest is retried as a batch and that
// mutation is then tried alone, which gives its answer; when the cause is
// unclear, each mutation is retried alone, so that one bad mutation never fails
// the others. When COMMIT itself fails without an answer from the server, the
// outcome is unknown and nothing is retried.
func (w *Writer) commitBatch(batch []pending) {
	start := time.Now()
	writeBatchSize.Update(float64(len(batch)))
	items := make([]*txItem, 0, len(batch))
	for _, p := range batch {
		it, err := prepareItem(p)
		if err != nil {
			w.finish(p, err)
			continue
		}
		items = append(items, it)
	}
	// One lock order for every transaction that updates users rows (see flushTouches).
	slices.SortStableFunc(items, func(a, b *txItem) int { return cmp.Compare(a.p.m.UserID, b.p.m.UserID) })
	defer func() { writeCommitDuration.UpdateDuration(start) }()

	failAll := func(err error) {
		for _, it := range items {
			w.finish(it.p, unavailable("cannot commit", err))
		}
	}
	// A culprit's conflict may be with a sibling of the same transaction (two
	// requests with one Idempotency-Key, or one email, in one batch), and that
	// sibling is not committed yet when the rest is retried. Its answer is decided
	// alone, once the rest is settled, so that a "taken" error names a committed
	// row: the HTTP edge replays the Idempotency-Key's stored answer at once.
	var excluded []*txItem
	defer func() { w.commitEach(excluded) }()
	retried := false
	useSet := setWorthwhile(items)
	for round := 0; ; round++ {
		if len(items) == 0 {
			return
		}
		res := w.runTx(items, useSet)
		switch {
		case res.err == nil:
			if useSet {
				writeSetBatches.Inc()
			}
			for _, it := range items {
				w.finish(it.p, nil)
			}
			return
		case res.setFailed && serverError(res.err):
			// PostgreSQL refused a set statement, which cannot say for which
			// mutation: the same batch again, one statement per row, finds the
			// culprit. (Without an answer, the cases below apply as before.)
			writeSetRetries.Inc()
			useSet = false
			continue
		case res.unknown:
			w.logger.Error("group commit outcome unknown", "mutations", len(items), "err", res.err)
			failAll(res.err)
			return
		case res.culprit >= 0 && attributable(res.culpritErr) && round < maxExcludeRounds:
			excluded = append(excluded, items[res.culprit])
			items = slices.Delete(items, res.culprit, res.culprit+1)
			continue
		case !res.answered():
			// No answer from PostgreSQL: try once more, on another connection, then
			// give up on the whole batch rather than wait out a timeout per mutation.
			if !retried {
				retried = true
				continue
			}
			w.logger.Error("group commit failed: PostgreSQL unreachable", "mutations", len(items), "err", res.err)
			failAll(res.err)
			return
		}
		w.logger.Warn("group commit failed; retrying each mutation alone", "mutations", len(items), "err", res.err)
		break
	}
	writeFallbacks.Inc()
	w.commitEach(items)
}

// commitEach commits each item in a transaction of its own and reports its
// outcome; once PostgreSQL stops answering, the rest fail unavailable.
func (w *Writer) commitEach(items []*txItem) {
	for i, it := range items {
		res := w.runTx(items[i:i+1], false)
		if res.err == nil {
			w.finish(it.p, nil)
			continue
		}
		err := res.err
		if res.culprit >= 0 {
			err = res.culpritErr
		}
		if !res.unknown && (attributable(err) || serverError(err)) {
			w.finish(it.p, mapError(err)) // PostgreSQL answered: this mutation's own failure
			continue
		}
		// No answer from PostgreSQL: it is unreachable (or the outcome unknown), and
		// the rest would only wait for their timeouts too.
		for _, rest := range items[i:] {
			w.finish(rest.p, unavailable("cannot commit", res.err))
		}
		return
	}
}

// finish reports the mutation's outcome.
func (w *Writer) finish(p pending, err error) {
	if err == nil {
		countCommitted(p.m)
	}
	if err != nil {
		switch {
		case errors.Is(err, userservice.ErrStaleVersion):
			writeErrorsStale.Inc()
		case userservice.ErrorCode(err) == userservice.ECodeUnavailable || userservice.ErrorCode(err) == userservice.ECodeInternal:
			writeErrorsOther.Inc()
		default:
			writeErrorsConflict.Inc()
		}
	}
	p.done(err)
}

// countCommitted counts a committed mutation's registration (a created user),
// enrollments (new or reactivated) and course completions.
func countCommitted(m *userservice.Mutation) {
	if m.Create {
		registrations.Inc()
	}
	for i := range m.Events {
		switch m.Events[i].Type {
		case userservice.EventEnrolled:
			enrollments.Inc()
		case userservice.EventCourseCompleted:
			completions.Inc()
		}
	}
}

// setWorthwhile reports whether a batch's eligible mutations go into set
// statements: when there are at least two of them, and no user appears twice
// (one UPDATE cannot update a row twice; an actor has one mutation in flight, so
// this is the exception). items are sorted by user.
func setWorthwhile(items []*txItem) bool {
	n := 0
	for i, it := range items {
		if i > 0 && items[i-1].p.m.UserID == it.p.m.UserID {
			return false
		}
		if setEligible(it.p.m) {
			n++
		}
	}
	return n >= 2
}

// txResult is the outcome of one transaction attempt.
type txResult struct {
	err        error
	culprit    int   // index of the mutation whose statement failed, or -1
	culpritErr error // that statement's error
	setFailed  bool  // a set statement failed first (no culprit known)
	unknown    bool  // COMMIT failed without an answer: the outcome is unknown
}

// answered reports whether PostgreSQL answered the failed attempt (so the
// transaction is rolled back and the failure has a cause to act on).
func (r txResult) answered() bool {
	return serverError(r.err) || r.culprit >= 0 && attributable(r.culpritErr)
}

// runTx commits items in one transaction, in one round trip: BEGIN, every
// statement and COMMIT are pipelined. A failing statement makes PostgreSQL skip
// the rest up to the COMMIT (which is why the checked statements are fenced in
// PostgreSQL, see fenceHead); the transaction it leaves open is rolled back.
// Sending the COMMIT in a second round trip was 4-7% slower in
// BenchmarkWriterBatch/actors=16 (5 of 6 runs; within the noise with more actors).
func (w *Writer) runTx(items []*txItem, useSet bool) txResult {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.CommitTimeout)
	defer cancel()
	res := txResult{culprit: -1}
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	var set *batchSet
	if useSet {
		set = newBatchSet(items)
		set.room = paramRooms.Get().(*[]byte)
		// After SendBatch has returned, pgx no longer reads the room (paramRoom).
		defer putParamRoom(set.room)
	}
	for i, it := range items {
		it.queue(b, func(err error) {
			if res.culprit < 0 && !res.setFailed {
				res.culprit, res.culpritErr = i, err
			}
		}, set)
	}
	if set != nil {
		set.queue(b, func(error) {
			if res.culprit < 0 {
				res.setFailed = true
			}
		})
	}
	b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
		if ct.String() != "COMMIT" { // a transaction already aborted answers ROLLBACK
			return pgx.ErrTxCommitRollback
		}
		return nil
	})
	// As pool.SendBatch, with the connection's write buffer grown first
	// (reserveWrite).
	var br pgx.BatchResults
	c, err := w.db.pool.Acquire(ctx)
	if err != nil {
		br = pgx.FailedBatchResults(b, err)
	} else {
		reserveWrite(c.Conn().PgConn(), wireSize(b))
		br = c.SendBatch(ctx, b)
	}
	tx := br.Tx()
	err = br.Close()
	// Rolls back what a failed statement left open; after the COMMIT the
	// transaction is closed and this does nothing. Then the connection goes back
	// to the pool (which closes it if it is still in a transaction).
	_ = tx.Rollback(ctx)
	if c != nil {
		c.Release()
	}
	if err != nil {
		res.err = err
		// Rolled back when PostgreSQL answered with an error (a statement's, which
		// skips the COMMIT, or the COMMIT's own); nothing done when nothing was
		// sent. Otherwise, a connection lost midway, the COMMIT may have run.
		answered := serverError(err) || errors.Is(err, pgx.ErrTxCommitRollback) ||
			res.culprit >= 0 && (serverError(res.culpritErr) || attributable(res.culpritErr))
		res.unknown = !answered && !pgconn.SafeToRetry(err)
	}
	return res
}

// paramRooms holds the parameter buffers of group commits between batches, one
// per batch in flight (Config.Committers of them at most, in steady state).
var paramRooms = sync.Pool{New: func() any { return new([]byte) }}

// maxKeptParams bounds a parameter buffer kept for the next batch: a batch of
// typical mutations takes tens of KiB.
const maxKeptParams = 1 << 20

func putParamRoom(room *[]byte) {
	if cap(*room) > maxKeptParams {
		*room = nil // a batch of unusually large mutations: not worth keeping
	}
	paramRooms.Put(room)
}

// TouchLastActive records that the user was active at at. It never blocks: the
// latest time per user is kept and flushed every TouchInterval in one statement,
// without changing the version. Updates are dropped, with a log line, when
// PostgreSQL is down: lastActiveAt is best-effort by contract.
func (w *Writer) TouchLastActive(userID string, at userservice.Time) {
	w.touchMu.Lock()
	if cur, ok := w.touches[userID]; !ok || at.After(cur) {
		w.touches[userID] = at.Time
	}
	w.touchMu.Unlock()
}

func (w *Writer) touchLoop() {
	defer w.wg.Done()
	t := time.NewTicker(w.cfg.TouchInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.flushTouches()
		case <-w.stop:
			w.flushTouches()
			return
		}
	}
}

// flushTouchesSQL raises last_active_at of many users and returns the users it
// had to leave for later: those whose row a group commit holds right now (SKIP
// LOCKED) and that still show an older time. It never waits for a row lock, so
// it never holds rows it locked while waiting for another: writes to these users
// wait at most for this statement's own short run. The rows are locked in id
// order, the order in which group commits update them too. Ids go as text[], as
// in the set statements (setUpdateUsersSQL).
const flushTouchesSQL = `WITH t AS (
	SELECT id::uuid AS id, at FROM unnest($1::text[], $2::timestamptz[]) AS t(id, at)
), locked AS (
	SELECT u.id FROM users u JOIN t ON t.id = u.id
	WHERE u.last_active_at IS NULL OR u.last_active_at < t.at
	ORDER BY u.id FOR UPDATE OF u SKIP LOCKED
), raised AS (
	UPDATE users u SET last_active_at = GREATEST(u.last_active_at, t.at)
	FROM t WHERE u.id = t.id AND u.id IN (SELECT id FROM locked)
	RETURNING u.id
)
SELECT t.id::text, t.at FROM t JOIN users u ON u.id = t.id
WHERE (u.last_active_at IS NULL OR u.last_active_at < t.at) AND t.id NOT IN (SELECT id FROM raised)`

func (w *Writer) flushTouches() {
	w.touchMu.Lock()
	touches := w.touches
	if len(touches) == 0 {
		w.touchMu.Unlock()
		return
	}
	w.touches = make(map[string]time.Time, len(touches))
	w.touchMu.Unlock()

	ids := make([]string, 0, len(touches))
	ats := make([]time.Time, 0, len(touches))
	for id, at := range touches {
		if _, ok := userservice.ParseID(id); !ok {
			continue
		}
		ids = append(ids, id)
		ats = append(ats, at)
	}
	for lo := 0; lo < len(ids); lo += touchChunk {
		hi := min(lo+touchChunk, len(ids))
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.CommitTimeout)
		later, err := w.flushTouchChunk(ctx, ids[lo:hi], ats[lo:hi])
		cancel()
		if err != nil {
			touchDropped.Add(hi - lo)
			w.logger.Warn("dropped lastActiveAt updates", "users", hi-lo, "err", err)
			continue
		}
		touchFlushed.Add(hi - lo - len(later))
		for id, at := range later {
			w.TouchLastActive(id, userservice.NewTime(at))
		}
	}
}

// flushTouchChunk runs flushTouchesSQL and returns the users left for the next
// flush.
func (w *Writer) flushTouchChunk(ctx context.Context, ids []string, ats []time.Time) (map[string]time.Time, error) {
	rows, err := w.db.pool.Query(ctx, flushTouchesSQL, ids, ats)
	if err != nil {
		return nil, err
	}
	later := map[string]time.Time{}
	var id string
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error {
		later[id] = at
		return nil
	})
	return later, err
}
