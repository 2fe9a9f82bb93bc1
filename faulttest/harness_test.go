//go:build faulttest

package faulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/rueidis"
)

const (
	// testSecret is the service's JWT_SECRET in these tests.
	testSecret = "faulttest-secret-0123456789abcdef-0123456789"
	// requestTimeout is the service's REQUEST_TIMEOUT here; a request that takes
	// longer than clientTimeout hangs, which is a failure.
	requestTimeout = 5 * time.Second
	clientTimeout  = requestTimeout + 5*time.Second
)

// serviceBin is the service binary TestMain builds once.
var serviceBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "faulttest-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "faulttest: %v\n", err)
		os.Exit(1)
	}
	serviceBin = filepath.Join(dir, "userservice")
	build := exec.Command("go", "build", "-o", serviceBin, "github.com/lms-platform/userservice/cmd/userservice")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "faulttest: cannot build the service: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	summaries.print(os.Stdout)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// summaries collects one line per test, printed together after the run.
var summaries summaryLog

type summaryLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *summaryLog) print(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 {
		return
	}
	fmt.Fprintln(w, "==== fault test summary")
	for _, line := range l.lines {
		fmt.Fprintln(w, line)
	}
}

// summary is the one-line result of a test: PASS or FAIL, the test, and what it saw.
type summary struct {
	mu    sync.Mutex
	parts []string
}

// newSummary starts the summary line of t; it is logged and kept when t ends.
func newSummary(t *testing.T) *summary {
	s := &summary{}
	started := time.Now()
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		result := "PASS"
		if t.Failed() {
			result = "FAIL"
		}
		line := fmt.Sprintf("%s %-26s %5.1fs  %s", result, t.Name(), time.Since(started).Seconds(), strings.Join(s.parts, "; "))
		t.Log("SUMMARY " + line)
		summaries.mu.Lock()
		summaries.lines = append(summaries.lines, line)
		summaries.mu.Unlock()
	})
	return s
}

func (s *summary) add(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.parts = append(s.parts, fmt.Sprintf(format, args...))
}

// ---------------------------------------------------------------------------------------
// The test stack

// stack is the test profile's servers and the script that controls them.
type stack struct {
	dbURL, redisURL, amqpURL string
	devstack, profile        string
}

// needStack reads the stack from the environment `make faulttest` sets, failing t
// when something is missing: fault tests never skip.
func needStack(t *testing.T) stack {
	t.Helper()
	s := stack{
		dbURL: os.Getenv("TEST_DATABASE_URL"), redisURL: os.Getenv("TEST_REDIS_URL"),
		amqpURL: os.Getenv("TEST_RABBITMQ_URL"), devstack: os.Getenv("DEVSTACK"), profile: os.Getenv("DEVSTACK_PROFILE"),
	}
	var missing []string
	for name, v := range map[string]string{"TEST_DATABASE_URL": s.dbURL, "TEST_REDIS_URL": s.redisURL,
		"TEST_RABBITMQ_URL": s.amqpURL, "DEVSTACK": s.devstack, "DEVSTACK_PROFILE": s.profile} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Fatalf("%s not set: run `make faulttest`, which starts the test stack and sets them", strings.Join(missing, ", "))
	}
	return s
}

// ctl runs `$DEVSTACK <command> <profile>` (stop-postgres, start-redis, …) and
// returns how long it took. A start is retried for up to 90 s: the test profile's
// ports lie in Linux's ephemeral port range, so while a server is down a client
// dialling it can connect to itself and hold the port in TIME_WAIT for a minute.
func (s stack) ctl(t *testing.T, command string) time.Duration {
	t.Helper()
	started := time.Now()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		out, err := exec.CommandContext(ctx, s.devstack, command, s.profile).CombinedOutput()
		cancel()
		if err == nil {
			if attempt > 1 {
				t.Logf("%s succeeded at attempt %d, after %s", command, attempt, time.Since(started).Round(time.Second))
			}
			return time.Since(started)
		}
		if !strings.HasPrefix(command, "start-") || time.Since(started) > 90*time.Second {
			t.Fatalf("%s %s %s: %v\n%s", s.devstack, command, s.profile, err, out)
		}
		t.Logf("%s failed (attempt %d), retrying in 5s: %v\n%s", command, attempt, err, tailString(string(out), 3))
		time.Sleep(5 * time.Second)
	}
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ensureUp brings every server of the stack back when t ends, whatever happened.
func (s stack) ensureUp(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Minute) // see ctl on ports held in TIME_WAIT
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			out, err := exec.CommandContext(ctx, s.devstack, "up", s.profile).CombinedOutput()
			cancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("cannot bring the %s stack back up: %v\n%s", s.profile, err, out)
				return
			}
			time.Sleep(5 * time.Second)
		}
	})
}

