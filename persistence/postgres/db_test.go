package postgres_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

func TestReadyOnlyAfterMigrate(t *testing.T) {
	t.Parallel()
	migrated := pgtest.New(t)
	ctx := context.Background()
	if err := migrated.Ready(ctx); err != nil {
		t.Fatalf("Ready after Migrate: %v", err)
	}
	if err := migrated.Migrate(ctx); err != nil {
		t.Errorf("second Migrate: %v", err)
	}

	fresh, err := postgres.Open(ctx, postgres.Config{URL: pgtest.URL(t), Schema: migrated.Schema()})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := fresh.Ready(ctx); userservice.ErrorCode(err) != userservice.ECodeUnavailable {
		t.Errorf("Ready before Migrate: err = %v, want %s", err, userservice.ECodeUnavailable)
	}
	if err := fresh.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestOpen(t *testing.T) {
	tests := []struct {
		name string
		cfg  postgres.Config
		ok   bool
	}{
		{"no URL", postgres.Config{}, false},
		{"schema with a quote", postgres.Config{URL: "postgres://x@127.0.0.1/db", Schema: `a"; DROP`}, false},
		{"upper-case schema", postgres.Config{URL: "postgres://x@127.0.0.1/db", Schema: "Tests"}, false},
		{"MinConns above MaxConns", postgres.Config{URL: "postgres://x@127.0.0.1/db", MinConns: 5, MaxConns: 2}, false},
		{"bad URL", postgres.Config{URL: "postgres://x@127.0.0.1:notaport/db"}, false},
		{"unreachable server opens: no I/O", postgres.Config{URL: "postgres://x@127.0.0.1:1/db", Schema: "s1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := postgres.Open(context.Background(), tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%t", err, tt.ok)
			}
			if db != nil {
				defer db.Close()
				if got := db.Stats().MaxConns(); got != postgres.DefaultMaxConns {
					t.Errorf("MaxConns = %d, want %d", got, postgres.DefaultMaxConns)
				}
			}
		})
	}
}

func TestPingUnreachable(t *testing.T) {
	t.Parallel()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: "postgres://x@127.0.0.1:1/db", ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(context.Background()); userservice.ErrorCode(err) != userservice.ECodeUnavailable {
		t.Errorf("Ping: err = %v, want %s", err, userservice.ECodeUnavailable)
	}
	if err := db.Ready(context.Background()); userservice.ErrorCode(err) != userservice.ECodeUnavailable {
		t.Errorf("Ready: err = %v, want %s", err, userservice.ECodeUnavailable)
	}
}

func TestPoolGauges(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	if err := db.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	metrics.WritePrometheus(&buf, false)
	for _, name := range []string{"user_service_db_pool_acquired_conns", "user_service_db_pool_idle_conns",
		"user_service_db_pool_total_conns", "user_service_db_pool_max_conns 4", "user_service_db_pool_acquires_total",
		"user_service_db_pool_empty_acquires_total", "user_service_db_pool_acquire_wait_seconds_total"} {
		if !strings.Contains(buf.String(), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
