package http

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/lms-platform/userservice"
)

// BenchmarkTokenVerify compares a verified-token cache hit with full HS256
// verification (go test -run X -bench TokenVerify ./http/).
func BenchmarkTokenVerify(b *testing.B) {
	tok := []byte(signToken(b, jwt.MapClaims{"sub": userservice.NewID(), "authId": userservice.NewID(), "email": "a@b.co", "role": "student", "exp": time.Now().Add(time.Hour).Unix()}))
	a := newAuthenticator(jwtKeys{algorithms: []string{AlgHS256}, secret: testSecret}, 10000, &memDirectory{users: newMemUsers(newMemIdem())})
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		if _, err := a.verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := a.verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		s := string(tok)
		now := time.Now()
		for b.Loop() {
			if _, err := a.parse(context.Background(), s, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncodeUser measures rendering a user in the success envelope.
func BenchmarkEncodeUser(b *testing.B) {
	name, bio := "johndoe", "Software developer and lifelong learner"
	now := userservice.Now()
	u := userservice.User{ID: userservice.NewID(), AuthID: userservice.NewID(), Email: "john@example.com", Username: &name, FirstName: "John", LastName: "Doe",
		Bio: &bio, Timezone: "UTC", Language: "en", Role: userservice.RoleStudent, Status: userservice.StatusActive, LastActiveAt: &now, CreatedAt: now, UpdatedAt: now, Version: 7}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := renderSuccess(u, "", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetMe measures a whole GET /api/v1/users/me through the handler.
func BenchmarkGetMe(b *testing.B) {
	h := newHarness(b)
	h.srv.logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	b.ReportAllocs()
	for b.Loop() {
		if r := h.get("/api/v1/users/me", h.alice.token); r.status != 200 {
			b.Fatal(r.status)
		}
	}
}

// serveBench runs one request through the server's handler b.N times, reusing
// one RequestCtx as fasthttp's server does per connection, so that allocs/op are
// the handler path's own (the harness's do builds a RequestCtx, resolves an
// address and copies the answer on every call).
func serveBench(b *testing.B, h *harness, method, path, token string, body []byte, want int) {
	b.Helper()
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBody(body)
	}
	addr := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 4567}
	var fc fasthttp.RequestCtx
	handler := h.srv.Handler()
	fc.Init(&req, addr, nil)
	// LOG_LEVEL=warn, as make bench runs the service: no line per request.
	h.srv.logger = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		fc.Response.Reset()
		handler(&fc)
		if s := fc.Response.StatusCode(); s != want {
			b.Fatalf("status %d: %s", s, fc.Response.Body())
		}
	}
}

// BenchmarkHandler measures the hot routes through the handler with a reused
// RequestCtx (the in-memory fakes stand in for actors and PostgreSQL; the actors'
// and the writer's own costs have their benchmarks beside them):
//
//	go test -run X -bench Handler -benchmem ./http/
func BenchmarkHandler(b *testing.B) {
	b.Run("GetMe", func(b *testing.B) {
		h := newHarness(b)
		serveBench(b, h, "GET", "/api/v1/users/me", h.alice.token, nil, 200)
	})
	b.Run("GetPreferences", func(b *testing.B) {
		h := newHarness(b)
		serveBench(b, h, "GET", "/api/v1/users/me/preferences", h.alice.token, nil, 200)
	})
	b.Run("PutMe", func(b *testing.B) {
		h := newHarness(b)
		serveBench(b, h, "PUT", "/api/v1/users/me", h.alice.token, []byte(`{"bio":"Load test bio 12345"}`), 200)
	})
}

// BenchmarkDecodePreferences decodes a body of 200 preferences (about 60 KB),
// text check included; BenchmarkTextProblem is that check alone.
func BenchmarkDecodePreferences(b *testing.B) {
	body := preferencesBody(200)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var in userservice.UpsertPreferences
		if err := decodeJSON(body, &in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTextProblem(b *testing.B) {
	body := preferencesBody(200)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, bad := textProblem(body); bad {
			b.Fatal("problem found")
		}
	}
}

func preferencesBody(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"preferences":[`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"category":"learning","key":"k_%03d","value":{"label":"Überschrift %d — café ☕","items":[1,2,3],"on":true,"note":"%s"}}`, i, i, strings.Repeat("x", 200))
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

// BenchmarkServerPutMe sends PUT /me over a connection (in memory) to a
// fasthttp server running the handler, with the request body streamed
// (StreamRequestBody, as NewServer configures it since bulk job uploads; every
// other route's body is then read by limitBody) and read whole by fasthttp as
// before, to show what streaming costs the routes that do not stream:
//
//	go test -run X -bench ServerPutMe -benchmem ./http/
func BenchmarkServerPutMe(b *testing.B) {
	for _, stream := range []bool{false, true} {
		b.Run(fmt.Sprintf("stream=%t", stream), func(b *testing.B) {
			h := newHarness(b)
			h.srv.logger = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
			ln := fasthttputil.NewInmemoryListener()
			srv := &fasthttp.Server{Handler: h.srv.Handler(), MaxRequestBodySize: 1 << 20, StreamRequestBody: stream}
			go srv.Serve(ln) //nolint:errcheck // ends with the listener
			defer ln.Close()
			c := &fasthttp.HostClient{Addr: "bench", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
			body := []byte(`{"bio":"Load test bio 12345"}`)
			var req fasthttp.Request
			var resp fasthttp.Response
			req.Header.SetMethod("PUT")
			req.SetRequestURI("http://bench/api/v1/users/me")
			req.Header.Set("Authorization", "Bearer "+h.alice.token)
			req.Header.SetContentType("application/json")
			b.ReportAllocs()
			for b.Loop() {
				req.SetBody(body)
				if err := c.Do(&req, &resp); err != nil || resp.StatusCode() != 200 {
					b.Fatalf("%v %d %s", err, resp.StatusCode(), resp.Body())
				}
			}
		})
	}
}
