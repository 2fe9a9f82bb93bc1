// Command seed fills a User Service schema with users for load tests and writes a
// file of signed tokens for k6 to rotate through:
//
//	make seed USERS=100000
//	go run ./cmd/seed -users 100000 -schema bench -reset -out loadtest/.data/tokens.json
//
// Speed comes from PostgreSQL's COPY (pgx CopyFrom), in chunks committed by a few
// workers in parallel; 100,000 users with their default preferences and a few
// enrollments take well under a minute on two cores. The rows are nonetheless the
// ones the service itself would write: every user is built by userservice.Apply from
// a Register command (which adds the default preferences), followed by Enroll and
// SetProgress commands, so versions, timestamps and the profileCompleted flag are
// consistent with what an actor would load. Seed data publishes no events: no outbox
// rows are written.
//
// Emails and usernames carry a per-run tag, so seeding twice into one schema adds
// users. The token file is a JSON array of {id, token, role, email, courses}:
// courses are the ids of the user's seeded enrollments that are still in progress
// (PUT progress targets). Besides -users students and instructors it holds -admins
// admins, who are real users with the admin role (the service trusts a profile's
// stored role). Tokens are HS256-signed with JWT_SECRET (the development default
// when unset).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	json "github.com/goccy/go-json"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
)

// defaultSecret is the spec's development JWT_SECRET, as in the service and devtoken.
const defaultSecret = "your-super-secret-jwt-key-change-in-production"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "seed: %v\n", err)
		os.Exit(1)
	}
}

// Config is what to seed and where.
type Config struct {
	DatabaseURL string
	Schema      string // "" means the connection's default search_path
	Reset       bool   // drop Schema first (refused for "" and "public")
	Users       int    // students and instructors
	Admins      int
	// MaxEnrollments bounds each user's enrollments; each user gets 0..MaxEnrollments.
	MaxEnrollments int
	Out            string // token file; "" writes none
	Secret         []byte
	TTL            time.Duration
	Chunk          int // users per COPY transaction
	Workers        int
	Seed           uint64 // of the names, roles and progress values (ids are random)
	// Tag goes into every email and username, so that seeding twice into one schema
	// does not collide on their unique indexes ("" picks a random one).
	Tag string
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.DatabaseURL, "database-url", getenv("DATABASE_URL"), "PostgreSQL URL (default $DATABASE_URL)")
	fs.StringVar(&cfg.Schema, "schema", getenv("DB_SCHEMA"), "schema to fill, created and migrated if missing (default $DB_SCHEMA)")
	fs.BoolVar(&cfg.Reset, "reset", false, "drop the schema first (only a named schema other than public)")
	fs.IntVar(&cfg.Users, "users", 1000, "number of students and instructors")
	fs.IntVar(&cfg.Admins, "admins", 5, "number of admins")
	fs.IntVar(&cfg.MaxEnrollments, "enrollments", 4, "each user gets between 0 and this many enrollments")
	fs.StringVar(&cfg.Out, "out", "loadtest/.data/tokens.json", `token file to write ("" for none)`)
	fs.DurationVar(&cfg.TTL, "ttl", 24*time.Hour, "token lifetime")
	fs.IntVar(&cfg.Chunk, "chunk", 2000, "users per COPY transaction")
	fs.IntVar(&cfg.Workers, "workers", 2, "parallel COPY transactions")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed of names, roles and progress values")
	fs.StringVar(&cfg.Tag, "tag", "", "suffix of every email and username (default: random)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	secret := getenv("JWT_SECRET")
	if secret == "" {
		secret = defaultSecret
	}
	cfg.Secret = []byte(secret)
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	started := time.Now()
	tokens, err := Seed(ctx, cfg, logger)
	if err != nil {
		return err
	}
	if cfg.Out != "" {
		if err := writeTokens(cfg.Out, tokens); err != nil {
			return err
		}
	}
	logger.Info("seeded", slog.Int("users", cfg.Users), slog.Int("admins", cfg.Admins),
		slog.String("schema", cfg.Schema), slog.String("tokens", cfg.Out), slog.Duration("took", time.Since(started).Round(time.Millisecond)))
	return nil
}

