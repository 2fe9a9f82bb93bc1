package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

var testSecret = []byte("a-test-secret-of-at-least-32-bytes!!")

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func ctxTimeout(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// TestCopiedRowsLoadAsBuilt checks that what COPY writes is exactly what the service
// loads back: the generated state, field for field.
func TestCopiedRowsLoadAsBuilt(t *testing.T) {
	db := pgtest.New(t)
	ctx := ctxTimeout(t, time.Minute)
	gen := newGenerator(Config{MaxEnrollments: 4, TTL: time.Hour, Secret: testSecret, Tag: "t1"}, 0, time.Now())
	var states []*userservice.State
	for i := range 40 {
		s, err := gen.user(i, i%10 == 0)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, s)
	}
	if err := copyStates(ctx, db, states); err != nil {
		t.Fatal(err)
	}
	loader, err := postgres.NewLoader(db)
	if err != nil {
		t.Fatal(err)
	}
	var enrolled, progressed int
	for _, want := range states {
		got, err := loader.LoadState(ctx, want.User.ID)
		if err != nil {
			t.Fatalf("LoadState(%s): %v", want.User.ID, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("user %s loads as\n%+v\nbut was built as\n%+v", want.User.ID, got, want)
		}
		for _, e := range want.Enrollments {
			enrolled++
			if e.Progress > 0 {
				progressed++
			}
		}
		if n := len(want.Preferences); n != len(userservice.DefaultPreferences) {
			t.Errorf("user %s has %d preferences, want the %d defaults", want.User.ID, n, len(userservice.DefaultPreferences))
		}
	}
	if enrolled == 0 || progressed == 0 {
		t.Errorf("40 users got %d enrollments, %d with progress; the generator should make both", enrolled, progressed)
	}
}

func TestSeed(t *testing.T) {
	url := pgtest.URL(t)
	schema := "seed_test_" + userservice.NewID()[24:]
	ctx := ctxTimeout(t, 2*time.Minute)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Errorf("cannot connect to drop %s: %v", schema, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("cannot drop %s: %v", schema, err)
		}
	})
	cfg := Config{DatabaseURL: url, Schema: schema, Users: 250, Admins: 3, MaxEnrollments: 3,
		Secret: testSecret, TTL: time.Hour, Chunk: 64, Workers: 2, Seed: 7}

	count := func(t *testing.T, query string) int {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, query).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}

	tokens, err := Seed(ctx, cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("writes every user with default preferences and no outbox rows", func(t *testing.T) {
		if n := count(t, "SELECT count(*) FROM "+schema+".users"); n != 253 {
			t.Errorf("users = %d, want 253", n)
		}
		if n := count(t, "SELECT count(*) FROM "+schema+".users WHERE role = 'admin'"); n != 3 {
			t.Errorf("admins = %d, want 3", n)
		}
		if n := count(t, "SELECT count(*) FROM "+schema+".preferences"); n != 253*len(userservice.DefaultPreferences) {
			t.Errorf("preferences = %d, want %d", n, 253*len(userservice.DefaultPreferences))
		}
		if n := count(t, "SELECT count(*) FROM "+schema+".outbox"); n != 0 {
			t.Errorf("outbox rows = %d, want none", n)
		}
		// Every enrollment and every progress update is one version.
		if n := count(t, "SELECT count(*) FROM "+schema+".users WHERE version < 1"); n != 0 {
			t.Errorf("%d users have no version", n)
		}
	})

	t.Run("tokens verify and name the seeded users and their active courses", func(t *testing.T) {
		if len(tokens) != 253 {
			t.Fatalf("got %d tokens, want 253", len(tokens))
		}
		courses := 0
		for i, tk := range tokens {
			var c claims
			if _, err := jwt.ParseWithClaims(tk.Token, &c, func(*jwt.Token) (any, error) { return testSecret, nil },
				jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()); err != nil {
				t.Fatalf("token %d: %v", i, err)
			}
			if c.Subject != tk.ID || c.Role != tk.Role || c.Email != tk.Email || c.AuthID == "" {
				t.Errorf("token %d claims %+v do not match entry %+v", i, c, tk)
			}
			if want := i >= 250; (tk.Role == "admin") != want {
				t.Errorf("token %d has role %s", i, tk.Role)
			}
			for _, course := range tk.Courses {
				courses++
				n := count(t, "SELECT count(*) FROM "+schema+".enrollments WHERE user_id = '"+tk.ID+
					"' AND course_id = '"+course+"' AND enrollment_status = 'active' AND progress < 100")
				if n != 1 {
					t.Errorf("token %d lists course %s, which is not an active enrollment of %s", i, course, tk.ID)
				}
			}
		}
		if courses == 0 {
			t.Error("no token lists a course")
		}
	})

	t.Run("seeding again adds users", func(t *testing.T) {
		cfg := cfg
		cfg.Users, cfg.Admins = 5, 0
		if _, err := Seed(ctx, cfg, quietLogger()); err != nil {
			t.Fatal(err)
		}
		if n := count(t, "SELECT count(*) FROM "+schema+".users"); n != 258 {
			t.Errorf("users after a second seed = %d, want 258", n)
		}
	})

	t.Run("reset starts over", func(t *testing.T) {
		cfg := cfg
		cfg.Reset, cfg.Users, cfg.Admins = true, 10, 1
		if _, err := Seed(ctx, cfg, quietLogger()); err != nil {
			t.Fatal(err)
		}
		if n := count(t, "SELECT count(*) FROM "+schema+".users"); n != 11 {
			t.Errorf("users after reset = %d, want 11", n)
		}
	})
}

func TestRunWritesTokenFile(t *testing.T) {
	url := pgtest.URL(t)
	schema := "seed_run_" + userservice.NewID()[24:]
	out := filepath.Join(t.TempDir(), "data", "tokens.json")
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Errorf("cannot connect to drop %s: %v", schema, err)
			return
		}
		defer conn.Close(context.Background())
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	})
	env := map[string]string{"DATABASE_URL": url, "JWT_SECRET": string(testSecret)}
	err := run(ctxTimeout(t, time.Minute), []string{"-users", "20", "-admins", "2", "-schema", schema, "-out", out},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var tokens []Token
	if err := json.Unmarshal(b, &tokens); err != nil {
		t.Fatalf("token file is not a JSON array of tokens: %v", err)
	}
	if len(tokens) != 22 {
		t.Errorf("token file has %d entries, want 22", len(tokens))
	}
}

func TestSeedRefusesBadConfig(t *testing.T) {
	base := Config{DatabaseURL: "postgres://x@127.0.0.1:1/x", Users: 1, Secret: testSecret, TTL: time.Hour}
	tests := []struct {
		name   string
		modify func(*Config)
	}{
		{"no database URL", func(c *Config) { c.DatabaseURL = "" }},
		{"short secret", func(c *Config) { c.Secret = []byte("short") }},
		{"negative users", func(c *Config) { c.Users = -1 }},
		{"reset of the default schema", func(c *Config) { c.Reset = true }},
		{"reset of public", func(c *Config) { c.Reset, c.Schema = true, "public" }},
		{"zero ttl", func(c *Config) { c.TTL = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.modify(&cfg)
			if _, err := Seed(context.Background(), cfg, quietLogger()); err == nil {
				t.Error("Seed accepted the config")
			}
		})
	}
}
