package http

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// fixture is a user the harness created, with a token for it.
type fixture struct {
	id, authID, email, token string
}

// harness is a Server over in-memory doubles, driven through Handler().
type harness struct {
	tb    testing.TB
	srv   *Server
	users *memUsers
	dir   *memDirectory
	idem  *memIdem
	logs  *syncBuffer

	admin, alice, bob, teacher fixture
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig() Config {
	return Config{
		JWTSecret:       testSecret,
		RequestTimeout:  2 * time.Second,
		SensitiveFields: []string{"password", "email", "phone"},
		CORS:            CORS{Origin: "http://localhost:3000", Credentials: true},
		SecurityHeaders: true,
	}
}

func newHarness(tb testing.TB, opts ...func(*Config, *Deps)) *harness {
	tb.Helper()
	h := &harness{tb: tb, idem: newMemIdem(), logs: &syncBuffer{}}
	h.users = newMemUsers(h.idem)
	h.dir = &memDirectory{users: h.users}
	cfg := testConfig()
	deps := Deps{
		Users: h.users, Directory: h.dir, Idempotency: h.idem, Events: memEvents{h.users}, PersonalData: h.dir, Erasures: memErasures{h.users},
		Attributes: &memSchemas{}, Jobs: newMemJobs(h.idem),
		Health: Health{Ready: func(context.Context) error { return nil }, Version: "1.0.0-test"},
	}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := NewServer(cfg, deps, logger)
	if err != nil {
		tb.Fatalf("NewServer: %v", err)
	}
	h.srv = srv
	h.admin = h.register("admin@example.com", "root_admin", userservice.RoleAdmin)
	h.alice = h.register("alice@example.com", "alice", userservice.RoleStudent)
	h.bob = h.register("bob@example.com", "bob", userservice.RoleStudent)
	h.teacher = h.register("teacher@example.com", "teacher", userservice.RoleInstructor)
	return h
}

// withT returns the harness reporting to tb (a fuzz target's own *testing.T).
func (h *harness) withT(tb testing.TB) *harness {
	c := *h
	c.tb = tb
	return &c
}

// register creates a user directly through the actor double.
func (h *harness) register(email, username string, role userservice.Role) fixture {
	h.tb.Helper()
	id, authID := userservice.NewID(), userservice.NewID()
	in := userservice.CreateUser{AuthID: authID, Email: email, FirstName: "First", LastName: "Last", Username: &username, Role: &role}
	if err := in.Validate(); err != nil {
		h.tb.Fatalf("fixture %s: %v", email, err)
	}
	if _, err := h.users.Execute(context.Background(), id, userservice.Register{ID: id, Input: in}, userservice.Meta{Now: userservice.Now()}); err != nil {
		h.tb.Fatalf("fixture %s: %v", email, err)
	}
	f := fixture{id: id, authID: authID, email: email}
	f.token = signToken(h.tb, jwt.MapClaims{"sub": id, "authId": authID, "email": email, "role": string(role), "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	return f
}

// signToken signs claims with HS256 and the test secret.
func signToken(tb testing.TB, c jwt.MapClaims) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// resp is an answer, copied out of the RequestCtx.
type resp struct {
	tb     testing.TB
	status int
	body   []byte
	header fasthttp.ResponseHeader
}

func (r *resp) get(name string) string { return string(r.header.Peek(name)) }

// json decodes the body into a generic map.
func (r *resp) json() map[string]any {
	r.tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		r.tb.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// data returns the envelope's data.
func (r *resp) data() any { return r.json()["data"] }

func (r *resp) dataMap() map[string]any {
	r.tb.Helper()
	m, ok := r.data().(map[string]any)
	if !ok {
		r.tb.Fatalf("data is not an object: %s", r.body)
	}
	return m
}

func (r *resp) dataList() []any {
	r.tb.Helper()
	l, ok := r.data().([]any)
	if !ok {
		r.tb.Fatalf("data is not a list: %s", r.body)
	}
	return l
}

// expect fails unless the status (and, for errors, the code) match.
func (r *resp) expect(status int, code string) *resp {
	r.tb.Helper()
	if r.status != status {
		r.tb.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if code != "" {
		if got := r.json()["code"]; got != code {
			r.tb.Fatalf("code = %v, want %s; body %s", got, code, r.body)
		}
	}
	return r
}

// req describes one request.
type req struct {
	method, path, token string
	body                any // string, []byte, or a value to marshal
	headers             []string
	remote              string
}

func (h *harness) do(q req) *resp {
	h.tb.Helper()
	var fc fasthttp.RequestCtx
	var r fasthttp.Request
	r.Header.SetMethod(q.method)
	r.SetRequestURI(q.path)
	if q.token != "" {
		r.Header.Set("Authorization", "Bearer "+q.token)
	}
	var body []byte
	switch b := q.body.(type) {
	case nil:
	case string:
		body = []byte(b)
	case []byte:
		body = b
	default:
		var err error
		if body, err = json.Marshal(b); err != nil {
			h.tb.Fatal(err)
		}
	}
	if len(body) > 0 {
		r.Header.SetContentType("application/json")
		r.SetBody(body)
	}
	for i := 0; i+1 < len(q.headers); i += 2 {
		r.Header.Set(q.headers[i], q.headers[i+1])
	}
	remote := q.remote
	if remote == "" {
		remote = "10.1.2.3:4567"
	}
	addr, err := net.ResolveTCPAddr("tcp", remote)
	if err != nil {
		h.tb.Fatal(err)
	}
	fc.Init(&r, addr, nil)
	h.srv.Handler()(&fc)
	out := &resp{tb: h.tb, status: fc.Response.StatusCode(), body: append([]byte(nil), fc.Response.Body()...)}
	fc.Response.Header.CopyTo(&out.header)
	return out
}

func (h *harness) get(path, token string) *resp {
	h.tb.Helper()
	return h.do(req{method: "GET", path: path, token: token})
}

func (h *harness) send(method, path, token string, body any, headers ...string) *resp {
	h.tb.Helper()
	return h.do(req{method: method, path: path, token: token, body: body, headers: headers})
}

func userPath(id string, rest ...string) string {
	p := "/api/v1/users/" + id
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
