package postgres_test

import (
	"context"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

// insertUsersSQL adds $1 users with roles, statuses and flags spread over every
// combination, numbered from $2 (ids and emails stay unique).
const insertUsersSQL = `INSERT INTO users (id, auth_id, email, first_name, last_name, role, status,
	email_verified, profile_completed, version, created_at, updated_at)
SELECT gen_random_uuid(), gen_random_uuid(), 'u' || (i + $2) || '@example.com', 'F', 'L',
	(ARRAY['admin','instructor','student','student'])[1 + i % 4],
	(ARRAY['active','active','inactive','suspended','deleted'])[1 + i % 5],
	i % 3 = 0, i % 7 = 0, 1, now(), now()
FROM generate_series(1, $1) AS i`

// groundTruth counts the users table itself.
func groundTruth(tb testing.TB, db *postgres.DB) userservice.PlatformStats {
	tb.Helper()
	s := userservice.NewPlatformStats()
	rows, err := db.Pool().Query(context.Background(), `SELECT role, status, email_verified, profile_completed, count(*)
		FROM users GROUP BY 1, 2, 3, 4`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var role, status string
		var v, c bool
		var n int64
		if err := rows.Scan(&role, &status, &v, &c, &n); err != nil {
			tb.Fatal(err)
		}
		s.Add(userservice.Role(role), userservice.Status(status), v, c, n)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return s
}

func checkStats(tb testing.TB, db *postgres.DB, what string) userservice.PlatformStats {
	tb.Helper()
	got, err := db.PlatformStats(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	if want := groundTruth(tb, db); !reflect.DeepEqual(got, want) {
		tb.Fatalf("%s: stats %+v, the users table says %+v", what, got, want)
	}
	return got
}

// TestPlatformStatsCounters: the trigger-kept counters equal a count of the
// users table after inserts, updates of each counted column, updates of other
// columns, deletes, concurrent writers, and a fold of ended backends' rows.
func TestPlatformStatsCounters(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool().Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if s := checkStats(t, db, "empty"); s.Total != 0 || len(s.ByStatus) != 4 || len(s.ByRole) != 3 {
		t.Fatalf("empty stats %+v", s)
	}
	exec(insertUsersSQL, 500, 0)
	if s := checkStats(t, db, "after inserts"); s.Total != 500 {
		t.Fatalf("total %d, want 500", s.Total)
	}
	exec(`UPDATE users SET status = 'suspended' WHERE status = 'active' AND role = 'student'`)
	exec(`UPDATE users SET role = 'instructor', email_verified = NOT email_verified WHERE email LIKE 'u1%'`)
	exec(`UPDATE users SET profile_completed = true WHERE email LIKE '%3@example.com'`)
	exec(`UPDATE users SET bio = 'x', version = version + 1`) // counted columns untouched
	checkStats(t, db, "after updates")
	exec(`DELETE FROM users WHERE email LIKE 'u2%'`)
	checkStats(t, db, "after deletes")

	// Concurrent writers on several connections, each transaction moving users
	// between many counters.
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			_, err := db.Pool().Exec(ctx, insertUsersSQL, 50, 10000*(w+1))
			if err == nil {
				_, err = db.Pool().Exec(ctx, `UPDATE users SET status = CASE status WHEN 'active' THEN 'inactive' ELSE 'active' END
					WHERE email LIKE 'u' || $1 || '%'`, strconv.Itoa(w+1))
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	before := checkStats(t, db, "after concurrent writers")

	// Backends that ended: their rows fold into shard 0 and the sums stay.
	exec(`UPDATE user_counts SET shard = -1 - shard WHERE shard > 0`) // no live backend has a negative pid
	folded, err := db.FoldUserCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if folded == 0 {
		t.Fatal("nothing folded")
	}
	var left int
	if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM user_counts WHERE shard < 0`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d rows of ended backends left (%v)", left, err)
	}
	if after := checkStats(t, db, "after the fold"); !reflect.DeepEqual(after, before) {
		t.Fatalf("the fold changed the stats: %+v, was %+v", after, before)
	}
	if _, err := db.Prune(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	checkStats(t, db, "after Prune")
}

// BenchmarkPlatformStats compares the counters with counting the users table,
// at BENCH_USERS users (default 100000):
//
//	BENCH_USERS=1000000 go test -run X -bench PlatformStats -benchtime 20x ./persistence/postgres/
func BenchmarkPlatformStats(b *testing.B) {
	n := 100000
	if s := os.Getenv("BENCH_USERS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	db := pgtest.New(b)
	ctx := context.Background()
	for done := 0; done < n; done += 100000 {
		if _, err := db.Pool().Exec(ctx, insertUsersSQL, min(100000, n-done), done); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.Pool().Exec(ctx, `VACUUM ANALYZE users`); err != nil {
		b.Fatal(err)
	}
	b.Run("counters", func(b *testing.B) {
		for b.Loop() {
			if _, err := db.PlatformStats(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("count(*) of users", func(b *testing.B) {
		for b.Loop() {
			groundTruth(b, db)
		}
	})
}
