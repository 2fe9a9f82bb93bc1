package main

// The end-to-end harness: each test starts the real program through run, on its
// own PostgreSQL schema, Redis key prefix and RabbitMQ exchange and queue of the
// test stack, waits for /health/ready and drives it over HTTP. The helpers here
// also read the test's schema directly, tap the exchange and publish Auth
// Service events, so a test can check what the service committed and published.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/rueidis"

	"github.com/lms-platform/userservice"
)

// Generous deadlines: the test machine is shared and slow, and -race slows it more.
const (
	readyTimeout    = 60 * time.Second // run → /health/ready
	stopTimeout     = 60 * time.Second // ctx cancelled → run returns
	eventTimeout    = 15 * time.Second // a write → its event on the tap
	eventuallyLimit = 15 * time.Second // a published auth event → its effect
	quietPeriod     = 1500 * time.Millisecond
)

// mustEnv returns a variable that `make test` exports; the test fails without it.
func mustEnv(tb testing.TB, name string) string {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		tb.Fatalf("%s is not set: run the tests with `make test`, which starts the test stack and exports it", name)
	}
	return v
}

func randomHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// stack is one test's share of the test servers: a schema, a key prefix, an
// exchange and a queue, all unique, and removed when the test ends. Every
// service started on a stack uses them (two instances on one stack share them,
// as replicas would).
type stack struct {
	t                        testing.TB
	dbURL, redisURL, amqpURL string
	schema, prefix           string
	exchange, queue          string
	secret                   string
	id                       string

	mu     sync.Mutex
	pool   *pgxpool.Pool
	rdb    rueidis.Client
	amqpC  *amqp.Connection
	pubCh  *amqp.Channel
	closed bool
}

// newStack reserves the names and registers their removal. Services started
// later stop first (cleanups run last-in first-out).
func newStack(t testing.TB) *stack {
	t.Helper()
	id := randomHex(t, 6)
	s := &stack{
		t:        t,
		dbURL:    mustEnv(t, "TEST_DATABASE_URL"),
		redisURL: mustEnv(t, "TEST_REDIS_URL"),
		amqpURL:  mustEnv(t, "TEST_RABBITMQ_URL"),
		schema:   "e2e_" + id,
		prefix:   "e2e-" + id + ":",
		exchange: "e2e." + id + ".events",
		queue:    "e2e." + id + ".user-service",
		secret:   "e2e-secret-" + randomHex(t, 24),
		id:       id,
	}
	t.Cleanup(s.cleanup)
	return s
}

// baseEnv is the environment of a service on this stack.
func (s *stack) baseEnv() map[string]string {
	return map[string]string{
		"NODE_ENV":           "test",
		"HOST":               "127.0.0.1",
		"LOG_LEVEL":          "warn",
		"DATABASE_URL":       s.dbURL,
		"DB_SCHEMA":          s.schema,
		"DB_POOL_MIN":        "1",
		"DB_POOL_MAX":        "8",
		"REDIS_URL":          s.redisURL,
		"REDIS_KEY_PREFIX":   s.prefix,
		"RABBITMQ_URL":       s.amqpURL,
		"RABBITMQ_EXCHANGE":  s.exchange,
		"RABBITMQ_QUEUE":     s.queue,
		"JWT_SECRET":         s.secret,
		"RATE_LIMIT_MAX":     "1000000",
		"SHUTDOWN_TIMEOUT":   "30s",
		"REQUEST_TIMEOUT":    "20s",
		"CORS_ORIGIN":        "http://localhost:3000",
		"AUDIT_ENABLED":      "true",
		"ACTOR_IDLE_TIMEOUT": "10m",
	}
}

