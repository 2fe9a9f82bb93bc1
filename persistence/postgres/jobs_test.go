package postgres_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

// sliceSource yields fixed items.
type sliceSource struct {
	items []userservice.JobItemInput
	err   error // returned after the items instead of io.EOF
}

func (s *sliceSource) Next() (userservice.JobItemInput, error) {
	if len(s.items) == 0 {
		if s.err != nil {
			return userservice.JobItemInput{}, s.err
		}
		return userservice.JobItemInput{}, io.EOF
	}
	it := s.items[0]
	s.items = s.items[1:]
	return it, nil
}

func newJobStore(t *testing.T, db *postgres.DB) *postgres.JobStore {
	t.Helper()
	s, err := postgres.NewJobStore(db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func deleteJob() userservice.NewJob {
	return userservice.NewJob{ID: userservice.NewID(), Type: userservice.JobDelete}
}

// TestJobItemResultCommitsWithTheChangeOnce is per-item idempotency: a job
// item's result is written in the transaction of the change it made, and a
// second mutation for the same item (a retry after a crash, a second worker)
// fails with ErrJobItemDone and writes nothing.
func TestJobItemResultCommitsWithTheChangeOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{})
	store := newJobStore(t, db)
	s := registered(t, w, "a@example.com", "")
	nj := deleteJob()
	if _, err := store.CreateJob(context.Background(), nj, &sliceSource{items: []userservice.JobItemInput{{UserID: s.User.ID}}}, 10); err != nil {
		t.Fatal(err)
	}
	meta := metaAt(1)
	meta.JobItem = &userservice.JobItemRef{JobID: nj.ID, Item: 1}
	first := apply(t, s, userservice.ChangeStatus{Status: userservice.StatusSuspended}, meta)
	mustCommit(t, w, first.Mutation)
	var status int
	var userID string
	if err := db.Pool().QueryRow(context.Background(), `SELECT status, user_id::text FROM job_items WHERE job_id = $1 AND item = 1`, nj.ID).
		Scan(&status, &userID); err != nil || status != 200 || userID != s.User.ID {
		t.Fatalf("item result = %d %s, %v; want 200 %s", status, userID, err, s.User.ID)
	}
	// The same item applied again, on the new state (as after a reload).
	again := apply(t, first.State, userservice.ChangeStatus{Status: userservice.StatusInactive}, meta)
	if err := commitAll(t, w, again.Mutation)[0]; !errors.Is(err, userservice.ErrJobItemDone) {
		t.Fatalf("second application: %v, want ErrJobItemDone", err)
	}
	if got := count(t, db, `SELECT version FROM users WHERE id = $1`, s.User.ID); got != 2 {
		t.Errorf("version = %d, want 2: the second application wrote", got)
	}
	if got := count(t, db, `SELECT count(*) FROM outbox WHERE routing_key = 'user.status_changed'`); got != 1 {
		t.Errorf("%d status events, want 1", got)
	}
	// RecordItem does not overwrite a result either.
	if ok, err := store.RecordItem(context.Background(), nj.ID, 1, 503, "", "boom"); err != nil || ok {
		t.Errorf("RecordItem over a result = %t, %v; want false", ok, err)
	}
}

