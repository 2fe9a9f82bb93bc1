package actors

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	userservice "github.com/lms-platform/userservice"
)

// memStore is an in-memory StateLoader and Committer that behaves like the
// PostgreSQL ones: it rebuilds the user from the mutation rows, fences on
// BaseVersion (ErrStaleVersion), calls done from another goroutine, and can be told
// to be slow or to fail.
type memStore struct {
	mu      sync.Mutex
	users   map[string]*userservice.State
	loads   map[string]int
	commits []*userservice.Mutation // committed, in commit order
	touches map[string][]userservice.Time
	started atomic.Int64 // Commit calls

	loadDelay   time.Duration // per load
	commitDelay time.Duration // per commit
	jittered    bool          // delays are uniform in [0, delay) instead
	// failLoad, when set, is asked before each load; a non-nil error fails it.
	failLoad func(userID string) error
	// failCommit, when set, is asked before each commit: a non-nil error is returned
	// to the actor, and write says whether the mutation is stored anyway (an unknown
	// outcome that actually committed).
	failCommit func(m *userservice.Mutation) (err error, write bool)
}

func newMemStore() *memStore {
	return &memStore{
		users:   map[string]*userservice.State{},
		loads:   map[string]int{},
		touches: map[string][]userservice.Time{},
	}
}

func (s *memStore) delay(d time.Duration) time.Duration {
	if !s.jittered || d <= 0 {
		return d
	}
	return rand.N(d)
}

func (s *memStore) LoadState(ctx context.Context, userID string) (*userservice.State, error) {
	s.mu.Lock()
	delay, fail := s.delay(s.loadDelay), s.failLoad
	s.loads[userID]++
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, fmt.Errorf("cannot load user: %w", ctx.Err())
		}
	}
	if fail != nil {
		if err := fail(userID); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.users[userID]
	if st == nil {
		return nil, userservice.ErrUserNotFound
	}
	return st, nil
}

func (s *memStore) Commit(m *userservice.Mutation, done func(error)) {
	s.started.Add(1)
	s.mu.Lock()
	delay, fail := s.delay(s.commitDelay), s.failCommit
	s.mu.Unlock()
	go func() {
		if delay > 0 {
			time.Sleep(delay)
		}
		var injected error
		write := true
		if fail != nil {
			injected, write = fail(m)
			if injected == nil {
				write = true
			}
		}
		var err error
		if write {
			err = s.write(m)
		}
		if injected != nil {
			err = injected
		}
		done(err)
	}()
}

// write stores m like the writer's transaction: fenced on BaseVersion.
func (s *memStore) write(m *userservice.Mutation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.users[m.UserID]
	switch {
	case m.Create && cur != nil:
		return userservice.Errorf(userservice.ECodeConflict, "User already exists")
	case !m.Create && (cur == nil || cur.User.Version != m.BaseVersion):
		return userservice.ErrStaleVersion
	}
	next := &userservice.State{User: m.User, Enrollments: userservice.EnrollmentList{}, Preferences: userservice.PreferenceList{}}
	if cur != nil {
		next.Enrollments = append(next.Enrollments, cur.Enrollments...)
		next.Preferences = append(next.Preferences, cur.Preferences...)
		next.Sessions = append(next.Sessions, cur.Sessions...)
		if newer(cur.User.LastActiveAt, m.User.LastActiveAt) { // GREATEST(), as the writer does
			next.User.LastActiveAt = cur.User.LastActiveAt
		}
	}
	for _, e := range m.EnrollmentUpserts {
		next.Enrollments.Put(&e)
	}
	for _, c := range m.EnrollmentDeletes {
		next.Enrollments.Remove(c)
	}
	for _, p := range m.PreferenceUpserts {
		next.Preferences.Put(p)
	}
	for _, k := range m.PreferenceDeletes {
		next.Preferences.Remove(k)
	}
	for _, ss := range m.SessionUpserts {
		replaced := false
		for i := range next.Sessions {
			if next.Sessions[i].SessionID == ss.SessionID {
				next.Sessions[i], replaced = ss, true
			}
		}
		if !replaced {
			next.Sessions = append(next.Sessions, ss)
		}
	}
	s.users[m.UserID] = next
	s.commits = append(s.commits, m)
	return nil
}

func (s *memStore) TouchLastActive(userID string, at userservice.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.touches[userID] = append(s.touches[userID], at)
	if cur := s.users[userID]; cur != nil && newer(&at, cur.User.LastActiveAt) {
		next := *cur
		next.User.LastActiveAt = &at
		s.users[userID] = &next
	}
}

// seed stores a registered user (version 1) and returns its id.
func (s *memStore) seed(tb testing.TB) string {
	tb.Helper()
	id := userservice.NewID()
	out, err := userservice.Apply(nil, registerCmd(id), userservice.Meta{Now: userservice.Now()})
	if err != nil {
		tb.Fatalf("cannot build user: %v", err)
	}
	if err := s.write(out.Mutation); err != nil {
		tb.Fatalf("cannot seed user: %v", err)
	}
	return id
}

func (s *memStore) version(userID string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.users[userID]; st != nil {
		return st.User.Version
	}
	return 0
}

func (s *memStore) loadCount(userID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads[userID]
}

func (s *memStore) commitsOf(userID string) []*userservice.Mutation {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*userservice.Mutation
	for _, m := range s.commits {
		if m.UserID == userID {
			out = append(out, m)
		}
	}
	return out
}

func (s *memStore) set(f func(s *memStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func registerCmd(id string) userservice.Register {
	return userservice.Register{ID: id, Input: userservice.CreateUser{
		AuthID: userservice.NewID(), Email: id[:8] + "@example.com", FirstName: "Ada", LastName: "Lovelace",
	}}
}

func editBio(bio string) userservice.EditProfile {
	return userservice.EditProfile{Input: userservice.UpdateUser{Bio: userservice.Optional[string]{Set: true, Value: bio}}}
}

func meta() userservice.Meta { return userservice.Meta{Now: userservice.Now(), CorrelationID: "test"} }

// liveCounter detects two live actors of one user: started/stopped hooks keep a
// count per user and remember the largest ever seen.
type liveCounter struct {
	mu      sync.Mutex
	live    map[string]int
	maxLive int
	starts  atomic.Int64
}

func newLiveCounter() *liveCounter { return &liveCounter{live: map[string]int{}} }

func (c *liveCounter) hooks() hooks {
	return hooks{
		started: func(id string) {
			c.starts.Add(1)
			c.mu.Lock()
			c.live[id]++
			c.maxLive = max(c.maxLive, c.live[id])
			c.mu.Unlock()
		},
		stopped: func(id string) {
			c.mu.Lock()
			c.live[id]--
			c.mu.Unlock()
		},
	}
}

func (c *liveCounter) max() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxLive
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newTestRegistry starts a registry over store and shuts it down when the test ends.
func newTestRegistry(tb testing.TB, cfg Config, store *memStore, h hooks) *Registry {
	tb.Helper()
	if cfg.Owners == 0 {
		cfg.Owners = 128
	}
	r, err := newRegistry(cfg, store, store, testLogger(), h)
	if err != nil {
		tb.Fatalf("cannot start registry: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
	})
	return r
}

// eventually polls cond until it holds or the timeout passes.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func ctxTimeout(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
