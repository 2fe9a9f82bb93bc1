package postgres

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/lms-platform/userservice"
)

// platformStatsSQL adds up the counters that the users triggers keep
// (migrations/00003_user_counts.sql): a few rows per PostgreSQL backend that
// ever wrote, not a row per user. At 1M users it reads about as many rows as
// at 10 (BenchmarkPlatformStats).
const platformStatsSQL = `SELECT role, status, email_verified, profile_completed, sum(n)::bigint
	FROM user_counts GROUP BY role, status, email_verified, profile_completed`

// PlatformStats counts every user by status, role and verification, exactly as
// of the last committed write: the counters change in the transaction of the
// write they count.
func (d *Directory) PlatformStats(ctx context.Context) (userservice.PlatformStats, error) {
	return d.db.PlatformStats(ctx)
}

// PlatformStats is [Directory.PlatformStats].
func (db *DB) PlatformStats(ctx context.Context) (userservice.PlatformStats, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	s := userservice.NewPlatformStats()
	rows, err := db.pool.Query(ctx, platformStatsSQL)
	if err != nil {
		return s, unavailable("cannot read the user counts", err)
	}
	defer rows.Close()
	for rows.Next() {
		var role, status string
		var verified, completed bool
		var n int64
		if err := rows.Scan(&role, &status, &verified, &completed, &n); err != nil {
			return s, unavailable("cannot read the user counts", err)
		}
		s.Add(userservice.Role(role), userservice.Status(status), verified, completed, n)
	}
	if err := rows.Err(); err != nil {
		return s, unavailable("cannot read the user counts", err)
	}
	return s, nil
}

// foldUserCountsSQL moves the counters of backends that ended into shard 0, so
// that the table stays a few rows per live backend. A backend that reuses a
// folded pid starts a new row; counters of live backends are not touched, so
// the fold never waits for a writer.
const foldUserCountsSQL = `WITH gone AS (
	DELETE FROM user_counts WHERE shard <> 0 AND shard NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)
	RETURNING role, status, email_verified, profile_completed, n)
INSERT INTO user_counts AS c (shard, role, status, email_verified, profile_completed, n)
SELECT 0, role, status, email_verified, profile_completed, sum(n) FROM gone
GROUP BY role, status, email_verified, profile_completed
ON CONFLICT (shard, role, status, email_verified, profile_completed) DO UPDATE SET n = c.n + EXCLUDED.n`

// FoldUserCounts folds the user counters of ended backends (see
// foldUserCountsSQL) and returns how many rows it folded into shard 0.
func (db *DB) FoldUserCounts(ctx context.Context) (int64, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	ct, err := db.pool.Exec(ctx, foldUserCountsSQL)
	if err != nil {
		return 0, unavailable("cannot fold the user counts", err)
	}
	return ct.RowsAffected(), nil
}

// userGauges exports the platform statistics as gauges in s:
// user_service_users{status,role}-style series, read at scrape time from the
// counters, at most once a second however many series a scrape reads. Before the
// migrations ran, or while PostgreSQL is down, they are NaN.
func (db *DB) userGauges(s *metrics.Set) {
	var mu sync.Mutex
	var last time.Time
	var cur *userservice.PlatformStats
	read := func(f func(st *userservice.PlatformStats) int64) func() float64 {
		return func() float64 {
			mu.Lock()
			defer mu.Unlock()
			if time.Since(last) >= time.Second {
				last = time.Now()
				cur = nil
				if db.Migrated() {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					if st, err := db.PlatformStats(ctx); err == nil {
						cur = &st
					}
					cancel()
				}
			}
			if cur == nil {
				return math.NaN()
			}
			return float64(f(cur))
		}
	}
	s.NewGauge("user_service_users", read(func(st *userservice.PlatformStats) int64 { return st.Total }))
	for _, status := range []userservice.Status{userservice.StatusActive, userservice.StatusInactive, userservice.StatusSuspended, userservice.StatusDeleted} {
		s.NewGauge(fmt.Sprintf(`user_service_users_by_status{status=%q}`, status), read(func(st *userservice.PlatformStats) int64 { return st.ByStatus[status] }))
	}
	for _, role := range []userservice.Role{userservice.RoleAdmin, userservice.RoleInstructor, userservice.RoleStudent} {
		s.NewGauge(fmt.Sprintf(`user_service_users_by_role{role=%q}`, role), read(func(st *userservice.PlatformStats) int64 { return st.ByRole[role] }))
	}
	s.NewGauge("user_service_users_email_verified", read(func(st *userservice.PlatformStats) int64 { return st.Verification.EmailVerified }))
	s.NewGauge("user_service_users_profile_completed", read(func(st *userservice.PlatformStats) int64 { return st.Verification.ProfileCompleted }))
}
