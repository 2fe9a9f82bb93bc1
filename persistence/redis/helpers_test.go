package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	userservice "github.com/lms-platform/userservice"
)

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testRedisURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("TEST_REDIS_URL")
	if u == "" {
		tb.Fatal("TEST_REDIS_URL is not set: run the tests with `make test`, which starts the test Redis")
	}
	return u
}

func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:]) + ":"
}

// newTestClient opens a client on the test Redis with its own key prefix (or the
// one in cfg) and removes the prefix's keys when the test ends.
func newTestClient(tb testing.TB, cfg Config) *Client {
	tb.Helper()
	cfg.URL = testRedisURL(tb)
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = randomPrefix()
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = time.Second // the race detector on 2 shared cores is slow
	}
	c, err := Open(context.Background(), cfg, testLogger())
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	// Another package's TestOutage* may have stopped the shared Redis for a moment.
	for deadline := time.Now().Add(20 * time.Second); c.Ping(context.Background()) != nil; {
		if time.Now().After(deadline) {
			c.Close()
			tb.Fatalf("the test Redis at %s does not answer: run the tests with `make test`", cfg.URL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Cleanup(func() {
		deleteKeys(tb, c, cfg.KeyPrefix)
		c.Close()
	})
	return c
}

// deleteKeys removes every key under prefix.
func deleteKeys(tb testing.TB, c *Client, prefix string) {
	tb.Helper()
	for _, k := range scanKeys(tb, c, prefix+"*") {
		c.rdb.Do(context.Background(), c.rdb.B().Del().Key(k).Build())
	}
}

func scanKeys(tb testing.TB, c *Client, pattern string) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keys []string
	var cursor uint64
	for {
		e, err := c.rdb.Do(ctx, c.rdb.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
		if err != nil {
			tb.Errorf("SCAN %s: %v", pattern, err)
			return keys
		}
		keys = append(keys, e.Elements...)
		if cursor = e.Cursor; cursor == 0 {
			return keys
		}
	}
}

func ptr[T any](v T) *T { return &v }

// apply runs cmd on s like a committed write, failing the test on an error.
func apply(tb testing.TB, s *userservice.State, cmd userservice.Command, at time.Time) *userservice.State {
	tb.Helper()
	o, err := userservice.Apply(s, cmd, userservice.Meta{Now: userservice.NewTime(at), CorrelationID: "test"})
	if err != nil {
		tb.Fatalf("Apply(%T): %v", cmd, err)
	}
	return o.State
}

// registered returns the state of a newly registered user (16 default preferences).
func registered(tb testing.TB, at time.Time) *userservice.State {
	tb.Helper()
	in := userservice.CreateUser{
		AuthID: userservice.NewID(), Email: "Ada." + userservice.NewID()[:8] + "@Example.com",
		FirstName: "Ada", LastName: "Lovelace", Username: ptr("ada_" + userservice.NewID()[:8]),
	}
	if err := in.Validate(); err != nil {
		tb.Fatalf("Validate: %v", err)
	}
	return apply(tb, nil, userservice.Register{ID: userservice.NewID(), Input: in}, at)
}

// typicalState is a user with the 16 default preferences, one of them changed to an
// object value, 5 enrollments (one completed, one dropped, progress and time spent
// on others), two logins and one logout.
func typicalState(tb testing.TB) *userservice.State {
	tb.Helper()
	t0 := time.Date(2024, 1, 15, 10, 30, 0, 123_000_000, time.UTC)
	s := registered(tb, t0)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	s = apply(tb, s, userservice.EditProfile{Input: userservice.UpdateUser{
		Bio:         userservice.Optional[string]{Set: true, Value: "Analyst — «poetical science» 🧮"},
		DisplayName: userservice.Optional[string]{Set: true, Value: "Countess of Lovelace"},
		Phone:       userservice.Optional[string]{Set: true, Value: "+441234567890"},
	}}, at(1))
	courses := make([]string, 5)
	for i := range courses {
		courses[i] = userservice.NewID()
		s = apply(tb, s, userservice.Enroll{CourseID: courses[i]}, at(2+i))
	}
	s = apply(tb, s, userservice.SetProgress{CourseID: courses[0], Input: userservice.UpdateProgress{
		Progress: ptr(100.0), TimeSpentSeconds: ptr(int64(3600))}}, at(10))
	s = apply(tb, s, userservice.SetProgress{CourseID: courses[1], Input: userservice.UpdateProgress{
		Progress: ptr(42.5), TimeSpentSeconds: ptr(int64(600))}}, at(11))
	s = apply(tb, s, userservice.EditEnrollment{CourseID: courses[2], Input: userservice.UpdateEnrollment{
		EnrollmentStatus: ptr(userservice.EnrollmentDropped)}}, at(12))
	s = apply(tb, s, userservice.SetPreferences{Category: userservice.CategoryUI, Input: userservice.UpsertPreferences{
		Preferences: []userservice.PreferenceInput{
			{Key: "theme", Value: json.RawMessage(`"dark"`)},
			{Key: "items_per_page", Value: json.RawMessage(`{"list":50,"grid":[1,2.5,null],"note":"é\u00e9"}`)},
		}}}, at(13))
	s = apply(tb, s, userservice.RecordLogin{SessionID: "sess-1", IPAddress: ptr("203.0.113.7"), UserAgent: ptr("Mozilla/5.0"), At: userservice.NewTime(at(14))}, at(14))
	s = apply(tb, s, userservice.RecordLogout{SessionID: "sess-1", At: userservice.NewTime(at(20))}, at(20))
	s = apply(tb, s, userservice.RecordLogin{SessionID: userservice.NewID(), At: userservice.NewTime(at(30))}, at(30))
	return withLastActive(s, userservice.NewTime(at(31)))
}

// withLastActive returns a copy of s with lastActiveAt set, as the write-behind
// does: without a version change.
func withLastActive(s *userservice.State, at userservice.Time) *userservice.State {
	c := *s
	c.User.LastActiveAt = &at
	return &c
}

// fakeDB stands in for PostgreSQL: the committed states, a StateLoader and a
// VersionProbe over them, counting calls.
type fakeDB struct {
	mu     sync.Mutex
	states map[string]*userservice.State
	loads  atomic.Int64
	probes atomic.Int64
}

func newFakeDB() *fakeDB { return &fakeDB{states: map[string]*userservice.State{}} }

func (db *fakeDB) LoadState(_ context.Context, userID string) (*userservice.State, error) {
	db.loads.Add(1)
	db.mu.Lock()
	defer db.mu.Unlock()
	if s := db.states[userID]; s != nil {
		return s, nil
	}
	return nil, userservice.ErrUserNotFound
}

func (db *fakeDB) UserVersion(_ context.Context, userID string) (int64, *userservice.Time, error) {
	db.probes.Add(1)
	db.mu.Lock()
	defer db.mu.Unlock()
	if s := db.states[userID]; s != nil {
		return s.User.Version, s.User.LastActiveAt, nil
	}
	return 0, nil, userservice.ErrUserNotFound
}

// put stores s as committed.
func (db *fakeDB) put(s *userservice.State) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.states[s.User.ID] = s
}

// commit applies cmd to the committed state of the user and returns the new state.
func (db *fakeDB) commit(tb testing.TB, userID string, cmd userservice.Command) *userservice.State {
	tb.Helper()
	db.mu.Lock()
	defer db.mu.Unlock()
	s := apply(tb, db.states[userID], cmd, time.Now())
	db.states[userID] = s
	return s
}

// touch records lastActiveAt behind the version's back.
func (db *fakeDB) touch(userID string, at userservice.Time) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.states[userID] = withLastActive(db.states[userID], at)
}

// eventually polls cond until it holds or the timeout passes.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// devstack runs `$DEVSTACK <verb> $DEVSTACK_PROFILE` (stop-redis, start-redis).
func devstack(tb testing.TB, verb string) {
	tb.Helper()
	script, profile := os.Getenv("DEVSTACK"), os.Getenv("DEVSTACK_PROFILE")
	if script == "" || profile == "" {
		tb.Fatal("DEVSTACK and DEVSTACK_PROFILE are not set: run the tests with `make test`")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, script, verb, profile).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s %s: %v\n%s", script, verb, profile, err, out)
	}
}

// errorCode is the domain code of err, for assertions.
func errorCode(err error) string { return userservice.ErrorCode(err) }

// counterDelta returns a function reporting how much c grew since this call.
func counterDelta(c interface{ Get() uint64 }) func() uint64 {
	start := c.Get()
	return func() uint64 { return c.Get() - start }
}
