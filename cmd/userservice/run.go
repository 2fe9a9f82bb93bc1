package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/actors"
	httpapi "github.com/lms-platform/userservice/http"
	"github.com/lms-platform/userservice/jobs"
	"github.com/lms-platform/userservice/messaging"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/redis"
)

// version is reported by /health.
const version = "1.0.0"

// run starts the service and blocks until ctx is cancelled (SIGINT/SIGTERM in
// main), then shuts down in order: stop accepting and finish in-flight requests,
// let the actors' commits land, flush the writer, drain the outbox briefly, close
// the connections. It returns nil after a clean shutdown.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if ok, err := cliCommand(ctx, args, stdout); ok { // `userservice import|export …` (cli.go)
		return err
	}
	started := time.Now()
	// TYPE lines let Prometheus tooling (promtool, scrapers) read the histograms as such.
	metrics.ExposeMetadata(true)
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	logger, flushLogs, err := newLogger(cfg, stdout)
	if err != nil {
		return err
	}
	defer flushLogs()
	if len(args) > 1 {
		return runCommand(ctx, cfg, args[1:], logger, stdout)
	}
	logger.Info("starting user service", slog.Any("config", cfg), slog.String("version", version))
	warnNoEffect(getenv, logger)
	defer startHeapFloor(cfg.GCHeapFloorMB)()

	// PostgreSQL: the pool connects lazily, so the service starts (and reports not
	// ready) while PostgreSQL is down; migrations are retried until they ran.
	db, err := postgres.Open(ctx, postgres.Config{
		URL: cfg.DatabaseURL(), Schema: getenv("DB_SCHEMA"),
		MinConns: int32(cfg.DBPoolMin), MaxConns: int32(cfg.DBPoolMax), Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("cannot open PostgreSQL: %w", err)
	}
	defer db.Close()
	background, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	var wg sync.WaitGroup
	goBackground := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	goBackground(func() { migrateUntilDone(background, db, logger) })
	goBackground(func() { db.RunPruner(background, time.Hour, logger) })

	// Redis never stops the start: snapshots and rate limits degrade while it is down.
	rdb, err := redis.Open(ctx, redis.Config{
		URL: cfg.RedisURL(), KeyPrefix: cfg.RedisKeyPrefix, SnapshotTTL: cfg.CacheTTLUserProfile.Duration(),
	}, logger)
	if err != nil {
		return fmt.Errorf("cannot set up Redis: %w", err)
	}
	defer rdb.Close()
	snapshots, err := redis.NewSnapshots(rdb)
	if err != nil {
		return err
	}
	saver, err := redis.NewSaver(snapshots, redis.SaverConfig{Delay: cfg.SnapshotWriteDelay}, logger)
	if err != nil {
		return err
	}
	limiter, err := redis.NewRateLimiter(rdb, redis.RateLimitConfig{
		Max: cfg.RateLimitMax, Window: cfg.RateLimitWindow.Duration(), LeaseFraction: cfg.RateLimitLeaseFraction,
	})
	if err != nil {
		return err
	}

	// Writes: group commit to PostgreSQL; reads: actors activated from a Redis
	// snapshot when its version is current, else from PostgreSQL.
	writer, err := postgres.NewWriter(db, postgres.WriterConfig{BatchMax: cfg.WriteBatchMax, BatchWait: cfg.WriteBatchWait}, logger)
	if err != nil {
		return err
	}
	writer.Start()
	// The relay publishes the outbox; a commit that wrote events wakes it at once
	// instead of at its next poll.
	relay, err := messaging.NewRelay(db.Pool(), messaging.RelayConfig{URL: cfg.RabbitURL(), Exchange: cfg.RabbitMQExchange, EventRetention: cfg.EventRetention.Duration()}, logger)
	if err != nil {
		return err
	}
	pgLoader, err := postgres.NewLoader(db)
	if err != nil {
		return err
	}
	loader, err := redis.NewCachedLoader(pgLoader, pgLoader, snapshots, logger)
	if err != nil {
		return err
	}
	registry, err := actors.New(actors.Config{
		IdleTimeout: cfg.ActorIdleTimeout, MaxActive: cfg.ActorMaxActive, OnCommit: saver.Save, OnPassivate: saver.SaveNow,
		Quotas: userservice.Quotas{
			Preferences: cfg.QuotaPreferencesPerUser, PreferenceBytes: cfg.QuotaPreferenceBytesPerUser,
			Enrollments: cfg.QuotaEnrollmentsPerUser, Sessions: cfg.QuotaSessionsPerUser,
		},
	}, loader, notifyingCommitter{writer, relay}, logger)
	if err != nil {
		return err
	}
	// Cluster mode: the same actors behind protoactor's cluster; every node serves
	// every user through the user's one owner (actors.Cluster, docs/cluster.md).
	var users usersService = registry
	ready := db.Ready
	if cfg.ClusterProvider == clusterEtcd || cfg.ClusterProvider == clusterK8s {
		ccfg := actors.ClusterConfig{
			Provider: actors.ProviderEtcd,
			Name:     cfg.ClusterName, Host: cfg.ClusterAdvertiseHost, Port: cfg.ClusterPort,
			EtcdEndpoints: cfg.EtcdEndpoints, LeaseTTL: cfg.ClusterLeaseTTL, CallTimeout: cfg.RequestTimeout,
		}
		if cfg.ClusterProvider == clusterK8s {
			ccfg.Provider, ccfg.EtcdEndpoints = actors.ProviderK8s, nil
			ccfg.PodName, ccfg.Namespace = cfg.PodName, cfg.PodNamespace
		}
		node, err := actors.NewCluster(ccfg, registry, logger)
		if err != nil {
			_ = registry.Shutdown(context.Background())
			return err
		}
		users = node
		// A node fenced off etcd (or the API server) answers 503 on /health/ready
		// too; with k8s that readiness also takes it out of the membership.
		ready = func(ctx context.Context) error {
			if err := node.Ready(); err != nil {
				return err
			}
			return db.Ready(ctx)
		}
	}
	directory, err := postgres.NewDirectory(db)
	if err != nil {
		return err
	}
	searchCache, err := redis.NewSearchCache(rdb, directory, redis.SearchCacheConfig{TTL: cfg.CacheTTLUserSearch.Duration()}, logger)
	if err != nil {
		return err
	}
	idempotency, err := postgres.NewIdempotencyStore(db)
	if err != nil {
		return err
	}
	attributeSchemas, err := postgres.NewAttributeSchemas(db, time.Second)
	if err != nil {
		return err
	}

	// Events: the consumer applies Auth Service events through the actors.
	consumer, err := messaging.NewConsumer(messaging.ConsumerConfig{
		URL: cfg.RabbitURL(), Exchange: cfg.RabbitMQExchange, Queue: cfg.RabbitMQQueue,
		IgnoreRegistrations: !cfg.EnableUserRegistration, NoSessions: !cfg.EnableSessionTracking, NoAudit: !cfg.AuditEnabled,
	}, users, directory, db, logger)
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(background)
	defer stopRelay()
	// The relay and the consumer start once the tables exist.
	goBackground(func() {
		if waitMigrated(relayCtx, db) {
			logIfFailed(logger, "outbox relay", relay.Run(relayCtx))
		}
	})
	// Erasures (issue 14): a worker on every node, leading one at a time
	// (advisory lock), runs the due ones through the users' actors.
	erasures, err := postgres.NewErasureStore(db)
	if err != nil {
		return err
	}
	scrubber, err := redis.NewScrubber(rdb)
	if err != nil {
		return err
	}
	eraser, err := userservice.NewErasureWorker(erasures, users, scrubber, erasurePoll, cfg.DeletedUserRetention.Duration(), logger)
	if err != nil {
		return err
	}
	erasureCtx, stopErasures := context.WithCancel(background)
	defer stopErasures()
	goBackground(func() {
		if waitMigrated(erasureCtx, db) {
			logIfFailed(logger, "erasure worker", eraser.Run(erasureCtx))
		}
	})
	// Retention (issue 14): old sessions, idempotency records, processed
	// message ids and audit records, deleted in batches on one node at a time.
	retention, err := postgres.NewRetention(db, postgres.RetentionConfig{
		Sessions: cfg.SessionRetention.Duration(), Idempotency: cfg.IdempotencyRetention.Duration(),
		ProcessedMessages: cfg.ProcessedMessageRetention.Duration(), Audit: cfg.AuditRetention.Duration(),
		Batch: cfg.RetentionBatchSize,
	}, logger)
	if err != nil {
		return err
	}
	goBackground(func() {
		if waitMigrated(erasureCtx, db) {
			retention.Run(erasureCtx, cfg.RetentionInterval.Duration())
		}
	})
	consumerCtx, stopConsumer := context.WithCancel(background)
	defer stopConsumer()
	goBackground(func() {
		if waitMigrated(consumerCtx, db) {
			logIfFailed(logger, "event consumer", consumer.Run(consumerCtx))
		}
	})

	// Bulk jobs: the worker of the process holding the job lease applies the
	// items through the same actors as single requests (package jobs).
	jobStore, err := postgres.NewJobStore(db)
	if err != nil {
		return err
	}
	runner, err := jobs.NewRunner(jobStore, users, directory, jobs.Config{
		Concurrency: cfg.JobConcurrency, ItemsPerSecond: cfg.JobItemsPerSecond, ItemTimeout: cfg.RequestTimeout,
		NoAudit: !cfg.AuditEnabled, StatusOf: httpapi.StatusOf,
	}, logger)
	if err != nil {
		return err
	}
	jobsCtx, stopJobs := context.WithCancel(background)
	defer stopJobs()
	var jobsDone sync.WaitGroup
	jobsDone.Add(1)
	goBackground(func() {
		defer jobsDone.Done()
		if waitMigrated(jobsCtx, db) {
			logIfFailed(logger, "job worker", runner.Run(jobsCtx))
		}
	})

	jwtKey, err := cfg.JWTKey()
	if err != nil {
		return err // Validate parsed it already
	}
	proxies, err := cfg.TrustedProxies()
	if err != nil {
		return err
	}
	server, err := httpapi.NewServer(httpapi.Config{
		JWTSecret:           []byte(cfg.JWTSecret),
		JWTAlgorithms:       cfg.JWTAlgorithms,
		JWTPublicKey:        jwtKey,
		JWKSURL:             cfg.JWTJWKSURL,
		JWKSRefreshInterval: cfg.JWTJWKSRefreshInterval,
		RequestTimeout:      cfg.RequestTimeout,
		ErasureCoolOff:      cfg.ErasureCoolOff.Duration(),
		DefaultPageSize:     cfg.DefaultPageSize,
		MaxPageSize:         cfg.MaxPageSize,
		TokenCacheSize:      cfg.TokenCacheSize,
		CORS: httpapi.CORS{
			Origin: strings.Join(cfg.CORSOrigin, ","), Credentials: cfg.CORSCredentials,
			Methods: cfg.CORSMethods, AllowedHeaders: cfg.CORSAllowedHeaders,
		},
		SecurityHeaders:         cfg.HelmetEnabled,
		TrustedProxies:          proxies,
		Development:             cfg.Development(),
		SensitiveFields:         cfg.AuditSensitiveFields,
		HealthCheckTimeout:      cfg.HealthCheckTimeout.Duration(),
		HealthCacheTTL:          healthCacheTTL(cfg.HealthCacheTTL),
		MaxConns:                cfg.HTTPMaxConns,
		MaxConnsPerIP:           cfg.HTTPMaxConnsPerIP,
		IdleTimeout:             cfg.HTTPIdleTimeout,
		MaxJobItems:             cfg.JobMaxItems,
		RateLimitSkipSuccessful: cfg.RateLimitSkipSuccessful,
		NoAudit:                 !cfg.AuditEnabled,
		NoMetrics:               !cfg.MetricsEnabled,
	}, httpapi.Deps{
		Users:        users,
		Directory:    cachedDirectory{directory, searchCache},
		Events:       directory,
		PersonalData: directory,
		Erasures:     erasures,
		Attributes:   attributeSchemas,
		Jobs:         jobStore,
		JobsNotify:   runner.Notify,
		Idempotency:  idempotency,
		RateLimiter:  rateLimiter{limiter},
		Health: httpapi.Health{
			Ready: ready,
			Checks: map[string]func(context.Context) error{
				"database": db.Ping,
				"redis":    rdb.Ping,
				"rabbitmq": relay.Ping,
			},
			Version: version,
			Started: started,
		},
	}, logger)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(ln) }()
	logger.Info("listening", slog.String("addr", ln.Addr().String()))
	// METRICS_PORT has a default in the spec, so a separate metrics listener starts
	// only when the variable is set explicitly: two instances on one host (tests,
	// benchmarks) would otherwise fight over port 9090.
	if cfg.MetricsEnabled && getenv("METRICS_PORT") != "" && cfg.MetricsPort != cfg.Port {
		goBackground(func() { serveMetricsPort(background, cfg, logger) })
	}
	if addr := getenv("PPROF_ADDR"); addr != "" {
		goBackground(func() { servePprof(background, addr, logger) })
	}

	select {
	case <-ctx.Done():
		logger.Info("shutting down", slog.String("cause", context.Cause(ctx).Error()))
	case err := <-serveErr:
		logger.Error("HTTP server stopped", slog.Any("error", err))
	}

	// Shutdown, in order, within SHUTDOWN_TIMEOUT.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	add := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	add("http", server.Shutdown(sctx)) // stop accepting, finish in-flight requests
	stopConsumer()                     // no new event effects
	stopErasures()                     // no new erasures
	stopJobs()                         // no new job items; the items in flight land
	jobsDone.Wait()
	add("actors", users.Shutdown(sctx)) // commits in flight land
	add("writer", writer.Close(sctx))   // everything queued is committed
	drainCtx, cancelDrain := context.WithTimeout(sctx, 3*time.Second)
	add("outbox drain", ignoreCancel(relay.Drain(drainCtx))) // publish what is pending, briefly
	cancelDrain()
	stopRelay()
	add("snapshot saver", saver.Close(sctx))
	stopBackground()
	wg.Wait()
	if len(errs) > 0 {
		logger.Error("shutdown finished with errors", slog.Any("error", errors.Join(errs...)))
		return errors.Join(errs...)
	}
	logger.Info("stopped")
	return nil
}

