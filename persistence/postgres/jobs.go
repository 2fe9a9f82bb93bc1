package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	json "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lms-platform/userservice"
)

// JobStore keeps bulk jobs and their items (issue 15): the API's side
// (userservice.JobStore) and the worker's (Lead, RecordItem). It is safe for
// concurrent use.
type JobStore struct{ db *DB }

var (
	_ userservice.JobStore       = (*JobStore)(nil)
	_ userservice.JobWorkerStore = (*JobStore)(nil)
	_ userservice.JobLease       = (*JobLease)(nil)
)

// NewJobStore returns a JobStore on db.
func NewJobStore(db *DB) (*JobStore, error) {
	if db == nil {
		return nil, errors.New("cannot create job store: nil DB")
	}
	return &JobStore{db: db}, nil
}

// jobLockClass is the first key of the job worker's advisory lock, the second
// hashtext(current_schema()), as for the outbox relay's.
const jobLockClass = 0x55534a42 // "USJB"

const jobColumns = `id, type, state, params, created_by, total, processed, succeeded, failed, error,
	created_at, started_at, finished_at, updated_at`

func scanJob(row pgx.Row) (*userservice.Job, error) {
	var (
		j                       userservice.Job
		params                  []byte
		createdBy, errText      *string
		created, updated        time.Time
		started, finished       *time.Time
		typ, state              string
		total, proc, succ, fail int
	)
	if err := row.Scan(&j.ID, &typ, &state, &params, &createdBy, &total, &proc, &succ, &fail, &errText,
		&created, &started, &finished, &updated); err != nil {
		return nil, err
	}
	j.Type, j.State = userservice.JobType(typ), userservice.JobState(state)
	if err := json.Unmarshal(params, &j.Params); err != nil {
		return nil, fmt.Errorf("cannot decode the parameters of job %s: %w", j.ID, err)
	}
	j.CreatedBy, j.Error = createdBy, errText
	j.Counts = userservice.JobCounts{Total: total, Processed: proc, Succeeded: succ, Failed: fail}
	j.CreatedAt, j.UpdatedAt = userservice.NewTime(created), userservice.NewTime(updated)
	if started != nil {
		j.StartedAt = userservice.TimePtr(*started)
	}
	if finished != nil {
		j.FinishedAt = userservice.TimePtr(*finished)
	}
	j.SetProgress()
	return &j, nil
}

// itemCopier adapts a JobItemSource to pgx's CopyFromSource, numbering the
// items and stopping at the limit.
type itemCopier struct {
	jobID    string
	src      userservice.JobItemSource
	max      int
	n        int64
	failed   int
	row      []any
	err      error
	tooMany  bool
	finished bool
}

func (c *itemCopier) Next() bool {
	if c.finished {
		return false
	}
	in, err := c.src.Next()
	if errors.Is(err, io.EOF) {
		c.finished = true
		return false
	}
	if err != nil {
		c.err, c.finished = err, true
		return false
	}
	if c.n >= int64(c.max) {
		c.tooMany, c.finished = true, true
		c.err = userservice.Errorf(userservice.ECodePayloadTooLarge, "A job has at most %d items", c.max)
		return false
	}
	c.n++
	var userID, errText *string
	var status *int16
	if in.UserID != "" {
		userID = &in.UserID
	}
	if in.Status != 0 {
		s := int16(in.Status)
		status = &s
		c.failed++
	}
	if in.Error != "" {
		errText = &in.Error
	}
	var doneAt *time.Time
	if status != nil {
		now := time.Now()
		doneAt = &now
	}
	c.row = []any{c.jobID, c.n, userID, in.Payload, status, errText, doneAt}
	return true
}

func (c *itemCopier) Values() ([]any, error) { return c.row, nil }
func (c *itemCopier) Err() error             { return c.err }