// Token is one entry of the token file.
type Token struct {
	ID      string   `json:"id"`
	Token   string   `json:"token"`
	Role    string   `json:"role"`
	Email   string   `json:"email"`
	Courses []string `json:"courses"`
}

// Seed creates the schema if needed, inserts cfg.Users users and cfg.Admins admins
// and returns a signed token for each (admins last).
func Seed(ctx context.Context, cfg Config, logger *slog.Logger) ([]Token, error) {
	switch {
	case cfg.DatabaseURL == "":
		return nil, errors.New("no database URL: set DATABASE_URL or -database-url")
	case len(cfg.Secret) < 32:
		return nil, fmt.Errorf("JWT_SECRET is %d bytes; the service requires at least 32", len(cfg.Secret))
	case cfg.Users < 0 || cfg.Admins < 0 || cfg.MaxEnrollments < 0:
		return nil, errors.New("-users, -admins and -enrollments must not be negative")
	case cfg.Reset && (cfg.Schema == "" || cfg.Schema == "public"):
		return nil, errors.New("-reset needs a -schema other than public")
	case cfg.TTL <= 0:
		return nil, errors.New("-ttl must be positive")
	}
	if cfg.Tag == "" {
		cfg.Tag = userservice.NewID()[30:] // the random end of a UUIDv7
	}
	cfg.Chunk = max(cfg.Chunk, 1)
	cfg.Workers = max(cfg.Workers, 1)
	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, Schema: cfg.Schema, MaxConns: int32(cfg.Workers + 1), Logger: logger})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if cfg.Reset {
		if _, err := db.Pool().Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{cfg.Schema}.Sanitize()+" CASCADE"); err != nil {
			return nil, fmt.Errorf("cannot drop schema %s: %w", cfg.Schema, err)
		}
	}
	if err := db.Migrate(ctx); err != nil {
		return nil, err
	}

	total := cfg.Users + cfg.Admins
	tokens := make([]Token, total)
	now := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Workers)
	for start := 0; start < total; start += cfg.Chunk {
		end := min(start+cfg.Chunk, total)
		g.Go(func() error {
			// One generator per chunk, seeded by its position: the data does not
			// depend on how chunks are spread over workers.
			gen := newGenerator(cfg, uint64(start), now)
			states := make([]*userservice.State, 0, end-start)
			for i := start; i < end; i++ {
				s, err := gen.user(i, i >= cfg.Users)
				if err != nil {
					return err
				}
				states = append(states, s)
				if tokens[i], err = gen.token(s); err != nil {
					return err
				}
			}
			return copyStates(gctx, db, states)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// Fresh statistics, so that the admin search plans for the real table size.
	// VACUUM too: a GIN index keeps its own statistics (used to cost the trigram
	// search) in its metapage, written when it is built (here: on an empty table)
	// and by VACUUM only; with them stale the planner scans users whole.
	for _, table := range []string{"users", "enrollments", "preferences"} {
		if _, err := db.Pool().Exec(ctx, "VACUUM (ANALYZE) "+table); err != nil {
			return nil, fmt.Errorf("cannot vacuum %s: %w", table, err)
		}
	}
	return tokens, nil
}

// generator builds users the way the service would: through userservice.Apply.
type generator struct {
	cfg Config
	rng *rand.Rand
	now time.Time
}

func newGenerator(cfg Config, stream uint64, now time.Time) *generator {
	return &generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, stream)), now: now}
}

var firstNames = []string{
	"Alice", "Amara", "Ana", "Arjun", "Ben", "Carla", "Chen", "Daniel", "Divya", "Elena",
	"Emma", "Fatima", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jamal", "Jin",
	"John", "Julia", "Kai", "Karim", "Laura", "Leo", "Lina", "Lucas", "Maria", "Mario",
	"Marta", "Mei", "Mohammed", "Nadia", "Noah", "Nora", "Olga", "Omar", "Paula", "Pedro",
	"Priya", "Rafael", "Rosa", "Sam", "Sara", "Sofia", "Tariq", "Tom", "Yuki", "Zoe",
}