// ---------------------------------------------------------------------------------------
// The service as a child process

// service is one instance of the built binary with the test's own schema, key prefix,
// exchange and queue. It keeps its port across restarts.
type service struct {
	name    string // isolation prefix: schema, key prefix, exchange and queue names
	port    int
	base    string
	env     []string
	logPath string
	stack   stack

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// newService prepares a service for t; start runs it. When t ends the process is
// killed if still running and the schema, keys, exchange and queues are removed.
func newService(t *testing.T, st stack, extraEnv ...string) *service {
	t.Helper()
	name := isolationName(t)
	port := freePort(t)
	s := &service{name: name, port: port, base: "http://127.0.0.1:" + strconv.Itoa(port), stack: st,
		logPath: filepath.Join(t.TempDir(), "service.log")}
	s.env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"PORT=" + strconv.Itoa(port), "HOST=127.0.0.1", "NODE_ENV=production", "JWT_SECRET=" + testSecret,
		"DATABASE_URL=" + st.dbURL, "REDIS_URL=" + st.redisURL, "RABBITMQ_URL=" + st.amqpURL,
		"DB_SCHEMA=" + name, "REDIS_KEY_PREFIX=" + name + ":",
		"RABBITMQ_EXCHANGE=" + name + ".events", "RABBITMQ_QUEUE=" + name + ".in",
		"RATE_LIMIT_MAX=1000000000", "LOG_LEVEL=warn", "REQUEST_TIMEOUT=" + requestTimeout.String(),
		"SHUTDOWN_TIMEOUT=20s", "HEALTH_CHECK_TIMEOUT=2000",
	}
	s.env = append(s.env, extraEnv...)
	t.Cleanup(func() {
		if s.running() {
			s.signal(syscall.SIGKILL)
			s.wait(10 * time.Second)
		}
		if t.Failed() {
			t.Logf("last lines of the service log:\n%s", tail(s.logPath, 40))
		}
		s.removeIsolation(t)
	})
	return s
}

