package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Retention (issue 14) deletes what is older than its configured period from
// the tables that grow with use: ended sessions, idempotency records,
// processed-message ids and audit records. It runs on one process at a time
// (a transaction-scoped advisory lock, the relay's pattern) and deletes in
// batches of Batch rows, one short transaction each, so it never holds long
// locks nor bloats one transaction. Safe for concurrent use.
type Retention struct {
	db     *DB
	cfg    RetentionConfig
	logger *slog.Logger
}

// RetentionConfig are the periods; 0 keeps that table's rows forever.
type RetentionConfig struct {
	Sessions          time.Duration // ended sessions, by ended_at (open ones stay)
	Idempotency       time.Duration // idempotency records, by created_at
	ProcessedMessages time.Duration // consumed message ids, by processed_at
	Audit             time.Duration // audit records, by created_at
	Batch             int           // rows per DELETE (default 1000)
}

// Retention metrics: rows deleted per table, batches run, and the end of the
// last complete run (0 until one finished).
var (
	retentionDeleted = map[string]*metrics.Counter{
		"sessions":           metrics.NewCounter(`user_service_retention_deleted_total{table="sessions"}`),
		"idempotency_keys":   metrics.NewCounter(`user_service_retention_deleted_total{table="idempotency_keys"}`),
		"processed_messages": metrics.NewCounter(`user_service_retention_deleted_total{table="processed_messages"}`),
		"audit_log":          metrics.NewCounter(`user_service_retention_deleted_total{table="audit_log"}`),
	}
	retentionBatches = metrics.NewCounter(`user_service_retention_batches_total`)
	retentionErrors  = metrics.NewCounter(`user_service_retention_errors_total`)
	retentionLastRun = metrics.NewGauge(`user_service_retention_last_run_timestamp_seconds`, nil)
)

// retentionLockClass is the first key of the retention job's advisory lock.
const retentionLockClass = 0x55535254 // "USRT"

// NewRetention returns the retention job of db.
func NewRetention(db *DB, cfg RetentionConfig, logger *slog.Logger) (*Retention, error) {
	if db == nil || logger == nil {
		return nil, errors.New("cannot create retention job: nil db or logger")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	return &Retention{db: db, cfg: cfg, logger: logger}, nil
}

// retentionTable is one table's rule: a batch deletes up to $2 rows whose
// time column is before $1 (by ctid, the cheapest way to a row found by the
// subquery's index scan).
type retentionTable struct {
	name string
	keep time.Duration
	sql  string
}

func (r *Retention) tables() []retentionTable {
	return []retentionTable{
		{"sessions", r.cfg.Sessions, `DELETE FROM sessions WHERE ctid IN
		(SELECT ctid FROM sessions WHERE ended_at < $1 LIMIT $2)`},
		{"idempotency_keys", r.cfg.Idempotency, `DELETE FROM idempotency_keys WHERE ctid IN
		(SELECT ctid FROM idempotency_keys WHERE created_at < $1 LIMIT $2)`},
		{"processed_messages", r.cfg.ProcessedMessages, `DELETE FROM processed_messages WHERE ctid IN
		(SELECT ctid FROM processed_messages WHERE processed_at < $1 LIMIT $2)`},
		{"audit_log", r.cfg.Audit, `DELETE FROM audit_log WHERE ctid IN
		(SELECT ctid FROM audit_log WHERE created_at < $1 LIMIT $2)`},
	}
}

// RunOnce deletes every row due as of now, batch after batch, if this process
// gets the lock. It returns the rows deleted per table and whether it ran.
func (r *Retention) RunOnce(ctx context.Context, now time.Time) (map[string]int64, bool, error) {
	conn, err := r.db.pool.Acquire(ctx)
	if err != nil {
		return nil, false, unavailable("cannot acquire a connection for the retention lock", err)
	}
	defer conn.Release()
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext(current_schema()))`, retentionLockClass).Scan(&ok); err != nil {
		return nil, false, unavailable("cannot take the retention lock", err)
	}
	if !ok {
		return nil, false, nil
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1, hashtext(current_schema()))`, retentionLockClass)
	}()
	deleted := map[string]int64{}
	for _, t := range r.tables() {
		if t.keep <= 0 {
			continue
		}
		before := now.Add(-t.keep)
		for {
			if err := ctx.Err(); err != nil {
				return deleted, true, err
			}
			// Each batch on a pool connection of its own: the lock's session
			// stays idle, and each DELETE is its own short transaction.
			qctx, cancel := r.db.timeout(ctx)
			ct, err := r.db.pool.Exec(qctx, t.sql, before, r.cfg.Batch)
			cancel()
			if err != nil {
				retentionErrors.Inc()
				return deleted, true, unavailable(fmt.Sprintf("cannot delete old rows of %s", t.name), err)
			}
			retentionBatches.Inc()
			n := ct.RowsAffected()
			deleted[t.name] += n
			retentionDeleted[t.name].Add(int(n))
			if n < int64(r.cfg.Batch) {
				break
			}
		}
	}
	retentionLastRun.Set(float64(now.Unix()))
	return deleted, true, nil
}

// Run calls RunOnce every interval until ctx ends, logging what it deleted.
func (r *Retention) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			deleted, ran, err := r.RunOnce(ctx, now)
			if err != nil && ctx.Err() == nil {
				r.logger.Warn("retention", "error", err.Error())
			}
			if ran && len(deleted) > 0 {
				r.logger.Info("retention deleted old rows", "sessions", deleted["sessions"], "idempotencyKeys", deleted["idempotency_keys"],
					"processedMessages", deleted["processed_messages"], "auditRecords", deleted["audit_log"])
			}
		}
	}
}
