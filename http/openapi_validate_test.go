package http

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	json "github.com/goccy/go-json"

	"github.com/lms-platform/userservice"
)

// openAPIChecker validates real answers of the server against the document.
// It records what it validated; subtests use it one at a time.
type openAPIChecker struct {
	router routers.Router
	opts   *openapi3filter.Options
	// ok records the operations answered with a validated 2xx; statuses every
	// validated status.
	ok       map[string]bool
	statuses map[int]bool
}

// ndjsonDecoder registers, once, a decoder for the change feed's NDJSON answers
// (checked as a string: the lines are the published envelopes).
var ndjsonDecoder sync.Once

func newOpenAPIChecker(t *testing.T) *openAPIChecker {
	t.Helper()
	ndjsonDecoder.Do(func() { openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.PlainBodyDecoder) })
	doc := loadOpenAPI(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("cannot build the OpenAPI router: %v", err)
	}
	return &openAPIChecker{
		router: router,
		opts: &openapi3filter.Options{
			AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
			IncludeResponseStatus: true, // a status the document does not list fails
			MultiError:            true,
		},
		ok: map[string]bool{}, statuses: map[int]bool{},
	}
}

// step is one request of the tour and the status it must answer.
type step struct {
	name string
	req
	want int
	code string // the error code, for errors
	// beyondSchema says why the document cannot refuse this bad request
	// itself (a rule no schema expresses); otherwise a 400 must also fail the
	// document's request validation.
	beyondSchema string
}

// run sends the step through h and validates the answer (and, for a 2xx, the
// request too) against the document. It returns the answer.
func (c *openAPIChecker) run(t testing.TB, h *harness, s step) *resp {
	t.Helper()
	r := h.withT(t).do(s.req)
	if r.status != s.want {
		t.Fatalf("%s: %s %s answered %d, want %d: %s", s.name, s.method, s.path, r.status, s.want, r.body)
	}
	if s.code != "" {
		if got := r.json()["code"]; got != s.code {
			t.Fatalf("%s: code = %v, want %s: %s", s.name, got, s.code, r.body)
		}
	}
	hreq := httpRequest(t, s.req)
	route, params, err := c.router.FindRoute(hreq)
	if err != nil {
		t.Fatalf("%s: %s %s is not in the document: %v", s.name, s.method, s.path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: hreq, PathParams: params, Route: route, Options: c.opts}
	switch err := openapi3filter.ValidateRequest(context.Background(), in); {
	case r.status < 300 && err != nil:
		t.Errorf("%s: the server accepted a request the document refuses: %s %s: %v", s.name, s.method, s.path, err)
	case r.status == 400 && err == nil && s.beyondSchema == "":
		t.Errorf("%s: the server refused a request the document accepts: %s %s: %s", s.name, s.method, s.path, r.body)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.status, Header: http.Header{}, Options: c.opts}
	for k, v := range r.header.All() {
		out.Header.Add(string(k), string(v))
	}
	out.SetBodyBytes(r.body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s: %s %s answered %d not as documented: %v\nheaders: %v\nbody: %s", s.name, s.method, s.path, r.status, explain(err), out.Header, r.body)
	}
	if r.status < 300 {
		c.ok[route.Method+" "+route.Path] = true
	}
	c.statuses[r.status] = true
	return r
}

// explain flattens kin-openapi's multi-errors into one readable message.
func explain(err error) string {
	var me openapi3.MultiError
	if errors.As(err, &me) {
		parts := make([]string, 0, len(me))
		for _, e := range me {
			parts = append(parts, explain(e))
		}
		return strings.Join(parts, "; ")
	}
	return err.Error()
}

// httpRequest rebuilds the step's request as net/http sees it.
func httpRequest(t testing.TB, q req) *http.Request {
	t.Helper()
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
			t.Fatal(err)
		}
	}
	hreq, err := http.NewRequest(q.method, "http://127.0.0.1"+q.path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > 0 {
		hreq.Header.Set("Content-Type", "application/json")
	}
	if q.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+q.token)
	}
	for i := 0; i+1 < len(q.headers); i += 2 {
		hreq.Header.Set(q.headers[i], q.headers[i+1])
	}
	return hreq
}

// withChecks sets the dependency checks of /health/detailed: nil means up.
func withChecks(checks map[string]error) func(*Config, *Deps) {
	return func(_ *Config, d *Deps) {
		d.Health.Checks = map[string]func(context.Context) error{}
		for name, err := range checks {
			d.Health.Checks[name] = func(context.Context) error { return err }
		}
	}
}

