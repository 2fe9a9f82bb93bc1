// Package jobs runs bulk jobs (issue 15): one worker per deployment (the process
// that holds the job lease, an advisory lock in PostgreSQL, as the outbox relay
// does) takes the oldest unfinished job and applies its items, each through the
// user's actor like a single request, a bounded number at a time and at a
// bounded rate, so that a large job never starves interactive traffic.
//
// An item's result is committed in the same transaction as the change it made
// (Meta.JobItem, fenced in the writer), so a job that a crash interrupted resumes
// with the items that have no result, and no item is applied twice. An item
// that changed nothing (a failure, an import of an authId that exists) is
// recorded afterwards; applying it again changes nothing either.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	json "github.com/goccy/go-json"
	"golang.org/x/time/rate"

	"github.com/lms-platform/userservice"
)

// Metrics of the job worker.
var (
	itemsApplied = metrics.NewCounter(`user_service_job_items_total{result="success"}`)
	itemsFailed  = metrics.NewCounter(`user_service_job_items_total{result="failure"}`)
	jobsFinished = metrics.NewCounter("user_service_jobs_finished_total")
)

// Defaults of Config.
const (
	DefaultConcurrency    = 2
	DefaultItemsPerSecond = 50
	DefaultPageSize       = 256
	DefaultPollInterval   = time.Second
	DefaultItemTimeout    = 10 * time.Second
	maxAttempts           = 5 // of an item whose outcome is a 5xx, before it is recorded as failed
)

// Config holds the worker's knobs. Zero values take the defaults.
type Config struct {
	// Concurrency is how many items are applied at once (JOB_CONCURRENCY).
	Concurrency int
	// ItemsPerSecond bounds the pace (JOB_ITEMS_PER_SECOND); negative: no bound.
	ItemsPerSecond float64
	// PageSize is how many pending items are read at once (at most a second's
	// worth); the worker saves its progress and looks for a cancellation after
	// each page.
	PageSize int
	// PollInterval is how often an idle worker (or a standby) looks for work.
	PollInterval time.Duration
	// ItemTimeout bounds one item (REQUEST_TIMEOUT).
	ItemTimeout time.Duration
	// NoAudit keeps no audit records (AUDIT_ENABLED=false).
	NoAudit bool
	// StatusOf maps an error to the HTTP status a single request would have
	// answered (the HTTP edge's mapping). Required.
	StatusOf func(error) int
}

// Runner is the job worker. Run must not be called twice at once; Notify is
// safe for concurrent use.
type Runner struct {
	store userservice.JobWorkerStore
	users userservice.Users
	dir   userservice.Directory
	cfg   Config
	log   *slog.Logger
	wake  chan struct{}
	limit *rate.Limiter
}

// NewRunner returns a worker applying items through users.
func NewRunner(store userservice.JobWorkerStore, users userservice.Users, dir userservice.Directory, cfg Config, logger *slog.Logger) (*Runner, error) {
	switch {
	case store == nil:
		return nil, errors.New("cannot create job runner: nil store")
	case users == nil:
		return nil, errors.New("cannot create job runner: nil users")
	case dir == nil:
		return nil, errors.New("cannot create job runner: nil directory")
	case cfg.StatusOf == nil:
		return nil, errors.New("cannot create job runner: nil StatusOf")
	case logger == nil:
		return nil, errors.New("cannot create job runner: nil logger")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.ItemsPerSecond == 0 {
		cfg.ItemsPerSecond = DefaultItemsPerSecond
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = DefaultPageSize
	}
	// A page takes about a second at most, so that a cancellation (noticed
	// between pages) stops the job within about a second.
	if cfg.ItemsPerSecond > 0 && float64(cfg.PageSize) > cfg.ItemsPerSecond {
		cfg.PageSize = max(int(cfg.ItemsPerSecond), cfg.Concurrency)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.ItemTimeout <= 0 {
		cfg.ItemTimeout = DefaultItemTimeout
	}
	lim := rate.NewLimiter(rate.Inf, cfg.Concurrency)
	if cfg.ItemsPerSecond > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.ItemsPerSecond), cfg.Concurrency)
	}
	return &Runner{store: store, users: users, dir: dir, cfg: cfg, log: logger.With("component", "job-worker"),
		wake: make(chan struct{}, 1), limit: lim}, nil
}

