package userservice

import "context"

// Bulk jobs (issue 15): an admin uploads many items at once (an import of users,
// or a list of users whose status, deletion or enrollment changes); a worker
// applies each item through the user's actor, as a single request would, and
// records each item's result. Jobs and items are rows in PostgreSQL, so a job
// survives a crash and resumes where it stopped.

// JobType is what a job does to each of its items.
type JobType string

// Job types.
const (
	JobImport   JobType = "import"   // each item is a CreateUser; an authId that exists is left alone
	JobStatus   JobType = "status"   // each item is a user id; ChangeStatus to the job's status
	JobDelete   JobType = "delete"   // each item is a user id; SoftDelete
	JobEnroll   JobType = "enroll"   // each item is a user id; Enroll in the job's course
	JobUnenroll JobType = "unenroll" // each item is a user id; Unenroll from the job's course
)

// Valid reports whether t is a known job type.
func (t JobType) Valid() bool {
	switch t {
	case JobImport, JobStatus, JobDelete, JobEnroll, JobUnenroll:
		return true
	}
	return false
}

// JobState is where a job is in its life (CONTRACT.md, Second round: Jobs).
// queued → running → done; queued or running → cancelled (DELETE) or failed.
type JobState string

// Job states.
const (
	JobQueued    JobState = "queued"
	JobRunning   JobState = "running"
	JobDone      JobState = "done"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// Finished reports whether the job will not change any more.
func (s JobState) Finished() bool { return s == JobDone || s == JobFailed || s == JobCancelled }

// MaxJobItems is the default bound on the items of one job (JOB_MAX_ITEMS).
const MaxJobItems = 100_000

// Job is a bulk job as the API shows it.
type Job struct {
	ID     string    `json:"id"`
	Type   JobType   `json:"type"`
	State  JobState  `json:"state"`
	Params JobParams `json:"params"`
	Counts JobCounts `json:"counts"`
	// Progress is the share of items with a result, 0-100, one decimal.
	Progress   float64 `json:"progress"`
	Error      *string `json:"error"`
	CreatedBy  *string `json:"createdBy"`
	CreatedAt  Time    `json:"createdAt"`
	StartedAt  *Time   `json:"startedAt"`
	FinishedAt *Time   `json:"finishedAt"`
	UpdatedAt  Time    `json:"updatedAt"`
}

// JobParams are the parameters shared by every item of a job.
type JobParams struct {
	Format   string  `json:"format,omitempty"`   // import: "csv" or "ndjson"
	Status   *Status `json:"status,omitempty"`   // status jobs
	CourseID string  `json:"courseId,omitempty"` // enroll and unenroll jobs
}

// JobCounts counts a job's items. Succeeded are results below 400 (an import of
// an authId that exists is a success that changed nothing), Failed the others;
// Processed = Succeeded + Failed.
type JobCounts struct {
	Total     int `json:"total"`
	Processed int `json:"processed"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
}

// SetProgress computes Progress from the counts.
func (j *Job) SetProgress() {
	if j.Counts.Total == 0 {
		j.Progress = 100
		return
	}
	p := float64(j.Counts.Processed) * 1000 / float64(j.Counts.Total)
	j.Progress = float64(int64(p)) / 10
}

// JobItemResult is one line of GET /jobs/{id}/results: the item's number (1-based,
// in upload order), the user it concerned (when known), the HTTP status a single
// request would have answered, and the error message of a failure.
type JobItemResult struct {
	Item   int64   `json:"item"`
	ID     *string `json:"id"`
	Status int     `json:"status"`
	Error  *string `json:"error,omitempty"`
}

// NewJob is a job to create: its kind, parameters and who asked.
type NewJob struct {
	ID            string
	Type          JobType
	Params        JobParams
	CreatedBy     *string
	CorrelationID string
	// Idempotency, when set, is called once every item is stored and returns the
	// Idempotency-Key record to commit with the job (the request's hash covers
	// the whole upload, so it is known only then). A key that is taken fails the
	// creation with ErrIdempotencyKeyTaken and nothing is stored.
	Idempotency func(j *Job) *IdempotencyRecord
}

// JobItemInput is one item of a job as uploaded: for an import the row as a
// CreateUser JSON object, else the user id. A row that already failed
// validation carries its result (Status ≥ 400) and is never applied.
type JobItemInput struct {
	UserID  string
	Payload []byte
	Status  int
	Error   string
}

// JobItemSource yields the items of a job being created, one at a time, so that
// an upload is never held whole in memory. Next returns io.EOF after the last
// item; any other error aborts the creation (nothing is stored).
type JobItemSource interface {
	Next() (JobItemInput, error)
}

// JobStore keeps jobs and their items (persistence/postgres).
type JobStore interface {
	// CreateJob stores the job and every item src yields, in one transaction, and
	// returns the job (state queued). At most maxItems items; more is an
	// ECodePayloadTooLarge error and nothing is stored. For an unenroll job with
	// src nil, the items are the users enrolled in the course now.
	CreateJob(ctx context.Context, j NewJob, src JobItemSource, maxItems int) (*Job, error)
	// Job returns the job, or ErrJobNotFound.
	Job(ctx context.Context, id string) (*Job, error)
	// JobResults returns up to limit results of items numbered after `after`,
	// in item order; items without a result yet are left out.
	JobResults(ctx context.Context, id string, after int64, limit int) ([]JobItemResult, error)
	// CancelJob cancels a queued or running job and returns it; a finished job
	// is returned unchanged with ErrJobFinished.
	CancelJob(ctx context.Context, id string) (*Job, error)
}

// JobItemRef names the job item a command applies (Meta.JobItem). The result is
// recorded in the transaction of the user's change, fenced: an item that already
// has a result fails the commit with ErrJobItemDone, so no item is applied twice.
type JobItemRef struct {
	JobID string
	Item  int64
}

// JobItemDone is the result of a job item, committed with the change it made
// (Mutation.JobItem).
type JobItemDone struct {
	JobID  string
	Item   int64
	Status int
	UserID string
}

// Job errors.
var (
	// ErrJobNotFound is returned for an unknown job id.
	ErrJobNotFound = &Error{Code: ECodeNotFound, Message: "Job not found"}
	// ErrJobFinished is returned when a finished job is cancelled.
	ErrJobFinished = &Error{Code: ECodeConflict, Message: "Job already finished"}
	// ErrJobItemDone is returned by the writer when the job item a mutation
	// applies has a result already: the mutation changed nothing.
	ErrJobItemDone = &Error{Code: ECodeConflict, Message: "Job item already applied"}
)

// JobRun is a job as the worker runs it.
type JobRun struct {
	ID            string
	Type          JobType
	Params        JobParams
	CreatedBy     *string
	CorrelationID string
}

// JobItem is an item without a result, as the worker reads it.
type JobItem struct {
	Item    int64
	UserID  string
	Payload []byte
}

// JobWorkerStore is the job worker's side of the job store.
type JobWorkerStore interface {
	// Lead takes the worker's leadership (one process at a time runs jobs), or
	// returns nil, nil when another process holds it.
	Lead(ctx context.Context) (JobLease, error)
	// RecordItem records the result of an item that changed no user, unless the
	// item has a result already; it reports whether it recorded it.
	RecordItem(ctx context.Context, jobID string, item int64, status int, userID, errText string) (bool, error)
}

// JobLease is a held leadership of the job worker. Its calls fail once the
// leadership is lost. Not safe for concurrent use.
type JobLease interface {
	// NextJob returns the oldest queued or running job, or nil.
	NextJob(ctx context.Context) (*JobRun, error)
	// StartJob marks the job running and returns its counts recounted from its
	// items; ok is false when the job was cancelled meanwhile.
	StartJob(ctx context.Context, id string) (c JobCounts, ok bool, err error)
	// PendingItems returns up to limit items after `after` without a result.
	PendingItems(ctx context.Context, id string, after int64, limit int) ([]JobItem, error)
	// SaveProgress stores the counts and returns the job's state.
	SaveProgress(ctx context.Context, id string, c JobCounts) (JobState, error)
	// FinishJob marks a running job done, or failed when errText is set.
	FinishJob(ctx context.Context, id string, errText string) error
	// Close gives the leadership up.
	Close()
}
