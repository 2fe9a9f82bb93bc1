package http

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

var uuidRE = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

func TestMetricsUseRouteTemplates(t *testing.T) {
	h := newHarness(t)
	course := userservice.NewID()
	h.get(userPath(h.alice.id), h.alice.token).expect(200, "")
	h.send("POST", userPath(h.alice.id, "enrollments"), h.alice.token, map[string]any{"courseId": course}).expect(201, "")
	h.send("PUT", userPath(h.alice.id, "enrollments", course), h.alice.token, `{"progress":10}`).expect(200, "")
	h.get("/api/v1/"+userservice.NewID(), h.alice.token).expect(404, "")
	m := h.get("/metrics", "")
	if m.status != 200 || !strings.HasPrefix(m.get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", m.status, m.get("Content-Type"))
	}
	text := string(m.body)
	for _, want := range []string{
		`user_service_requests_total{method="GET",route="/api/v1/users/{id}",status="200"}`,
		`user_service_requests_total{method="PUT",route="/api/v1/users/{id}/enrollments/{courseId}",status="200"}`,
		`user_service_requests_total{method="GET",route="unmatched",status="404"}`,
		`user_service_request_duration_seconds_bucket{method="GET",route="/api/v1/users/{id}",le=`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "user_service_request") && uuidRE.MatchString(line) {
			t.Errorf("metric label carries an id: %s", line)
		}
	}
}

func TestRateLimit(t *testing.T) {
	lim := &fakeLimiter{limit: 2, seen: map[string]int{}}
	h := newHarness(t, func(c *Config, d *Deps) { d.RateLimiter = lim })
	r := h.get("/api/v1/users/me", h.alice.token).expect(200, "")
	if r.get("X-RateLimit-Limit") != "2" || r.get("X-RateLimit-Remaining") != "1" || r.get("X-RateLimit-Reset") == "" {
		t.Fatalf("headers limit=%q remaining=%q reset=%q", r.get("X-RateLimit-Limit"), r.get("X-RateLimit-Remaining"), r.get("X-RateLimit-Reset"))
	}
	h.get("/api/v1/users/me", h.alice.token).expect(200, "")
	r = h.get("/api/v1/users/me", h.alice.token).expect(429, userservice.ECodeRateLimited)
	m := r.json()
	if r.get("Retry-After") != "30" || m["retryAfter"] != float64(30) || m["error"] != "Rate limit exceeded" || m["success"] != false {
		t.Fatalf("429: Retry-After %q body %s", r.get("Retry-After"), r.body)
	}
	if lim.keys[0] != "user:"+h.alice.id {
		t.Errorf("key %q, want user:<sub>", lim.keys[0])
	}
	t.Run("unauthenticated requests are keyed by IP", func(t *testing.T) {
		h.do(req{method: "GET", path: "/api/v1/users/me", remote: "192.0.2.7:1000"}).expect(401, "")
		if k := lim.keys[len(lim.keys)-1]; k != "ip:192.0.2.7" {
			t.Errorf("key %q", k)
		}
	})
	t.Run("health, metrics and docs are exempt", func(t *testing.T) {
		n := len(lim.keys)
		for _, p := range []string{"/health", "/health/live", "/health/ready", "/metrics", "/docs", "/docs/openapi.json"} {
			h.get(p, "")
		}
		if len(lim.keys) != n {
			t.Fatalf("exempt paths reached the limiter: %v", lim.keys[n:])
		}
	})
	t.Run("a failing limiter lets requests through", func(t *testing.T) {
		lim.err = errors.New("redis down")
		before := rateLimitErrors.Get()
		h.get("/api/v1/users/me", h.bob.token).expect(200, "")
		if rateLimitErrors.Get() != before+1 {
			t.Error("limiter error not counted")
		}
		if !strings.Contains(h.logs.String(), "rate limiter failed") {
			t.Error("limiter error not logged")
		}
	})
}

