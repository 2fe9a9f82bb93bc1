package redis

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"
)

func newTestLimiter(tb testing.TB, c *Client, cfg RateLimitConfig) *RateLimiter {
	tb.Helper()
	r, err := NewRateLimiter(c, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func TestRateLimiterSharesOneLimitAcrossProcesses(t *testing.T) {
	prefix := randomPrefix()
	cfg := RateLimitConfig{Max: 10, Window: time.Minute}
	// Two clients: two processes sharing one Redis.
	limiters := []*RateLimiter{
		newTestLimiter(t, newTestClient(t, Config{KeyPrefix: prefix}), cfg),
		newTestLimiter(t, newTestClient(t, Config{KeyPrefix: prefix}), cfg),
	}
	var (
		mu                 sync.Mutex
		allowed, rejected  int
		remainingByAllowed = map[int]int{}
		wg                 sync.WaitGroup
	)
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := limiters[i%2].Allow(context.Background(), "user-1")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("Allow: %v", err)
			case d.Allowed:
				allowed++
				remainingByAllowed[d.Remaining]++
			default:
				rejected++
				if d.RetryAfter <= 0 || d.Remaining != 0 {
					t.Errorf("rejected with RetryAfter %v, Remaining %d", d.RetryAfter, d.Remaining)
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 10 || rejected != 20 {
		t.Errorf("allowed %d, rejected %d; want exactly 10 and 20", allowed, rejected)
	}
	for r := range 10 { // each count 1..10 went to exactly one request
		if remainingByAllowed[r] != 1 {
			t.Errorf("Remaining %d was answered %d times, want once", r, remainingByAllowed[r])
		}
	}
}

func TestRateLimiterDecision(t *testing.T) {
	ctx := context.Background()
	c := newTestClient(t, Config{})
	window := time.Minute
	r := newTestLimiter(t, c, RateLimitConfig{Max: 3, Window: window})
	tests := []struct {
		allowed   bool
		remaining int
	}{{true, 2}, {true, 1}, {true, 0}, {false, 0}, {false, 0}}
	for i, tt := range tests {
		start := time.Now()
		d, err := r.Allow(ctx, "k")
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if d.Allowed != tt.allowed || d.Remaining != tt.remaining || d.Limit != 3 {
			t.Errorf("request %d: %+v, want allowed %v remaining %d limit 3", i+1, d, tt.allowed, tt.remaining)
		}
		if until := d.Reset.Sub(start); until <= window-5*time.Second || until > window+time.Second {
			t.Errorf("request %d: Reset in %v, want about %v", i+1, until, window)
		}
		if !d.Allowed && (d.RetryAfter <= window-5*time.Second || d.RetryAfter > window) {
			t.Errorf("request %d: RetryAfter %v, want about %v", i+1, d.RetryAfter, window)
		}
		if d.Allowed && d.RetryAfter != 0 {
			t.Errorf("request %d: allowed with RetryAfter %v", i+1, d.RetryAfter)
		}
	}
	t.Run("keys are independent", func(t *testing.T) {
		if d, err := r.Allow(ctx, "other"); err != nil || !d.Allowed || d.Remaining != 2 {
			t.Errorf("first request of another key: %+v, %v", d, err)
		}
	})
}

func TestRateLimiterNewWindowResets(t *testing.T) {
	ctx := context.Background()
	r := newTestLimiter(t, newTestClient(t, Config{}), RateLimitConfig{Max: 2, Window: 300 * time.Millisecond})
	var last Decision
	for range 3 {
		var err error
		if last, err = r.Allow(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	if last.Allowed {
		t.Fatal("third request in a window of 2 was allowed")
	}
	time.Sleep(time.Until(last.Reset) + 50*time.Millisecond)
	d, err := r.Allow(ctx, "k")
	if err != nil || !d.Allowed || d.Remaining != 1 {
		t.Errorf("first request of the next window: %+v, %v; want allowed with 1 remaining", d, err)
	}
}

func TestRateLimiterKeysAlwaysExpire(t *testing.T) {
	ctx := context.Background()
	c := newTestClient(t, Config{})
	r := newTestLimiter(t, c, RateLimitConfig{Max: 5, Window: time.Minute})
	// A counter left without expiry by the seed's INCR-then-EXPIRE.
	immortal := c.cfg.KeyPrefix + "rl:legacy"
	if err := c.rdb.Do(ctx, c.rdb.B().Set().Key(immortal).Value("3").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c", "legacy", "a", "legacy"} {
		if _, err := r.Allow(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	keys := scanKeys(t, c, c.cfg.KeyPrefix+"rl:*")
	if len(keys) != 4 {
		t.Errorf("found %d rate-limit keys %v, want 4", len(keys), keys)
	}
	for _, k := range keys {
		pttl, err := c.rdb.Do(ctx, c.rdb.B().Pttl().Key(k).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if pttl <= 0 || pttl > time.Minute.Milliseconds() {
			t.Errorf("%s has PTTL %d ms, want in (0, 60000]", k, pttl)
		}
	}
}

// BenchmarkRateLimiterAllow measures one Allow without leases (fraction 0): one
// EVALSHA round trip to the test Redis.
func BenchmarkRateLimiterAllow(b *testing.B) {
	c := newTestClient(b, Config{})
	r := newTestLimiter(b, c, RateLimitConfig{Max: 1 << 30, Window: time.Minute})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Allow(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRateLimiterRefund(t *testing.T) {
	ctx := context.Background()
	c := newTestClient(t, Config{})
	r := newTestLimiter(t, c, RateLimitConfig{Max: 3, Window: time.Minute})
	count := func(key string) (int64, time.Duration) {
		t.Helper()
		k := c.key("rl:", key)
		n, err := c.rdb.Do(ctx, c.rdb.B().Get().Key(k).Build()).AsInt64()
		if err != nil {
			return -1, 0
		}
		ttl, _ := c.rdb.Do(ctx, c.rdb.B().Pttl().Key(k).Build()).AsInt64()
		return n, time.Duration(ttl) * time.Millisecond
	}

	// Refunded requests do not use up the limit: a refund goes back to the
	// process's lease, so Redis counts only the one request leased first.
	for i := range 10 {
		d, err := r.Allow(ctx, "ok")
		if err != nil || !d.Allowed || d.Remaining != 2 {
			t.Fatalf("request %d: %+v %v; want allowed with 2 remaining", i, d, err)
		}
		if err := r.Refund(ctx, "ok"); err != nil {
			t.Fatal(err)
		}
	}
	if n, ttl := count("ok"); n != 1 || ttl <= 0 {
		t.Errorf("after 10 refunded requests: count %d, ttl %v; want 1 with an expiry", n, ttl)
	}
	// Unrefunded ones do.
	for i := range 3 {
		if d, err := r.Allow(ctx, "ok"); err != nil || !d.Allowed || d.Remaining != 2-i {
			t.Fatalf("unrefunded request %d: %+v %v; want allowed with %d remaining", i, d, err, 2-i)
		}
	}
	if d, _ := r.Allow(ctx, "ok"); d.Allowed {
		t.Errorf("the 4th unrefunded request was allowed: %+v", d)
	}
	// A refund while refused gives one request back.
	if err := r.Refund(ctx, "ok"); err != nil {
		t.Fatal(err)
	}
	if d, _ := r.Allow(ctx, "ok"); !d.Allowed {
		t.Errorf("the request after a refund was refused: %+v", d)
	}
	if d, _ := r.Allow(ctx, "ok"); d.Allowed {
		t.Errorf("a second request after one refund was allowed: %+v", d)
	}
	// A refund without a counted request (its window ended) creates nothing.
	if err := r.Refund(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if n, _ := count("gone"); n != -1 {
		t.Errorf("refund of an absent key left count %d", n)
	}
}

// TestRateLimiterLeaseOneProcess: with one process the lease changes nothing a
// caller sees (every request allowed up to Max, then refused; Remaining counts down
// by one) but costs a fraction of the round trips.
func TestRateLimiterLeaseOneProcess(t *testing.T) {
	ctx := context.Background()
	c := newTestClient(t, Config{})
	const limit = 500
	r := newTestLimiter(t, c, RateLimitConfig{Max: limit, Window: time.Minute, LeaseFraction: 0.1})
	leases := counterDelta(rateLimitLeases)
	for i := range limit {
		d, err := r.Allow(ctx, "k")
		if err != nil || !d.Allowed || d.Remaining != limit-1-i || d.Limit != limit {
			t.Fatalf("request %d: %+v, %v; want allowed with %d remaining", i+1, d, err, limit-1-i)
		}
	}
	for i := range 3 {
		d, err := r.Allow(ctx, "k")
		if err != nil || d.Allowed || d.Remaining != 0 || d.RetryAfter <= 0 {
			t.Fatalf("request %d over the limit: %+v, %v; want refused with a RetryAfter", limit+i+1, d, err)
		}
	}
	n, err := c.rdb.Do(ctx, c.rdb.B().Get().Key(c.key("rl:", "k")).Build()).AsInt64()
	if err != nil || n != limit {
		t.Errorf("count in Redis %d, %v; want %d", n, err, limit)
	}
	// Slices of 10% of what is left (50, 45, 40, …, then 1 each near the end), and
	// one lease that found the limit reached; refusals after it are local.
	if got := leases(); got < 20 || got > 60 {
		t.Errorf("%d leases for %d requests, want between 20 and 60", got, limit+3)
	}
}

// TestRateLimiterLeaseBound checks the documented bound for N processes sharing a
// key (RateLimiter's doc comment, docs/design.md): never more than Max allowed, and
// at most (N-1) × the largest lease refused early. Three limiters on three clients
// are three processes; requests go to them concurrently.
func TestRateLimiterLeaseBound(t *testing.T) {
	prefix := randomPrefix()
	const (
		limit    = 2000
		fraction = 0.01 // largest lease: 20
		procs    = 3
		requests = 3000
	)
	cfg := RateLimitConfig{Max: limit, Window: time.Minute, LeaseFraction: fraction}
	var limiters []*RateLimiter
	for range procs {
		limiters = append(limiters, newTestLimiter(t, newTestClient(t, Config{KeyPrefix: prefix}), cfg))
	}
	leases := counterDelta(rateLimitLeases)
	var (
		mu                sync.Mutex
		allowed, rejected int
		firstRefusal      = -1
		wg                sync.WaitGroup
		next              = make(chan int)
	)
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				d, err := limiters[(i+w)%procs].Allow(context.Background(), "user-1")
				mu.Lock()
				switch {
				case err != nil:
					t.Errorf("Allow: %v", err)
				case d.Allowed:
					allowed++
					if d.Remaining < 0 || d.Remaining >= limit {
						t.Errorf("allowed with Remaining %d, want in [0, %d)", d.Remaining, limit)
					}
				default:
					rejected++
					if firstRefusal < 0 {
						firstRefusal = allowed
					}
					if d.Remaining != 0 || d.RetryAfter <= 0 {
						t.Errorf("refused with Remaining %d, RetryAfter %v", d.Remaining, d.RetryAfter)
					}
				}
				mu.Unlock()
			}
		}()
	}
	for i := range requests {
		next <- i
	}
	close(next)
	wg.Wait()
	maxLease := int(limit * fraction)
	if allowed > limit {
		t.Errorf("%d allowed, more than the limit %d", allowed, limit)
	}
	if min := limit - (procs-1)*maxLease; allowed < min || firstRefusal < min {
		t.Errorf("%d allowed, first refusal after %d; want at least %d (limit − (N−1) × largest lease)", allowed, firstRefusal, min)
	}
	if allowed+rejected != requests {
		t.Errorf("%d answers, want %d", allowed+rejected, requests)
	}
	// Far fewer round trips than requests: slices of 1% of what is left.
	if got := leases(); got > requests/4 {
		t.Errorf("%d leases for %d requests, want at most %d", got, requests, requests/4)
	}
	t.Logf("%d allowed, %d refused, first refusal after %d allowed, %d leases", allowed, rejected, firstRefusal, leases())
}

// TestRateLimiterForgetsEndedWindows: entries of keys whose window ended are
// dropped, so the limiter's memory follows the keys of the current window.
func TestRateLimiterForgetsEndedWindows(t *testing.T) {
	ctx := context.Background()
	r := newTestLimiter(t, newTestClient(t, Config{}), RateLimitConfig{Max: 10, Window: 200 * time.Millisecond, LeaseFraction: 0.5})
	for i := range 100 {
		if _, err := r.Allow(ctx, "k"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	entries := func() int {
		n := 0
		for i := range r.shards {
			r.shards[i].mu.Lock()
			n += len(r.shards[i].m)
			r.shards[i].mu.Unlock()
		}
		return n
	}
	if n := entries(); n != 100 {
		t.Fatalf("%d entries after 100 keys, want 100", n)
	}
	time.Sleep(1100 * time.Millisecond) // sweeps run at most once a second per shard
	for i := range r.shards {           // one request per shard triggers its sweep
		for k := 0; ; k++ {
			key := "probe" + strconv.Itoa(k)
			if r.shard(key) == &r.shards[i] {
				if _, err := r.Allow(ctx, key); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
	}
	if n := entries(); n != leaseShards {
		t.Errorf("%d entries after the window ended, want %d (the probes)", n, leaseShards)
	}
}

// BenchmarkRateLimiterAllowLeased measures Allow with leases (the default
// fraction, a limit large enough that slices are MaxLease): mostly local.
func BenchmarkRateLimiterAllowLeased(b *testing.B) {
	c := newTestClient(b, Config{})
	r := newTestLimiter(b, c, RateLimitConfig{Max: 1 << 30, Window: time.Minute, LeaseFraction: DefaultLeaseFraction})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Allow(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}
