package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	userservice "github.com/lms-platform/userservice"
)

func TestNewRefusesBadInput(t *testing.T) {
	store := newMemStore()
	tests := []struct {
		name      string
		cfg       Config
		loader    userservice.StateLoader
		committer userservice.Committer
		logger    bool
	}{
		{name: "nil loader", committer: store, logger: true},
		{name: "nil committer", loader: store, logger: true},
		{name: "nil logger", loader: store, committer: store},
		{name: "too few owners", cfg: Config{Owners: 64}, loader: store, committer: store, logger: true},
		{name: "negative max active", cfg: Config{MaxActive: -1}, loader: store, committer: store, logger: true},
		{name: "negative timeout", cfg: Config{CallTimeout: -time.Second}, loader: store, committer: store, logger: true},
		{name: "idle timeout under 1ms", cfg: Config{IdleTimeout: time.Microsecond}, loader: store, committer: store, logger: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger := testLogger()
			if !tt.logger {
				logger = nil
			}
			r, err := New(tt.cfg, tt.loader, tt.committer, logger)
			if err == nil {
				_ = r.Shutdown(context.Background())
				t.Fatal("New accepted bad input")
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Owners: 256, IdleTimeout: 10 * time.Minute, MaxActive: 100_000, CallTimeout: 5 * time.Second, LoadTimeout: 5 * time.Second, TouchInterval: time.Minute}
	if cfg.OnCommit != nil {
		t.Fatal("OnCommit defaults to a hook")
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("defaults = %+v, want %+v", cfg, want)
	}
}

func TestGetAndRegister(t *testing.T) {
	store := newMemStore()
	r := newTestRegistry(t, Config{}, store, hooks{})
	ctx := ctxTimeout(t, 5*time.Second)

	t.Run("known user is served from its actor", func(t *testing.T) {
		id := store.seed(t)
		s, err := r.Get(ctx, id, nil)
		if err != nil || s.User.ID != id || s.User.Version != 1 {
			t.Fatalf("Get = %+v, %v", s, err)
		}
		if _, err := r.Get(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
		if n := store.loadCount(id); n != 1 {
			t.Fatalf("loads = %d, want 1 (second Get from memory)", n)
		}
	})
	t.Run("unknown user is not found", func(t *testing.T) {
		id := userservice.NewID()
		if _, err := r.Get(ctx, id, nil); !errors.Is(err, userservice.ErrUserNotFound) {
			t.Fatalf("Get err = %v, want ErrUserNotFound", err)
		}
		if _, err := r.Execute(ctx, id, editBio("x"), meta()); !errors.Is(err, userservice.ErrUserNotFound) {
			t.Fatalf("Execute err = %v, want ErrUserNotFound", err)
		}
		if len(store.commitsOf(id)) != 0 {
			t.Fatal("a command on an unknown user committed something")
		}
	})
	t.Run("register creates an unknown user", func(t *testing.T) {
		id := userservice.NewID()
		if _, err := r.Get(ctx, id, nil); !errors.Is(err, userservice.ErrUserNotFound) {
			t.Fatalf("Get err = %v, want ErrUserNotFound", err)
		}
		out, err := r.Execute(ctx, id, registerCmd(id), meta())
		if err != nil || !out.Created {
			t.Fatalf("Register = %+v, %v", out, err)
		}
		s, err := r.Get(ctx, id, nil)
		if err != nil || s.User.Version != 1 || store.version(id) != 1 {
			t.Fatalf("after Register: Get = %+v, %v; stored version %d", s, err, store.version(id))
		}
		if _, err := r.Execute(ctx, id, registerCmd(id), meta()); userservice.ErrorCode(err) != userservice.ECodeConflict {
			t.Fatalf("second Register err = %v, want CONFLICT", err)
		}
	})
}

func TestExecuteLinearizable(t *testing.T) {
	store := newMemStore()
	store.commitDelay, store.jittered = time.Millisecond, true
	r := newTestRegistry(t, Config{}, store, hooks{})
	id := store.seed(t)
	ctx := ctxTimeout(t, 10*time.Second)

	const n = 100
	versions := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			out, err := r.Execute(ctx, id, editBio("bio "+strconv.Itoa(i)), meta())
			if err != nil {
				t.Errorf("Execute %d: %v", i, err)
				return
			}
			versions[i] = out.State.User.Version
		})
	}
	wg.Wait()

	seen := map[int64]bool{}
	for _, v := range versions {
		if seen[v] {
			t.Fatalf("version %d answered twice", v)
		}
		seen[v] = true
	}
	s, err := r.Get(ctx, id, nil)
	if err != nil || s.User.Version != 1+n || store.version(id) != 1+n {
		t.Fatalf("final version: actor %v (%v), store %d; want %d", s.User.Version, err, store.version(id), 1+n)
	}
	for i, m := range store.commitsOf(id)[1:] { // [0] is the seed
		if m.BaseVersion != int64(i+1) {
			t.Fatalf("commit %d has base version %d, want %d", i, m.BaseVersion, i+1)
		}
	}
}

