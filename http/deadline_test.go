package http

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestRequestDeadlinesBounds: requests of one tick share a context, and every
// request gets at least its timeout and at most one tick more, wherever in the
// tick it starts; a request after the tick gets a new context.
func TestRequestDeadlinesBounds(t *testing.T) {
	const timeout = 2 * time.Second
	d := newRequestDeadlines(context.Background(), timeout)
	if d.tick != maxDeadlineTick {
		t.Fatalf("tick %v, want %v", d.tick, maxDeadlineTick)
	}
	t0 := time.Now()
	check := func(start time.Time, ctx context.Context) {
		t.Helper()
		dl, ok := ctx.Deadline()
		if !ok {
			t.Fatal("request context has no deadline")
		}
		if left := dl.Sub(start); left < timeout || left > timeout+d.tick {
			t.Fatalf("request started at +%v has %v left, want %v to %v", start.Sub(t0), left, timeout, timeout+d.tick)
		}
	}
	first := d.context(t0)
	check(t0, first)
	late := t0.Add(d.tick - time.Nanosecond) // the tick's last moment
	if got := d.context(late); got != first {
		t.Fatal("a request of the same tick got a context of its own")
	}
	check(late, first)
	next := t0.Add(d.tick)
	second := d.context(next)
	if second == first {
		t.Fatal("a request after the tick shares the previous tick's context")
	}
	check(next, second)
}

// TestRequestDeadlinesShortTimeout: a timeout too short for a tick still bounds
// every request by exactly its timeout.
func TestRequestDeadlinesShortTimeout(t *testing.T) {
	d := newRequestDeadlines(context.Background(), 50*time.Nanosecond)
	now := time.Now()
	ctx := d.context(now)
	if dl, _ := ctx.Deadline(); !dl.Equal(now.Add(50 * time.Nanosecond)) {
		t.Fatalf("deadline %v after start, want 50ns", dl.Sub(now))
	}
	<-ctx.Done()
	if ctx.Err() != context.DeadlineExceeded {
		t.Fatalf("err %v", ctx.Err())
	}
}

// TestRequestDeadlinesEndWithTheParent: shutdown (the base context's cancel)
// ends every request context at once, and requests from many goroutines at once
// all get contexts within the bounds (run with -race).
func TestRequestDeadlinesEndWithTheParent(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	const timeout = time.Minute
	d := newRequestDeadlines(parent, timeout)
	var wg sync.WaitGroup
	ctxs := make([]context.Context, 64)
	for i := range ctxs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			ctxs[i] = d.context(start)
			if dl, _ := ctxs[i].Deadline(); dl.Sub(start) < timeout || dl.Sub(start) > timeout+d.tick {
				t.Errorf("request has %v left", dl.Sub(start))
			}
		}()
	}
	wg.Wait()
	cancel()
	for i, ctx := range ctxs {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			t.Fatalf("request %d's context outlived the parent's cancel", i)
		}
	}
}

// BenchmarkRequestContext: a request's context from the shared deadlines against
// one context.WithTimeout (and its cancel) per request, from two goroutines.
func BenchmarkRequestContext(b *testing.B) {
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Run("per-request", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ctx, cancel := context.WithTimeout(base, 10*time.Second)
				_ = ctx
				cancel()
			}
		})
	})
	b.Run("shared", func(b *testing.B) {
		d := newRequestDeadlines(base, 10*time.Second)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = d.context(time.Now())
			}
		})
	})
}