// Notify wakes an idle worker at once (a job was created on this node).
func (r *Runner) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run works until ctx ends, then returns nil: it takes the lease when no other
// process holds it and runs jobs, oldest first. Failures are logged and retried
// with back-off.
func (r *Runner) Run(ctx context.Context) error {
	wait := r.cfg.PollInterval
	for ctx.Err() == nil {
		lease, err := r.store.Lead(ctx)
		if err != nil {
			r.log.Warn("cannot take the job lease, retrying", "error", err, "retry_in", wait)
			sleep(ctx, wait, nil)
			wait = min(wait*2, 30*time.Second)
			continue
		}
		if lease == nil {
			sleep(ctx, r.cfg.PollInterval, nil)
			continue
		}
		r.log.Info("job worker is the leader")
		err = r.lead(ctx, lease)
		lease.Close()
		if err != nil && ctx.Err() == nil {
			r.log.Warn("job worker lost its lease or failed, retrying", "error", err, "retry_in", wait)
			sleep(ctx, wait, nil)
			wait = min(wait*2, 30*time.Second)
			continue
		}
		wait = r.cfg.PollInterval
	}
	return nil
}

// lead runs jobs while the lease holds.
func (r *Runner) lead(ctx context.Context, lease userservice.JobLease) error {
	for ctx.Err() == nil {
		job, err := lease.NextJob(ctx)
		if err != nil {
			return err
		}
		if job == nil {
			sleep(ctx, r.cfg.PollInterval, r.wake)
			continue
		}
		if err := r.runJob(ctx, lease, job); err != nil {
			return fmt.Errorf("cannot run job %s: %w", job.ID, err)
		}
	}
	return nil
}

// runJob applies the job's pending items, page by page, and finishes it.
func (r *Runner) runJob(ctx context.Context, lease userservice.JobLease, job *userservice.JobRun) error {
	counts, ok, err := lease.StartJob(ctx, job.ID)
	if err != nil || !ok {
		return err
	}
	if reason := r.unrunnable(job); reason != "" { // a row written by a newer version, say
		jobsFinished.Inc()
		return lease.FinishJob(ctx, job.ID, reason)
	}
	r.log.Info("running job", "jobId", job.ID, "type", job.Type, "total", counts.Total, "processed", counts.Processed)
	var after int64
	for {
		items, err := lease.PendingItems(ctx, job.ID, after, r.cfg.PageSize)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			if err := lease.FinishJob(ctx, job.ID, ""); err != nil {
				return err
			}
			jobsFinished.Inc()
			r.log.Info("job done", "jobId", job.ID)
			return nil
		}
		results := make([]itemResult, len(items))
		var wg sync.WaitGroup
		sem := make(chan struct{}, r.cfg.Concurrency)
		for i := range items {
			if err := r.limit.Wait(ctx); err != nil {
				break // ctx ended: the items not started stay pending
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				results[i] = r.applyItem(ctx, job, items[i])
			}()
		}
		wg.Wait()
		for _, res := range results {
			if !res.recorded {
				continue
			}
			counts.Processed++
			if res.status < 400 {
				counts.Succeeded++
				itemsApplied.Inc()
			} else {
				counts.Failed++
				itemsFailed.Inc()
			}
		}
		if err := ctx.Err(); err != nil {
			return nil // shutting down: the job resumes on the next leader
		}
		for _, res := range results {
			if res.err != nil {
				return res.err // PostgreSQL is down: the lease is likely gone too
			}
		}
		state, err := lease.SaveProgress(ctx, job.ID, counts)
		if err != nil {
			return err
		}
		if state != userservice.JobRunning {
			r.log.Info("job stopped", "jobId", job.ID, "state", state)
			return nil
		}
		after = items[len(items)-1].Item
	}
}

// unrunnable says why a job cannot run, "" when it can.
func (r *Runner) unrunnable(job *userservice.JobRun) string {
	switch job.Type {
	case userservice.JobImport, userservice.JobDelete:
	case userservice.JobStatus:
		if job.Params.Status == nil || !job.Params.Status.Valid() {
			return "status job without a valid status"
		}
	case userservice.JobEnroll, userservice.JobUnenroll:
		if _, ok := userservice.ParseID(job.Params.CourseID); !ok {
			return "enrollment job without a valid course id"
		}
	default:
		return fmt.Sprintf("unknown job type %q", job.Type)
	}
	return ""
}

// itemResult is what became of one item: recorded says its result is stored
// by this worker (with the change, or after it); err is a failure to record.
type itemResult struct {
	status   int
	recorded bool
	err      error
}

