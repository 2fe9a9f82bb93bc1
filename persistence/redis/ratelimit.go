package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
)

var (
	rateLimitAllowed  = metrics.GetOrCreateCounter(`user_service_ratelimit_allowed_total`)
	rateLimitRejected = metrics.GetOrCreateCounter(`user_service_ratelimit_rejected_total`)
	rateLimitErrors   = metrics.GetOrCreateCounter(`user_service_ratelimit_errors_total`)
	rateLimitRefunds  = metrics.GetOrCreateCounter(`user_service_ratelimit_refunds_total`)
	rateLimitLeases   = metrics.GetOrCreateCounter(`user_service_ratelimit_leases_total`)
	rateLimitLocal    = metrics.GetOrCreateCounter(`user_service_ratelimit_local_decisions_total`)
	rateLimitDuration = metrics.GetOrCreatePrometheusHistogramExt(`user_service_ratelimit_duration_seconds`,
		[]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5})
)

// leaseScript leases a slice of a key's quota in the current fixed window,
// atomically: it grants min(slice, Max - count) requests, where slice is
// floor((Max - count) * fraction) clamped to [1, cap], adds the grant to the count
// (INCRBY), and sets the window's expiry (PEXPIRE) when it created the key, so
// that no counter ever lives without an expiry (the seed's INCR-then-EXPIRE left an
// immortal key if the process died in between; a key found without an expiry, left
// by such a writer, gets one). A caller at or over the limit is granted 0 and the
// count stays. Returns {granted, count after the grant, pttl}.
//
// ARGV: window ms, Max, fraction, cap.
const leaseScript = `
local max = tonumber(ARGV[2])
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = max - n
local grant = 0
if left > 0 then
  grant = math.floor(left * tonumber(ARGV[3]))
  if grant < 1 then grant = 1 end
  if grant > tonumber(ARGV[4]) then grant = tonumber(ARGV[4]) end
  if grant > left then grant = left end
  n = redis.call('INCRBY', KEYS[1], grant)
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 and n > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
if ttl < 0 then ttl = tonumber(ARGV[1]) end
return {grant, n, ttl}
`

// RateLimitConfig configures a [RateLimiter].
type RateLimitConfig struct {
	// Max is RATE_LIMIT_MAX: requests allowed per key and window.
	Max int
	// Window is RATE_LIMIT_WINDOW.
	Window time.Duration
	// LeaseFraction is RATE_LIMIT_LEASE_FRACTION: the share of a key's remaining
	// quota one process leases from Redis at a time (at least 1 request, at most
	// [MaxLease]). 0 leases 1 at a time: one round trip per request, exact.
	LeaseFraction float64
}

// Defaults of [RateLimitConfig] (RATE_LIMIT_MAX, RATE_LIMIT_WINDOW,
// RATE_LIMIT_LEASE_FRACTION).
const (
	DefaultRateLimitMax    = 100
	DefaultRateLimitWindow = 60 * time.Second
	DefaultLeaseFraction   = 0.01
	// MaxLease caps one lease, so that a process never holds many requests of a
	// key with a huge limit.
	MaxLease = 1000
)

// Decision is the answer for one request, with what the HTTP edge needs for the
// X-RateLimit-* and Retry-After headers.
type Decision struct {
	Allowed    bool
	Limit      int
	Remaining  int
	Reset      time.Time     // when the current window ends
	RetryAfter time.Duration // zero when allowed
}

// RateLimiter is a fixed-window limiter whose counters live in Redis under
// <prefix>rl:<key>, so every process shares one limit, without a round trip per
// request: each process leases a slice of a key's remaining quota from Redis (the
// count in Redis includes it at once) and spends it locally; only when its slice is
// used up does it lease again. Once Redis grants nothing, the process refuses the
// key locally until the window ends, since the count never goes down within a
// window.
//
// Bounds, for N processes sharing a key (docs/design.md, "Rate limits"):
//   - never more than Max requests allowed per window: every allowed request
//     spends a request Redis granted, and Redis grants at most Max in total;
//   - a request is refused early (before Max were allowed) only while other
//     processes hold unspent leases: at most (N-1) × the largest lease, which is
//     LeaseFraction × Max (at least 1, at most [MaxLease]): with the default 1%,
//     at most 1% of the limit per other process; with one process, never.
//
// Leases are not given back (they expire with the window). Local state is one
// small entry per key with a request in the current window. It is safe for
// concurrent use.
type RateLimiter struct {
	c        *Client
	cfg      RateLimitConfig
	windowMS string
	args     []string // windowMS, Max, fraction, cap
	script   *rueidis.Lua
	shards   [leaseShards]leaseShard
}

const leaseShards = 64

type leaseShard struct {
	mu    sync.Mutex
	m     map[string]*lease
	swept time.Time
}

// lease is one process's part of a key's current window.
type lease struct {
	end       time.Time     // when the window ends (local clock; Redis's PTTL at the lease)
	tokens    int           // granted by Redis, not spent yet
	left      int           // Max minus Redis's count after our last lease
	exhausted bool          // Redis granted nothing: refuse until end
	leasing   chan struct{} // non-nil while a lease round trip is in flight; closed when done
}