func (s *stack) cleanup() {
	s.mu.Lock()
	s.closed = true
	pool, rdb, conn := s.pool, s.rdb, s.amqpC
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if pool != nil {
		pool.Close()
	}

	// PostgreSQL: a separate connection drops the schema.
	if c, err := pgx.Connect(ctx, s.dbURL); err != nil {
		s.t.Logf("cleanup: cannot connect to PostgreSQL to drop schema %s: %v", s.schema, err)
	} else {
		if _, err := c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s.schema}.Sanitize()+" CASCADE"); err != nil {
			s.t.Logf("cleanup: cannot drop schema %s: %v", s.schema, err)
		}
		_ = c.Close(ctx)
	}

	// RabbitMQ: the exchange, the consumer's queue and its dead-letter queue.
	if conn == nil {
		var err error
		if conn, err = amqp.Dial(s.amqpURL); err != nil {
			s.t.Logf("cleanup: cannot connect to RabbitMQ: %v", err)
		}
	}
	if conn != nil {
		// A failed delete closes its channel: one channel per operation.
		del := func(what string, f func(ch *amqp.Channel) error) {
			ch, err := conn.Channel()
			if err == nil {
				err = f(ch)
				_ = ch.Close()
			}
			if err != nil {
				s.t.Logf("cleanup: cannot delete %s: %v", what, err)
			}
		}
		for _, q := range []string{s.queue, s.queue + ".dlq"} {
			del("queue "+q, func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
		}
		del("exchange "+s.exchange, func(ch *amqp.Channel) error { return ch.ExchangeDelete(s.exchange, false, false) })
		_ = conn.Close()
	}

	// Redis: every key under the prefix.
	if rdb == nil {
		opt, err := rueidis.ParseURL(s.redisURL)
		if err == nil {
			opt.DisableCache = true
			rdb, err = rueidis.NewClient(opt)
		}
		if err != nil {
			s.t.Logf("cleanup: cannot connect to Redis: %v", err)
			return
		}
	}
	defer rdb.Close()
	var cursor uint64
	for {
		e, err := rdb.Do(ctx, rdb.B().Scan().Cursor(cursor).Match(s.prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			s.t.Logf("cleanup: cannot scan Redis keys %s*: %v", s.prefix, err)
			return
		}
		if len(e.Elements) > 0 {
			if err := rdb.Do(ctx, rdb.B().Del().Key(e.Elements...).Build()).Error(); err != nil {
				s.t.Logf("cleanup: cannot delete Redis keys: %v", err)
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}

// service is one running instance of the program.
type service struct {
	stack  *stack
	env    map[string]string
	base   string // http://127.0.0.1:port
	client *http.Client
	logs   *syncBuffer

	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error
}

// syncBuffer collects the service's log lines; they are shown when the test fails.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// freePort returns a TCP port that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("cannot find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs the program on the stack with the overrides applied to the base
// environment, waits until /health/ready answers 200, and stops it (asserting a
// clean shutdown) when the test ends.
func (s *stack) start(t testing.TB, overrides map[string]string) *service {
	t.Helper()
	env := s.baseEnv()
	for k, v := range overrides {
		env[k] = v
	}
	port := freePort(t)
	env["PORT"] = strconv.Itoa(port)
	ctx, cancel := context.WithCancel(context.Background())
	svc := &service{
		stack: s, env: env, base: "http://127.0.0.1:" + strconv.Itoa(port), logs: &syncBuffer{},
		cancel: cancel, done: make(chan error, 1),
		client: &http.Client{
			Timeout:   60 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
		},
	}
	go func() {
		svc.done <- run(ctx, []string{"userservice"}, func(k string) string { return env[k] }, svc.logs)
	}()
	t.Cleanup(func() {
		if err := svc.stop(); err != nil {
			t.Errorf("run did not shut down cleanly: %v", err)
		}
		svc.client.CloseIdleConnections()
		if t.Failed() {
			logs := svc.logs.String()
			if len(logs) > 32<<10 {
				logs = "…" + logs[len(logs)-32<<10:]
			}
			t.Logf("service on %s logged:\n%s", svc.base, logs)
		}
	})
	svc.waitReady(t)
	return svc
}

func (svc *service) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	probe := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case err := <-svc.done:
			svc.done <- err // stop reads it again
			t.Fatalf("run returned before the service was ready: %v\n%s", err, svc.logs.String())
		default:
		}
		resp, err := probe.Get(svc.base + "/health/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health/ready did not answer 200 within %v (last error %v)\n%s", readyTimeout, err, svc.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop cancels run's context (what SIGTERM does in main) and returns what run
// returned, or an error when it does not return in time. Safe to call twice.
func (svc *service) stop() error {
	svc.stopOnce.Do(func() {
		svc.cancel()
		select {
		case err := <-svc.done:
			svc.stopErr = err
		case <-time.After(stopTimeout):
			svc.stopErr = fmt.Errorf("run did not return within %v of the cancellation", stopTimeout)
		}
	})
	return svc.stopErr
}

// response is one HTTP answer, read in full.
type response struct {
	Status int
	Header http.Header
	Body   []byte
	method string
	path   string
}

// envelope is the union of the success and error bodies of /api/v1.
type envelope struct {
	Success    *bool                    `json:"success"`
	Data       json.RawMessage          `json:"data"`
	Message    string                   `json:"message"`
	Pagination *userservice.Pagination  `json:"pagination"`
	Timestamp  string                   `json:"timestamp"`
	Error      string                   `json:"error"`
	Code       string                   `json:"code"`
	Details    []userservice.FieldError `json:"details"`
	RetryAfter *int64                   `json:"retryAfter"`
}

func (r *response) String() string {
	body := string(r.Body)
	if len(body) > 2000 {
		body = body[:2000] + "…"
	}
	return fmt.Sprintf("%s %s → %d %s", r.method, r.path, r.Status, body)
}

// envelope decodes the body and checks the parts every answer has.
func (r *response) envelope(tb testing.TB) envelope {
	tb.Helper()
	var e envelope
	if err := json.Unmarshal(r.Body, &e); err != nil {
		tb.Fatalf("%s: body is not a JSON envelope: %v", r, err)
	}
	if e.Success == nil {
		tb.Fatalf("%s: envelope without success", r)
	}
	if !isTimestamp(e.Timestamp) {
		tb.Errorf("%s: envelope timestamp %q is not 2006-01-02T15:04:05.000Z", r, e.Timestamp)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Errorf("%s: Content-Type %q", r, ct)
	}
	return e
}

// data checks for the status and a success envelope, and decodes data into v
// (when v is not nil).
func (r *response) data(tb testing.TB, status int, v any) envelope {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("%s: want status %d", r, status)
	}
	e := r.envelope(tb)
	if !*e.Success {
		tb.Fatalf("%s: success is false", r)
	}
	if v != nil {
		if err := json.Unmarshal(e.Data, v); err != nil {
			tb.Fatalf("%s: cannot decode data into %T: %v", r, v, err)
		}
	}
	return e
}

// fail checks for the status and an error envelope with the code.
func (r *response) fail(tb testing.TB, status int, code string) envelope {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("%s: want status %d", r, status)
	}
	e := r.envelope(tb)
	if *e.Success || e.Error == "" {
		tb.Errorf("%s: want an error envelope", r)
	}
	if code != "" && e.Code != code {
		tb.Errorf("%s: code %q, want %q", r, e.Code, code)
	}
	return e
}

// jsonData decodes the data of a success envelope into v; for goroutines
// that must not call t.Fatal.
func jsonData(r *response, v any) error {
	var e envelope
	if err := json.Unmarshal(r.Body, &e); err != nil {
		return fmt.Errorf("%s: %w", r, err)
	}
	if e.Success == nil || !*e.Success {
		return fmt.Errorf("%s: not a success envelope", r)
	}
	return json.Unmarshal(e.Data, v)
}

// version returns the version of the ETag header.
func (r *response) version(tb testing.TB) int64 {
	tb.Helper()
	v, err := etagVersion(r.Header.Get("ETag"))
	if err != nil {
		tb.Fatalf("%s: %v", r, err)
	}
	return v
}

func etagVersion(etag string) (int64, error) {
	s := strings.TrimPrefix(etag, "W/")
	if len(s) < 3 || s[0] != '"' || s[len(s)-1] != '"' {
		return 0, fmt.Errorf("ETag %q is not a quoted version", etag)
	}
	return strconv.ParseInt(s[1:len(s)-1], 10, 64)
}

// send makes one request. body is nil (none), []byte or string (sent as is) or
// anything else (sent as JSON); headers are name, value pairs. Safe to call from
// any goroutine.
func (svc *service) send(method, path, token string, body any, headers ...string) (*response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, svc.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := svc.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b, method: method, path: path}, nil
}

// do is send for the test goroutine: a transport error fails the test.
func (svc *service) do(tb testing.TB, method, path, token string, body any, headers ...string) *response {
	tb.Helper()
	r, err := svc.send(method, path, token, body, headers...)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// token mints an HS256 token signed with the stack's secret.
func (s *stack) token(tb testing.TB, sub, authID, email string, role userservice.Role) string {
	tb.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "authId": authID, "email": email, "role": string(role),
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	signed, err := tok.SignedString([]byte(s.secret))
	if err != nil {
		tb.Fatalf("cannot sign token: %v", err)
	}
	return signed
}

// adminToken is an admin's token whose caller has no profile: the token's role
// decides.
func (s *stack) adminToken(tb testing.TB) string {
	tb.Helper()
	return s.token(tb, userservice.NewID(), userservice.NewID(), "admin-"+randomHex(tb, 4)+"@example.com", userservice.RoleAdmin)
}

// tokenFor is the token of a user's own profile.
func (s *stack) tokenFor(tb testing.TB, u apiUser) string {
	tb.Helper()
	return s.token(tb, u.ID, u.AuthID, u.Email, u.Role)
}

// apiUser is the User of the API.
type apiUser struct {
	ID               string           `json:"id"`
	AuthID           string           `json:"authId"`
	Email            string           `json:"email"`
	Username         *string          `json:"username"`
	FirstName        string           `json:"firstName"`
	LastName         string           `json:"lastName"`
	DisplayName      *string          `json:"displayName"`
	AvatarURL        *string          `json:"avatarUrl"`
	Bio              *string          `json:"bio"`
	Phone            *string          `json:"phone"`
	Timezone         string           `json:"timezone"`
	Language         string           `json:"language"`
	Role             userservice.Role `json:"role"`
	Status           string           `json:"status"`
	EmailVerified    bool             `json:"emailVerified"`
	ProfileCompleted bool             `json:"profileCompleted"`
	LastActiveAt     *string          `json:"lastActiveAt"`
	CreatedAt        string           `json:"createdAt"`
	UpdatedAt        string           `json:"updatedAt"`
	Version          int64            `json:"version"`
}

// userFields are exactly the spec's User fields plus version.
var userFields = []string{
	"id", "authId", "email", "username", "firstName", "lastName", "displayName", "avatarUrl", "bio", "phone",
	"timezone", "language", "role", "status", "emailVerified", "profileCompleted", "lastActiveAt",
	"createdAt", "updatedAt", "version",
}

// checkUserShape checks that raw is a User object with exactly userFields and
// well-formed timestamps.
func checkUserShape(tb testing.TB, raw json.RawMessage) {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		tb.Fatalf("user is not an object: %v: %s", err, raw)
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	sort.Strings(got)
	want := append([]string(nil), userFields...)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		tb.Errorf("user fields\n got %v\nwant %v", got, want)
	}
	for _, k := range []string{"createdAt", "updatedAt"} {
		if s, _ := m[k].(string); !isTimestamp(s) {
			tb.Errorf("user %s = %v, want 2006-01-02T15:04:05.000Z", k, m[k])
		}
	}
	if v, ok := m["lastActiveAt"]; ok && v != nil {
		if s, _ := v.(string); !isTimestamp(s) {
			tb.Errorf("user lastActiveAt = %v, want null or a timestamp", v)
		}
	}
}

var timestampRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`)

func isTimestamp(s string) bool { return timestampRE.MatchString(s) }

// newUserBody is a valid CreateUser body with unique authId, email and username.
func newUserBody(tb testing.TB) map[string]any {
	tb.Helper()
	tag := randomHex(tb, 5)
	return map[string]any{
		"authId": userservice.NewID(), "email": "user." + tag + "@example.com",
		"firstName": "Ada", "lastName": "Lovelace", "username": "ada_" + tag,
	}
}

// createUser creates a user through the API as an admin and returns it.
func (svc *service) createUser(tb testing.TB, adminToken string, body map[string]any) apiUser {
	tb.Helper()
	var u apiUser
	svc.do(tb, "POST", "/api/v1/users", adminToken, body).data(tb, http.StatusCreated, &u)
	return u
}

// --- PostgreSQL -------------------------------------------------------------

// db returns a pool on the stack's schema, to read what the service committed.
func (s *stack) db(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		tb.Fatal("stack already cleaned up")
	}
	if s.pool == nil {
		cfg, err := pgxpool.ParseConfig(s.dbURL)
		if err != nil {
			tb.Fatalf("cannot parse TEST_DATABASE_URL: %v", err)
		}
		cfg.MaxConns = 4
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{s.schema}.Sanitize() + ",public"
		if s.pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
			tb.Fatalf("cannot connect to TEST_DATABASE_URL: %v", err)
		}
	}
	return s.pool
}

// dbUser is a users row.
type dbUser struct {
	ID, Email, FirstName, Role, Status string
	Username, Bio                      *string
	Version, LoginCount                int64
}

// userRow reads the user's row straight from PostgreSQL; ok is false when there is none.
func (s *stack) userRow(tb testing.TB, id string) (dbUser, bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var u dbUser
	err := s.db(tb).QueryRow(ctx, `SELECT id::text, email, first_name, role, status, username, bio, version, login_count
		FROM users WHERE id = $1`, id).
		Scan(&u.ID, &u.Email, &u.FirstName, &u.Role, &u.Status, &u.Username, &u.Bio, &u.Version, &u.LoginCount)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, false
	}
	if err != nil {
		tb.Fatalf("cannot read user %s: %v", id, err)
	}
	return u, true
}

// mustUserRow is userRow that fails the test when the row is missing.
func (s *stack) mustUserRow(tb testing.TB, id string) dbUser {
	tb.Helper()
	u, ok := s.userRow(tb, id)
	if !ok {
		tb.Fatalf("user %s is not in PostgreSQL", id)
	}
	return u
}

// count runs a SELECT count(*) on the stack's schema.
func (s *stack) count(tb testing.TB, sql string, args ...any) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := s.db(tb).QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

// --- RabbitMQ -----------------------------------------------------------------

func (s *stack) amqpConn(tb testing.TB) *amqp.Connection {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.amqpC == nil || s.amqpC.IsClosed() {
		c, err := amqp.Dial(s.amqpURL)
		if err != nil {
			tb.Fatalf("cannot connect to TEST_RABBITMQ_URL: %v", err)
		}
		s.amqpC = c
	}
	return s.amqpC
}

// event is one message the service published, with its envelope decoded.
type event struct {
	d             amqp.Delivery
	raw           map[string]json.RawMessage
	ID            string         `json:"id"`
	Type          string         `json:"type"`
	Source        string         `json:"source"`
	Data          map[string]any `json:"data"`
	Timestamp     string         `json:"timestamp"`
	CorrelationID string         `json:"correlationId"`
	Metadata      map[string]any `json:"metadata"`
}

func (e *event) String() string {
	return fmt.Sprintf("%s %s", e.d.RoutingKey, e.d.Body)
}

// userID is data.userId.
func (e *event) userID() string { s, _ := e.Data["userId"].(string); return s }

// userVersion is metadata.userVersion.
func (e *event) userVersion() int64 {
	f, _ := e.Metadata["userVersion"].(float64)
	return int64(f)
}

// tap is a queue bound to the stack's exchange with "#": it sees every event.
type tap struct {
	s   *stack
	ch  *amqp.Channel
	in  <-chan amqp.Delivery
	buf []*event
}

// tap declares the exchange (as the service does) and binds a fresh exclusive
// queue to it. Call it before the writes it should see.
func (s *stack) tap(tb testing.TB) *tap {
	tb.Helper()
	ch, err := s.amqpConn(tb).Channel()
	if err != nil {
		tb.Fatalf("cannot open a channel: %v", err)
	}
	if err := ch.ExchangeDeclare(s.exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		tb.Fatalf("cannot declare exchange: %v", err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		tb.Fatalf("cannot declare the tap queue: %v", err)
	}
	if err := ch.QueueBind(q.Name, "#", s.exchange, false, nil); err != nil {
		tb.Fatalf("cannot bind the tap queue: %v", err)
	}
	in, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		tb.Fatalf("cannot consume the tap queue: %v", err)
	}
	tb.Cleanup(func() { _ = ch.Close() })
	return &tap{s: s, ch: ch, in: in}
}

// next returns the next user.* event within d, or nil. Messages this test
// published itself (auth.*) are skipped.
func (tp *tap) next(tb testing.TB, d time.Duration) *event {
	tb.Helper()
	if len(tp.buf) > 0 {
		e := tp.buf[0]
		tp.buf = tp.buf[1:]
		return e
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-tp.in:
			if !ok {
				tb.Fatal("the tap's channel closed")
			}
			if !strings.HasPrefix(m.RoutingKey, "user.") {
				continue
			}
			return decodeEvent(tb, m)
		case <-timer.C:
			return nil
		}
	}
}

func decodeEvent(tb testing.TB, m amqp.Delivery) *event {
	tb.Helper()
	e := &event{d: m}
	if err := json.Unmarshal(m.Body, &e.raw); err != nil {
		tb.Fatalf("event %s is not a JSON object: %v: %s", m.RoutingKey, err, m.Body)
	}
	if err := json.Unmarshal(m.Body, e); err != nil {
		tb.Fatalf("event %s does not decode: %v: %s", m.RoutingKey, err, m.Body)
	}
	return e
}

// take returns the next n events, failing when they do not come in time.
func (tp *tap) take(tb testing.TB, n int) []*event {
	tb.Helper()
	out := make([]*event, 0, n)
	deadline := time.Now().Add(eventTimeout + time.Duration(n)*10*time.Millisecond)
	for len(out) < n {
		e := tp.next(tb, time.Until(deadline))
		if e == nil {
			tb.Fatalf("got %d of %d events within the deadline", len(out), n)
		}
		out = append(out, e)
	}
	return out
}

// expect takes the next events and checks their types (routing keys), in order,
// and each envelope.
func (tp *tap) expect(tb testing.TB, types ...string) []*event {
	tb.Helper()
	evs := tp.take(tb, len(types))
	for i, e := range evs {
		if e.d.RoutingKey != types[i] {
			tb.Errorf("event %d: got %s, want %s", i, e, types[i])
		}
		checkEnvelope(tb, e)
	}
	return evs
}

// expectNone checks that no further event arrives for a while.
func (tp *tap) expectNone(tb testing.TB) {
	tb.Helper()
	if e := tp.next(tb, quietPeriod); e != nil {
		tb.Errorf("unexpected event %s", e)
	}
}

// checkEnvelope checks the envelope and the AMQP properties of an event
// (CONTRACT.md, Events).
func checkEnvelope(tb testing.TB, e *event) {
	tb.Helper()
	var keys []string
	for k := range e.raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got := strings.Join(keys, ","); got != "correlationId,data,id,metadata,sequence,source,timestamp,type,version" {
		tb.Errorf("%s: envelope keys %s", e, got)
	}
	var seq, version int64
	if json.Unmarshal(e.raw["sequence"], &seq) != nil || seq != e.userVersion() || seq < 1 {
		tb.Errorf("%s: sequence %s, want the user's version %d", e, e.raw["sequence"], e.userVersion())
	}
	if json.Unmarshal(e.raw["version"], &version) != nil || version != userservice.EnvelopeVersion {
		tb.Errorf("%s: envelope version %s", e, e.raw["version"])
	}
	if _, ok := userservice.ParseID(e.ID); !ok {
		tb.Errorf("%s: id %q is not a UUID", e, e.ID)
	}
	if e.Type != e.d.RoutingKey {
		tb.Errorf("%s: type %q differs from the routing key", e, e.Type)
	}
	if e.Source != "user-service" {
		tb.Errorf("%s: source %q", e, e.Source)
	}
	if e.Data == nil {
		tb.Errorf("%s: data is not an object", e)
	}
	if !isTimestamp(e.Timestamp) {
		tb.Errorf("%s: timestamp %q", e, e.Timestamp)
	}
	if e.CorrelationID == "" {
		tb.Errorf("%s: no correlationId", e)
	}
	if e.Metadata == nil {
		tb.Errorf("%s: metadata is not an object", e)
	}
	if e.d.MessageId != e.ID {
		tb.Errorf("%s: message_id %q, want the envelope id %q", e, e.d.MessageId, e.ID)
	}
	if e.d.CorrelationId != e.CorrelationID {
		tb.Errorf("%s: correlation_id %q, want the envelope's %q", e, e.d.CorrelationId, e.CorrelationID)
	}
	if e.d.DeliveryMode != amqp.Persistent {
		tb.Errorf("%s: delivery mode %d, want persistent", e, e.d.DeliveryMode)
	}
	if e.d.ContentType != "application/json" {
		tb.Errorf("%s: content type %q", e, e.d.ContentType)
	}
}

// authEvent is an Auth Service envelope for the consumer.
func authEvent(typ string, data map[string]any) (id string, body []byte) {
	id = userservice.NewID()
	body, _ = json.Marshal(map[string]any{
		"id": id, "type": typ, "source": "auth-service", "data": data,
		"timestamp": userservice.Now().String(), "correlationId": userservice.NewID(), "metadata": map[string]any{},
	})
	return id, body
}

// publish sends a message to the stack's exchange and waits for the broker's confirm.
func (s *stack) publish(tb testing.TB, routingKey, messageID string, body []byte) {
	tb.Helper()
	conn := s.amqpConn(tb)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pubCh == nil || s.pubCh.IsClosed() {
		ch, err := conn.Channel()
		if err != nil {
			tb.Fatalf("cannot open a channel: %v", err)
		}
		if err := ch.Confirm(false); err != nil {
			tb.Fatalf("cannot enable confirms: %v", err)
		}
		s.pubCh = ch
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := s.pubCh.PublishWithDeferredConfirmWithContext(ctx, s.exchange, routingKey, true, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: messageID, Body: body,
	})
	if err != nil {
		tb.Fatalf("cannot publish %s: %v", routingKey, err)
	}
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		tb.Fatalf("publish %s not confirmed: ack=%v err=%v", routingKey, ok, err)
	}
}

// waitConsumer waits until the service consumes its queue, which it binds
// before consuming: from then on published auth events reach it.
func (s *stack) waitConsumer(tb testing.TB) {
	tb.Helper()
	conn := s.amqpConn(tb)
	deadline := time.Now().Add(readyTimeout)
	for {
		ch, err := conn.Channel()
		if err != nil {
			tb.Fatalf("cannot open a channel: %v", err)
		}
		q, err := ch.QueueDeclarePassive(s.queue, true, false, false, false, nil)
		if err == nil {
			_ = ch.Close()
			if q.Consumers > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("nobody consumes %s after %v (last error %v)", s.queue, readyTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// getDLQ fetches one message from the dead-letter queue, waiting up to d.
func (s *stack) getDLQ(tb testing.TB, d time.Duration) (amqp.Delivery, bool) {
	tb.Helper()
	ch, err := s.amqpConn(tb).Channel()
	if err != nil {
		tb.Fatalf("cannot open a channel: %v", err)
	}
	defer ch.Close()
	deadline := time.Now().Add(d)
	for {
		m, ok, err := ch.Get(s.queue+".dlq", true)
		if err != nil {
			tb.Fatalf("cannot get from %s.dlq: %v", s.queue, err)
		}
		if ok {
			return m, true
		}
		if time.Now().After(deadline) {
			return amqp.Delivery{}, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// --- Redis --------------------------------------------------------------------

func (s *stack) redis(tb testing.TB) rueidis.Client {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rdb == nil {
		opt, err := rueidis.ParseURL(s.redisURL)
		if err != nil {
			tb.Fatalf("cannot parse TEST_REDIS_URL: %v", err)
		}
		opt.DisableCache = true
		if s.rdb, err = rueidis.NewClient(opt); err != nil {
			tb.Fatalf("cannot connect to TEST_REDIS_URL: %v", err)
		}
	}
	return s.rdb
}

// --- metrics and waiting ------------------------------------------------------

// metric reads one sample of /metrics by its full name with labels, e.g.
// `user_service_snapshot_loads_total{source="redis"}`; 0 when absent.
func (svc *service) metric(tb testing.TB, name string) float64 {
	tb.Helper()
	r := svc.do(tb, "GET", "/metrics", "", nil)
	if r.Status != http.StatusOK {
		tb.Fatalf("%s", r)
	}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				tb.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// eventually retries check until it returns nil or the limit passes, then fails
// with its last error.
func eventually(tb testing.TB, what string, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(eventuallyLimit)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v: %v", what, eventuallyLimit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// parallel runs f(0..n-1) on at most limit goroutines and waits.
func parallel(n, limit int, f func(i int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}