// TestOpenAPIResponsesMatchTheDocument drives every route with successes and
// the typical errors and validates each real request and answer against
// http/openapi.json (kin-openapi's openapi3filter).
func TestOpenAPIResponsesMatchTheDocument(t *testing.T) {
	c := newOpenAPIChecker(t)
	h := newHarness(t, withChecks(map[string]error{"database": nil, "redis": nil, "rabbitmq": nil}))
	admin, alice, bob := h.admin.token, h.alice.token, h.bob.token
	me := func(rest ...string) string { return userPath("me", rest...) }
	missing := userservice.NewID()
	c1, c2, c3 := userservice.NewID(), userservice.NewID(), userservice.NewID()

	// Alice has logged in once, so sessions and stats have something to show.
	ip, agent := "203.0.113.7", "Mozilla/5.0"
	if _, err := h.users.Execute(context.Background(), h.alice.id,
		userservice.RecordLogin{SessionID: "sess-1", IPAddress: &ip, UserAgent: &agent, At: userservice.Now()},
		userservice.Meta{Now: userservice.Now()}); err != nil {
		t.Fatal(err)
	}

	// ... and changed her password, which leaves an audit record without "before".
	if _, err := h.users.Execute(context.Background(), h.alice.id, userservice.RecordPasswordChange{At: userservice.Now()}, userservice.Meta{Now: userservice.Now()}); err != nil {
		t.Fatal(err)
	}

	run := func(t *testing.T, steps ...step) {
		t.Helper()
		for _, s := range steps {
			c.run(t, h, s)
		}
	}
	get := func(name, path, token string, want int, code string) step {
		return step{name: name, req: req{method: "GET", path: path, token: token}, want: want, code: code}
	}
	send := func(name, method, path, token string, body any, want int, code string, headers ...string) step {
		return step{name: name, req: req{method: method, path: path, token: token, body: body, headers: headers}, want: want, code: code}
	}

	beyond := func(s step, why string) step { s.beyondSchema = why; return s }

	t.Run("health and metrics", func(t *testing.T) {
		run(t,
			get("health", "/health", "", 200, ""),
			get("live", "/health/live", "", 200, ""),
			get("ready", "/health/ready", "", 200, ""),
			get("detailed healthy", "/health/detailed", "", 200, ""),
			get("metrics", "/metrics", "", 200, ""),
			step{name: "ids are echoed", req: req{method: "GET", path: "/health", headers: []string{"X-Request-ID", "req-1", "X-Correlation-ID", "corr:1"}}, want: 200},
		)
		for _, tc := range []struct {
			name   string
			opt    func(*Config, *Deps)
			path   string
			status int
			want   string
		}{
			{"degraded without redis", withChecks(map[string]error{"database": nil, "redis": errBoom, "rabbitmq": nil}), "/health/detailed", 200, "degraded"},
			{"unhealthy without database", withChecks(map[string]error{"database": errBoom, "redis": nil, "rabbitmq": nil}), "/health/detailed", 503, "unhealthy"},
			{"not ready", func(_ *Config, d *Deps) { d.Health.Ready = func(context.Context) error { return errBoom } }, "/health/ready", 503, "not ready"},
		} {
			hh := newHarness(t, tc.opt)
			r := c.run(t, hh, get(tc.name, tc.path, "", tc.status, ""))
			if got := r.json()["status"]; got != tc.want {
				t.Errorf("%s: status %v, want %s", tc.name, got, tc.want)
			}
		}
	})

	t.Run("profiles", func(t *testing.T) {
		run(t,
			get("own profile by me", me(), alice, 200, ""),
			get("own profile by id", userPath(h.alice.id), alice, 200, ""),
			get("admin reads a profile", userPath(h.alice.id), admin, 200, ""),
			get("no token", me(), "", 401, "UNAUTHORIZED"),
			get("bad token", me(), "not.a.jwt", 401, "UNAUTHORIZED"),
			get("id not a UUID", userPath("alice"), alice, 400, "INVALID_PARAMETER"),
			get("another user's profile", userPath(h.bob.id), alice, 403, "FORBIDDEN"),
			get("unknown user", userPath(missing), admin, 404, "NOT_FOUND"),
			get("own stats", me("stats"), alice, 200, ""),
			get("stats of an unknown user", userPath(missing, "stats"), admin, 404, "NOT_FOUND"),
			get("own sessions", me("sessions")+"?page=1&limit=5", alice, 200, ""),
			get("sessions limit too big", me("sessions")+"?limit=101", alice, 400, "VALIDATION_ERROR"),
			send("revoke an unknown session", "DELETE", me("sessions", "no-such-session"), alice, nil, 404, "NOT_FOUND"),
			send("revoke a session id too long", "DELETE", me("sessions", strings.Repeat("s", 256)), alice, nil, 400, "INVALID_PARAMETER"),
			send("revoke another user's sessions", "DELETE", userPath(h.bob.id, "sessions"), alice, nil, 403, "FORBIDDEN"),
			send("revoke sessions of an unknown user", "DELETE", userPath(missing, "sessions"), admin, nil, 404, "NOT_FOUND"),
			get("own export", me("export"), alice, 200, ""),
			get("admin exports a user", userPath(h.alice.id, "export"), admin, 200, ""),
			get("export of another user", userPath(h.bob.id, "export"), alice, 403, "FORBIDDEN"),
			get("export of an unknown user", userPath(missing, "export"), admin, 404, "NOT_FOUND"),
			get("export with a bad id", userPath("x", "export"), admin, 400, "INVALID_PARAMETER"),
			send("revoke one session", "DELETE", me("sessions", "sess-1"), alice, nil, 200, ""),
			send("revoke every session", "DELETE", me("sessions"), alice, nil, 200, ""),
			get("own events", me("events")+"?after=0&limit=10", alice, 200, ""),
			get("global feed", "/api/v1/events?after=0", admin, 200, ""),
			get("global feed by a student", "/api/v1/events", alice, 403, "FORBIDDEN"),
			get("events bad after", me("events")+"?after=-1", alice, 400, "VALIDATION_ERROR"),
		)
		r := c.run(t, h, send("edit own profile", "PUT", me(), alice,
			map[string]any{"displayName": "Alice A", "bio": "Learner", "phone": "+14155550123", "avatarUrl": "https://example.com/a.png", "timezone": "Europe/Paris"}, 200, ""))
		etag := r.get("ETag")
		run(t,
			send("stale If-Match", "PUT", me(), alice, map[string]any{"bio": "x"}, 412, "PRECONDITION_FAILED", "If-Match", `"999"`),
			send("current If-Match", "PUT", me(), alice, map[string]any{"bio": nil, "username": nil}, 200, "", "If-Match", etag),
			send("malformed If-Match", "PUT", me(), alice, map[string]any{"bio": "x"}, 400, "INVALID_PARAMETER", "If-Match", "five"),
			send("weak If-Match", "PUT", me(), alice, map[string]any{"bio": "x"}, 412, "PRECONDITION_FAILED", "If-Match", "W/"+etag),
			send("opaque If-Match", "PUT", me(), alice, map[string]any{"bio": "x"}, 412, "PRECONDITION_FAILED", "If-Match", `"definitely-not-the-version", "0"`),
			send("wrong type names the field", "PUT", me(), alice, map[string]any{"bio": 123}, 400, "VALIDATION_ERROR"),
			send("username taken", "PUT", me(), alice, map[string]any{"username": "bob"}, 409, "CONFLICT"),
			send("unknown field", "PUT", me(), alice, map[string]any{"password": "x"}, 400, "VALIDATION_ERROR"),
			send("empty update", "PUT", me(), alice, map[string]any{}, 400, "VALIDATION_ERROR"),
			send("bad phone", "PUT", me(), alice, map[string]any{"phone": "12"}, 400, "VALIDATION_ERROR"),
			send("not JSON", "PUT", me(), alice, "{", 400, "INVALID_JSON"),
			send("not JSON media type", "PUT", me(), alice, `{"bio":"x"}`, 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type", "text/plain"),
			send("body too large", "PUT", me(), alice, `{"bio":"`+strings.Repeat("x", 1<<20)+`"}`, 413, "PAYLOAD_TOO_LARGE"),
			send("another user's profile", "PUT", userPath(h.bob.id), alice, map[string]any{"bio": "x"}, 403, "FORBIDDEN"),
			send("update unknown user", "PUT", userPath(missing), admin, map[string]any{"bio": "x"}, 404, "NOT_FOUND"),
		)
	})

	var created string
	t.Run("admin", func(t *testing.T) {
		newUser := map[string]any{
			"authId": userservice.NewID(), "email": "Carol@Example.com", "firstName": "Carol", "lastName": "C",
			"username": "carol", "displayName": "Carol C", "avatarUrl": "https://example.com/c.png", "bio": "Teacher",
			"phone": "+33123456789", "timezone": "Europe/Paris", "language": "fr", "role": "instructor",
		}
		r := c.run(t, h, send("create", "POST", "/api/v1/users", admin, newUser, 201, "", "Idempotency-Key", "create-carol"))
		created, _ = r.dataMap()["id"].(string)
		replay := c.run(t, h, send("create replayed", "POST", "/api/v1/users", admin, newUser, 201, "", "Idempotency-Key", "create-carol"))
		if replay.get("Idempotent-Replayed") != "true" {
			t.Errorf("replay lacks Idempotent-Replayed: %v", replay.header.String())
		}
		other := map[string]any{"authId": userservice.NewID(), "email": "dave@example.com", "firstName": "Dave", "lastName": "D"}
		run(t,
			send("key reused with another body", "POST", "/api/v1/users", admin, other, 422, "IDEMPOTENCY_KEY_REUSED", "Idempotency-Key", "create-carol"),
			send("minimal create", "POST", "/api/v1/users", admin, other, 201, ""),
			send("duplicate email", "POST", "/api/v1/users", admin, map[string]any{"authId": userservice.NewID(), "email": "carol@example.com", "firstName": "C", "lastName": "C"}, 409, "CONFLICT"),
			send("invalid create", "POST", "/api/v1/users", admin, map[string]any{"authId": "x", "email": "nope", "firstName": "", "lastName": "L"}, 400, "VALIDATION_ERROR"),
			send("create by a student", "POST", "/api/v1/users", alice, other, 403, "FORBIDDEN"),
			send("create without body", "POST", "/api/v1/users", admin, nil, 400, "INVALID_JSON"),

			get("search", "/api/v1/users?page=1&limit=10&search=a&role=student&status=active&sortBy=email&sortOrder=asc", admin, 200, ""),
			get("search deleted none", "/api/v1/users?status=deleted", admin, 200, ""),
			get("search limit too big", "/api/v1/users?limit=1000", admin, 400, "VALIDATION_ERROR"),
			get("search bad sort", "/api/v1/users?sortBy=password", admin, 400, "VALIDATION_ERROR"),
			get("search uncounted", "/api/v1/users?limit=1&count=none", admin, 200, ""),
			get("search bad count", "/api/v1/users?count=all", admin, 400, "VALIDATION_ERROR"),
			get("search by a student", "/api/v1/users", alice, 403, "FORBIDDEN"),
			get("platform stats", "/api/v1/users/stats", admin, 200, ""),
			get("platform stats by a student", "/api/v1/users/stats", alice, 403, "FORBIDDEN"),
			get("search without token", "/api/v1/users", "", 401, "UNAUTHORIZED"),

			send("role", "PUT", userPath(created, "role"), admin, map[string]any{"role": "student"}, 200, ""),
			send("role unchanged", "PUT", userPath(created, "role"), admin, map[string]any{"role": "student"}, 200, ""),
			send("role invalid", "PUT", userPath(created, "role"), admin, map[string]any{"role": "boss"}, 400, "VALIDATION_ERROR"),
			send("role by a student", "PUT", userPath(created, "role"), alice, map[string]any{"role": "admin"}, 403, "FORBIDDEN"),
			send("role of an unknown user", "PUT", userPath(missing, "role"), admin, map[string]any{"role": "admin"}, 404, "NOT_FOUND"),
			send("role stale If-Match", "PUT", userPath(created, "role"), admin, map[string]any{"role": "admin"}, 412, "PRECONDITION_FAILED", "If-Match", `"1"`),
			send("status", "PUT", userPath(created, "status"), admin, map[string]any{"status": "inactive"}, 200, ""),
			send("status missing", "PUT", userPath(created, "status"), admin, map[string]any{}, 400, "VALIDATION_ERROR"),
			send("status by a student", "PUT", userPath(created, "status"), alice, map[string]any{"status": "active"}, 403, "FORBIDDEN"),

			send("bulk role", "PUT", "/api/v1/users/bulk/role", admin,
				map[string]any{"userIds": []string{created, "not-a-uuid", missing, strings.ToUpper(created), h.teacher.id}, "role": "instructor"}, 200, ""),
			send("bulk role empty", "PUT", "/api/v1/users/bulk/role", admin, map[string]any{"userIds": []string{}, "role": "student"}, 400, "VALIDATION_ERROR"),
			send("bulk role by a student", "PUT", "/api/v1/users/bulk/role", alice, map[string]any{"userIds": []string{created}, "role": "admin"}, 403, "FORBIDDEN"),

			get("audit", userPath(created, "audit")+"?page=1&limit=50", admin, 200, ""),
			get("audit with a password change", userPath(h.alice.id, "audit"), admin, 200, ""),
			get("audit by a student", userPath(h.alice.id, "audit"), alice, 403, "FORBIDDEN"),
			get("audit of an unknown user", userPath(missing, "audit"), admin, 404, "NOT_FOUND"),

			send("delete", "DELETE", userPath(created), admin, nil, 200, ""),
			send("delete again", "DELETE", userPath(created), admin, nil, 200, ""),
			get("admin reads a deleted user", userPath(created), admin, 200, ""),
			get("search deleted", "/api/v1/users?status=deleted", admin, 200, ""),
			send("delete by a student", "DELETE", userPath(h.bob.id), alice, nil, 403, "FORBIDDEN"),
			send("delete unknown", "DELETE", userPath(missing), admin, nil, 404, "NOT_FOUND"),
			send("delete stale If-Match", "DELETE", userPath(h.teacher.id), admin, nil, 412, "PRECONDITION_FAILED", "If-Match", `"42"`),
			send("delete bad id", "DELETE", userPath("123"), admin, nil, 400, "INVALID_PARAMETER"),
		)
	})

	t.Run("enrollments", func(t *testing.T) {
		run(t,
			send("enroll", "POST", me("enrollments"), alice, map[string]any{"courseId": c1}, 201, "", "Idempotency-Key", "enroll-c1"),
			send("enroll replayed", "POST", me("enrollments"), alice, map[string]any{"courseId": c1}, 201, "", "Idempotency-Key", "enroll-c1"),
			send("enroll key reused", "POST", me("enrollments"), alice, map[string]any{"courseId": c2}, 422, "IDEMPOTENCY_KEY_REUSED", "Idempotency-Key", "enroll-c1"),
			send("already enrolled", "POST", me("enrollments"), alice, map[string]any{"courseId": c1}, 409, "ALREADY_ENROLLED"),
			send("enroll bad course", "POST", me("enrollments"), alice, map[string]any{"courseId": "c1"}, 400, "VALIDATION_ERROR"),
			send("enroll another user", "POST", userPath(h.bob.id, "enrollments"), alice, map[string]any{"courseId": c1}, 403, "FORBIDDEN"),
			send("admin enrolls a user", "POST", userPath(h.bob.id, "enrollments"), admin, map[string]any{"courseId": c1}, 201, ""),
			send("enroll unknown user", "POST", userPath(missing, "enrollments"), admin, map[string]any{"courseId": c1}, 404, "NOT_FOUND"),
			send("enroll c2", "POST", me("enrollments"), alice, map[string]any{"courseId": c2}, 201, ""),
			send("enroll c3", "POST", me("enrollments"), alice, map[string]any{"courseId": c3}, 201, ""),
			get("enrollments first page, uncounted", me("enrollments")+"?limit=1&count=none", alice, 200, ""),

			send("progress", "PUT", me("enrollments", c1, "progress"), alice, map[string]any{"progress": 42.5, "timeSpentSeconds": 600}, 200, ""),
			send("progress completes", "PUT", me("enrollments", c1, "progress"), alice, map[string]any{"progress": 100}, 200, ""),
			send("progress after completion", "PUT", me("enrollments", c1, "progress"), alice, map[string]any{"progress": 90}, 200, ""),
			send("progress out of range", "PUT", me("enrollments", c1, "progress"), alice, map[string]any{"progress": 101}, 400, "VALIDATION_ERROR"),
			send("progress missing", "PUT", me("enrollments", c1, "progress"), alice, map[string]any{"timeSpentSeconds": 5}, 400, "VALIDATION_ERROR"),
			send("progress bad course id", "PUT", me("enrollments", "c1", "progress"), alice, map[string]any{"progress": 1}, 400, "INVALID_PARAMETER"),
			send("progress unknown enrollment", "PUT", me("enrollments", missing, "progress"), alice, map[string]any{"progress": 1}, 404, "NOT_FOUND"),
			send("progress stale If-Match", "PUT", me("enrollments", c1, "progress"), alice, map[string]any{"progress": 1}, 412, "PRECONDITION_FAILED", "If-Match", `"1"`),

			send("drop", "PUT", me("enrollments", c2), alice, map[string]any{"enrollmentStatus": "dropped"}, 200, ""),
			send("progress on a dropped enrollment", "PUT", me("enrollments", c2, "progress"), alice, map[string]any{"progress": 10}, 409, "CONFLICT"),
			send("re-enroll a dropped course", "POST", me("enrollments"), alice, map[string]any{"courseId": c2}, 200, ""),
			send("status of a completed enrollment", "PUT", me("enrollments", c1), alice, map[string]any{"enrollmentStatus": "dropped"}, 409, "CONFLICT"),
			send("status and progress", "PUT", me("enrollments", c3), alice, map[string]any{"enrollmentStatus": "active", "progress": 10, "timeSpentSeconds": 30}, 200, ""),
			send("update with neither", "PUT", me("enrollments", c3), alice, map[string]any{"timeSpentSeconds": 30}, 400, "VALIDATION_ERROR"),
			send("update bad status", "PUT", me("enrollments", c3), alice, map[string]any{"enrollmentStatus": "paused"}, 400, "VALIDATION_ERROR"),
			send("update unknown enrollment", "PUT", me("enrollments", missing), alice, map[string]any{"progress": 1}, 404, "NOT_FOUND"),
			send("update another user's enrollment", "PUT", userPath(h.bob.id, "enrollments", c1), alice, map[string]any{"progress": 1}, 403, "FORBIDDEN"),

			get("list", me("enrollments")+"?page=1&limit=2", alice, 200, ""),
			get("list by status", me("enrollments")+"?status=completed", alice, 200, ""),
			get("list bad status", me("enrollments")+"?status=paused", alice, 400, "VALIDATION_ERROR"),
			get("list of another user", userPath(h.bob.id, "enrollments"), alice, 403, "FORBIDDEN"),
			get("stats", me("enrollments", "stats"), alice, 200, ""),
			get("stats without enrollments", userPath(h.teacher.id, "enrollments", "stats"), admin, 200, ""),
			get("user stats with enrollments", me("stats"), alice, 200, ""),

			send("unenroll", "DELETE", me("enrollments", c3), alice, nil, 200, ""),
			send("unenroll again", "DELETE", me("enrollments", c3), alice, nil, 404, "NOT_FOUND"),
			send("unenroll bad course id", "DELETE", me("enrollments", "x"), alice, nil, 400, "INVALID_PARAMETER"),
			send("unenroll another user", "DELETE", userPath(h.bob.id, "enrollments", c1), alice, nil, 403, "FORBIDDEN"),
		)
	})

	t.Run("courses", func(t *testing.T) {
		teacher := h.teacher.token
		course := func(rest string) string { return "/api/v1/courses/" + c1 + rest }
		first := c.run(t, h, get("roster first page", course("/enrollments?limit=1"), teacher, 200, ""))
		next, _ := first.json()["pagination"].(map[string]any)["nextCursor"].(string)
		if next == "" {
			t.Fatalf("no nextCursor on a first page of one: %s", first.body)
		}
		run(t,
			get("roster next page", course("/enrollments?limit=1&count=none&cursor="+url.QueryEscape(next)), teacher, 200, ""),
			get("roster by status", course("/enrollments?status=completed"), admin, 200, ""),
			beyond(get("roster cursor with a filter", course("/enrollments?status=active&cursor="+url.QueryEscape(next)), teacher, 400, "VALIDATION_ERROR"),
				"a cursor carries its filters"),
			beyond(get("roster with page", course("/enrollments?page=2"), teacher, 400, "VALIDATION_ERROR"), "this list is paged with cursor"),
			beyond(get("roster bad cursor", course("/enrollments?cursor=xyz"), teacher, 400, "VALIDATION_ERROR"), "a cursor is opaque"),
			get("roster limit too big", course("/enrollments?limit=101"), teacher, 400, "VALIDATION_ERROR"),
			get("roster bad course id", "/api/v1/courses/c1/enrollments", teacher, 400, "INVALID_PARAMETER"),
			get("roster by a student", course("/enrollments"), alice, 403, "FORBIDDEN"),
			get("roster without token", course("/enrollments"), "", 401, "UNAUTHORIZED"),
			get("course stats", course("/stats"), teacher, 200, ""),
			get("course stats by a student", course("/stats"), alice, 403, "FORBIDDEN"),
		)
	})

	t.Run("preferences", func(t *testing.T) {
		run(t,
			get("list", me("preferences"), alice, 200, ""),
			get("object", me("preferences")+"?format=object", alice, 200, ""),
			get("list format", me("preferences")+"?format=list", alice, 200, ""),
			get("bad format", me("preferences")+"?format=xml", alice, 400, "INVALID_PARAMETER"),
			get("category", me("preferences", "ui"), alice, 200, ""),
			get("category object", me("preferences", "ui")+"?format=object", alice, 200, ""),
			get("unknown category", me("preferences", "colors"), alice, 400, "INVALID_PARAMETER"),
			get("another user's preferences", userPath(h.bob.id, "preferences"), alice, 403, "FORBIDDEN"),

			send("upsert", "PUT", me("preferences"), alice, map[string]any{"preferences": []any{
				map[string]any{"category": "ui", "key": "theme", "value": "dark"},
				map[string]any{"category": "learning", "key": "goal", "value": nil},
				map[string]any{"category": "privacy", "key": "extra", "value": map[string]any{"a": []int{1, 2}}},
			}}, 200, ""),
			send("upsert without category", "PUT", me("preferences"), alice, map[string]any{"preferences": []any{map[string]any{"key": "theme", "value": "dark"}}}, 400, "VALIDATION_ERROR"),
			send("upsert without value", "PUT", me("preferences"), alice, map[string]any{"preferences": []any{map[string]any{"category": "ui", "key": "theme"}}}, 400, "VALIDATION_ERROR"),
			send("upsert empty", "PUT", me("preferences"), alice, map[string]any{"preferences": []any{}}, 400, "VALIDATION_ERROR"),
			send("upsert category", "PUT", me("preferences", "notifications"), alice, map[string]any{"preferences": []any{
				map[string]any{"key": "sms_enabled", "value": false},
				map[string]any{"category": "notifications", "key": "digest", "value": 7},
			}}, 200, ""),
			beyond(send("upsert category mismatch", "PUT", me("preferences", "notifications"), alice, map[string]any{"preferences": []any{map[string]any{"category": "ui", "key": "theme", "value": 1}}}, 400, "VALIDATION_ERROR"),
				"an item's category must equal the path's"),
			beyond(send("unknown time zone", "PUT", me(), alice, map[string]any{"timezone": "Mars/Olympus"}, 400, "VALIDATION_ERROR"), "IANA zones are not listed"),
			send("upsert bad key", "PUT", me("preferences", "ui"), alice, map[string]any{"preferences": []any{map[string]any{"key": "Theme!", "value": 1}}}, 400, "VALIDATION_ERROR"),
			send("upsert unknown user", "PUT", userPath(missing, "preferences", "ui"), admin, map[string]any{"preferences": []any{map[string]any{"key": "theme", "value": 1}}}, 404, "NOT_FOUND"),
			send("upsert stale If-Match", "PUT", me("preferences", "ui"), alice, map[string]any{"preferences": []any{map[string]any{"key": "theme", "value": 1}}}, 412, "PRECONDITION_FAILED", "If-Match", `"1"`),

			send("merge patch", "PATCH", me("preferences", "ui"), alice, map[string]any{"theme": "dark", "layout": map[string]any{"sidebar": true, "density": nil}, "items_per_page": nil}, 200, ""),
			send("merge patch that changes nothing", "PATCH", me("preferences", "ui"), alice, map[string]any{"theme": "dark", "never_set": nil}, 200, ""),
			send("merge patch not an object", "PATCH", me("preferences", "ui"), alice, []any{1}, 400, "VALIDATION_ERROR"),
			beyond(send("merge patch bad key", "PATCH", me("preferences", "ui"), alice, map[string]any{"Bad-Key": 1}, 400, "VALIDATION_ERROR"), "OpenAPI 3.0 cannot constrain property names"),
			send("merge patch unknown category", "PATCH", me("preferences", "colors"), alice, map[string]any{"x": 1}, 400, "INVALID_PARAMETER"),
			send("merge patch of another user", "PATCH", userPath(h.bob.id, "preferences", "ui"), alice, map[string]any{"theme": 1}, 403, "FORBIDDEN"),
			send("merge patch unknown user", "PATCH", userPath(missing, "preferences", "ui"), admin, map[string]any{"theme": 1}, 404, "NOT_FOUND"),
			send("merge patch stale If-Match", "PATCH", me("preferences", "ui"), alice, map[string]any{"theme": 1}, 412, "PRECONDITION_FAILED", "If-Match", `"1"`),

			send("delete key", "DELETE", me("preferences", "notifications", "sms_enabled"), alice, nil, 200, ""),
			send("delete key again", "DELETE", me("preferences", "notifications", "sms_enabled"), alice, nil, 404, "NOT_FOUND"),
			send("delete bad key", "DELETE", me("preferences", "notifications", "Bad-Key"), alice, nil, 400, "INVALID_PARAMETER"),
			send("delete key of unknown category", "DELETE", me("preferences", "colors", "x"), alice, nil, 400, "INVALID_PARAMETER"),
			send("delete category", "DELETE", me("preferences", "privacy"), alice, nil, 200, ""),
			get("empty category", me("preferences", "privacy"), alice, 200, ""),
			get("empty category object", me("preferences", "privacy")+"?format=object", alice, 200, ""),
			send("delete empty category", "DELETE", me("preferences", "privacy"), alice, nil, 404, "NOT_FOUND"),
			send("delete another user's category", "DELETE", userPath(h.bob.id, "preferences", "ui"), alice, nil, 403, "FORBIDDEN"),
		)
	})

	t.Run("attributes", func(t *testing.T) {
		schema := map[string]any{"type": "object", "required": []any{"department"}, "properties": map[string]any{
			"department": map[string]any{"type": "string", "maxLength": 20, "enum": []any{"Math", "Physics"}},
			"grade":      map[string]any{"type": "integer", "minimum": 1, "maximum": 12},
		}}
		value := map[string]any{"department": "Math", "grade": 10}
		run(t,
			send("define a schema", "PUT", "/api/v1/attributes/hr", admin, schema, 200, ""),
			send("schema keyword outside the subset", "PUT", "/api/v1/attributes/x", admin, map[string]any{"properties": map[string]any{"a": map[string]any{"type": "string", "pattern": "a"}}}, 400, "VALIDATION_ERROR"),
			send("schema bad namespace", "PUT", "/api/v1/attributes/Bad-NS", admin, schema, 400, "INVALID_PARAMETER"),
			send("schema by a student", "PUT", "/api/v1/attributes/hr", alice, schema, 403, "FORBIDDEN"),
			get("read a schema", "/api/v1/attributes/hr", alice, 200, ""),
			get("unknown schema", "/api/v1/attributes/nope", alice, 404, "NOT_FOUND"),
			get("list schemas", "/api/v1/attributes", alice, 200, ""),
			send("set values", "PUT", me("attributes", "hr"), alice, value, 200, ""),
			send("set values by an admin", "PUT", userPath(h.alice.id, "attributes", "hr"), admin, value, 200, ""),
			beyond(send("values violate the schema", "PUT", me("attributes", "hr"), alice, map[string]any{"department": "Art", "grade": "ten"}, 400, "VALIDATION_ERROR"),
				"a namespace's schema is data, not part of the document"),
			send("values of an unknown namespace", "PUT", me("attributes", "nope"), alice, value, 404, "NOT_FOUND"),
			send("values of another user", "PUT", userPath(h.bob.id, "attributes", "hr"), alice, value, 403, "FORBIDDEN"),
			send("values stale If-Match", "PUT", me("attributes", "hr"), alice, value, 412, "PRECONDITION_FAILED", "If-Match", `"1"`),
			get("read values", me("attributes", "hr"), alice, 200, ""),
			get("read every namespace", me("attributes"), alice, 200, ""),
			get("search by attribute", "/api/v1/users?attr.hr.grade=10", admin, 200, ""),
			beyond(get("search by an attribute of the wrong type", "/api/v1/users?attr.hr.grade=ten", admin, 400, "VALIDATION_ERROR"), "attr.* parameters are described, not declared"),
			send("delete values", "DELETE", me("attributes", "hr"), alice, nil, 200, ""),
			send("delete values again", "DELETE", me("attributes", "hr"), alice, nil, 404, "NOT_FOUND"),
			get("read deleted values", me("attributes", "hr"), alice, 404, "NOT_FOUND"),
		)
	})

	t.Run("jobs", func(t *testing.T) {
		jobs := "/api/v1/jobs"
		upload := "authId,email,firstName,lastName\n" + userservice.NewID() + ",j1@example.com,Jo,Bs\n" + userservice.NewID() + ",not-an-email,Jo,Bs\n"
		r := c.run(t, h, send("import csv", "POST", jobs, admin, upload, 202, "", "Content-Type", "text/csv", "Idempotency-Key", "job-1"))
		id, _ := r.json()["data"].(map[string]any)["id"].(string)
		if r.get("Location") != jobs+"/"+id {
			t.Errorf("Location %q for job %s", r.get("Location"), id)
		}
		ndjson := `{"authId":"` + userservice.NewID() + `","email":"j2@example.com","firstName":"Jo","lastName":"Bs"}` + "\n"
		run(t,
			send("import replayed", "POST", jobs, admin, upload, 202, "", "Content-Type", "text/csv", "Idempotency-Key", "job-1"),
			beyond(send("import key reused", "POST", jobs, admin, upload+"x", 422, "IDEMPOTENCY_KEY_REUSED", "Content-Type", "text/csv", "Idempotency-Key", "job-1"), "a key's first request"),
			send("import ndjson", "POST", jobs, admin, ndjson, 202, "", "Content-Type", "application/x-ndjson", "Idempotency-Key", "job-2"),
			send("status job", "POST", jobs, admin, map[string]any{"type": "status", "status": "suspended", "userIds": []string{h.bob.id, "x"}}, 202, "", "Idempotency-Key", "job-3"),
			send("unenroll by course", "POST", jobs, admin, map[string]any{"type": "unenroll", "courseId": c1}, 202, "", "Idempotency-Key", "job-4"),
			beyond(send("job without Idempotency-Key", "POST", jobs, admin, ndjson, 400, "INVALID_PARAMETER", "Content-Type", "application/x-ndjson"), "the key is required by this route only"),
			send("job by a student", "POST", jobs, alice, ndjson, 403, "FORBIDDEN", "Content-Type", "application/x-ndjson", "Idempotency-Key", "job-5"),
			send("job of another media type", "POST", jobs, admin, "x", 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type", "text/plain", "Idempotency-Key", "job-6"),
			send("job of unknown type", "POST", jobs, admin, map[string]any{"type": "explode", "userIds": []string{h.bob.id}}, 400, "VALIDATION_ERROR", "Idempotency-Key", "job-7"),
			beyond(send("status job without status", "POST", jobs, admin, map[string]any{"type": "status", "userIds": []string{h.bob.id}}, 400, "VALIDATION_ERROR", "Idempotency-Key", "job-8"), "status is required by type"),
			beyond(send("csv header with an unknown column", "POST", jobs, admin, "authId,email,nick\n", 400, "VALIDATION_ERROR", "Content-Type", "text/csv", "Idempotency-Key", "job-9"), "CSV columns"),
			get("job", jobs+"/"+id, admin, 200, ""),
			get("job by a student", jobs+"/"+id, alice, 403, "FORBIDDEN"),
			get("unknown job", jobs+"/"+missing, admin, 404, "NOT_FOUND"),
			get("job id not a UUID", jobs+"/x", admin, 400, "INVALID_PARAMETER"),
			get("job results", jobs+"/"+id+"/results", admin, 200, ""),
			get("job results bad after", jobs+"/"+id+"/results?after=-1", admin, 400, "INVALID_PARAMETER"),
			send("cancel job", "DELETE", jobs+"/"+id, admin, nil, 200, ""),
			send("cancel a finished job", "DELETE", jobs+"/"+id, admin, nil, 409, "CONFLICT"),
		)
	})

	t.Run("account disabled", func(t *testing.T) {
		run(t,
			send("suspend bob", "PUT", userPath(h.bob.id, "status"), admin, map[string]any{"status": "suspended"}, 200, ""),
			get("suspended caller", me(), bob, 403, "ACCOUNT_DISABLED"),
		)
	})

	t.Run("rate limited", func(t *testing.T) {
		hh := newHarness(t, func(_ *Config, d *Deps) { d.RateLimiter = &fakeLimiter{limit: 1, seen: map[string]int{}} })
		c.run(t, hh, get("within the limit", me(), hh.alice.token, 200, ""))
		c.run(t, hh, get("over the limit", me(), hh.alice.token, 429, "RATE_LIMIT_EXCEEDED"))
		c.run(t, hh, send("over the limit on a write", "PUT", me(), hh.alice.token, map[string]any{"bio": "x"}, 429, "RATE_LIMIT_EXCEEDED"))
	})

	t.Run("erasure", func(t *testing.T) {
		hh := newHarness(t)
		a := hh.alice.token
		path := userPath(hh.alice.id, "erasure")
		for _, s := range []step{
			get("no erasure yet", path, hh.admin.token, 404, "NOT_FOUND"),
			send("erasure of another user", "POST", userPath(hh.bob.id, "erasure"), a, nil, 403, "FORBIDDEN"),
			send("erasure with a bad id", "POST", userPath("x", "erasure"), a, nil, 400, "INVALID_PARAMETER"),
			send("erasure of an unknown user", "POST", userPath(userservice.NewID(), "erasure"), hh.admin.token, nil, 404, "NOT_FOUND"),
			send("request erasure", "POST", me("erasure"), a, nil, 202, ""),
			send("request erasure again", "POST", path, hh.admin.token, nil, 409, "CONFLICT"),
			get("own erasure while suspended", me("erasure"), a, 403, "ACCOUNT_DISABLED"),
			get("erasure state", path, hh.admin.token, 200, ""),
			send("cancel erasure", "DELETE", path, hh.admin.token, nil, 200, ""),
			send("cancel erasure again", "DELETE", path, hh.admin.token, nil, 404, "NOT_FOUND"),
			get("own profile after a cancel", me(), a, 200, ""),
		} {
			c.run(t, hh, s)
		}
	})

	t.Run("dependency down", func(t *testing.T) {
		hh := newHarness(t)
		hh.users.getHook = func(context.Context, string) error { return userservice.ErrUnavailable }
		c.run(t, hh, get("actor unavailable", me(), hh.alice.token, 503, "SERVICE_UNAVAILABLE"))
	})

	t.Run("every operation answered 2xx as documented", func(t *testing.T) {
		var missed []string
		for _, r := range documentedRoutes(loadOpenAPI(t)) {
			if !c.ok[r] {
				missed = append(missed, r)
			}
		}
		if len(missed) > 0 {
			t.Errorf("the tour never got a 2xx from: %v", missed)
		}
		var seen []string
		for _, s := range []int{200, 201, 400, 401, 403, 404, 409, 412, 413, 415, 422, 429, 503} {
			if !c.statuses[s] {
				seen = append(seen, strconv.Itoa(s))
			}
		}
		if len(seen) > 0 {
			t.Errorf("the tour never validated status %v", seen)
		}
	})
}

// TestOpenAPICheckerRejectsWrongShapes makes sure the validation above can
// fail: answers that break the document are refused.
func TestOpenAPICheckerRejectsWrongShapes(t *testing.T) {
	c := newOpenAPIChecker(t)
	user := `{"id":"01890a5d-ac96-774b-bcce-b302099a8057","authId":"01890a5d-ac96-774b-bcce-b302099a8058","email":"a@example.com","username":null,"firstName":"A","lastName":"B","displayName":null,"avatarUrl":null,"bio":null,"phone":null,"timezone":"UTC","language":"en","role":"student","status":"active","emailVerified":false,"profileCompleted":false,"lastActiveAt":null,"createdAt":"2024-01-15T10:30:00.000Z","updatedAt":"2024-01-15T10:30:00.000Z","version":1}`
	ids := http.Header{"X-Request-Id": {"r"}, "X-Correlation-Id": {"c"}, "Etag": {`"1"`}, "Content-Type": {"application/json"}}
	for _, tc := range []struct {
		name   string
		status int
		header http.Header
		body   string
		valid  bool
	}{
		{"a correct answer passes", 200, ids, `{"success":true,"data":` + user + `,"timestamp":"2024-01-15T10:30:00.000Z"}`, true},
		{"an extra user field fails", 200, ids, `{"success":true,"data":` + strings.Replace(user, `"version":1`, `"version":1,"password":"x"`, 1) + `,"timestamp":"2024-01-15T10:30:00.000Z"}`, false},
		{"a timestamp without milliseconds fails", 200, ids, `{"success":true,"data":` + user + `,"timestamp":"2024-01-15T10:30:00Z"}`, false},
		{"a missing envelope fails", 200, ids, user, false},
		{"an undocumented status fails", 418, ids, `{}`, false},
		{"an error without code fails", 404, ids, `{"success":false,"error":"User not found","timestamp":"2024-01-15T10:30:00.000Z"}`, false},
		{"an error with the wrong code for its status fails", 404, ids, `{"success":false,"error":"x","code":"CONFLICT","timestamp":"2024-01-15T10:30:00.000Z"}`, false},
		{"a missing X-Request-ID fails", 200, http.Header{"X-Correlation-Id": {"c"}, "Etag": {`"1"`}, "Content-Type": {"application/json"}}, `{"success":true,"data":` + user + `,"timestamp":"2024-01-15T10:30:00.000Z"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hreq := httpRequest(t, req{method: "GET", path: "/api/v1/users/me"})
			route, params, err := c.router.FindRoute(hreq)
			if err != nil {
				t.Fatal(err)
			}
			in := &openapi3filter.RequestValidationInput{Request: hreq, PathParams: params, Route: route, Options: c.opts}
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: tc.status, Header: tc.header, Options: c.opts}
			out.SetBodyBytes([]byte(tc.body))
			err = openapi3filter.ValidateResponse(context.Background(), out)
			if tc.valid != (err == nil) {
				t.Errorf("valid = %v, want %v (%v)", err == nil, tc.valid, err)
			}
		})
	}
}