// isolationName is a schema-safe unique name that says which test made it.
func isolationName(t *testing.T) string {
	var b strings.Builder
	b.WriteString("ft_")
	for _, r := range strings.ToLower(strings.TrimPrefix(t.Name(), "Test")) {
		if b.Len() >= 24 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return b.String() + "_" + hex.EncodeToString(rnd[:])
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs the binary and waits until /health/ready answers 200.
func (s *service) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "==== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(serviceBin)
	cmd.Env, cmd.Stdout, cmd.Stderr = s.env, f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("cannot start the service: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(90 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-done:
			t.Fatalf("the service exited during start (%v):\n%s", cmd.ProcessState, tail(s.logPath, 30))
		default:
		}
		if resp, err := hc.Get(s.base + "/health/ready"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service was not ready within 90s:\n%s", tail(s.logPath, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *service) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func (s *service) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

func (s *service) signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// wait waits up to d for the process to exit and returns how it ended; exited is
// false when it is still running.
func (s *service) wait(d time.Duration) (state *os.ProcessState, exited bool) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	select {
	case <-done:
		return cmd.ProcessState, true
	case <-time.After(d):
		return nil, false
	}
}

// kill is kill -9.
func (s *service) kill(t *testing.T) {
	t.Helper()
	s.signal(syscall.SIGKILL)
	if _, exited := s.wait(10 * time.Second); !exited {
		t.Fatal("the service survived SIGKILL for 10s")
	}
}

// removeIsolation drops the test's schema, Redis keys, exchange and queues.
func (s *service) removeIsolation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, s.stack.dbURL); err == nil {
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s.name}.Sanitize()+" CASCADE"); err != nil {
			t.Logf("cannot drop schema %s: %v", s.name, err)
		}
		_ = conn.Close(ctx)
	}
	if conn, err := amqp.Dial(s.stack.amqpURL); err == nil {
		if ch, err := conn.Channel(); err == nil {
			for _, q := range []string{s.name + ".in", s.name + ".in.dlq", s.name + ".tap"} {
				if _, err := ch.QueueDelete(q, false, false, false); err != nil {
					break // the channel is closed after an error
				}
			}
			_ = ch.ExchangeDelete(s.name+".events", false, false)
		}
		_ = conn.Close()
	}
	opt, err := rueidis.ParseURL(s.stack.redisURL)
	if err != nil {
		return
	}
	opt.DisableCache = true
	rc, err := rueidis.NewClient(opt)
	if err != nil {
		return
	}
	defer rc.Close()
	var cursor uint64
	for {
		e, err := rc.Do(ctx, rc.B().Scan().Cursor(cursor).Match(s.name+":*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return
		}
		if len(e.Elements) > 0 {
			_ = rc.Do(ctx, rc.B().Del().Key(e.Elements...).Build()).Error()
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tailString(string(b), n)
}

// ---------------------------------------------------------------------------------------
// HTTP

// client talks to one service. keepAlive false opens a connection per request.
type client struct {
	base string
	hc   *http.Client
}

func newClient(base string, keepAlive bool) *client {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, DisableKeepAlives: !keepAlive, ExpectContinueTimeout: 5 * time.Second,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}
	return &client{base: base, hc: &http.Client{Transport: tr, Timeout: clientTimeout}}
}

// reply is one answer, or the transport error in its place.
type reply struct {
	status int
	body   []byte
	header http.Header
	err    error
	dur    time.Duration
}

// do sends a request. body nil sends none; a non-nil body is sent as given.
func (c *client) do(method, path, token string, body []byte, hdr map[string]string) reply {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return reply{err: err}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	started := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{err: err, dur: time.Since(started)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: b, header: resp.Header, err: err, dur: time.Since(started)}
}

// doJSON sends v encoded as JSON.
func (c *client) doJSON(method, path, token string, v any) reply {
	b, err := json.Marshal(v)
	if err != nil {
		return reply{err: err}
	}
	return c.do(method, path, token, b, nil)
}

// data decodes the envelope's data into v.
func (r reply) data(v any) error {
	if r.err != nil {
		return r.err
	}
	var env struct {
		Success bool            `json:"success"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil {
		return fmt.Errorf("status %d, body %.200q: %w", r.status, r.body, err)
	}
	if !env.Success {
		return fmt.Errorf("status %d: %.300s", r.status, r.body)
	}
	return json.Unmarshal(env.Data, v)
}

// version is the ETag's version, or 0.
func (r reply) version() int64 {
	v, err := strconv.ParseInt(strings.Trim(r.header.Get("ETag"), `W/"`), 10, 64)
	if err != nil {
		return 0
	}
	return v
}

func (r reply) String() string {
	if r.err != nil {
		return "error " + r.err.Error()
	}
	return fmt.Sprintf("%d %.200s", r.status, r.body)
}

// refused reports a connection that was never made: the request cannot have
// reached the service.
// refused reports whether a request never reached the service: the connection
// was refused, or reset while it was being set up (a connection still in the
// kernel's accept queue when a stopping service closes its listener is reset,
// not refused). Nothing was sent, so nothing can have been applied.
func refused(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &op) && op.Op == "dial"
}

func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// ---------------------------------------------------------------------------------------
// Tokens

type claims struct {
	AuthID string `json:"authId"`
	Email  string `json:"email"`
	Role   string `json:"role"`
	jwt.RegisteredClaims
}

func sign(tb testing.TB, c claims) string {
	tb.Helper()
	if c.ExpiresAt == nil {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	}
	if c.IssuedAt == nil {
		c.IssuedAt = jwt.NewNumericDate(time.Now())
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// adminToken is an admin without a profile: the token's role decides.
func adminToken(tb testing.TB) string {
	tb.Helper()
	return sign(tb, claims{AuthID: newUUID(), Email: "admin@faulttest.example", Role: "admin",
		RegisteredClaims: jwt.RegisteredClaims{Subject: newUUID()}})
}