// applyItem applies one item and records its result.
func (r *Runner) applyItem(ctx context.Context, job *userservice.JobRun, it userservice.JobItem) itemResult {
	var (
		status int
		userID string
		msg    string
	)
	for attempt := 1; ; attempt++ {
		var done bool
		status, userID, msg, done = r.tryItem(ctx, job, it)
		if done {
			return itemResult{status: status, recorded: true}
		}
		if status == 0 { // another worker recorded it
			return itemResult{}
		}
		if status < 500 || attempt >= maxAttempts || ctx.Err() != nil {
			break
		}
		r.log.Warn("job item failed, retrying", "jobId", job.ID, "item", it.Item, "status", status, "error", msg)
		if !sleep(ctx, time.Duration(attempt)*200*time.Millisecond, nil) {
			break
		}
	}
	if ctx.Err() != nil && status >= 500 {
		return itemResult{} // shutting down: left pending, the next run applies it
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ItemTimeout)
	defer cancel()
	ok, err := r.store.RecordItem(rctx, job.ID, it.Item, status, userID, msg)
	if err != nil {
		return itemResult{err: err}
	}
	return itemResult{status: status, recorded: ok}
}

// tryItem applies the item once. done says its result was committed with the
// change; otherwise status (0: recorded by another worker) and msg are the
// result to record.
func (r *Runner) tryItem(ctx context.Context, job *userservice.JobRun, it userservice.JobItem) (status int, userID, msg string, done bool) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ItemTimeout)
	defer cancel()
	meta := userservice.Meta{
		ActorID: job.CreatedBy, CorrelationID: job.CorrelationID, RequestID: "job:" + job.ID,
		Now: userservice.Now(), NoAudit: r.cfg.NoAudit,
		JobItem: &userservice.JobItemRef{JobID: job.ID, Item: it.Item},
	}
	userID = it.UserID
	var cmd userservice.Command
	switch job.Type {
	case userservice.JobImport:
		var in userservice.CreateUser
		if err := json.Unmarshal(it.Payload, &in); err != nil {
			return 400, "", "Invalid row: " + err.Error(), false
		}
		if err := in.Validate(); err != nil {
			return r.cfg.StatusOf(err), "", errorText(err), false
		}
		// An authId that exists is imported already: the item changes nothing.
		if id, err := r.dir.UserIDByAuthID(ctx, in.AuthID); err == nil {
			return 200, id, "", false
		} else if !errors.Is(err, userservice.ErrUserNotFound) {
			return r.cfg.StatusOf(err), "", errorText(err), false
		}
		userID = userservice.NewID()
		cmd = userservice.Register{ID: userID, Input: in}
	case userservice.JobStatus:
		cmd = userservice.ChangeStatus{Status: *job.Params.Status}
	case userservice.JobDelete:
		cmd = userservice.SoftDelete{}
	case userservice.JobEnroll:
		cmd = userservice.Enroll{CourseID: job.Params.CourseID}
	case userservice.JobUnenroll:
		cmd = userservice.Unenroll{CourseID: job.Params.CourseID}
	}
	out, err := r.users.Execute(ctx, userID, cmd, meta)
	switch {
	case err == nil && out.Mutation != nil && out.Mutation.JobItem != nil:
		return out.Mutation.JobItem.Status, userID, "", true
	case err == nil && out.Created:
		return 201, userID, "", false
	case err == nil:
		return 200, userID, "", false // nothing to change (a status it has, say)
	case errors.Is(err, userservice.ErrJobItemDone):
		return 0, "", "", false
	}
	if job.Type == userservice.JobImport && userservice.ErrorCode(err) == userservice.ECodeConflict {
		// The same authId twice in one upload, applied at once: the other one won.
		var in userservice.CreateUser
		if json.Unmarshal(it.Payload, &in) == nil && in.Validate() == nil {
			if id, lerr := r.dir.UserIDByAuthID(ctx, in.AuthID); lerr == nil {
				return 200, id, "", false
			}
		}
		userID = ""
	}
	if job.Type == userservice.JobImport {
		userID = ""
	}
	return r.cfg.StatusOf(err), userID, errorText(err), false
}

// errorText is the message a single request would have answered, with the
// fields of a validation error.
func errorText(err error) string {
	var e *userservice.Error
	if !errors.As(err, &e) {
		return "Internal server error"
	}
	msg := e.Message
	for i, d := range e.Details {
		if i == 0 {
			msg += ": "
		} else {
			msg += "; "
		}
		msg += d.Field + " " + d.Message
	}
	return msg
}

// sleep waits d, or until ctx ends (false) or wake fires.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}