var lastNames = []string{
	"Abe", "Ahmed", "Alvarez", "Bauer", "Brown", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia",
	"Gupta", "Haddad", "Ivanova", "Jensen", "Johnson", "Kim", "Kowalski", "Lopez", "Martin", "Meyer",
	"Moreau", "Nakamura", "Nguyen", "Novak", "Okafor", "Olsen", "Patel", "Perez", "Rossi", "Santos",
	"Schmidt", "Silva", "Singh", "Smith", "Suzuki", "Tanaka", "Taylor", "Wang", "Weber", "Zhang",
}

var bios = []string{
	"Lifelong learner.", "Software developer learning data science.", "Teacher and student of languages.",
	"Curious about everything.", "Preparing for a career change.",
}

// user builds user number i through Register, then its enrollments.
func (g *generator) user(i int, admin bool) (*userservice.State, error) {
	first, last := firstNames[g.rng.IntN(len(firstNames))], lastNames[g.rng.IntN(len(lastNames))]
	username := fmt.Sprintf("%s_%s_%d_%s", first, last, i, g.cfg.Tag)
	in := userservice.CreateUser{
		AuthID:    userservice.NewID(),
		Email:     fmt.Sprintf("%s.%s.%d.%s@example.com", first, last, i, g.cfg.Tag),
		FirstName: first, LastName: last, Username: &username,
	}
	role := userservice.RoleStudent
	switch {
	case admin:
		role = userservice.RoleAdmin
		in.Email = fmt.Sprintf("admin.%d.%s@example.com", i, g.cfg.Tag)
	case g.rng.IntN(20) == 0:
		role = userservice.RoleInstructor
	}
	in.Role = &role
	if g.rng.IntN(2) == 0 {
		display := first + " " + last
		in.DisplayName = &display
	}
	if g.rng.IntN(3) == 0 {
		bio := bios[g.rng.IntN(len(bios))]
		in.Bio = &bio
	}
	if err := in.Validate(); err != nil {
		return nil, fmt.Errorf("cannot build user %d: %w", i, err)
	}
	// Users were created over the last 90 days, in order.
	at := g.now.Add(-90 * 24 * time.Hour).Add(time.Duration(i) * time.Second)
	meta := userservice.Meta{Now: userservice.NewTime(at), CorrelationID: "seed"}
	out, err := userservice.Apply(nil, userservice.Register{ID: userservice.NewID(), Input: in}, meta)
	if err != nil {
		return nil, fmt.Errorf("cannot register user %d: %w", i, err)
	}
	s := out.State
	if admin {
		return s, nil
	}
	for range g.rng.IntN(g.cfg.MaxEnrollments + 1) {
		meta.Now = userservice.NewTime(meta.Now.Add(time.Minute))
		course := userservice.NewID()
		if out, err = userservice.Apply(s, userservice.Enroll{CourseID: course}, meta); err != nil {
			return nil, fmt.Errorf("cannot enroll user %d: %w", i, err)
		}
		s = out.State
		if g.rng.IntN(2) == 0 {
			continue
		}
		// Some progress, short of completion: load tests update it further.
		p := float64(1+g.rng.IntN(900)) / 10
		spent := int64(60 + g.rng.IntN(3600))
		meta.Now = userservice.NewTime(meta.Now.Add(time.Minute))
		if out, err = userservice.Apply(s, userservice.SetProgress{CourseID: course,
			Input: userservice.UpdateProgress{Progress: &p, TimeSpentSeconds: &spent}}, meta); err != nil {
			return nil, fmt.Errorf("cannot record progress of user %d: %w", i, err)
		}
		s = out.State
	}
	return s, nil
}

// claims are those the service requires (CONTRACT.md, Auth).
type claims struct {
	AuthID string `json:"authId"`
	Email  string `json:"email"`
	Role   string `json:"role"`
	jwt.RegisteredClaims
}