// CreateJob stores the job and its items in one transaction (see
// userservice.JobStore). The items go in with COPY as src yields them, so an
// upload is streamed into PostgreSQL and never held whole in memory.
func (s *JobStore) CreateJob(ctx context.Context, nj userservice.NewJob, src userservice.JobItemSource, maxItems int) (*userservice.Job, error) {
	params, err := json.Marshal(nj.Params)
	if err != nil {
		return nil, userservice.Wrap(userservice.ECodeInternal, "cannot encode job parameters", err)
	}
	tx, err := s.db.pool.Begin(ctx)
	if err != nil {
		return nil, unavailable("cannot begin a job", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit a no-op
	now := time.Now()
	if _, err := tx.Exec(ctx, `INSERT INTO jobs (id, type, state, params, created_by, correlation_id, created_at, updated_at)
		VALUES ($1, $2, 'queued', $3, $4, $5, $6, $6)`, nj.ID, string(nj.Type), params, nj.CreatedBy, nj.CorrelationID, now); err != nil {
		return nil, unavailable("cannot store a job", err)
	}
	var total, failed int
	if src == nil { // unenroll by course: every user enrolled in it now
		if nj.Type != userservice.JobUnenroll {
			return nil, userservice.Errorf(userservice.ECodeInternal, "job %s of type %s has no items", nj.ID, nj.Type)
		}
		ct, err := tx.Exec(ctx, `INSERT INTO job_items (job_id, item, user_id)
			SELECT $1, row_number() OVER (ORDER BY id), user_id FROM enrollments WHERE course_id = $2`, nj.ID, nj.Params.CourseID)
		if err != nil {
			return nil, unavailable("cannot list a course's enrollments", err)
		}
		total = int(ct.RowsAffected())
		if total > maxItems {
			return nil, userservice.Errorf(userservice.ECodePayloadTooLarge, "A job has at most %d items; the course has %d enrollments", maxItems, total)
		}
	} else {
		c := &itemCopier{jobID: nj.ID, src: src, max: maxItems}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"job_items"},
			[]string{"job_id", "item", "user_id", "payload", "status", "error", "done_at"}, c)
		if c.err != nil { // the source's own error (a bad upload, too many items) wins
			return nil, c.err
		}
		if err != nil {
			return nil, mapError(fmt.Errorf("cannot store job items: %w", err))
		}
		total, failed = int(c.n), c.failed
	}
	row := tx.QueryRow(ctx, `UPDATE jobs SET total = $2, processed = $3, failed = $3 WHERE id = $1 RETURNING `+jobColumns,
		nj.ID, total, failed)
	j, err := scanJob(row)
	if err != nil {
		return nil, unavailable("cannot store a job", err)
	}
	if nj.Idempotency != nil {
		if rec := nj.Idempotency(j); rec != nil {
			ct, err := tx.Exec(ctx, insertIdempotencySQL, rec.CallerID, rec.Key, rec.RequestHash, rec.Status, rec.Body,
				rec.CreatedAt.Time, time.Now().Add(-IdempotencyTTL))
			if err != nil {
				return nil, mapError(err)
			}
			if ct.RowsAffected() != 1 {
				return nil, userservice.ErrIdempotencyKeyTaken
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, unavailable("cannot commit a job", err)
	}
	return j, nil
}

// Job returns the job, or ErrJobNotFound.
func (s *JobStore) Job(ctx context.Context, id string) (*userservice.Job, error) {
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	j, err := scanJob(s.db.pool.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = $1`, id))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, userservice.ErrJobNotFound
	case err != nil:
		return nil, unavailable("cannot read a job", err)
	}
	return j, nil
}

// JobResults returns up to limit results of items after `after`, in item order.
func (s *JobStore) JobResults(ctx context.Context, id string, after int64, limit int) ([]userservice.JobItemResult, error) {
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	rows, err := s.db.pool.Query(ctx, `SELECT item, user_id, status, error FROM job_items
		WHERE job_id = $1 AND item > $2 AND status IS NOT NULL ORDER BY item LIMIT $3`, id, after, limit)
	if err != nil {
		return nil, unavailable("cannot read job results", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (userservice.JobItemResult, error) {
		var r userservice.JobItemResult
		var status int16
		err := row.Scan(&r.Item, &r.ID, &status, &r.Error)
		r.Status = int(status)
		return r, err
	})
	if err != nil {
		return nil, unavailable("cannot read job results", err)
	}
	return out, nil
}

// CancelJob cancels a queued or running job. The worker notices at its next
// round (at most one page of items later) and stops; items without a result
// stay without one.
func (s *JobStore) CancelJob(ctx context.Context, id string) (*userservice.Job, error) {
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	j, err := scanJob(s.db.pool.QueryRow(ctx, `UPDATE jobs SET state = 'cancelled', finished_at = now(), updated_at = now()
		WHERE id = $1 AND state IN ('queued', 'running') RETURNING `+jobColumns, id))
	if errors.Is(err, pgx.ErrNoRows) {
		j, err := s.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		return j, userservice.ErrJobFinished
	}
	if err != nil {
		return nil, unavailable("cannot cancel a job", err)
	}
	return j, nil
}

// RecordItem records the result of an item that changed no user (a failure, or
// a command with nothing to change), unless the item has one already: its
// effect's own transaction may have recorded it. It reports whether it did.
func (s *JobStore) RecordItem(ctx context.Context, jobID string, item int64, status int, userID, errText string) (bool, error) {
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	var uid, et *string
	if userID != "" {
		uid = &userID
	}
	if errText != "" {
		et = &errText
	}
	ct, err := s.db.pool.Exec(ctx, `UPDATE job_items SET status = $3, user_id = coalesce($4, user_id), error = $5, payload = NULL, done_at = now()
		WHERE job_id = $1 AND item = $2 AND status IS NULL`, jobID, item, status, uid, et)
	if err != nil {
		return false, unavailable("cannot record a job item", err)
	}
	return ct.RowsAffected() == 1, nil
}

// JobLease is the job worker's leadership: a session holding the advisory lock.
// Its queries run on that session, so one that succeeds proves the lock is
// still held. Not safe for concurrent use.
type JobLease struct {
	conn *pgxpool.Conn
	db   *DB
}

// Lead takes the job worker's lock on a session of its own, or returns nil when
// another process holds it.
func (s *JobStore) Lead(ctx context.Context) (userservice.JobLease, error) {
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	c, err := s.db.pool.Acquire(ctx)
	if err != nil {
		return nil, unavailable("cannot acquire a connection", err)
	}
	var ok bool
	if err := c.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext(current_schema()))`, jobLockClass).Scan(&ok); err != nil {
		closeConn(c) // the lock may have been granted before the error
		return nil, unavailable("cannot take the job worker lock", err)
	}
	if !ok {
		c.Release()
		return nil, nil
	}
	return &JobLease{conn: c, db: s.db}, nil
}

// Close gives the leadership up by closing the session, which releases the lock
// even when PostgreSQL cannot be reached to unlock it.
func (l *JobLease) Close() {
	if l.conn != nil {
		closeConn(l.conn)
		l.conn = nil
	}
}

func closeConn(c *pgxpool.Conn) {
	conn := c.Hijack()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// NextJob returns the oldest queued or running job (a running one was
// interrupted), or nil when there is none.
func (l *JobLease) NextJob(ctx context.Context) (*userservice.JobRun, error) {
	ctx, cancel := l.db.timeout(ctx)
	defer cancel()
	var j userservice.JobRun
	var typ string
	var params []byte
	err := l.conn.QueryRow(ctx, `SELECT id, type, params, created_by, correlation_id FROM jobs
		WHERE state IN ('queued', 'running') ORDER BY created_at, id LIMIT 1`).Scan(&j.ID, &typ, &params, &j.CreatedBy, &j.CorrelationID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, unavailable("cannot read the next job", err)
	}
	j.Type = userservice.JobType(typ)
	if err := json.Unmarshal(params, &j.Params); err != nil {
		return nil, fmt.Errorf("cannot decode the parameters of job %s: %w", j.ID, err)
	}
	return &j, nil
}

// countItemsSQL counts a job's items from the items themselves.
const countItemsSQL = `SELECT count(*) AS t, count(status) AS p, count(*) FILTER (WHERE status < 400) AS s,
	count(*) FILTER (WHERE status >= 400) AS f FROM job_items WHERE job_id = $1`

// StartJob marks the job running and returns its counts, recounted from the
// items (a job that resumes after a crash counts what its last run did); ok is
// false when the job is no longer queued or running (cancelled meanwhile).
func (l *JobLease) StartJob(ctx context.Context, id string) (c userservice.JobCounts, ok bool, err error) {
	ctx, cancel := l.db.timeout(ctx)
	defer cancel()
	if err := l.conn.QueryRow(ctx, countItemsSQL, id).Scan(&c.Total, &c.Processed, &c.Succeeded, &c.Failed); err != nil {
		return c, false, unavailable("cannot count job items", err)
	}
	ct, err := l.conn.Exec(ctx, `UPDATE jobs SET state = 'running', started_at = coalesce(started_at, now()), updated_at = now(),
		total = $2, processed = $3, succeeded = $4, failed = $5 WHERE id = $1 AND state IN ('queued', 'running')`,
		id, c.Total, c.Processed, c.Succeeded, c.Failed)
	if err != nil {
		return c, false, unavailable("cannot start a job", err)
	}
	return c, ct.RowsAffected() == 1, nil
}

// PendingItems returns up to limit items of the job after `after` that have no
// result, in item order.
func (l *JobLease) PendingItems(ctx context.Context, id string, after int64, limit int) ([]userservice.JobItem, error) {
	ctx, cancel := l.db.timeout(ctx)
	defer cancel()
	rows, err := l.conn.Query(ctx, `SELECT item, coalesce(user_id::text, ''), payload FROM job_items
		WHERE job_id = $1 AND item > $2 AND status IS NULL ORDER BY item LIMIT $3`, id, after, limit)
	if err != nil {
		return nil, unavailable("cannot read job items", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (userservice.JobItem, error) {
		var it userservice.JobItem
		err := row.Scan(&it.Item, &it.UserID, &it.Payload)
		return it, err
	})
	if err != nil {
		return nil, unavailable("cannot read job items", err)
	}
	return out, nil
}

// SaveProgress stores the worker's running counts and returns the job's state,
// which tells the worker whether it was cancelled.
func (l *JobLease) SaveProgress(ctx context.Context, id string, c userservice.JobCounts) (userservice.JobState, error) {
	ctx, cancel := l.db.timeout(ctx)
	defer cancel()
	var state string
	err := l.conn.QueryRow(ctx, `UPDATE jobs SET processed = $2, succeeded = $3, failed = $4, updated_at = now()
		WHERE id = $1 RETURNING state`, id, c.Processed, c.Succeeded, c.Failed).Scan(&state)
	if err != nil {
		return "", unavailable("cannot save job progress", err)
	}
	return userservice.JobState(state), nil
}

// FinishJob marks a running job done (or failed with errText) with its counts
// recounted from the items; a job cancelled meanwhile stays cancelled.
func (l *JobLease) FinishJob(ctx context.Context, id string, errText string) error {
	ctx, cancel := l.db.timeout(ctx)
	defer cancel()
	state, et := userservice.JobDone, (*string)(nil)
	if errText != "" {
		state, et = userservice.JobFailed, &errText
	}
	_, err := l.conn.Exec(ctx, `UPDATE jobs SET state = $2, error = $3, finished_at = now(), updated_at = now(),
		total = c.t, processed = c.p, succeeded = c.s, failed = c.f
		FROM (`+countItemsSQL+`) AS c WHERE id = $1 AND state = 'running'`, id, string(state), et)
	if err != nil {
		return unavailable("cannot finish a job", err)
	}
	return nil
}
