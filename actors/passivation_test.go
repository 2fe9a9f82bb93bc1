package actors

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	userservice "github.com/lms-platform/userservice"
)

// TestPassivationChurn hammers a few users while their actors passivate after a
// few idle milliseconds: every call must be answered, no write lost, and two
// actors of one user must never be alive at once.
func TestPassivationChurn(t *testing.T) {
	const (
		users   = 50
		workers = 16
		runFor  = 2 * time.Second
	)
	store := newMemStore()
	store.loadDelay = 500 * time.Microsecond
	store.commitDelay = time.Millisecond
	store.jittered = true
	live := newLiveCounter()
	r := newTestRegistry(t, Config{IdleTimeout: 2 * time.Millisecond, CallTimeout: 10 * time.Second}, store, live.hooks())
	ids := make([]string, users)
	for i := range ids {
		ids[i] = store.seed(t)
	}
	okWrites := make([]atomic.Int64, users)
	var calls, failures atomic.Int64

	stop := time.Now().Add(runFor)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				u := rand.IntN(users)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var err error
				switch rand.IntN(3) {
				case 0:
					var s *userservice.State
					touch := userservice.Now()
					s, err = r.Get(ctx, ids[u], &touch)
					if err == nil && s.User.ID != ids[u] {
						t.Errorf("Get(%s) answered user %s", ids[u], s.User.ID)
					}
				default:
					_, err = r.Execute(ctx, ids[u], editBio("w"+strconv.Itoa(w)+"-"+strconv.Itoa(i)), meta())
					if err == nil {
						okWrites[u].Add(1)
					}
				}
				cancel()
				calls.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("call on %s: %v", ids[u], err)
				}
				if rand.IntN(4) == 0 { // let some actors go idle mid-traffic
					time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
				}
			}
		})
	}
	wg.Wait()

	ctx := ctxTimeout(t, 5*time.Second)
	for u, id := range ids {
		want := 1 + okWrites[u].Load()
		s, err := r.Get(ctx, id, nil)
		if err != nil || s.User.Version != want || store.version(id) != want {
			t.Fatalf("user %d: actor version %v (%v), stored %d; want %d", u, s.User.Version, err, store.version(id), want)
		}
	}
	if m := live.max(); m > 1 {
		t.Fatalf("%d actors of one user were alive at once", m)
	}
	act := r.Activations()
	t.Logf("%d calls, %d failures, %d activations of %d users", calls.Load(), failures.Load(), act, users)
	if act < 4*users {
		t.Fatalf("only %d activations: the test did not churn", act)
	}
	if int64(act) != live.starts.Load() {
		t.Fatalf("Activations() = %d, children started %d", act, live.starts.Load())
	}
	eventually(t, 5*time.Second, "idle actors to passivate", func() bool { return r.ActiveCount() == 0 })
}

func TestMaxActive(t *testing.T) {
	const users = 3000
	store := newMemStore()
	live := newLiveCounter()
	// 128 owners × ceil(256/128) = 256 actors at most.
	r := newTestRegistry(t, Config{Owners: 128, MaxActive: 256, CallTimeout: 10 * time.Second}, store, live.hooks())
	ids := make([]string, users)
	for i := range ids {
		ids[i] = store.seed(t)
	}
	ctx := ctxTimeout(t, 20*time.Second)

	var peak atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < users; i += 8 {
				var err error
				if i%3 == 0 {
					_, err = r.Execute(ctx, ids[i], editBio("capped"), meta())
				} else {
					_, err = r.Get(ctx, ids[i], nil)
				}
				if err != nil {
					t.Errorf("call on user %d: %v", i, err)
				}
				if n := int64(r.ActiveCount()); n > peak.Load() {
					peak.Store(n)
				}
			}
		})
	}
	wg.Wait()
	eventually(t, 5*time.Second, "the cap to hold", func() bool { return r.ActiveCount() <= 256 })
	t.Logf("peak %d active, %d after settling, %d activations", peak.Load(), r.ActiveCount(), r.Activations())

	// Evicted users come back with their writes.
	for i := 0; i < users; i += 3 {
		s, err := r.Get(ctx, ids[i], nil)
		if err != nil || s.User.Version != 2 {
			t.Fatalf("user %d after eviction: %+v, %v", i, s, err)
		}
	}
	if m := live.max(); m > 1 {
		t.Fatalf("%d actors of one user were alive at once", m)
	}
	eventually(t, 5*time.Second, "the cap to hold", func() bool { return r.ActiveCount() <= 256 })
}

// TestMaxActiveWithBusyActors runs twice as many continuously writing users as the
// cap allows. An owner over its cap must not spin asking busy children to stop:
// a child that cancels a passivation for being busy is skipped until it reports
// idle, so there is at most one cancelled passivation per request, every call is
// answered, one actor per user at most, and the cap holds again once the load ends.
func TestMaxActiveWithBusyActors(t *testing.T) {
	const (
		owners    = 128 // the least allowed
		maxActive = 128 // one actor per owner
		users     = 2 * maxActive
		runFor    = time.Second
	)
	store := newMemStore()
	store.loadDelay = 200 * time.Microsecond
	store.commitDelay = 2 * time.Millisecond
	live := newLiveCounter()
	r := newTestRegistry(t, Config{Owners: owners, MaxActive: maxActive, CallTimeout: 10 * time.Second}, store, live.hooks())
	ids := make([]string, users)
	for i := range ids {
		ids[i] = store.seed(t)
	}
	cancelledBefore := passivationsCancelled.Get()
	var calls, writes atomic.Int64
	okWrites := make([]atomic.Int64, users)
	var peak atomic.Int64
	stop := time.Now().Add(runFor)
	var wg sync.WaitGroup
	for u := range users {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := r.Execute(ctx, ids[u], editBio("b"+strconv.Itoa(i)), meta())
				cancel()
				calls.Add(1)
				if err != nil {
					t.Errorf("user %d write %d: %v", u, i, err)
					return
				}
				writes.Add(1)
				okWrites[u].Add(1)
				if n := int64(r.ActiveCount()); n > peak.Load() {
					peak.Store(n)
				}
			}
		})
	}
	wg.Wait()
	cancelled := passivationsCancelled.Get() - cancelledBefore
	t.Logf("%d writes by %d users over a cap of %d: peak %d active, %d passivations cancelled, %d activations",
		writes.Load(), users, maxActive, peak.Load(), cancelled, r.Activations())
	if cancelled > uint64(calls.Load()) {
		t.Fatalf("%d passivations cancelled for %d requests: the owners asked busy actors again and again", cancelled, calls.Load())
	}
	if m := live.max(); m > 1 {
		t.Fatalf("%d actors of one user were alive at once", m)
	}
	ctx := ctxTimeout(t, 10*time.Second)
	for u, id := range ids {
		want := 1 + okWrites[u].Load()
		if s, err := r.Get(ctx, id, nil); err != nil || s.User.Version != want {
			t.Fatalf("user %d: %+v, %v; want version %d", u, s, err, want)
		}
	}
	eventually(t, 5*time.Second, "the cap to hold once the load ended", func() bool { return r.ActiveCount() <= maxActive })
}