// NewRateLimiter returns a limiter on c.
func NewRateLimiter(c *Client, cfg RateLimitConfig) (*RateLimiter, error) {
	if c == nil {
		return nil, errors.New("cannot create rate limiter: nil client")
	}
	if cfg.Max <= 0 {
		cfg.Max = DefaultRateLimitMax
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultRateLimitWindow
	}
	if cfg.Window < time.Millisecond {
		return nil, fmt.Errorf("cannot create rate limiter: window %v is shorter than 1ms", cfg.Window)
	}
	if cfg.LeaseFraction < 0 || cfg.LeaseFraction > 1 {
		return nil, fmt.Errorf("cannot create rate limiter: lease fraction %v is not in [0, 1]", cfg.LeaseFraction)
	}
	r := &RateLimiter{
		c: c, cfg: cfg,
		windowMS: strconv.FormatInt(cfg.Window.Milliseconds(), 10),
		script:   rueidis.NewLuaScript(leaseScript),
	}
	r.args = []string{r.windowMS, strconv.Itoa(cfg.Max), strconv.FormatFloat(cfg.LeaseFraction, 'g', -1, 64), strconv.Itoa(MaxLease)}
	for i := range r.shards {
		r.shards[i].m = make(map[string]*lease)
	}
	return r, nil
}

func (r *RateLimiter) shard(key string) *leaseShard {
	// FNV-1a, inlined: no allocation.
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return &r.shards[h%leaseShards]
}

// Allow counts one request for key and says whether it is within the limit. On a
// Redis error (or while Redis is down, at once) it returns the error; the caller
// decides to fail open.
func (r *RateLimiter) Allow(ctx context.Context, key string) (Decision, error) {
	sh := r.shard(key)
	for {
		now := time.Now()
		sh.mu.Lock()
		sh.sweep(now, r.cfg.Window)
		l := sh.m[key]
		if l != nil && l.leasing == nil && !now.Before(l.end) {
			delete(sh.m, key) // the window ended
			l = nil
		}
		if l != nil && l.leasing == nil {
			switch {
			case l.tokens > 0:
				l.tokens--
				d := Decision{Allowed: true, Limit: r.cfg.Max, Remaining: l.left + l.tokens, Reset: l.end}
				sh.mu.Unlock()
				rateLimitAllowed.Inc()
				rateLimitLocal.Inc()
				return d, nil
			case l.exhausted:
				d := Decision{Limit: r.cfg.Max, Reset: l.end, RetryAfter: l.end.Sub(now)}
				sh.mu.Unlock()
				rateLimitRejected.Inc()
				rateLimitLocal.Inc()
				return d, nil
			}
		}
		if l != nil && l.leasing != nil {
			// Another request of this key is leasing: wait for its slice.
			wait := l.leasing
			sh.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				rateLimitErrors.Inc()
				return Decision{}, unavailable("check rate limit", ctx.Err())
			}
		}
		if l == nil {
			l = &lease{}
			sh.m[key] = l
		}
		l.leasing = make(chan struct{})
		sh.mu.Unlock()
		return r.lease(ctx, sh, key, l, now)
	}
}

// lease takes a slice of key's quota from Redis for l (whose leasing channel the
// caller set) and spends one request of it.
func (r *RateLimiter) lease(ctx context.Context, sh *leaseShard, key string, l *lease, start time.Time) (Decision, error) {
	var vals []int64
	err := r.c.call(ctx, func(ctx context.Context) error {
		var err error
		vals, err = r.script.Exec(ctx, r.c.rdb, []string{r.c.key("rl:", key)}, r.args).AsIntSlice()
		return err
	})
	if err == nil && len(vals) != 3 {
		err = fmt.Errorf("rate limit script returned %d values, want 3", len(vals))
	}
	sh.mu.Lock()
	close(l.leasing)
	l.leasing = nil
	if err != nil {
		if l.tokens == 0 && !l.exhausted && sh.m[key] == l {
			delete(sh.m, key) // nothing to keep
		}
		sh.mu.Unlock()
		rateLimitErrors.Inc()
		return Decision{}, unavailable("check rate limit", err)
	}
	granted, count, ttl := int(vals[0]), vals[1], time.Duration(vals[2])*time.Millisecond
	l.end = start.Add(ttl)
	l.left = int(max(0, int64(r.cfg.Max)-count))
	d := Decision{Limit: r.cfg.Max, Reset: l.end}
	if granted > 0 {
		l.tokens += granted - 1
		l.exhausted = false
		d.Allowed, d.Remaining = true, l.left+l.tokens
	} else {
		l.exhausted = true
		d.Remaining, d.RetryAfter = l.tokens, ttl
		if l.tokens > 0 { // refunded meanwhile: spend one
			l.tokens--
			d.Allowed, d.RetryAfter = true, 0
		}
	}
	sh.mu.Unlock()
	rateLimitDuration.UpdateDuration(start)
	rateLimitLeases.Inc()
	if d.Allowed {
		rateLimitAllowed.Inc()
	} else {
		rateLimitRejected.Inc()
	}
	return d, nil
}

// sweep drops the entries of ended windows, at most twice per window (or once a
// second), so that keys that stopped sending do not accumulate. The caller holds
// sh.mu.
func (sh *leaseShard) sweep(now time.Time, window time.Duration) {
	if now.Sub(sh.swept) < max(window/2, time.Second) {
		return
	}
	sh.swept = now
	for k, l := range sh.m {
		if l.leasing == nil && !now.Before(l.end) {
			delete(sh.m, k)
		}
	}
}

// Refund takes back one request counted for key by Allow, for a limiter that
// counts only failed requests (RATE_LIMIT_SKIP_SUCCESSFUL: the HTTP edge refunds
// every answer below 400). The request goes back to this process's lease, with no
// round trip; a refund after the window ended changes nothing.
func (r *RateLimiter) Refund(ctx context.Context, key string) error {
	sh := r.shard(key)
	sh.mu.Lock()
	if l := sh.m[key]; l != nil && time.Now().Before(l.end) {
		l.tokens++
	}
	sh.mu.Unlock()
	rateLimitRefunds.Inc()
	return nil
}