func (g *generator) token(s *userservice.State) (Token, error) {
	u := &s.User
	c := claims{AuthID: u.AuthID, Email: u.Email, Role: string(u.Role), RegisteredClaims: jwt.RegisteredClaims{
		Subject:   u.ID,
		IssuedAt:  jwt.NewNumericDate(g.now),
		ExpiresAt: jwt.NewNumericDate(g.now.Add(g.cfg.TTL)),
	}}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(g.cfg.Secret)
	if err != nil {
		return Token{}, fmt.Errorf("cannot sign token: %w", err)
	}
	t := Token{ID: u.ID, Token: signed, Role: string(u.Role), Email: u.Email, Courses: []string{}}
	for _, e := range s.SortedEnrollments(userservice.EnrollmentActive) {
		t.Courses = append(t.Courses, e.CourseID)
	}
	return t, nil
}

// copyStates writes the states' rows in one transaction: users first (the other
// tables reference them), with the columns and values the writer's INSERTs use.
func copyStates(ctx context.Context, db *postgres.DB, states []*userservice.State) error {
	var users, enrollments, preferences [][]any
	for _, s := range states {
		u := &s.User
		users = append(users, []any{u.ID, u.AuthID, u.Email, u.Username, u.FirstName, u.LastName, u.DisplayName,
			u.AvatarURL, u.Bio, u.Phone, u.Timezone, u.Language, string(u.Role), string(u.Status), u.EmailVerified,
			u.ProfileCompleted, timeArg(u.LastActiveAt), u.LoginCount, timeArg(u.LastLoginAt), u.Version,
			u.CreatedAt.Time, u.UpdatedAt.Time})
		for _, e := range s.Enrollments {
			enrollments = append(enrollments, []any{e.ID, u.ID, e.CourseID, string(e.EnrollmentStatus), e.Progress,
				e.TimeSpentSeconds, e.EnrolledAt.Time, timeArg(e.CompletedAt), timeArg(e.LastAccessedAt),
				e.CreatedAt.Time, e.UpdatedAt.Time})
		}
		for _, p := range s.Preferences {
			// A string is sent as the json column's text, byte for byte.
			preferences = append(preferences, []any{p.ID, u.ID, p.Category, p.Key, string(p.Value),
				p.CreatedAt.Time, p.UpdatedAt.Time})
		}
	}
	tx, err := db.Pool().Begin(ctx)
	if err != nil {
		return fmt.Errorf("cannot begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, t := range []struct {
		table   string
		columns []string
		rows    [][]any
	}{
		{"users", userColumns, users},
		{"enrollments", enrollmentColumns, enrollments},
		{"preferences", preferenceColumns, preferences},
	} {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.table}, t.columns, pgx.CopyFromRows(t.rows)); err != nil {
			return fmt.Errorf("cannot copy %s: %w", t.table, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("cannot commit: %w", err)
	}
	return nil
}

var (
	userColumns = []string{"id", "auth_id", "email", "username", "first_name", "last_name", "display_name",
		"avatar_url", "bio", "phone", "timezone", "language", "role", "status", "email_verified",
		"profile_completed", "last_active_at", "login_count", "last_login_at", "version", "created_at", "updated_at"}
	enrollmentColumns = []string{"id", "user_id", "course_id", "enrollment_status", "progress",
		"time_spent_seconds", "enrolled_at", "completed_at", "last_accessed_at", "created_at", "updated_at"}
	preferenceColumns = []string{"id", "user_id", "category", "key", "value", "created_at", "updated_at"}
)

// timeArg is a nullable timestamptz argument.
func timeArg(t *userservice.Time) any {
	if t == nil {
		return nil
	}
	return t.Time
}

// writeTokens writes the token file atomically (k6 may be reading an older one).
func writeTokens(path string, tokens []Token) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("cannot create the token file's folder: %w", err)
	}
	b, err := json.Marshal(tokens)
	if err != nil {
		return fmt.Errorf("cannot encode tokens: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("cannot write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}
