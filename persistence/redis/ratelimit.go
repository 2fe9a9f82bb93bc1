package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
)

var (
	rateLimitAllowed  = metrics.GetOrCreateCounter(`user_service_ratelimit_allowed_total`)
	rateLimitRejected = metrics.GetOrCreateCounter(`user_service_ratelimit_rejected_total`)
	rateLimitErrors   = metrics.GetOrCreateCounter(`user_service_ratelimit_errors_total`)
	rateLimitRefunds  = metrics.GetOrCreateCounter(`user_service_ratelimit_refunds_total`)
	rateLimitDuration = metrics.GetOrCreatePrometheusHistogramExt(`user_service_ratelimit_duration_seconds`,
		[]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5})
)

// Defaults of [RateLimitConfig] (RATE_LIMIT_MAX, RATE_LIMIT_WINDOW).
const (
	DefaultRateLimitMax    = 100
	DefaultRateLimitWindow = 60 * time.Second
)

// rateLimitScript counts one request in a fixed window, atomically: INCR, and
// PEXPIRE when the INCR created the key, so that no counter ever lives without an
// expiry (the seed's INCR-then-EXPIRE leaves an immortal key if the process dies in
// between, and the limit then never resets). A key found without an expiry (left by
// such a writer) gets one. Returns {count, pttl}.
const rateLimitScript = `
local n = redis.call('INCR', KEYS[1])
local ttl
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
else
  ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
  end
end
return {n, ttl}
`

// refundScript takes back one counted request (RATE_LIMIT_SKIP_SUCCESSFUL): DECR,
// keeping the key's expiry, and only when the key exists with a positive count, so
// that a refund arriving after its window ended never creates a key without an
// expiry. Returns the count after the refund.
const refundScript = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
`

// RateLimitConfig configures a [RateLimiter].
type RateLimitConfig struct {
	// Max is RATE_LIMIT_MAX: requests allowed per key and window.
	Max int
	// Window is RATE_LIMIT_WINDOW.
	Window time.Duration
}

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
// <prefix>rl:<key>, so every process shares one limit. One round trip per request.
// It is safe for concurrent use.
type RateLimiter struct {
	c        *Client
	cfg      RateLimitConfig
	windowMS string
	script   *rueidis.Lua
	refund   *rueidis.Lua
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
	return &RateLimiter{
		c: c, cfg: cfg,
		windowMS: strconv.FormatInt(cfg.Window.Milliseconds(), 10),
		script:   rueidis.NewLuaScript(rateLimitScript),
		refund:   rueidis.NewLuaScript(refundScript),
	}, nil
}

// Allow counts one request for key and says whether it is within the limit. On a
// Redis error (or while Redis is down, at once) it returns the error; the caller
// decides to fail open.
func (r *RateLimiter) Allow(ctx context.Context, key string) (Decision, error) {
	start := time.Now()
	var vals []int64
	err := r.c.call(ctx, func(ctx context.Context) error {
		var err error
		vals, err = r.script.Exec(ctx, r.c.rdb, []string{r.c.key("rl:", key)}, []string{r.windowMS}).AsIntSlice()
		return err
	})
	if err == nil && len(vals) != 2 {
		err = fmt.Errorf("rate limit script returned %d values, want 2", len(vals))
	}
	if err != nil {
		rateLimitErrors.Inc()
		return Decision{}, unavailable("check rate limit", err)
	}
	rateLimitDuration.UpdateDuration(start)
	count, ttl := vals[0], time.Duration(vals[1])*time.Millisecond
	d := Decision{
		Allowed:   count <= int64(r.cfg.Max),
		Limit:     r.cfg.Max,
		Remaining: int(max(0, int64(r.cfg.Max)-count)),
		Reset:     start.Add(ttl),
	}
	if d.Allowed {
		rateLimitAllowed.Inc()
	} else {
		d.RetryAfter = ttl
		rateLimitRejected.Inc()
	}
	return d, nil
}

// Refund takes back one request counted for key by Allow, for a limiter that
// counts only failed requests (RATE_LIMIT_SKIP_SUCCESSFUL: the HTTP edge refunds
// every answer below 400). A refund after the window ended changes nothing.
func (r *RateLimiter) Refund(ctx context.Context, key string) error {
	err := r.c.call(ctx, func(ctx context.Context) error {
		return r.refund.Exec(ctx, r.c.rdb, []string{r.c.key("rl:", key)}, nil).Error()
	})
	if err != nil {
		rateLimitErrors.Inc()
		return unavailable("refund rate limit", err)
	}
	rateLimitRefunds.Inc()
	return nil
}