func TestConcurrentEnrollSameCourse(t *testing.T) {
	store := newMemStore()
	store.commitDelay, store.jittered = time.Millisecond, true
	r := newTestRegistry(t, Config{}, store, hooks{})
	id, course := store.seed(t), userservice.NewID()
	ctx := ctxTimeout(t, 10*time.Second)

	var created, already atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			out, err := r.Execute(ctx, id, userservice.Enroll{CourseID: course}, meta())
			switch {
			case err == nil && out.Created:
				created.Add(1)
			case userservice.ErrorCode(err) == userservice.ECodeAlreadyEnrolled:
				already.Add(1)
			default:
				t.Errorf("Enroll = %+v, %v", out, err)
			}
		})
	}
	wg.Wait()
	if created.Load() != 1 || already.Load() != 19 {
		t.Fatalf("created %d, already enrolled %d; want 1 and 19", created.Load(), already.Load())
	}
}

func TestTouch(t *testing.T) {
	store := newMemStore()
	r := newTestRegistry(t, Config{}, store, hooks{})
	id := store.seed(t)
	ctx := ctxTimeout(t, 5*time.Second)
	t0 := userservice.Now()
	at := func(d time.Duration) *userservice.Time { v := userservice.NewTime(t0.Add(d)); return &v }

	steps := []struct {
		name      string
		touch     *userservice.Time
		wantLast  *userservice.Time
		wantCalls int
	}{
		{"first touch records activity", at(0), at(0), 1},
		{"touch within the interval is coalesced", at(30 * time.Second), at(0), 1},
		{"get without touch changes nothing", nil, at(0), 1},
		{"touch after the interval records again", at(61 * time.Second), at(61 * time.Second), 2},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			s, err := r.Get(ctx, id, st.touch)
			if err != nil {
				t.Fatal(err)
			}
			if s.User.LastActiveAt == nil || !s.User.LastActiveAt.Equal(st.wantLast.Time) {
				t.Fatalf("lastActiveAt = %v, want %v", s.User.LastActiveAt, st.wantLast)
			}
			if s.User.Version != 1 {
				t.Fatalf("version = %d, touch must not change it", s.User.Version)
			}
			store.set(func(s *memStore) {
				if got := len(s.touches[id]); got != st.wantCalls {
					t.Fatalf("TouchLastActive calls = %d, want %d", got, st.wantCalls)
				}
			})
		})
	}

	t.Run("touch during a commit survives the commit", func(t *testing.T) {
		store.set(func(s *memStore) { s.commitDelay = 100 * time.Millisecond })
		done := make(chan error, 1)
		go func() { _, err := r.Execute(ctx, id, editBio("during"), meta()); done <- err }()
		time.Sleep(20 * time.Millisecond)
		if _, err := r.Get(ctx, id, at(3*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		s, err := r.Get(ctx, id, nil)
		if err != nil || s.User.Version != 2 || !s.User.LastActiveAt.Equal(at(3*time.Minute).Time) {
			t.Fatalf("after commit: %+v, %v", s.User, err)
		}
	})
}

func TestApplyPanicIsAnInternalError(t *testing.T) {
	store := newMemStore()
	r := newTestRegistry(t, Config{}, store, hooks{})
	id, course := store.seed(t), userservice.NewID()
	ctx := ctxTimeout(t, 5*time.Second)
	if _, err := r.Execute(ctx, id, userservice.Enroll{CourseID: course}, meta()); err != nil {
		t.Fatal(err)
	}
	// Unvalidated input: a nil progress makes Apply dereference nil.
	_, err := r.Execute(ctx, id, userservice.SetProgress{CourseID: course}, meta())
	if userservice.ErrorCode(err) != userservice.ECodeInternal || userservice.ErrorMessage(err) != "Internal server error" {
		t.Fatalf("err = %v, want a generic INTERNAL_ERROR", err)
	}
	out, err := r.Execute(ctx, id, editBio("still alive"), meta())
	if err != nil || out.State.User.Version != 3 {
		t.Fatalf("next Execute = %+v, %v; want version 3", out, err)
	}
}

func TestLoadFailure(t *testing.T) {
	store := newMemStore()
	store.loadDelay = 20 * time.Millisecond
	var failing atomic.Bool
	failing.Store(true)
	store.failLoad = func(string) error {
		if failing.Load() {
			return errors.New("connection refused")
		}
		return nil
	}
	r := newTestRegistry(t, Config{}, store, hooks{})
	id := store.seed(t)
	ctx := ctxTimeout(t, 5*time.Second)
	before := loadErrors.Get()

	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if _, err := r.Get(ctx, id, nil); userservice.ErrorCode(err) != userservice.ECodeUnavailable {
				t.Errorf("Get while the database is down: err = %v, want %s", err, userservice.ECodeUnavailable)
			}
		})
	}
	wg.Wait()
	if loadErrors.Get() == before {
		t.Fatal("load error not counted")
	}

	failing.Store(false)
	s, err := r.Get(ctx, id, nil)
	if err != nil || s.User.Version != 1 {
		t.Fatalf("Get after recovery = %+v, %v", s, err)
	}
	if _, err := r.Execute(ctx, id, editBio("back"), meta()); err != nil {
		t.Fatalf("Execute after recovery: %v", err)
	}
}

