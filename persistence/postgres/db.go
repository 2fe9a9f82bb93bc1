package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/migrations"
)

// Config is how to reach PostgreSQL.
type Config struct {
	// URL is a libpq connection string or URL (DATABASE_URL).
	URL string
	// Schema, when set, is where the tables live: every connection runs with
	// search_path "<schema>,public" (public keeps the pg_trgm operators visible) and
	// Migrate creates the schema if it is missing. Tests use one schema each.
	Schema string
	// MinConns and MaxConns bound the pool. MaxConns defaults to 12: the group
	// commit needs few connections, and the machine has two cores.
	MinConns int32
	MaxConns int32
	// ConnectTimeout bounds the dial and start-up of one connection (default 5s).
	ConnectTimeout time.Duration
	// QueryTimeout bounds every query this package runs on behalf of a caller whose
	// context has no earlier deadline (default 5s).
	QueryTimeout time.Duration
	// Logger receives the migration log; nil discards it.
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultMaxConns       = 12
	DefaultConnectTimeout = 5 * time.Second
	DefaultQueryTimeout   = 5 * time.Second
)

var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// DB is the connection pool of the service, with the readiness state of its
// schema. It is safe for concurrent use.
type DB struct {
	pool         *pgxpool.Pool
	schema       string
	queryTimeout time.Duration
	logger       *slog.Logger
	migrated     atomic.Bool
	metrics      *metrics.Set
}

// Open makes the pool. It does no I/O: connections are made on first use, so the
// service can start (and answer /health/ready with 503) while PostgreSQL is down.
// The pool's gauges (user_service_db_pool_*) are exported until Close.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.URL == "" {
		return nil, errors.New("cannot open PostgreSQL: no URL")
	}
	if cfg.Schema != "" && !schemaPattern.MatchString(cfg.Schema) {
		return nil, fmt.Errorf("cannot open PostgreSQL: schema %q must match %s", cfg.Schema, schemaPattern)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MinConns < 0 || cfg.MinConns > cfg.MaxConns {
		return nil, fmt.Errorf("cannot open PostgreSQL: MinConns %d must be between 0 and MaxConns %d", cfg.MinConns, cfg.MaxConns)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = DefaultQueryTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse the PostgreSQL URL: %w", err)
	}
	pc.MinConns, pc.MaxConns = cfg.MinConns, cfg.MaxConns
	pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	if cfg.Schema != "" {
		pc.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize() + ",public"
	}
	pc.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		installPresized(c.TypeMap()) // presize.go
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("cannot create the PostgreSQL pool: %w", err)
	}
	db := &DB{pool: pool, schema: cfg.Schema, queryTimeout: cfg.QueryTimeout, logger: cfg.Logger}
	db.metrics = poolMetrics(pool)
	db.userGauges(db.metrics)
	metrics.RegisterSet(db.metrics)
	return db, nil
}

// poolMetrics exposes the pool's statistics, read at scrape time: the levels as
// gauges, the cumulative ones (acquires, acquires that had to wait, time spent
// waiting) as counters named `_total` (Prometheus conventions; issue 13).
func poolMetrics(pool *pgxpool.Pool) *metrics.Set {
	s := metrics.NewSet()
	gauge := func(name string, f func(st *pgxpool.Stat) float64) {
		s.NewGauge(name, func() float64 { return f(pool.Stat()) })
	}
	gauge("user_service_db_pool_acquired_conns", func(st *pgxpool.Stat) float64 { return float64(st.AcquiredConns()) })
	gauge("user_service_db_pool_idle_conns", func(st *pgxpool.Stat) float64 { return float64(st.IdleConns()) })
	gauge("user_service_db_pool_total_conns", func(st *pgxpool.Stat) float64 { return float64(st.TotalConns()) })
	gauge("user_service_db_pool_max_conns", func(st *pgxpool.Stat) float64 { return float64(st.MaxConns()) })
	s.RegisterMetricsWriter(func(w io.Writer) {
		st := pool.Stat()
		metrics.WriteCounterUint64(w, "user_service_db_pool_acquires_total", uint64(st.AcquireCount()))
		metrics.WriteCounterUint64(w, "user_service_db_pool_empty_acquires_total", uint64(st.EmptyAcquireCount()))
		metrics.WriteCounterFloat64(w, "user_service_db_pool_acquire_wait_seconds_total", st.AcquireDuration().Seconds())
	})
	return s
}

// Pool returns the underlying pool, for the outbox relay's wiring and for tests.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Schema returns the schema named in Config, or "".
func (db *DB) Schema() string { return db.schema }

// Stats returns the pool's statistics.
func (db *DB) Stats() *pgxpool.Stat { return db.pool.Stat() }

// Ping checks that PostgreSQL answers.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	if err := db.pool.Ping(ctx); err != nil {
		return unavailable("cannot ping PostgreSQL", err)
	}
	return nil
}

// Ready reports whether the service may take traffic: migrations ran and
// PostgreSQL answers. It backs /health/ready.
func (db *DB) Ready(ctx context.Context) error {
	if !db.migrated.Load() {
		return userservice.Wrap(userservice.ECodeUnavailable, "Service temporarily unavailable", errors.New("migrations have not run"))
	}
	return db.Ping(ctx)
}

// Migrated reports whether Migrate succeeded.
func (db *DB) Migrated() bool { return db.migrated.Load() }

// Migrate creates the schema if needed and applies the embedded migrations with
// goose. Its version table lives in the schema too. Concurrent Migrate calls on one
// schema (several replicas starting) serialize on an advisory lock.
func (db *DB) Migrate(ctx context.Context) error {
	if db.schema != "" {
		if _, err := db.pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{db.schema}.Sanitize()); err != nil {
			return fmt.Errorf("cannot create schema %s: %w", db.schema, err)
		}
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID(db.schema)), lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("cannot create the migration lock: %w", err)
	}
	sqlDB := stdlib.OpenDBFromPool(db.pool)
	defer sqlDB.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true), goose.WithSlog(db.logger))
	if err != nil {
		return fmt.Errorf("cannot load migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("cannot apply migrations: %w", err)
	}
	for _, r := range results {
		db.logger.Info("migration applied", "version", r.Source.Version, "duration", r.Duration)
	}
	db.migrated.Store(true)
	return nil
}

// migrationLockID is the advisory lock of one schema's migrations, so that tests
// migrating their own schemas do not wait for one another.
func migrationLockID(schema string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("userservice-migrations:" + schema))
	return int64(h.Sum64() >> 1)
}

// Close closes the pool and stops exporting its gauges.
func (db *DB) Close() {
	metrics.UnregisterSet(db.metrics, true)
	db.pool.Close()
}

// timeout bounds ctx by the query timeout.
func (db *DB) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, db.queryTimeout)
}