// TestCreateJobIsAllOrNothing: an upload over the limit, or one whose source
// fails midway, stores neither the job nor any item; a taken Idempotency-Key
// likewise.
func TestCreateJobIsAllOrNothing(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	store := newJobStore(t, db)
	ctx := context.Background()
	items := func(n int) []userservice.JobItemInput {
		out := make([]userservice.JobItemInput, n)
		for i := range out {
			out[i] = userservice.JobItemInput{UserID: userservice.NewID()}
		}
		out[n-1] = userservice.JobItemInput{Payload: []byte("x"), Status: 400, Error: "Invalid user id"}
		return out
	}
	if _, err := store.CreateJob(ctx, deleteJob(), &sliceSource{items: items(11)}, 10); userservice.ErrorCode(err) != userservice.ECodePayloadTooLarge {
		t.Errorf("11 items with a limit of 10: %v", err)
	}
	boom := userservice.Errorf(userservice.ECodeInvalidJSON, "Invalid upload: broken")
	if _, err := store.CreateJob(ctx, deleteJob(), &sliceSource{items: items(5), err: boom}, 10); !errors.Is(err, boom) {
		t.Errorf("failing source: %v, want its error", err)
	}
	if n := count(t, db, `SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM job_items)`); n != 0 {
		t.Fatalf("%d rows after failed creations", n)
	}
	rec := func(j *userservice.Job) *userservice.IdempotencyRecord {
		return &userservice.IdempotencyRecord{CallerID: "admin", Key: "k", RequestHash: "h", Status: 202, Body: []byte(j.ID), CreatedAt: userservice.Now()}
	}
	nj := deleteJob()
	nj.Idempotency = rec
	j, err := store.CreateJob(ctx, nj, &sliceSource{items: items(10)}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := (userservice.JobCounts{Total: 10, Processed: 1, Failed: 1}); j.Counts != want || j.State != userservice.JobQueued {
		t.Errorf("job %+v, want queued with %+v", j, want)
	}
	dup := deleteJob()
	dup.Idempotency = rec
	if _, err := store.CreateJob(ctx, dup, &sliceSource{items: items(3)}, 10); !errors.Is(err, userservice.ErrIdempotencyKeyTaken) {
		t.Errorf("taken key: %v", err)
	}
	if n := count(t, db, `SELECT count(*) FROM jobs`); n != 1 {
		t.Errorf("%d jobs, want 1", n)
	}
	res, err := store.JobResults(ctx, j.ID, 0, 100)
	if err != nil || len(res) != 1 || res[0].Item != 10 || res[0].Status != 400 || res[0].Error == nil {
		t.Errorf("results = %+v, %v; want item 10 answered 400", res, err)
	}
}

// TestJobLeaseIsExclusive: one lease at a time per schema; closing it hands
// the jobs over, and StartJob recounts what an interrupted run did.
func TestJobLeaseIsExclusive(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	store := newJobStore(t, db)
	ctx := context.Background()
	l1, err := store.Lead(ctx)
	if err != nil || l1 == nil {
		t.Fatalf("first Lead = %v, %v", l1, err)
	}
	if l2, err := store.Lead(ctx); err != nil || l2 != nil {
		t.Fatalf("second Lead = %v, %v; want none while the first holds", l2, err)
	}
	nj := deleteJob()
	var in []userservice.JobItemInput
	for i := 0; i < 5; i++ {
		in = append(in, userservice.JobItemInput{UserID: userservice.NewID()})
	}
	if _, err := store.CreateJob(ctx, nj, &sliceSource{items: in}, 10); err != nil {
		t.Fatal(err)
	}
	job, err := l1.NextJob(ctx)
	if err != nil || job == nil || job.ID != nj.ID {
		t.Fatalf("NextJob = %+v, %v", job, err)
	}
	if _, ok, err := l1.StartJob(ctx, nj.ID); err != nil || !ok {
		t.Fatalf("StartJob = %t, %v", ok, err)
	}
	for _, item := range []int64{1, 2} {
		if ok, err := store.RecordItem(ctx, nj.ID, item, 404, "", "User not found"); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	l1.Close() // a crash: the session ends, the lock goes with it
	// The backend ends a moment after its client closed; a standby polls.
	var l2 userservice.JobLease
	for deadline := time.Now().Add(10 * time.Second); l2 == nil; {
		if l2, err = store.Lead(ctx); err != nil || (l2 == nil && time.Now().After(deadline)) {
			t.Fatalf("Lead after Close = %v, %v", l2, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer l2.Close()
	c, ok, err := l2.StartJob(ctx, nj.ID)
	if want := (userservice.JobCounts{Total: 5, Processed: 2, Failed: 2}); err != nil || !ok || c != want {
		t.Fatalf("resumed StartJob = %+v %t %v, want %+v", c, ok, err, want)
	}
	pending, err := l2.PendingItems(ctx, nj.ID, 0, 10)
	if err != nil || len(pending) != 3 || pending[0].Item != 3 {
		t.Fatalf("pending = %+v, %v; want items 3-5", pending, err)
	}
	if _, err := store.CancelJob(ctx, nj.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := l2.SaveProgress(ctx, nj.ID, c); err != nil || st != userservice.JobCancelled {
		t.Errorf("SaveProgress after cancel = %s, %v", st, err)
	}
	if err := l2.FinishJob(ctx, nj.ID, ""); err != nil {
		t.Fatal(err)
	}
	j, err := store.Job(ctx, nj.ID)
	if err != nil || j.State != userservice.JobCancelled {
		t.Errorf("job after FinishJob of a cancelled job: %+v, %v", j, err)
	}
	if _, err := store.CancelJob(ctx, nj.ID); !errors.Is(err, userservice.ErrJobFinished) {
		t.Errorf("second cancel: %v", err)
	}
	if _, err := store.Job(ctx, userservice.NewID()); !errors.Is(err, userservice.ErrJobNotFound) {
		t.Errorf("unknown job: %v", err)
	}
}