// TestRateLimitSkipSuccessful: with RATE_LIMIT_SKIP_SUCCESSFUL only answers of
// 400 and above use up the limit; without it, none is refunded.
func TestRateLimitSkipSuccessful(t *testing.T) {
	lim := &fakeLimiter{limit: 2, seen: map[string]int{}}
	h := newHarness(t, func(c *Config, d *Deps) { d.RateLimiter = lim; c.RateLimitSkipSuccessful = true })
	for range 5 {
		h.get("/api/v1/users/me", h.alice.token).expect(200, "")
	}
	unknown := "/api/v1/users/" + userservice.NewID()
	h.get(unknown, h.admin.token).expect(404, userservice.ECodeNotFound)
	h.get(unknown, h.admin.token).expect(404, userservice.ECodeNotFound)
	h.get(unknown, h.admin.token).expect(429, userservice.ECodeRateLimited)
	if len(lim.refunds) != 5 || lim.refunds[0] != "user:"+h.alice.id {
		t.Fatalf("refunds %v, want the 5 successful requests of alice", lim.refunds)
	}

	plain := &fakeLimiter{limit: 2, seen: map[string]int{}}
	h = newHarness(t, func(c *Config, d *Deps) { d.RateLimiter = plain })
	h.get("/api/v1/users/me", h.alice.token).expect(200, "")
	h.get("/api/v1/users/me", h.alice.token).expect(200, "")
	h.get("/api/v1/users/me", h.alice.token).expect(429, userservice.ECodeRateLimited)
	if len(plain.refunds) != 0 {
		t.Errorf("refunds %v without RateLimitSkipSuccessful", plain.refunds)
	}
}

