package actors

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	userservice "github.com/lms-platform/userservice"
)

// BenchmarkActorRoundTrip measures one Get on a hot actor: caller → owner → user
// actor → caller. Run: go test -run '^$' -bench ActorRoundTrip ./actors/
func BenchmarkActorRoundTrip(b *testing.B) {
	store := newMemStore()
	r := newTestRegistry(b, Config{}, store, hooks{})
	id := store.seed(b)
	ctx := context.Background()
	if _, err := r.Get(ctx, id, nil); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Get(ctx, id, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Get(ctx, id, nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// sharedState hands every user the same tiny state, so that the heap growth of
// activating N users is the actors' own overhead.
type sharedState struct{ s *userservice.State }

func (l sharedState) LoadState(context.Context, string) (*userservice.State, error) { return l.s, nil }

// TestIdleActorFootprint measures the heap held per idle user actor beyond its
// state: protoactor's context, mailbox, PID and registry entry, the receive-timeout
// timer, the owner's entry, and our actor struct.
func TestIdleActorFootprint(t *testing.T) {
	const n = 20_000
	store := newMemStore()
	tiny := &userservice.State{User: userservice.User{Version: 1}}
	r, err := newRegistry(Config{Owners: 128, MaxActive: 10 * n}, sharedState{tiny}, store, testLogger(), hooks{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	ids := make([]string, n)
	for i := range ids {
		ids[i] = userservice.NewID()
	}
	ctx := ctxTimeout(t, time.Minute)
	if _, err := r.Get(ctx, userservice.NewID(), nil); err != nil { // warm up the owners' maps and pools
		t.Fatal(err)
	}

	before := heapInUse()
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
	if got := r.ActiveCount(); got != n+1 {
		t.Fatalf("ActiveCount = %d, want %d", got, n+1)
	}
	perActor := (int64(heapInUse()) - int64(before)) / n
	t.Logf("heap per idle actor: %d bytes (%d actors)", perActor, n)
	runtime.KeepAlive(ids)
	if !raceEnabled && perActor > 2048 {
		t.Fatalf("an idle actor costs %d bytes, the budget is 2048", perActor)
	}
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