// migrateUntilDone applies the migrations, retrying with back-off while
// PostgreSQL is unreachable; /health/ready answers 503 until it succeeds.
func migrateUntilDone(ctx context.Context, db *postgres.DB, logger *slog.Logger) {
	wait := 200 * time.Millisecond
	for {
		err := db.Migrate(ctx)
		if err == nil {
			logger.Info("migrations applied")
			return
		}
		logger.Warn("cannot apply migrations yet; retrying", slog.Any("error", err), slog.Duration("in", wait))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// waitMigrated waits until the migrations ran; false if ctx ended first.
func waitMigrated(ctx context.Context, db *postgres.DB) bool {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !db.Migrated() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

func logIfFailed(logger *slog.Logger, what string, err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		logger.Error(what+" stopped", slog.Any("error", err))
	}
}

func ignoreCancel(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// notifyingCommitter wakes the outbox relay after each commit that wrote events.
type notifyingCommitter struct {
	*postgres.Writer
	relay *messaging.Relay
}

func (c notifyingCommitter) Commit(m *userservice.Mutation, done func(error)) {
	hasEvents := len(m.Events) > 0
	c.Writer.Commit(m, func(err error) {
		if err == nil && hasEvents {
			c.relay.Notify()
		}
		done(err)
	})
}

// cachedDirectory is the PostgreSQL directory with the admin search answered
// through its Redis cache.
type cachedDirectory struct {
	*postgres.Directory
	search *redis.SearchCache
}

func (d cachedDirectory) SearchUsers(ctx context.Context, q userservice.UserSearch) ([]userservice.User, userservice.Pagination, error) {
	return d.search.SearchUsers(ctx, q)
}

func (d cachedDirectory) SearchUsersJSON(ctx context.Context, q userservice.UserSearch) ([]byte, userservice.Pagination, error) {
	return d.search.SearchUsersJSON(ctx, q)
}

// rateLimiter adapts the Redis limiter to the HTTP edge's interface.
type rateLimiter struct{ l *redis.RateLimiter }

func (r rateLimiter) Refund(ctx context.Context, key string) error { return r.l.Refund(ctx, key) }

func (r rateLimiter) Allow(ctx context.Context, key string) (httpapi.Decision, error) {
	d, err := r.l.Allow(ctx, key)
	return httpapi.Decision{Allowed: d.Allowed, Limit: d.Limit, Remaining: d.Remaining, Reset: d.Reset, RetryAfter: d.RetryAfter}, err
}

// newLogger builds the JSON (or text) slog logger of LOG_LEVEL writing to stdout and,
// with LOG_FILE_ENABLED, to LOG_FILE_PATH. Lines go through a small buffer flushed
// every 100 ms, so that a request's log line costs a memory copy, not a syscall.
func newLogger(cfg Config, stdout io.Writer) (*slog.Logger, func(), error) {
	out := stdout
	var file *os.File
	if cfg.LogFileEnabled {
		if err := os.MkdirAll(filepath.Dir(cfg.LogFilePath), 0o755); err != nil {
			return nil, nil, fmt.Errorf("LOG_FILE_PATH: %w", err)
		}
		f, err := os.OpenFile(cfg.LogFilePath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("LOG_FILE_PATH: %w", err)
		}
		file = f
		out = io.MultiWriter(stdout, f)
	}
	bw := newBufferedWriter(out, 100*time.Millisecond)
	opts := &slog.HandlerOptions{Level: cfg.SlogLevel()}
	var h slog.Handler = slog.NewJSONHandler(bw, opts)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(bw, opts)
	}
	return slog.New(h), func() {
		bw.Close()
		if file != nil {
			_ = file.Close()
		}
	}, nil
}

var _ userservice.Users = (*actors.Registry)(nil)

// healthCacheTTL maps HEALTH_CACHE_TTL=0 (no sharing beyond probes that arrive
// while a check runs) to the HTTP server's spelling of it.
func healthCacheTTL(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// usersService is the Users the edges call plus its shutdown: the local Registry,
// or the Cluster (whose Shutdown hands the node's users off and leaves).
type usersService interface {
	userservice.Users
	Shutdown(ctx context.Context) error
}

// erasurePoll is how often the erasure worker looks for due erasures: one
// query of a partial index (erasures_due_idx), so a second costs nothing and
// an erasure runs at most a second after its cool-off.
const erasurePoll = time.Second