func TestCORSAndSecurityHeaders(t *testing.T) {
	h := newHarness(t)
	pre := h.do(req{method: "OPTIONS", path: "/api/v1/users/me", headers: []string{
		"Origin", "http://localhost:3000", "Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "Authorization"}})
	if pre.status != 204 || pre.get("Access-Control-Allow-Origin") != "http://localhost:3000" ||
		!strings.Contains(pre.get("Access-Control-Allow-Methods"), "PUT") || pre.get("Access-Control-Allow-Credentials") != "true" ||
		!strings.Contains(pre.get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight %d %s", pre.status, pre.header.String())
	}
	r := h.do(req{method: "GET", path: "/api/v1/users/me", token: h.alice.token, headers: []string{"Origin", "http://localhost:3000"}}).expect(200, "")
	if r.get("Access-Control-Allow-Origin") != "http://localhost:3000" || !strings.Contains(r.get("Access-Control-Expose-Headers"), "ETag") {
		t.Errorf("CORS headers %s", r.header.String())
	}
	evil := h.do(req{method: "GET", path: "/api/v1/users/me", token: h.alice.token, headers: []string{"Origin", "http://evil.test"}})
	if evil.get("Access-Control-Allow-Origin") != "" {
		t.Error("foreign origin allowed")
	}
	for _, k := range []string{"X-Content-Type-Options", "X-Frame-Options", "Strict-Transport-Security", "Content-Security-Policy"} {
		if r.get(k) == "" {
			t.Errorf("security header %s missing", k)
		}
	}
	plain := h.send("OPTIONS", "/api/v1/users/me", "", nil)
	if plain.status != 204 || !strings.Contains(plain.get("Allow"), "GET") {
		t.Errorf("plain OPTIONS %d Allow %q", plain.status, plain.get("Allow"))
	}
}

func TestRequestIDsAndLogLine(t *testing.T) {
	h := newHarness(t)
	r := h.send("PUT", "/api/v1/users/me", h.alice.token, `{"bio":"x"}`, "X-Request-ID", "req-123", "X-Correlation-ID", "corr-456").expect(200, "")
	if r.get("X-Request-ID") != "req-123" || r.get("X-Correlation-ID") != "corr-456" {
		t.Fatalf("ids not echoed: %s", r.header.String())
	}
	if got := h.users.lastMeta().CorrelationID; got != "corr-456" {
		t.Errorf("Meta.CorrelationID = %q", got)
	}
	if a := h.users.lastMeta().ActorID; a == nil || *a != h.alice.id {
		t.Errorf("Meta.ActorID = %v", a)
	}
	gen := h.get("/api/v1/users/me", h.alice.token)
	if _, ok := userservice.ParseID(gen.get("X-Correlation-ID")); !ok {
		t.Errorf("generated correlation id %q is not a UUID", gen.get("X-Correlation-ID"))
	}
	if bad := h.do(req{method: "GET", path: "/health", headers: []string{"X-Request-ID", "evil\x01id"}}); bad.get("X-Request-ID") == "evil\x01id" {
		t.Error("unsafe request id echoed")
	}
	var found bool
	for _, line := range strings.Split(h.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != "request" || m["requestId"] != "req-123" {
			continue
		}
		found = true
		if m["method"] != "PUT" || m["route"] != "/api/v1/users/{id}" || m["status"] != float64(200) ||
			m["correlationId"] != "corr-456" || m["userId"] != h.alice.id || m["durationMs"] == nil {
			t.Errorf("log line %s", line)
		}
	}
	if !found {
		t.Fatalf("no request log line in %s", h.logs.String())
	}
	if strings.Contains(h.logs.String(), h.alice.email) {
		t.Error("an email reached the log")
	}
}

func TestFailures(t *testing.T) {
	t.Run("an internal error is 500 without its cause", func(t *testing.T) {
		h := newHarness(t)
		h.users.execHook = func(context.Context, string, userservice.Command) error { return errBoom }
		r := h.send("PUT", "/api/v1/users/me", h.alice.token, `{"bio":"x"}`).expect(500, userservice.ECodeInternal)
		if strings.Contains(string(r.body), "boom") || r.json()["error"] != "Internal server error" {
			t.Fatalf("cause leaked: %s", r.body)
		}
		logs := h.logs.String()
		if !strings.Contains(logs, "boom") || strings.Contains(logs, "leak@example.com") || !strings.Contains(logs, "l***@example.com") {
			t.Errorf("cause not logged, or not masked: %s", logs)
		}
	})
	t.Run("development shows the message, never a stack", func(t *testing.T) {
		h := newHarness(t, func(c *Config, d *Deps) { c.Development = true })
		h.users.execHook = func(context.Context, string, userservice.Command) error { return errBoom }
		r := h.send("PUT", "/api/v1/users/me", h.alice.token, `{"bio":"x"}`).expect(500, userservice.ECodeInternal)
		if !strings.Contains(string(r.body), "boom") || strings.Contains(string(r.body), "goroutine") {
			t.Fatalf("body %s", r.body)
		}
	})
	t.Run("a panic is a 500 envelope, logged once", func(t *testing.T) {
		h := newHarness(t)
		h.users.getHook = func(context.Context, string) error { panic("kaboom") }
		r := h.get("/api/v1/users/me", h.alice.token).expect(500, userservice.ECodeInternal)
		if strings.Contains(string(r.body), "kaboom") {
			t.Fatalf("panic leaked: %s", r.body)
		}
		if n := strings.Count(h.logs.String(), "kaboom"); n != 1 {
			t.Errorf("panic logged %d times", n)
		}
	})
	t.Run("a user moving between nodes is 503 with Retry-After", func(t *testing.T) {
		h := newHarness(t)
		for _, c := range []struct {
			err  error
			code string
		}{
			{userservice.ErrPlacementInFlux, userservice.ECodeUnavailable},
			// the cluster's form: its owner's connection dropped, the write's outcome is unknown
			{fmt.Errorf("%w: %w", userservice.ErrOwnerLost, errBoom), userservice.ECodeTimeout},
		} {
			h.users.execHook = func(context.Context, string, userservice.Command) error { return c.err }
			r := h.send("PUT", "/api/v1/users/me", h.alice.token, `{"bio":"x"}`).expect(503, c.code)
			if r.get("Retry-After") != "1" {
				t.Fatalf("%v: Retry-After %q, want 1", c.err, r.get("Retry-After"))
			}
		}
		h.users.execHook = func(context.Context, string, userservice.Command) error { return userservice.ErrUnavailable }
		if r := h.send("PUT", "/api/v1/users/me", h.alice.token, `{"bio":"x"}`).expect(503, userservice.ECodeUnavailable); r.get("Retry-After") != "" {
			t.Fatalf("a dependency down: Retry-After %q, want none", r.get("Retry-After"))
		}
	})
	t.Run("a request that runs out of time is 503", func(t *testing.T) {
		h := newHarness(t, func(c *Config, d *Deps) { c.RequestTimeout = 50 * time.Millisecond })
		h.users.getHook = func(ctx context.Context, _ string) error { <-ctx.Done(); return ctx.Err() }
		h.get("/api/v1/users/me", h.alice.token).expect(503, userservice.ECodeTimeout)
	})
}

func TestHealth(t *testing.T) {
	var ready error = errors.New("migrations pending")
	checks := map[string]func(context.Context) error{
		"database": func(context.Context) error { return nil },
		"redis":    func(context.Context) error { return nil },
		"rabbitmq": func(context.Context) error { return nil },
	}
	h := newHarness(t, func(c *Config, d *Deps) {
		c.HealthCheckTimeout = 100 * time.Millisecond
		c.HealthCacheTTL = -1 // every probe below must see the change before it
		d.Health.Ready = func(context.Context) error { return ready }
		d.Health.Checks = checks
	})
	r := h.get("/health", "")
	m := r.json()
	if r.status != 200 || m["status"] != "healthy" || m["version"] != "1.0.0-test" || m["uptime"] == nil || m["success"] != nil {
		t.Fatalf("/health %s", r.body)
	}
	if m := h.get("/health/live", "").json(); m["status"] != "alive" {
		t.Fatalf("/health/live %v", m)
	}
	if r := h.get("/health/ready", ""); r.status != 503 || r.json()["status"] != "not ready" {
		t.Fatalf("/health/ready before ready: %d %s", r.status, r.body)
	}
	ready = nil
	if r := h.get("/health/ready", ""); r.status != 200 || r.json()["status"] != "ready" {
		t.Fatalf("/health/ready: %d %s", r.status, r.body)
	}
	detailed := func() (int, map[string]any) {
		r := h.get("/health/detailed", "")
		return r.status, r.json()
	}
	status, m := detailed()
	if status != 200 || m["status"] != "healthy" {
		t.Fatalf("detailed %v", m)
	}
	db := m["services"].(map[string]any)["database"].(map[string]any)
	if db["status"] != "connected" || db["responseTime"] == nil {
		t.Fatalf("database %v", db)
	}
	checks["redis"] = func(ctx context.Context) error { <-make(chan struct{}); return nil } // hangs, ignoring ctx
	start := time.Now()
	status, m = detailed()
	if status != 200 || m["status"] != "degraded" || m["services"].(map[string]any)["redis"].(map[string]any)["status"] != "disconnected" {
		t.Fatalf("redis down: %d %v", status, m)
	}
	if time.Since(start) > time.Second {
		t.Fatal("a hung check held the probe")
	}
	checks["database"] = func(context.Context) error { return errors.New("down") }
	status, m = detailed()
	if status != 503 || m["status"] != "unhealthy" {
		t.Fatalf("database down: %d %v", status, m)
	}
}

// TestServeAndShutdown runs the real fasthttp server: the server-level body
// limit answers 413 in the envelope, and Shutdown lets an in-flight request finish.
func TestServeAndShutdown(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, func(c *Config, d *Deps) { c.MaxBodyBytes = 1024 })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(ln) }()
	addr := ln.Addr().String()

	raw := func(request string) string { // safe to call from any goroutine
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return "dial: " + err.Error()
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(request)); err != nil {
			return "write: " + err.Error()
		}
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(c)); err != nil {
			return "read: " + err.Error()
		}
		return fmt.Sprintf("%d %s", resp.StatusCode(), resp.Body())
	}
	big := strings.Repeat("x", 4096)
	got := raw("PUT /api/v1/users/me HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer " + h.alice.token +
		"\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big)
	if !strings.HasPrefix(got, "413 ") || !strings.Contains(got, `"code":"PAYLOAD_TOO_LARGE"`) {
		t.Fatalf("server-level 413: %s", got)
	}

	arrived := make(chan struct{})
	h.users.getHook = func(ctx context.Context, id string) error {
		if id == h.bob.id {
			close(arrived)
			<-release
		}
		return nil
	}
	inflight := make(chan string, 1)
	go func() {
		inflight <- raw("GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + h.bob.token + "\r\n\r\n")
	}()
	<-arrived
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- h.srv.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond)
	close(release)
	if got := <-inflight; !strings.HasPrefix(got, "200 ") {
		t.Fatalf("in-flight request: %s", got)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

// gatedListener holds Accept until open is closed: the accept loop of a
// loaded server that has not got to a connection the kernel already queued.
// waiting is closed at the first Accept: the server is serving (a Shutdown
// before that would find no listener and leave Serve running).
type gatedListener struct {
	net.Listener
	open, waiting chan struct{}
	once          sync.Once
}

func (l *gatedListener) Accept() (net.Conn, error) {
	l.once.Do(func() { close(l.waiting) })
	<-l.open
	return l.Listener.Accept()
}

// TestShutdownAnswersQueuedRequests: a request sent before Shutdown, on a
// connection still in the listener's queue, gets its answer (with
// "Connection: close") because Shutdown drains for DrainGrace before closing
// the listener; /health/ready answers 503 meanwhile. With no grace the same
// request is reset, which is what TestSIGTERMUnderLoad once saw.
func TestShutdownAnswersQueuedRequests(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		ok    bool
	}{{"grace", time.Second, true}, {"no grace", time.Nanosecond, false}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config, d *Deps) { c.DrainGrace = tc.grace })
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &gatedListener{Listener: inner, open: make(chan struct{}), waiting: make(chan struct{})}
			served := make(chan error, 1)
			go func() { served <- h.srv.Serve(ln) }()
			<-ln.waiting
			addr := inner.Addr().String()
			send := func(request string) (net.Conn, error) {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					return nil, err
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Write([]byte(request))
				return c, err
			}
			read := func(c net.Conn) (*fasthttp.Response, error) {
				defer c.Close()
				resp := &fasthttp.Response{}
				return resp, resp.Read(bufio.NewReader(c))
			}
			queued, err := send("GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + h.alice.token + "\r\n\r\n")
			if err != nil {
				t.Fatal(err)
			}
			shut := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				shut <- h.srv.Shutdown(ctx)
			}()
			time.Sleep(50 * time.Millisecond) // Shutdown has begun; the accept loop is behind
			close(ln.open)
			resp, err := read(queued)
			if !tc.ok {
				if err == nil {
					t.Errorf("with no grace the queued request was answered %d: the test cannot tell", resp.StatusCode())
				}
			} else {
				if err != nil || resp.StatusCode() != 200 {
					t.Fatalf("queued request: %v %v", err, resp)
				}
				if !resp.Header.ConnectionClose() {
					t.Error("an answer while draining keeps its connection open")
				}
				c, err := send("GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
				if err != nil {
					t.Fatal(err)
				}
				if resp, err := read(c); err != nil || resp.StatusCode() != 503 {
					t.Errorf("/health/ready while draining: %v %v", err, resp)
				}
			}
			if err := <-shut; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			<-served
		})
	}
}