func TestCommitFailure(t *testing.T) {
	tests := []struct {
		name string
		// fail is injected once; write says whether the mutation landed anyway.
		fail       error
		write      bool
		otherWrite bool // another process bumps the stored version first
		wantCode   string
		wantReload bool
		wantNext   int64 // version after the next successful command
	}{
		{name: "unknown outcome, nothing written", fail: userservice.Wrap(userservice.ECodeUnavailable, "db down", errors.New("eof")),
			wantCode: userservice.ECodeUnavailable, wantReload: true, wantNext: 2},
		{name: "unknown outcome that committed", fail: errors.New("connection reset after commit"), write: true,
			wantCode: userservice.ECodeInternal, wantReload: true, wantNext: 3},
		{name: "stale version", otherWrite: true,
			wantCode: userservice.ECodeUnavailable, wantReload: true, wantNext: 3},
		{name: "conflict leaves state unchanged", fail: userservice.Errorf(userservice.ECodeConflict, "username taken"),
			wantCode: userservice.ECodeConflict, wantReload: false, wantNext: 2},
		{name: "duplicate message leaves state unchanged", fail: userservice.ErrDuplicateMessage,
			wantCode: userservice.ECodeConflict, wantReload: false, wantNext: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newMemStore()
			var once atomic.Bool
			store.failCommit = func(*userservice.Mutation) (error, bool) {
				if tt.fail != nil && once.CompareAndSwap(false, true) {
					return tt.fail, tt.write
				}
				return nil, true
			}
			r := newTestRegistry(t, Config{}, store, hooks{})
			id := store.seed(t)
			ctx := ctxTimeout(t, 5*time.Second)
			if _, err := r.Get(ctx, id, nil); err != nil {
				t.Fatal(err)
			}
			if tt.otherWrite {
				store.set(func(s *memStore) {
					next := *s.users[id]
					next.User.Version++
					s.users[id] = &next
				})
			}

			_, err := r.Execute(ctx, id, editBio("first"), meta())
			if code := userservice.ErrorCode(err); code != tt.wantCode {
				t.Fatalf("Execute err = %v (code %q), want code %q", err, code, tt.wantCode)
			}
			out, err := r.Execute(ctx, id, editBio("second"), meta())
			if err != nil {
				t.Fatalf("next Execute: %v", err)
			}
			if out.State.User.Version != tt.wantNext || store.version(id) != tt.wantNext {
				t.Fatalf("next version: actor %d, store %d; want %d", out.State.User.Version, store.version(id), tt.wantNext)
			}
			wantLoads := 1
			if tt.wantReload {
				wantLoads = 2
			}
			if n := store.loadCount(id); n != wantLoads {
				t.Fatalf("loads = %d, want %d", n, wantLoads)
			}
		})
	}
}

