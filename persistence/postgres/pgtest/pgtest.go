// Package pgtest gives an integration test its own migrated PostgreSQL schema.
//
//	func TestSomething(t *testing.T) {
//		db := pgtest.New(t) // schema created and migrated; dropped when the test ends
//		loader, _ := postgres.NewLoader(db)
//		...
//	}
//
// The server is the test stack's (TEST_DATABASE_URL, set by `make test`). When the
// variable is unset the test fails: integration tests never skip.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lms-platform/userservice/persistence/postgres"
)

// EnvURL names the variable holding the test database's URL.
const EnvURL = "TEST_DATABASE_URL"

// URL returns TEST_DATABASE_URL, failing tb when it is unset.
func URL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv(EnvURL)
	if url == "" {
		tb.Fatal(EnvURL + " is not set: run the tests with `make test`, which starts the test stack and sets it")
	}
	return url
}

// New opens a pool on a new schema named after the test, migrates it, and closes
// the pool and drops the schema when the test ends.
func New(tb testing.TB) *postgres.DB {
	tb.Helper()
	url := URL(tb)
	schema := schemaName(tb.Name())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ensureExtension(ctx, url); err != nil {
		tb.Fatalf("cannot prepare the test database: %v", err)
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: url, Schema: schema, MaxConns: 4})
	if err != nil {
		tb.Fatalf("cannot open PostgreSQL: %v", err)
	}
	tb.Cleanup(func() {
		db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, url, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("cannot drop test schema %s: %v", schema, err)
		}
	})
	if err := db.Migrate(ctx); err != nil {
		tb.Fatalf("cannot migrate schema %s: %v", schema, err)
	}
	return db
}

// schemaName is a valid, unique schema name that still says which test made it.
func schemaName(test string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(test) {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	return b.String() + "_" + hex.EncodeToString(rnd[:])
}

// ensureExtension creates pg_trgm once, under a lock: the migration creates it with
// IF NOT EXISTS, but two first-time creations racing from parallel tests fail.
func ensureExtension(ctx context.Context, url string) error {
	return exec(ctx, url, `SELECT pg_advisory_xact_lock(7247617001);
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;`)
}

func exec(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// Plan returns PostgreSQL's EXPLAIN of sql with args, one plan line a line, with
// sequential scans off for the statement (a test's tables are tiny, so the
// planner would otherwise read them whole and never show the index a query is
// meant to use).
func Plan(tb testing.TB, pool *pgxpool.Pool, sql string, args ...any) string {
	tb.Helper()
	return PlanWith(tb, pool, nil, sql, args...)
}

// PlanWith is Plan with more planner settings for the statement, such as
// "enable_sort = off" to see whether a query can avoid a sort at all.
func PlanWith(tb testing.TB, pool *pgxpool.Pool, settings []string, sql string, args ...any) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := pool.Begin(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, set := range append([]string{"enable_seqscan = off"}, settings...) {
		if _, err := tx.Exec(ctx, "SET LOCAL "+set); err != nil {
			tb.Fatal(err)
		}
	}
	rows, err := tx.Query(ctx, "EXPLAIN "+sql, args...)
	if err != nil {
		tb.Fatalf("EXPLAIN %s: %v", sql, err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			tb.Fatal(err)
		}
		plan = append(plan, line)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return strings.Join(plan, "\n")
}