func TestNewServerRefuses(t *testing.T) {
	users := newMemUsers(newMemIdem())
	ok := Deps{Users: users, Directory: &memDirectory{users: users}, Idempotency: newMemIdem(), Health: Health{Ready: func(context.Context) error { return nil }}}
	logger := newHarness(t).srv.logger
	for name, tc := range map[string]struct {
		cfg  Config
		deps Deps
	}{
		"short secret":   {Config{JWTSecret: []byte("short")}, ok},
		"no users":       {testConfig(), Deps{Directory: ok.Directory, Idempotency: ok.Idempotency, Health: ok.Health}},
		"no directory":   {testConfig(), Deps{Users: users, Idempotency: ok.Idempotency, Health: ok.Health}},
		"no idempotency": {testConfig(), Deps{Users: users, Directory: ok.Directory, Health: ok.Health}},
		"no ready check": {testConfig(), Deps{Users: users, Directory: ok.Directory, Idempotency: ok.Idempotency}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := NewServer(tc.cfg, tc.deps, logger); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := NewServer(testConfig(), ok, nil); err == nil {
		t.Fatal("accepted a nil logger")
	}
}

func TestMasking(t *testing.T) {
	m := newMasker([]string{"password", "email", "phone"})
	for _, tc := range []struct{ in, want string }{
		{m.field("email", "john@example.com"), "j***@example.com"},
		{m.field("phone", "+14155550190"), "+1********90"},
		{m.field("password", "hunter2"), "[REDACTED]"},
		{m.field("firstName", "John"), "John"},
		{m.text(`duplicate key (email)=(john@example.com), phone +14155550190`), `duplicate key (email)=(j***@example.com), phone +1********90`},
	} {
		if tc.in != tc.want {
			t.Errorf("got %q, want %q", tc.in, tc.want)
		}
	}
	off := newMasker(nil)
	if off.field("email", "john@example.com") != "john@example.com" {
		t.Error("masked a field that is not sensitive")
	}
	if got := m.text("no secrets here"); got != "no secrets here" {
		t.Error(got)
	}
}

// TestClientIP: X-Forwarded-For counts only when the peer is a trusted proxy,
// and then its rightmost hop that is not a trusted proxy is the client.
func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	for _, tc := range []struct {
		name    string
		proxies []netip.Prefix
		peer    string
		xff     []string // one header per entry
		want    string
	}{
		{"off: the peer", nil, "10.1.1.1", []string{"203.0.113.9"}, "10.1.1.1"},
		{"untrusted peer: the peer", trusted, "198.51.100.1", []string{"203.0.113.9"}, "198.51.100.1"},
		{"trusted peer: the hop before it", trusted, "10.1.1.1", []string{"203.0.113.9"}, "203.0.113.9"},
		{"spoofed left hops are ignored", trusted, "10.1.1.1", []string{"1.2.3.4, 203.0.113.9, 10.2.2.2"}, "203.0.113.9"},
		{"several headers read as one list", trusted, "10.1.1.1", []string{"1.2.3.4", "203.0.113.9", "10.2.2.2"}, "203.0.113.9"},
		{"every hop trusted: the leftmost", trusted, "10.1.1.1", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"no header: the proxy", trusted, "10.1.1.1", nil, "10.1.1.1"},
		{"garbage stops the walk", trusted, "10.1.1.1", []string{"203.0.113.9, not-an-ip"}, "10.1.1.1"},
		{"IPv6, all hops trusted", trusted, "2001:db8::1", []string{"2001:db8:1::5, 2001:db8:ffff::1"}, "2001:db8:1::5"},
		{"IPv6 client", trusted, "2001:db8::1", []string{"2001:db9::7, 2001:db8::5"}, "2001:db9::7"},
		{"IPv4-mapped hop", trusted, "10.1.1.1", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config, _ *Deps) { c.TrustedProxies = tc.proxies })
			var req fasthttp.Request
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			var fc fasthttp.RequestCtx
			fc.Init(&req, &net.TCPAddr{IP: net.ParseIP(tc.peer), Port: 4242}, nil)
			if got := h.srv.clientIP(&fc); got != tc.want {
				t.Errorf("clientIP = %s, want %s", got, tc.want)
			}
		})
	}
}
