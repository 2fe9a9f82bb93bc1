package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"

	userservice "github.com/lms-platform/userservice"
)

var (
	redisOutages   = metrics.GetOrCreateCounter(`user_service_redis_outages_total`)
	redisReconnect = metrics.GetOrCreateCounter(`user_service_redis_reconnects_total`)
)

// Defaults of [Config].
const (
	DefaultKeyPrefix        = "user-service:"
	DefaultDialTimeout      = 2 * time.Second
	DefaultCommandTimeout   = 200 * time.Millisecond
	DefaultSnapshotTTL      = 900 * time.Second // CACHE_TTL_USER_PROFILE
	DefaultMaxSnapshotBytes = 256 << 10
)

// While Redis is down, the background probe pings with this back-off.
const (
	reconnectMinBackoff = 50 * time.Millisecond
	reconnectMaxBackoff = time.Second
)

// ErrDown is the cause inside the error returned while Redis is known to be
// unreachable: the call was not sent.
var ErrDown = errors.New("redis is down")

// Config configures [Open].
type Config struct {
	// URL is REDIS_URL, e.g. redis://:password@127.0.0.1:6379/0.
	URL string
	// KeyPrefix is REDIS_KEY_PREFIX; every key this package writes starts with it.
	KeyPrefix string
	// DialTimeout bounds establishing a connection.
	DialTimeout time.Duration
	// CommandTimeout bounds every command, so that a slow Redis costs a request at
	// most this much before the caller falls back.
	CommandTimeout time.Duration
	// SnapshotTTL is CACHE_TTL_USER_PROFILE: how long a snapshot stays in Redis.
	SnapshotTTL time.Duration
	// MaxSnapshotBytes bounds one encoded snapshot; a larger state is not stored.
	MaxSnapshotBytes int
}

func (c *Config) setDefaults() {
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.SnapshotTTL <= 0 {
		c.SnapshotTTL = DefaultSnapshotTTL
	}
	if c.MaxSnapshotBytes <= 0 {
		c.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
}

// Client is a connection to Redis with a circuit breaker: while Redis is known to
// be down, calls fail at once with [ErrDown] and a background probe reconnects with
// back-off. It is safe for concurrent use.
type Client struct {
	rdb rueidis.Client
	cfg Config
	log *slog.Logger

	up       atomic.Bool
	wentDown chan struct{} // wakes the reconnect loop; capacity 1
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

// Open connects to Redis. It fails only on a bad configuration: when Redis does not
// answer, Open logs it, returns a Client that reports down, and keeps trying to
// connect in the background.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Client, error) {
	if log == nil {
		return nil, errors.New("cannot open redis: nil logger")
	}
	cfg.setDefaults()
	opt, err := rueidis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("cannot open redis: invalid REDIS_URL: %w", err)
	}
	// A single (non-cluster) client is returned even when the first dial fails, and
	// redials on demand: that is what lets the service start while Redis is down.
	opt.ForceSingleClient = true
	// A failed call falls back to PostgreSQL at once instead of retrying.
	opt.DisableRetry = true
	// Nothing here reads through client-side caching; it also works on RESP2 servers.
	opt.DisableCache = true
	opt.Dialer.Timeout = cfg.DialTimeout
	if opt.ClientName == "" {
		opt.ClientName = "user-service"
	}
	rdb, dialErr := rueidis.NewClient(opt)
	if rdb == nil {
		return nil, fmt.Errorf("cannot open redis: %w", dialErr)
	}
	c := &Client{
		rdb: rdb, cfg: cfg, log: log,
		wentDown: make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	c.up.Store(true)
	c.wg.Add(1)
	go c.reconnectLoop()
	if dialErr == nil {
		dialErr = c.Ping(ctx)
	}
	if dialErr != nil {
		c.markDown(dialErr)
	}
	return c, nil
}

// Up reports whether Redis answered the last call (false while it is known to be
// down).
func (c *Client) Up() bool { return c.up.Load() }

// Ping sends PING, bounded by the command timeout, even while the breaker says down
// (it is a probe: /health/detailed). Success marks Redis up.
func (c *Client) Ping(ctx context.Context) error {
	err := c.do(ctx, func(ctx context.Context) error {
		return c.rdb.Do(ctx, c.rdb.B().Ping().Build()).Error()
	})
	if err != nil {
		return unavailable("ping redis", err)
	}
	c.markUp()
	return nil
}

// Close stops the reconnect loop and closes the connections, waiting for calls in
// flight.
func (c *Client) Close() {
	c.once.Do(func() {
		close(c.stop)
		c.wg.Wait()
		c.rdb.Close()
	})
}

// call runs f through do unless Redis is known to be down. f returns the error of
// its result (a Redis nil reply included); the caller interprets it.
func (c *Client) call(ctx context.Context, f func(ctx context.Context) error) error {
	if !c.up.Load() {
		return ErrDown
	}
	return c.do(ctx, f)
}

// do runs f under the command timeout and feeds the outcome to the breaker.
func (c *Client) do(ctx context.Context, f func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CommandTimeout)
	defer cancel()
	err := f(cctx)
	if brokenConn(cctx, err) {
		// An idle connection is found broken only when used, e.g. the first call on
		// each connection after a Redis restart: redial once before declaring Redis
		// down. At worst a rate-limit count is taken twice.
		err = f(cctx)
	}
	c.observe(ctx, err)
	return err
}

