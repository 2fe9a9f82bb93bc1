package http

import (
	"context"
	"errors"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lms-platform/userservice"
)

// memUsers is an in-memory userservice.Users built on the real Apply: every
// change commits at once under one mutex, uniqueness and idempotency keys are
// enforced the way the PostgreSQL writer does.
type memUsers struct {
	mu      sync.Mutex
	states  map[string]*userservice.State
	audit   map[string][]userservice.AuditRecord
	idem    *memIdem
	metas   []userservice.Meta
	touched map[string]int
	// erasures are the erasure requests, as the writer's fenced statements
	// keep them (persistence/postgres/erasure.go).
	erasures map[string]*userservice.Erasure

	// getHook, when set, runs at the start of Get (to block, fail or panic).
	getHook func(ctx context.Context, id string) error
	// execHook, when set, runs at the start of Execute.
	execHook func(ctx context.Context, id string, cmd userservice.Command) error
}

var _ userservice.Users = (*memUsers)(nil)

func newMemUsers(idem *memIdem) *memUsers {
	return &memUsers{states: map[string]*userservice.State{}, audit: map[string][]userservice.AuditRecord{}, idem: idem, touched: map[string]int{}, erasures: map[string]*userservice.Erasure{}}
}

func (m *memUsers) Get(ctx context.Context, id string, touch *userservice.Time) (*userservice.State, error) {
	if m.getHook != nil {
		if err := m.getHook(ctx, id); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.states[id]
	if !ok {
		return nil, userservice.ErrUserNotFound
	}
	if touch != nil {
		m.touched[id]++
	}
	return st, nil
}

func (m *memUsers) Execute(ctx context.Context, id string, cmd userservice.Command, meta userservice.Meta) (*userservice.Outcome, error) {
	if m.execHook != nil {
		if err := m.execHook(ctx, id, cmd); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.metas = append(m.metas, meta)
	out, err := userservice.Apply(m.states[id], cmd, meta)
	if err != nil {
		return nil, err
	}
	mut := out.Mutation
	if mut == nil {
		return out, nil
	}
	for oid, o := range m.states {
		if oid == id {
			continue
		}
		u := &o.User
		if u.AuthID == mut.User.AuthID || u.Email == mut.User.Email ||
			(u.Username != nil && mut.User.Username != nil && strings.EqualFold(*u.Username, *mut.User.Username)) {
			return nil, userservice.Errorf(userservice.ECodeConflict, "User with this email, username or authId already exists")
		}
	}
	if mut.Idempotency != nil {
		if err := m.idem.PutIdempotency(ctx, mut.Idempotency); err != nil {
			return nil, err
		}
	}
	if e := mut.Erasure; e != nil {
		if err := m.changeErasure(id, e); err != nil {
			return nil, err
		}
	}
	m.states[id] = out.State
	m.audit[id] = append(m.audit[id], mut.Audit...)
	return out, nil
}

// changeErasure is the fenced erasure statements of the writer.
func (m *memUsers) changeErasure(id string, c *userservice.ErasureChange) error {
	e := m.erasures[id]
	switch c.Op {
	case userservice.ErasureOpRequest:
		if e != nil && e.State != userservice.ErasureCancelled {
			return userservice.ErrErasurePending
		}
		m.erasures[id] = &userservice.Erasure{UserID: id, State: userservice.ErasureRequested, RequestedAt: c.At,
			ScheduledAt: c.ScheduledAt, RequestedBy: c.By, PreviousStatus: c.PreviousStatus}
	case userservice.ErasureOpCancel:
		if e == nil || e.State != userservice.ErasureRequested {
			return userservice.ErrNoErasure
		}
		at := c.At
		e.State, e.CancelledAt, e.CancelledBy = userservice.ErasureCancelled, &at, c.By
	case userservice.ErasureOpErase:
		if e == nil || e.State != userservice.ErasureRequested || e.ScheduledAt.After(c.At.Time) {
			return userservice.ErrNoErasure
		}
		at := c.At
		e.State, e.DoneAt = userservice.ErasureDone, &at
	}
	return nil
}

// memErasures is the ErasureStore of memUsers; this process always leads.
type memErasures struct{ users *memUsers }

var _ userservice.ErasureStore = memErasures{}

func (s memErasures) Erasure(ctx context.Context, userID string) (*userservice.Erasure, error) {
	s.users.mu.Lock()
	defer s.users.mu.Unlock()
	e, ok := s.users.erasures[userID]
	if !ok {
		return nil, userservice.ErrNoErasure
	}
	c := *e
	return &c, nil
}

func (s memErasures) Due(ctx context.Context, now time.Time, limit int) ([]string, error) {
	s.users.mu.Lock()
	defer s.users.mu.Unlock()
	var ids []string
	for id, e := range s.users.erasures {
		if e.State == userservice.ErasureRequested && !e.ScheduledAt.After(now) && len(ids) < limit {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (s memErasures) Uncleaned(ctx context.Context, limit int) ([]string, error) { return nil, nil }

func (s memErasures) DeletedBefore(ctx context.Context, before time.Time, limit int) ([]string, error) {
	return nil, nil
}

func (s memErasures) MarkCleaned(ctx context.Context, userID string) error { return nil }

func (s memErasures) WhileLeader(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	return true, fn(ctx)
}

func (m *memUsers) state(id string) *userservice.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.states[id]
}

func (m *memUsers) lastMeta() userservice.Meta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.metas[len(m.metas)-1]
}

// memDirectory answers the cross-user questions from memUsers.
type memDirectory struct {
	users  *memUsers
	lookup int // UserIDByAuthID calls
	mu     sync.Mutex
}

var _ userservice.Directory = (*memDirectory)(nil)

func (d *memDirectory) UserIDByAuthID(ctx context.Context, authID string) (string, error) {
	d.mu.Lock()
	d.lookup++
	d.mu.Unlock()
	d.users.mu.Lock()
	defer d.users.mu.Unlock()
	for id, st := range d.users.states {
		if st.User.AuthID == authID {
			return id, nil
		}
	}
	return "", userservice.ErrUserNotFound
}

func (d *memDirectory) SearchUsers(ctx context.Context, q userservice.UserSearch) ([]userservice.User, userservice.Pagination, error) {
	d.users.mu.Lock()
	var all []userservice.User
	for _, st := range d.users.states {
		u := st.User
		if (q.Status == "" && u.Status == userservice.StatusDeleted) || (q.Status != "" && u.Status != q.Status) {
			continue
		}
		if q.Role != "" && u.Role != q.Role {
			continue
		}
		if q.Search != "" && !strings.Contains(strings.ToLower(u.FirstName+" "+u.LastName+" "+u.Email), strings.ToLower(q.Search)) {
			continue
		}
		all = append(all, u)
	}
	d.users.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	p := userservice.PageQuery{Page: q.Page, Limit: q.Limit}
	items, page := paginate(all, p)
	return items, page, nil
}

func (d *memDirectory) AuditLog(ctx context.Context, userID string, p userservice.PageQuery) ([]userservice.AuditRecord, int, error) {
	d.users.mu.Lock()
	defer d.users.mu.Unlock()
	recs := d.users.audit[userID]
	newest := make([]userservice.AuditRecord, len(recs))
	for i, r := range recs {
		newest[len(recs)-1-i] = r
	}
	items, _ := paginate(newest, p)
	return items, len(recs), nil
}

func (d *memDirectory) PlatformStats(ctx context.Context) (userservice.PlatformStats, error) {
	d.users.mu.Lock()
	defer d.users.mu.Unlock()
	s := userservice.NewPlatformStats()
	for _, st := range d.users.states {
		u := st.User
		s.Add(u.Role, u.Status, u.EmailVerified, u.ProfileCompleted, 1)
	}
	return s, nil
}

func (d *memDirectory) Sessions(ctx context.Context, userID string, p userservice.PageQuery) ([]userservice.Session, int, error) {
	d.users.mu.Lock()
	defer d.users.mu.Unlock()
	st, ok := d.users.states[userID]
	if !ok {
		return []userservice.Session{}, 0, nil
	}
	newest := make([]userservice.Session, len(st.Sessions))
	for i, s := range st.Sessions {
		newest[len(newest)-1-i] = s
	}
	items, page := paginate(newest, p)
	return items, page.Total, nil
}

func (d *memDirectory) courseRows(course string) []userservice.CourseEnrollment {
	var rows []userservice.CourseEnrollment
	for _, st := range d.users.states {
		u := st.User
		e, ok := st.Enrollments.Get(course)
		if !ok || u.Status == userservice.StatusDeleted {
			continue
		}
		rows = append(rows, userservice.CourseEnrollment{Enrollment: *e, User: userservice.PublicProfile{
			ID: u.ID, Username: u.Username, FirstName: u.FirstName, LastName: u.LastName, DisplayName: u.DisplayName, AvatarURL: u.AvatarURL,
		}})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	return rows
}

func (d *memDirectory) CourseRoster(ctx context.Context, q userservice.RosterQuery) ([]userservice.CourseEnrollment, int64, error) {
	d.users.mu.Lock()
	defer d.users.mu.Unlock()
	var out []userservice.CourseEnrollment
	var total int64
	for _, e := range d.courseRows(q.CourseID) {
		if q.Status != "" && e.EnrollmentStatus != q.Status {
			continue
		}
		total++
		if e.ID > q.After && len(out) < q.Limit {
			out = append(out, e)
		}
	}
	if !q.CountTotal {
		total = -1
	}
	return out, total, nil
}

func (d *memDirectory) CourseStats(ctx context.Context, course string) (userservice.CourseStats, error) {
	d.users.mu.Lock()
	defer d.users.mu.Unlock()
	s := userservice.CourseStats{CourseID: course}
	var sum float64
	for _, e := range d.courseRows(course) {
		s.Enrolled++
		sum += e.Progress
		switch e.EnrollmentStatus {
		case userservice.EnrollmentActive:
			s.Active++
		case userservice.EnrollmentCompleted:
			s.Completed++
		case userservice.EnrollmentDropped:
			s.Dropped++
		case userservice.EnrollmentSuspended:
			s.Suspended++
		}
	}
	if s.Enrolled > 0 {
		s.AverageProgress = sum / float64(s.Enrolled)
	}
	return s, nil
}

// memIdem is an in-memory IdempotencyStore.
type memIdem struct {
	mu   sync.Mutex
	recs map[string]*userservice.IdempotencyRecord
	puts int
}

var _ userservice.IdempotencyStore = (*memIdem)(nil)

func newMemIdem() *memIdem { return &memIdem{recs: map[string]*userservice.IdempotencyRecord{}} }

func (m *memIdem) GetIdempotency(ctx context.Context, callerID, key string, ttl time.Duration) (*userservice.IdempotencyRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec := m.recs[callerID+"\x00"+key]
	if rec == nil || time.Since(rec.CreatedAt.Time) > ttl {
		return nil, nil
	}
	return rec, nil
}

func (m *memIdem) PutIdempotency(ctx context.Context, rec *userservice.IdempotencyRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := rec.CallerID + "\x00" + rec.Key
	if old := m.recs[k]; old != nil {
		return userservice.ErrIdempotencyKeyTaken
	}
	m.puts++
	m.recs[k] = rec
	return nil
}

// fakeLimiter allows limit requests per key, then refuses; err makes it fail.
type fakeLimiter struct {
	mu      sync.Mutex
	limit   int
	seen    map[string]int
	keys    []string
	refunds []string
	err     error
}

func (f *fakeLimiter) Allow(ctx context.Context, key string) (Decision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, key)
	if f.err != nil {
		return Decision{}, f.err
	}
	f.seen[key]++
	n := f.seen[key]
	d := Decision{Allowed: n <= f.limit, Limit: f.limit, Remaining: f.limit - n, Reset: time.Now().Add(30 * time.Second)}
	if !d.Allowed {
		d.RetryAfter = 30 * time.Second
	}
	return d, nil
}

// Refund takes back one counted request of key.
func (f *fakeLimiter) Refund(ctx context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refunds = append(f.refunds, key)
	if f.err != nil {
		return f.err
	}
	f.seen[key]--
	return nil
}

var errBoom = errors.New("boom: connection to db user=x email=leak@example.com refused")

// memEvents is an EventHistory that answers one created event per known user.
type memEvents struct{ users *memUsers }

func (m memEvents) Events(ctx context.Context, after int64, limit int) ([]userservice.FeedEvent, error) {
	evs, err := m.UserEvents(ctx, userservice.NewID(), 0, limit)
	if after >= 1 || err != nil {
		return nil, err
	}
	evs[0].Position = 1
	return evs, nil
}

func (m memEvents) UserEvents(ctx context.Context, userID string, after int64, limit int) ([]userservice.FeedEvent, error) {
	if after >= 1 || limit < 1 {
		return nil, nil
	}
	env := `{"id":"` + userservice.NewID() + `","type":"user.created","source":"user-service","version":2,"sequence":1,"data":{"userId":"` + userID + `"},"timestamp":"2024-01-15T10:30:00.000Z","correlationId":"c","metadata":{}}`
	return []userservice.FeedEvent{{Sequence: 1, Type: "user.created", Envelope: []byte(env)}}, nil
}

var _ userservice.PersonalData = (*memDirectory)(nil)

// SessionsAfter pages the sessions the actor holds, oldest first.
func (d *memDirectory) SessionsAfter(ctx context.Context, userID string, after *userservice.RowKey, limit int) ([]userservice.Session, error) {
	d.users.mu.Lock()
	defer d.users.mu.Unlock()
	st, ok := d.users.states[userID]
	if !ok || after != nil {
		return nil, nil // one page holds them all
	}
	return append([]userservice.Session(nil), st.Sessions...), nil
}

// AuditAfter pages the recorded audit, oldest first.
func (d *memDirectory) AuditAfter(ctx context.Context, userID string, after *userservice.RowKey, limit int) ([]userservice.AuditRecord, error) {
	d.users.mu.Lock()
	defer d.users.mu.Unlock()
	if after != nil {
		return nil, nil
	}
	return append([]userservice.AuditRecord(nil), d.users.audit[userID]...), nil
}

// memSchemas is an in-memory userservice.AttributeSchemas, like the other
// stores of this file (the PostgreSQL one is tested end to end).
type memSchemas struct {
	mu      sync.Mutex
	version int64
	byNS    map[string]*userservice.AttributeSchema
}

func (m *memSchemas) PutSchema(_ context.Context, s *userservice.AttributeSchema) (*userservice.AttributeSchema, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byNS == nil {
		m.byNS = map[string]*userservice.AttributeSchema{}
	}
	m.version++
	out := *s
	out.Type, out.Version, out.UpdatedAt = "object", m.version, userservice.Now()
	m.byNS[s.Namespace] = &out
	return &out, nil
}

func (m *memSchemas) Schema(_ context.Context, ns string) (*userservice.AttributeSchema, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.byNS[ns]; ok {
		return s, nil
	}
	return nil, userservice.ErrAttributeSchemaNotFound
}

func (m *memSchemas) Schemas(context.Context) ([]*userservice.AttributeSchema, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []*userservice.AttributeSchema{}
	for _, s := range m.byNS {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *userservice.AttributeSchema) int { return strings.Compare(a.Namespace, b.Namespace) })
	return out, nil
}

// memJobs is an in-memory JobStore: it drains the upload as the PostgreSQL
// store does and keeps the items, so the HTTP edge's answers can be checked
// against the document without a database.
type memJobs struct {
	mu      sync.Mutex
	jobs    map[string]*userservice.Job
	results map[string][]userservice.JobItemResult
	idem    *memIdem
}

func newMemJobs(idem *memIdem) *memJobs {
	return &memJobs{jobs: map[string]*userservice.Job{}, results: map[string][]userservice.JobItemResult{}, idem: idem}
}

func (m *memJobs) CreateJob(ctx context.Context, nj userservice.NewJob, src userservice.JobItemSource, maxItems int) (*userservice.Job, error) {
	j := &userservice.Job{ID: nj.ID, Type: nj.Type, State: userservice.JobQueued, Params: nj.Params, CreatedBy: nj.CreatedBy,
		CreatedAt: userservice.Now(), UpdatedAt: userservice.Now()}
	var results []userservice.JobItemResult
	for n := int64(1); src != nil; n++ {
		in, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if int(n) > maxItems {
			return nil, userservice.Errorf(userservice.ECodePayloadTooLarge, "A job has at most %d items", maxItems)
		}
		j.Counts.Total++
		if in.Status != 0 {
			msg := in.Error
			results = append(results, userservice.JobItemResult{Item: n, Status: in.Status, Error: &msg})
			j.Counts.Processed++
			j.Counts.Failed++
		}
	}
	j.SetProgress()
	if nj.Idempotency != nil {
		if rec := nj.Idempotency(j); rec != nil {
			if err := m.idem.PutIdempotency(ctx, rec); err != nil {
				return nil, err
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobs[j.ID], m.results[j.ID] = j, results
	c := *j
	return &c, nil
}

func (m *memJobs) Job(ctx context.Context, id string) (*userservice.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return nil, userservice.ErrJobNotFound
	}
	c := *j
	return &c, nil
}

func (m *memJobs) JobResults(ctx context.Context, id string, after int64, limit int) ([]userservice.JobItemResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []userservice.JobItemResult
	for _, r := range m.results[id] {
		if r.Item > after && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memJobs) CancelJob(ctx context.Context, id string) (*userservice.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return nil, userservice.ErrJobNotFound
	}
	if j.State.Finished() {
		c := *j
		return &c, userservice.ErrJobFinished
	}
	j.State, j.FinishedAt = userservice.JobCancelled, userservice.TimePtr(time.Now())
	c := *j
	return &c, nil
}