func TestDeadlines(t *testing.T) {
	t.Run("caller times out but the write completes", func(t *testing.T) {
		store := newMemStore()
		r := newTestRegistry(t, Config{}, store, hooks{})
		id := store.seed(t)
		ctx := ctxTimeout(t, 5*time.Second)
		if _, err := r.Get(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
		store.set(func(s *memStore) { s.commitDelay = 500 * time.Millisecond })

		start := time.Now()
		_, err := r.Execute(ctxTimeout(t, 100*time.Millisecond), id, editBio("slow"), meta())
		if userservice.ErrorCode(err) != userservice.ECodeTimeout || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want TIMEOUT", err)
		}
		if el := time.Since(start); el > 400*time.Millisecond {
			t.Fatalf("returned after %v; the deadline was 100ms", el)
		}
		// The store commits before the actor hears of it, and until then a read is
		// served the state before the write (the write's caller got no answer, so
		// either order is linearizable): the read must see it once the actor has.
		eventually(t, 2*time.Second, "the write to commit", func() bool { return store.version(id) == 2 })
		eventually(t, 2*time.Second, "a read to see the write", func() bool {
			s, err := r.Get(ctx, id, nil)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			return s.User.Version == 2
		})
	})
	t.Run("a queued command whose caller gave up is not run", func(t *testing.T) {
		store := newMemStore()
		store.commitDelay = 200 * time.Millisecond
		r := newTestRegistry(t, Config{}, store, hooks{})
		id := store.seed(t)
		ctx := ctxTimeout(t, 5*time.Second)
		first := make(chan error, 1)
		go func() { _, err := r.Execute(ctx, id, editBio("first"), meta()); first <- err }()
		eventually(t, 2*time.Second, "the first commit to start", func() bool { return store.started.Load() == 1 })
		if _, err := r.Execute(ctxTimeout(t, 50*time.Millisecond), id, editBio("late"), meta()); userservice.ErrorCode(err) != userservice.ECodeTimeout {
			t.Fatalf("queued Execute err = %v, want TIMEOUT", err)
		}
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if s, err := r.Get(ctx, id, nil); err != nil || s.User.Version != 2 || len(store.commitsOf(id)) != 2 {
			t.Fatalf("version %d, %d commits; want 2 and 2 (seed + first)", s.User.Version, len(store.commitsOf(id)))
		}
	})
	t.Run("a call without deadline uses CallTimeout", func(t *testing.T) {
		store := newMemStore()
		store.loadDelay = time.Second
		r := newTestRegistry(t, Config{CallTimeout: 50 * time.Millisecond}, store, hooks{})
		start := time.Now()
		if _, err := r.Get(context.Background(), store.seed(t), nil); userservice.ErrorCode(err) != userservice.ECodeTimeout {
			t.Fatalf("err = %v, want TIMEOUT", err)
		}
		if el := time.Since(start); el > 500*time.Millisecond {
			t.Fatalf("returned after %v; CallTimeout is 50ms", el)
		}
	})
	t.Run("a canceled context returns at once", func(t *testing.T) {
		store := newMemStore()
		r := newTestRegistry(t, Config{}, store, hooks{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := r.Get(ctx, store.seed(t), nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestShutdownFinishesInFlightWrites(t *testing.T) {
	store := newMemStore()
	r, err := newRegistry(Config{Owners: 128}, store, store, testLogger(), hooks{})
	if err != nil {
		t.Fatal(err)
	}
	id := store.seed(t)
	ctx := ctxTimeout(t, 5*time.Second)
	if _, err := r.Get(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	store.set(func(s *memStore) { s.commitDelay = 200 * time.Millisecond })
	done := make(chan error, 1)
	go func() { _, err := r.Execute(ctx, id, editBio("last"), meta()); done <- err }()
	eventually(t, 2*time.Second, "the commit to start", func() bool { return store.started.Load() == 1 })

	if err := r.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if v := store.version(id); v != 2 {
		t.Fatalf("Shutdown returned with stored version %d, before the commit in flight", v)
	}
	if err := <-done; err != nil {
		t.Fatalf("in-flight Execute: %v", err)
	}
	if _, err := r.Get(ctx, id, nil); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("Get after Shutdown err = %v, want ErrShuttingDown", err)
	}
	if n := r.ActiveCount(); n != 0 {
		t.Fatalf("ActiveCount after Shutdown = %d", n)
	}
}

func TestUserIDOf(t *testing.T) {
	for _, userID := range []string{"0190a4c2-6f1e-7c3a-9b1d-2f6e8a4c1b3d", "with$dollar", ""} {
		t.Run(fmt.Sprintf("%q", userID), func(t *testing.T) {
			store := newMemStore()
			r := newTestRegistry(t, Config{}, store, hooks{})
			owner := r.ownerOf(userID)
			child := owner.Id + "/" + userID + r.system.ProcessRegistry.NextId()
			if got := userIDOf(owner, r.system.NewLocalPID(child)); got != userID {
				t.Fatalf("userIDOf(%q) = %q", child, got)
			}
		})
	}
}

func TestMetricsExposed(t *testing.T) {
	store := newMemStore()
	r := newTestRegistry(t, Config{}, store, hooks{})
	if _, err := r.Get(ctxTimeout(t, 5*time.Second), store.seed(t), nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	metrics.WritePrometheus(&buf, false)
	for _, want := range []string{
		"user_service_actors_active ",
		"user_service_actor_activations_total ",
		"user_service_actor_passivations_total ",
		`user_service_actor_mailbox_wait_seconds_bucket{le="0.001"} `,
		`user_service_actor_message_duration_seconds_bucket{le="+Inf"} `,
		"user_service_actor_load_errors_total ",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestOnCommitSeesEveryCommittedState(t *testing.T) {
	store := newMemStore()
	var mu sync.Mutex
	var versions []int64
	r := newTestRegistry(t, Config{OnCommit: func(s *userservice.State) {
		mu.Lock()
		versions = append(versions, s.User.Version)
		mu.Unlock()
	}}, store, hooks{})
	ctx := ctxTimeout(t, 5*time.Second)
	id := userservice.NewID()
	if _, err := r.Execute(ctx, id, registerCmd(id), meta()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := r.Execute(ctx, id, userservice.ChangeRole{Role: []userservice.Role{userservice.RoleAdmin, userservice.RoleStudent, userservice.RoleInstructor}[i]}, meta()); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(versions, []int64{1, 2, 3, 4}) {
		t.Fatalf("OnCommit saw versions %v, want [1 2 3 4]", versions)
	}
}

func TestOnPassivateSeesTheLastState(t *testing.T) {
	store := newMemStore()
	var mu sync.Mutex
	var passivated []int64
	r := newTestRegistry(t, Config{IdleTimeout: 50 * time.Millisecond, OnPassivate: func(s *userservice.State) {
		mu.Lock()
		passivated = append(passivated, s.User.Version)
		mu.Unlock()
	}}, store, hooks{})
	ctx := ctxTimeout(t, 5*time.Second)
	id := userservice.NewID()
	if _, err := r.Execute(ctx, id, registerCmd(id), meta()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Execute(ctx, id, userservice.ChangeRole{Role: userservice.RoleAdmin}, meta()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the idle actor passivated", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(passivated) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(passivated, []int64{2}) {
		t.Fatalf("OnPassivate saw versions %v, want [2]", passivated)
	}
}

// TestUndeliverableRequestIsAnswered: a request that reaches protoactor's dead
// letter process (here: its owner is gone) is answered at once with
// ErrShuttingDown, not left to its deadline, and is not counted as pending.
func TestUndeliverableRequestIsAnswered(t *testing.T) {
	store := newMemStore()
	r, err := newRegistry(Config{Owners: 128, CallTimeout: 10 * time.Second}, store, store, testLogger(), hooks{})
	if err != nil {
		t.Fatal(err)
	}
	id := store.seed(t)
	if err := r.system.Root.StopFuture(r.ownerOf(id)).Wait(); err != nil {
		t.Fatalf("stopping the owner: %v", err)
	}
	start := time.Now()
	if _, err := r.Get(context.Background(), id, nil); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("Get through a stopped owner: err = %v, want ErrShuttingDown", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("answered after %v, want at once rather than at the deadline", d)
	}
	if n := r.pending.Load(); n != 0 {
		t.Fatalf("%d requests still pending, want 0", n)
	}
}
