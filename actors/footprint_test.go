package actors

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	userservice "github.com/lms-platform/userservice"
)

// statesByID hands every user its own state, built beforehand.
type statesByID map[string]*userservice.State

func (m statesByID) LoadState(_ context.Context, id string) (*userservice.State, error) {
	return m[id], nil
}

// typicalUser is issue 16's typical user: a profile with a username, display
// name and bio, the 16 default preferences, 3 enrollments (one with progress) and
// two sessions (one ended), built through Apply as the seeder and the service do.
func typicalUser(tb testing.TB, i int) *userservice.State {
	tb.Helper()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Second)
	m := func(min int) userservice.Meta {
		return userservice.Meta{Now: userservice.NewTime(at.Add(time.Duration(min) * time.Minute)), CorrelationID: "footprint"}
	}
	username, display, bio := "user_"+strconv.Itoa(i), "User Number "+strconv.Itoa(i), "Lifelong learner, "+strconv.Itoa(i)
	out, err := userservice.Apply(nil, userservice.Register{ID: userservice.NewID(), Input: userservice.CreateUser{
		AuthID: userservice.NewID(), Email: "user." + strconv.Itoa(i) + "@example.com", FirstName: "Ada", LastName: "Lovelace",
		Username: &username, DisplayName: &display, Bio: &bio,
	}}, m(0))
	if err != nil {
		tb.Fatal(err)
	}
	s := out.State
	step := func(cmd userservice.Command, min int) {
		tb.Helper()
		out, err := userservice.Apply(s, cmd, m(min))
		if err != nil {
			tb.Fatalf("%T: %v", cmd, err)
		}
		s = out.State
	}
	var courses []string
	for k := range 3 {
		courses = append(courses, userservice.NewID())
		step(userservice.Enroll{CourseID: courses[k]}, 1+k)
	}
	progress, spent := 42.5, int64(600)
	step(userservice.SetProgress{CourseID: courses[0], Input: userservice.UpdateProgress{Progress: &progress, TimeSpentSeconds: &spent}}, 5)
	ip, agent := "203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64)"
	first := userservice.NewID()
	step(userservice.RecordLogin{SessionID: first, IPAddress: &ip, UserAgent: &agent, At: m(6).Now}, 6)
	step(userservice.RecordLogout{SessionID: first, At: m(7).Now}, 7)
	step(userservice.RecordLogin{SessionID: userservice.NewID(), IPAddress: &ip, UserAgent: &agent, At: m(8).Now}, 8)
	if len(s.Preferences) != 16 || len(s.Enrollments) != 3 || len(s.Sessions) != 2 {
		tb.Fatalf("typical user: %d preferences, %d enrollments, %d sessions; want 16, 3, 2", len(s.Preferences), len(s.Enrollments), len(s.Sessions))
	}
	return s
}

// TestActiveUserFootprint measures what one active typical user costs in memory
// (issue 16: at most 6 KiB, so that 1,000,000 active users fit in 8 GiB): the heap
// of its state, the heap of its actor beyond it, and the process's RSS growth. It
// activates FOOTPRINT_USERS users (default 20,000) and is a measurement, not a
// timed test; it fails only past a generous bound (a regression guard):
//
//	go test -run '^TestActiveUserFootprint$' -v ./actors/
//	FOOTPRINT_USERS=1000000 go test -run '^TestActiveUserFootprint$' -v -timeout 30m ./actors/
func TestActiveUserFootprint(t *testing.T) {
	n := 20_000
	if v, err := strconv.Atoi(os.Getenv("FOOTPRINT_USERS")); err == nil && v > 0 {
		n = v
	}
	if testing.Short() {
		n = 2000
	}
	heap0, rss0 := heapInUse(), rssBytes(t)
	states := make(statesByID, n)
	ids := make([]string, 0, n)
	for i := range n {
		s := typicalUser(t, i)
		states[s.User.ID] = s
		ids = append(ids, s.User.ID)
	}
	heap1 := heapInUse()

	r, err := newRegistry(Config{Owners: 256, MaxActive: 2 * n}, states, newMemStore(), testLogger(), hooks{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	ctx := ctxTimeout(t, 30*time.Minute)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				if _, err := r.Get(ctx, ids[i], nil); err != nil {
					t.Errorf("Get: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := r.ActiveCount(); got != n {
		t.Fatalf("ActiveCount = %d, want %d", got, n)
	}
	heap2 := heapInUse()
	debug.FreeOSMemory()
	rss2 := rssBytes(t)

	state := float64(int64(heap1)-int64(heap0)) / float64(n)
	actor := float64(int64(heap2)-int64(heap1)) / float64(n)
	rss := float64(rss2-rss0) / float64(n)
	t.Logf("%d active typical users: heap per user %.0f bytes (state %.0f, actor %.0f); RSS growth per user %.0f bytes; "+
		"1,000,000 users: %.1f GiB of heap (issue 16's target: 6 KiB per user, 8 GiB per million)",
		n, state+actor, state, actor, rss, (state+actor)*1e6/(1<<30))
	runtime.KeepAlive(states)
	runtime.KeepAlive(ids)
	if !raceEnabled && state+actor > 24<<10 {
		t.Fatalf("an active typical user costs %.0f bytes of heap, more than the 24 KiB regression bound", state+actor)
	}
}

// rssBytes is the process's resident set (VmRSS), 0 where /proc is missing.
func rssBytes(tb testing.TB) int64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