// brokenConn reports whether err says the connection failed (rather than Redis
// replying with an error, or time running out).
func brokenConn(ctx context.Context, err error) bool {
	var rerr *rueidis.RedisError
	return err != nil && ctx.Err() == nil && !errors.As(err, &rerr) &&
		!errors.Is(err, rueidis.ErrClosing) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

// observe marks Redis down when err says the server could not be reached or did
// not answer in time. Replies that are Redis errors (nil included) and errors
// caused by the caller's own context say nothing about Redis' health.
func (c *Client) observe(callerCtx context.Context, err error) {
	if err == nil || errors.Is(err, ErrDown) {
		return
	}
	var rerr *rueidis.RedisError // a reply, nil included
	if errors.As(err, &rerr) && !rerr.IsLoading() {
		return
	}
	if callerCtx.Err() != nil {
		return
	}
	c.markDown(err)
}

func (c *Client) markDown(err error) {
	select {
	case <-c.stop:
		return // closed: calls fail because of that, not because of Redis
	default:
	}
	if c.up.CompareAndSwap(true, false) {
		redisOutages.Inc()
		c.log.Warn("redis is unreachable; serving without it until it answers again", "error", err.Error())
		select {
		case c.wentDown <- struct{}{}:
		default:
		}
	}
}

func (c *Client) markUp() {
	if c.up.CompareAndSwap(false, true) {
		redisReconnect.Inc()
		c.log.Info("redis answers again")
	}
}

// reconnectLoop pings Redis with back-off while it is down.
func (c *Client) reconnectLoop() {
	defer c.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.wentDown:
		}
		backoff := reconnectMinBackoff
		for !c.up.Load() {
			t.Reset(backoff)
			select {
			case <-c.stop:
				t.Stop()
				return
			case <-t.C:
			}
			// A ping may have to dial first.
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.DialTimeout+c.cfg.CommandTimeout)
			err := c.rdb.Do(ctx, c.rdb.B().Ping().Build()).Error()
			cancel()
			if err == nil {
				c.markUp()
				break
			}
			backoff = min(2*backoff, reconnectMaxBackoff)
		}
	}
}

// key returns the prefixed key <prefix><kind><id>.
func (c *Client) key(kind, id string) string { return c.cfg.KeyPrefix + kind + id }

// unavailable turns a driver error into the domain's 503 error.
func unavailable(op string, err error) error {
	return userservice.Wrap(userservice.ECodeUnavailable, "Cache unavailable", fmt.Errorf("cannot %s: %w", op, err))
}
