//go:build faulttest

package faulttest

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
)

// TestFuzzRequests sends 10,000 random and malformed requests (bodies, headers,
// tokens, paths, query strings, raw bytes) to a running service. None may answer a
// 5xx or hang, and none may change anything: a digest of the users, enrollments,
// preferences, sessions, outbox and audit tables is the same before and after.
// Every request is built to be refused: a bad token, an invalid body, a path or
// query that does not parse, another user's resource, a wrong media type or a stale
// If-Match; the state digest is what proves it was.
func TestFuzzRequests(t *testing.T) {
	const total = 10_000
	sum := newSummary(t)
	st := needStack(t)
	svc := newService(t, st)
	svc.start(t)
	c := newClient(svc.base, true)
	w := createUsers(t, c, 6)
	f := &fuzzer{users: w.users, admin: adminToken(t)}
	// Give the users something to lose: enrollments with progress, a preference.
	for _, u := range w.users {
		for range 2 {
			course := newUUID()
			if r := c.doJSON(http.MethodPost, "/api/v1/users/me/enrollments", u.token, map[string]any{"courseId": course}); r.status != http.StatusCreated {
				t.Fatalf("enroll: %s", r)
			}
			if r := c.doJSON(http.MethodPut, "/api/v1/users/me/enrollments/"+course+"/progress", u.token, map[string]any{"progress": 40}); r.status != http.StatusOK {
				t.Fatalf("progress: %s", r)
			}
			u.courses = append(u.courses, course)
		}
		if r := c.doJSON(http.MethodPut, "/api/v1/users/me/preferences/ui", u.token, map[string]any{"preferences": []map[string]any{{"key": "theme", "value": "dark"}}}); r.status != http.StatusOK {
			t.Fatalf("preference: %s", r)
		}
	}
	f.badTokens = badTokens(t, w.users[0])

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := pgx.Connect(ctx, st.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	before := digest(t, db, svc.name)

	type result struct {
		family  string
		status  int
		err     error
		req     string
		bigHead bool // the request line and headers exceed the server's read buffer
	}
	results := make(chan result, 256)
	var wg sync.WaitGroup
	const workers = 16
	for i := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for n := i; n < total; n += workers {
				req := f.next(rng)
				var status int
				var err error
				if req.raw != nil {
					status, err = sendRaw(svc.base, req.raw)
				} else {
					r := c.do(req.method, req.path, req.token, req.body, req.headers)
					status, err = r.status, r.err
				}
				results <- result{req.family, status, err, req.String(), req.headSize() > serverReadBuffer}
			}
		})
	}
	go func() { wg.Wait(); close(results) }()

	statuses := map[int]int{}
	families := map[string]int{}
	var failures []string
	for r := range results {
		families[r.family]++
		switch {
		case r.err != nil && r.family == "raw":
			statuses[0]++ // the server may just close a connection that makes no sense
		case r.err != nil && (r.family == "oversized" || r.bigHead) && !timedOut(r.err):
			// The 413 (or 431 for a head too large) went out, but the client was
			// still sending the body or the head (an Expect wait ran out) and the
			// server closed the connection under it.
			statuses[-1]++
		case r.err != nil:
			failures = append(failures, fmt.Sprintf("%s: %v", r.req, r.err))
		case r.status >= 500:
			failures = append(failures, fmt.Sprintf("%s: status %d", r.req, r.status))
		case r.status >= 200 && r.status < 300 && r.family != "bad-query" && !strings.Contains(r.req, "] GET ") &&
			!strings.Contains(r.req, "] HEAD ") && !strings.Contains(r.req, "] OPTIONS "):
			failures = append(failures, fmt.Sprintf("%s: accepted with %d", r.req, r.status))
			statuses[r.status]++
		default:
			statuses[r.status]++
		}
	}
	sort.Strings(failures)
	for i, f := range failures {
		if i == 15 {
			t.Errorf("… %d failures in all", len(failures))
			break
		}
		t.Error(f)
	}
	time.Sleep(500 * time.Millisecond) // let anything that was (wrongly) accepted commit
	after := digest(t, db, svc.name)
	if before != after {
		t.Errorf("the state changed:\nbefore %s\nafter  %s", before, after)
	}
	if r := c.do(http.MethodGet, "/health/ready", "", nil, nil); r.status != http.StatusOK {
		t.Errorf("after the fuzzing /health/ready: %s", r)
	}
	sum.add("%d requests (%s); statuses %s; %d failures; state digest unchanged: %t",
		total, renderCounts(families), renderStatus(statuses), len(failures), before == after)
}

func renderCounts(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func renderStatus(m map[int]int) string {
	codes := make([]int, 0, len(m))
	for k := range m {
		codes = append(codes, k)
	}
	sort.Ints(codes)
	parts := make([]string, 0, len(codes))
	for _, k := range codes {
		name := strconv.Itoa(k)
		switch k {
		case 0:
			name = "closed"
		case -1:
			name = "upload-cut"
		}
		parts = append(parts, fmt.Sprintf("%s:%d", name, m[k]))
	}
	return strings.Join(parts, " ")
}

// digest summarizes every table a request could change. lastActiveAt is left out:
// an authenticated request may record activity without changing the user.
func digest(t *testing.T, db *pgx.Conn, schema string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := strings.NewReplacer("S.", pgx.Identifier{schema}.Sanitize()+".").Replace(`SELECT concat_ws(' ',
	'users', (SELECT count(*) FROM S.users), (SELECT coalesce(sum(version), 0) FROM S.users),
	(SELECT md5(coalesce(string_agg(concat_ws('|', id, auth_id, email, username, first_name, last_name, display_name,
		avatar_url, bio, phone, timezone, language, role, status, email_verified, profile_completed, login_count,
		version, updated_at), ',' ORDER BY id), '')) FROM S.users),
	'enrollments', (SELECT count(*) FROM S.enrollments),
	(SELECT md5(coalesce(string_agg(concat_ws('|', id, user_id, course_id, enrollment_status, progress,
		time_spent_seconds, completed_at, updated_at), ',' ORDER BY id), '')) FROM S.enrollments),
	'preferences', (SELECT count(*) FROM S.preferences),
	(SELECT md5(coalesce(string_agg(concat_ws('|', id, user_id, category, key, value::text, updated_at), ',' ORDER BY id), '')) FROM S.preferences),
	'sessions', (SELECT count(*) FROM S.sessions),
	'events written', (SELECT last_value FROM S.outbox_id_seq),
	'audit', (SELECT count(*) FROM S.audit_log))`)
	var d string
	if err := db.QueryRow(ctx, q).Scan(&d); err != nil {
		t.Fatalf("cannot compute the state digest: %v", err)
	}
	return d
}

// fuzzRequest is one request; raw, when set, is sent as bytes on a new connection.
type fuzzRequest struct {
	family  string
	method  string
	path    string
	token   string
	body    []byte
	headers map[string]string
	raw     []byte
}

// serverReadBuffer is the HTTP server's ReadBufferSize (http/server.go): a request
// line and headers longer than it are refused with 431 before they are all read.
const serverReadBuffer = 16 << 10

// headSize is about how many bytes the request line and headers take.
func (r fuzzRequest) headSize() int {
	n := len(r.method) + len(r.path) + len(r.token)
	for k, v := range r.headers {
		n += len(k) + len(v)
	}
	return n
}

func (r fuzzRequest) String() string {
	if r.raw != nil {
		return fmt.Sprintf("[raw] %.120q", r.raw)
	}
	tok := r.token
	if len(tok) > 24 {
		tok = tok[:24] + "…"
	}
	return fmt.Sprintf("[%s] %s %.150s token=%q headers=%v body=%.150q", r.family, r.method, r.path, tok, r.headers, r.body)
}

type fuzzer struct {
	users     []*wuser
	admin     string
	badTokens []string
}

// badTokens are tokens the service must refuse (401).
func badTokens(t *testing.T, u *wuser) []string {
	now := time.Now()
	valid := claims{AuthID: newUUID(), Email: "x@example.com", Role: "admin", RegisteredClaims: jwt.RegisteredClaims{Subject: u.id}}
	mk := func(f func(c *claims)) string {
		c := valid
		f(&c)
		return sign(t, c)
	}
	other, err := jwt.NewWithClaims(jwt.SigningMethodHS256, valid).SignedString([]byte("another-secret-of-more-than-32-bytes!!"))
	if err != nil {
		t.Fatal(err)
	}
	hs512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, valid).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, valid).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	good := sign(t, valid)
	return []string{
		"", "garbage", "a.b.c", "..", strings.Repeat("A", 9000), other, hs512, none,
		good[:len(good)-3], good + "x", strings.ToUpper(good),
		mk(func(c *claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour)) }),
		mk(func(c *claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) }),
		mk(func(c *claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) }),
		mk(func(c *claims) { c.Subject = "" }),
		mk(func(c *claims) { c.AuthID = "" }),
		mk(func(c *claims) { c.Email = "" }),
		mk(func(c *claims) { c.Role = "" }),
	}
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// Write routes and valid bodies for them; validBody is what the route would accept.
type route struct {
	method, path string // path with {id}, {course}, {category}, {key}
	valid        func(f *fuzzer, rng *rand.Rand) string
	invalid      []string
}

var commonInvalid = []string{
	`{`, `}`, `[`, `null`, `[]`, `0`, `"x"`, `{"a":1}`, `{"bio":"x"} {"bio":"y"}`, `{"bio":"x",}`, `{'bio':'x'}`,
	`{"bio":"x"`, `{"bio":}`, "\xff\xfe{}", `{"bio":"\ud800"`, `{"__proto__":{"admin":true}}`, `{"constructor":1}`,
	strings.Repeat("[", 100000), strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000),
}

var routes = []route{
	{http.MethodPut, "/api/v1/users/{id}", func(f *fuzzer, rng *rand.Rand) string {
		return fmt.Sprintf(`{"bio":"fuzz %d"}`, rng.IntN(1000))
	}, []string{
		`{}`, `{"bio":1}`, `{"bio":["x"]}`, `{"firstName":""}`, `{"firstName":null}`, `{"firstName":"` + strings.Repeat("x", 101) + `"}`,
		`{"username":"a b"}`, `{"username":"ab"}`, `{"email":"new@example.com"}`, `{"role":"admin"}`, `{"status":"active"}`,
		`{"version":99}`, `{"id":"` + "00000000-0000-4000-8000-000000000000" + `"}`, `{"timezone":"Mars/Olympus"}`,
		`{"language":"not a language"}`, `{"phone":"12"}`, `{"avatarUrl":"javascript:alert(1)"}`, `{"avatarUrl":"/relative"}`,
		`{"bio":"` + strings.Repeat("b", 1001) + `"}`, `{"displayName":""}`, `{"lastName":123}`, `{"bio":"x","extra":1}`,
	}},
	{http.MethodPost, "/api/v1/users/{id}/enrollments", func(f *fuzzer, rng *rand.Rand) string {
		return `{"courseId":"` + newUUID() + `"}`
	}, []string{
		`{}`, `{"courseId":""}`, `{"courseId":"not-a-uuid"}`, `{"courseId":123}`, `{"courseId":null}`,
		`{"courseId":"` + newUUID() + `","progress":50}`, `{"courseId":["` + newUUID() + `"]}`,
		`{"courseId":"` + strings.Repeat("0", 36) + `"}`,
	}},
	{http.MethodPut, "/api/v1/users/{id}/enrollments/{course}/progress", func(f *fuzzer, rng *rand.Rand) string {
		return fmt.Sprintf(`{"progress":%d}`, rng.IntN(99))
	}, []string{
		`{}`, `{"progress":101}`, `{"progress":-1}`, `{"progress":"50"}`, `{"progress":null}`, `{"progress":1e400}`,
		`{"progress":NaN}`, `{"progress":Infinity}`, `{"progress":50,"timeSpentSeconds":-5}`, `{"progress":50,"timeSpentSeconds":86401}`,
		`{"progress":50,"timeSpentSeconds":1.5}`, `{"progress":50,"enrollmentStatus":"completed"}`, `{"progress":true}`,
	}},
	{http.MethodPut, "/api/v1/users/{id}/enrollments/{course}", func(f *fuzzer, rng *rand.Rand) string {
		return `{"progress":33}`
	}, []string{
		`{"enrollmentStatus":"bogus"}`, `{"enrollmentStatus":5}`, `{"progress":200}`, `{"courseId":"x"}`, `{"enrollmentStatus":null,"progress":-3}`,
	}},
	{http.MethodPut, "/api/v1/users/{id}/preferences/{category}", func(f *fuzzer, rng *rand.Rand) string {
		return `{"preferences":[{"key":"theme","value":"fuzz"}]}`
	}, []string{
		`{}`, `{"preferences":null}`, `{"preferences":[]}`, `{"preferences":{}}`, `{"preferences":[{"key":"theme"}]}`,
		`{"preferences":[{"key":"Bad Key","value":1}]}`, `{"preferences":[{"key":"","value":1}]}`,
		`{"preferences":[{"key":"` + strings.Repeat("k", 65) + `","value":1}]}`, `{"preferences":[{"key":"theme","value":"` + strings.Repeat("v", 5000) + `"}]}`,
		`{"preferences":[{"key":"theme","value":1,"extra":2}]}`, `{"preferences":[{"category":"bogus","key":"theme","value":1}]}`,
		`{"preferences":[{"key":"theme","value":1},{"key":"BAD","value":2}]}`, `{"preferences":[1,2,3]}`,
	}},
	{http.MethodPut, "/api/v1/users/{id}/preferences", func(f *fuzzer, rng *rand.Rand) string {
		return `{"preferences":[{"category":"ui","key":"theme","value":"fuzz"}]}`
	}, []string{
		`{"preferences":[{"key":"theme","value":1}]}`, `{"preferences":[{"category":"nope","key":"theme","value":1}]}`, `{"preferences":"x"}`,
	}},
	{http.MethodPut, "/api/v1/users/{id}/role", func(f *fuzzer, rng *rand.Rand) string { return `{"role":"instructor"}` },
		[]string{`{}`, `{"role":"god"}`, `{"role":null}`, `{"role":1}`, `{"role":"ADMIN"}`}},
	{http.MethodPut, "/api/v1/users/{id}/status", func(f *fuzzer, rng *rand.Rand) string { return `{"status":"suspended"}` },
		[]string{`{}`, `{"status":"bogus"}`, `{"status":""}`, `{"status":["active"]}`}},
	{http.MethodPut, "/api/v1/users/bulk/role", nil, []string{
		`{"userIds":[],"role":"admin"}`, `{"userIds":["x"]}`, `{"role":"admin"}`, `{"userIds":"x","role":"admin"}`,
		`{"userIds":[` + strings.TrimSuffix(strings.Repeat(`"00000000-0000-4000-8000-000000000000",`, 1001), ",") + `],"role":"student"}`,
		`{"userIds":["00000000-0000-4000-8000-000000000000"],"role":"pope"}`,
	}},
	{http.MethodPost, "/api/v1/users", nil, []string{
		`{}`, `{"authId":"x","email":"a@b.co","firstName":"A","lastName":"B"}`, `{"authId":"` + newUUID() + `","email":"nope","firstName":"A","lastName":"B"}`,
		`{"authId":"` + newUUID() + `","email":"a@b.co","firstName":"","lastName":"B"}`, `{"authId":"` + newUUID() + `","email":"a@b.co","lastName":"B"}`,
		`{"authId":"` + newUUID() + `","email":"a@b.co","firstName":"A","lastName":"B","role":"king"}`,
		`{"authId":"` + newUUID() + `","email":"a@b.co","firstName":"A","lastName":"B","password":"x"}`,
	}},
}

// Read and delete routes, for paths, queries and tokens.
var readPaths = []string{
	"/api/v1/users/{id}", "/api/v1/users/{id}/stats", "/api/v1/users/{id}/enrollments", "/api/v1/users/{id}/enrollments/stats",
	"/api/v1/users/{id}/preferences", "/api/v1/users/{id}/preferences/{category}", "/api/v1/users/{id}/sessions",
	"/api/v1/users/{id}/audit", "/api/v1/users", "/health", "/health/detailed", "/metrics", "/docs/openapi.json",
}

var badIDs = []string{
	"not-a-uuid", "", "..", "../../../etc/passwd", "%00", "%2e%2e%2f", strings.Repeat("a", 3000), "ME", "me%20",
	"00000000-0000-0000-0000-00000000000g", "{id}", "%7Bid%7D", "мe", "me;drop", "1", "-1",
}

var badQueries = []string{
	"page=-1", "page=0", "page=abc", "page=99999999999999999999", "limit=0", "limit=-5", "limit=1000000", "limit=1.5",
	"sortBy=password", "sortBy=;DROP", "sortOrder=sideways", "status=bogus", "role=god", "format=xml",
	"search=" + strings.Repeat("%25", 300), "search=%00", "search=%27%20OR%201=1--", "search=\\", "search=%5F%25",
	"page=1&page=2", "limit=%", "a=" + strings.Repeat("b", 10000),
}

var weirdHeaders = []map[string]string{
	{"Content-Type": "text/plain"}, {"Content-Type": "application/xml"}, {"Content-Type": "multipart/form-data; boundary=x"},
	{"Content-Type": "application/json; charset=utf-16"}, {"If-Match": "garbage"}, {"If-Match": `"-1"`}, {"If-Match": `W/"x"`},
	{"Idempotency-Key": strings.Repeat("k", 300)}, {"Idempotency-Key": "é"}, {"X-Correlation-ID": strings.Repeat("c", 5000)},
	{"Accept": "application/xml"}, {"Accept-Encoding": "gzip, br, zstd"}, {"Content-Encoding": "gzip"},
	{"X-Forwarded-For": "not-an-ip"}, {"Origin": "http://evil.example"}, {},
}

var weirdMethods = []string{"PATCH", "OPTIONS", "HEAD", "TRACE", "PROPFIND", "CONNECT", "DELETE", "GET", "POST", "PUT"}

func (f *fuzzer) fill(rng *rand.Rand, path string, owner, other *wuser, idChoice string) string {
	r := strings.NewReplacer(
		"{id}", idChoice,
		"{course}", pick(rng, append([]string{newUUID(), "not-a-course", ""}, owner.courses...)),
		"{category}", pick(rng, []string{"ui", "notifications", "learning", "privacy", "bogus", "UI", "ui%00"}),
		"{key}", pick(rng, []string{"theme", "nope_key", "Bad-Key", strings.Repeat("k", 70)}),
	)
	_ = other
	return r.Replace(path)
}

// next builds one request of a random family; each family is refused by design.
func (f *fuzzer) next(rng *rand.Rand) fuzzRequest {
	a := pick(rng, f.users)
	b := pick(rng, f.users)
	for b == a {
		b = pick(rng, f.users)
	}
	rt := pick(rng, routes)
	hdr := map[string]string{}
	for k, v := range pick(rng, weirdHeaders) {
		hdr[k] = v
	}
	switch n := rng.IntN(100); {
	case n < 20: // a bad token on anything, even a valid body
		p := f.fill(rng, pick(rng, append(readPaths, rt.path)), a, b, pick(rng, []string{"me", a.id, b.id}))
		body := []byte(pick(rng, append(rt.invalid, validOr(rt, f, rng))))
		tok := pick(rng, f.badTokens)
		if tok == "" && !strings.HasPrefix(p, "/api/") {
			tok = "garbage" // the public routes answer without a token
		}
		return fuzzRequest{family: "bad-token", method: pick(rng, weirdMethods), path: p, token: tok, body: body, headers: hdr}
	case n < 50: // an invalid body, by the owner or an admin
		tok, id := a.token, pick(rng, []string{"me", a.id})
		if rt.valid == nil || rng.IntN(4) == 0 {
			tok, id = f.admin, a.id
		}
		body := []byte(pick(rng, append(rt.invalid, commonInvalid...)))
		if rng.IntN(5) == 0 {
			body = mutate(rng, body)
		}
		return fuzzRequest{family: "invalid-body", method: rt.method, path: f.fill(rng, rt.path, a, b, id), token: tok, body: body, headers: hdr}
	case n < 60: // someone else's resource, valid body: 403
		if rt.valid == nil {
			rt = routes[0]
		}
		path := f.fill(rng, rt.path, b, a, b.id)
		if rng.IntN(4) == 0 {
			return fuzzRequest{family: "foreign", method: http.MethodDelete, path: f.fill(rng,
				pick(rng, []string{"/api/v1/users/{id}", "/api/v1/users/{id}/preferences/ui", "/api/v1/users/{id}/preferences/ui/theme",
					"/api/v1/users/{id}/enrollments/" + pick(rng, b.courses)}), b, a, b.id), token: a.token}
		}
		return fuzzRequest{family: "foreign", method: rt.method, path: path, token: a.token, body: []byte(rt.valid(f, rng))}
	case n < 68: // a valid body in the wrong media type, or with a stale If-Match
		if rt.valid == nil || rt.method == http.MethodPut && strings.Contains(rt.path, "/role") || strings.Contains(rt.path, "/status") {
			rt = routes[0]
		}
		req := fuzzRequest{family: "media-or-version", method: rt.method, path: f.fill(rng, rt.path, a, b, "me"), token: a.token,
			body: []byte(rt.valid(f, rng)), headers: map[string]string{}}
		switch rng.IntN(4) {
		case 0:
			req.headers["Content-Type"] = pick(rng, []string{"text/plain", "application/x-www-form-urlencoded", "application/xml", "application/jsonx", "json"})
		case 1:
			req.headers["Content-Type"] = "" // none at all
		default:
			if rt.method != http.MethodPut {
				req.headers["Content-Type"] = "text/plain"
			} else {
				req.headers["If-Match"] = pick(rng, []string{`"999999"`, `"0"`, `W/"999999"`, "garbage", `"abc"`})
			}
		}
		return req
	case n < 78: // a malformed path or an unknown resource
		m := pick(rng, []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete})
		p := pick(rng, append(readPaths, rt.path, "/api/v1/users/{id}/enrollments/{course}", "/api/v1/users/{id}/preferences/{category}/{key}"))
		path := f.fill(rng, p, a, b, pick(rng, badIDs))
		if m == http.MethodDelete && !strings.Contains(path, "/api/v1/users/") {
			m = http.MethodGet
		}
		// A valid id with DELETE must not hit something that exists.
		if m == http.MethodDelete {
			path = "/api/v1/users/" + pick(rng, badIDs) + "/enrollments/" + newUUID()
		}
		return fuzzRequest{family: "bad-path", method: m, path: path, token: pick(rng, []string{a.token, f.admin}),
			body: []byte(pick(rng, commonInvalid)), headers: hdr}
	case n < 88: // garbage query strings on reads
		p := f.fill(rng, pick(rng, readPaths), a, b, pick(rng, []string{"me", a.id}))
		q := pick(rng, badQueries)
		if rng.IntN(2) == 0 {
			q += "&" + pick(rng, badQueries)
		}
		return fuzzRequest{family: "bad-query", method: http.MethodGet, path: p + "?" + q, token: pick(rng, []string{a.token, f.admin}), headers: hdr}
	case n < 93: // oversized
		size := pick(rng, []int{1<<20 + 1, 3 << 20})
		body := []byte(`{"bio":"` + strings.Repeat("x", size) + `"}`)
		// With Expect: 100-continue the client waits for the verdict before sending
		// the body, so the 413 is read instead of a reset mid-upload.
		return fuzzRequest{family: "oversized", method: rt.method, path: f.fill(rng, rt.path, a, b, "me"), token: a.token, body: body,
			headers: map[string]string{"Expect": "100-continue"}}
	default:
		return fuzzRequest{family: "raw", raw: rawGarbage(rng, a.token)}
	}
}

func validOr(rt route, f *fuzzer, rng *rand.Rand) string {
	if rt.valid == nil {
		return "{}"
	}
	return rt.valid(f, rng)
}

// mutate breaks a body further: truncates it, flips or inserts bytes. A body that
// is still valid JSON afterwards is replaced by one that is not.
func mutate(rng *rand.Rand, b []byte) []byte {
	out := append([]byte(nil), b...)
	switch rng.IntN(3) {
	case 0:
		if len(out) > 1 {
			out = out[:rng.IntN(len(out)-1)+1]
		}
	case 1:
		if len(out) > 0 {
			out[rng.IntN(len(out))] = byte(rng.IntN(256))
		}
	default:
		i := rng.IntN(len(out) + 1)
		out = append(out[:i], append([]byte{byte(rng.IntN(256))}, out[i:]...)...)
	}
	if json.Valid(out) {
		return []byte("{" + string(out))
	}
	return out
}

// rawGarbage is a request that is not quite HTTP.
func rawGarbage(rng *rand.Rand, token string) []byte {
	options := []string{
		"GARBAGE\r\n\r\n",
		"GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Length: -1\r\n\r\n",
		"PUT /api/v1/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"bio\":",
		"PUT /api/v1/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
		"GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("h", 70000) + "\r\n\r\n",
		"GET /api/v1/users/me HTTP/9.9\r\nHost: x\r\n\r\n",
		"GET /api/v1/users/me\r\n\r\n",
		"GET  HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
		"POST /api/v1/users/me/enrollments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello on the plain port
	}
	if rng.IntN(4) == 0 {
		b := make([]byte, 1+rng.IntN(512))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	return []byte(pick(rng, options))
}

// sendRaw writes raw bytes on a new connection and reads the status of the answer,
// if any. A closed connection without an answer returns an error.
func sendRaw(base string, raw []byte) (int, error) {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 2*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	// A request that declares more body than it sends may rightly be waited on.
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return 0, fmt.Errorf("not an HTTP status line: %q", line)
	}
	return strconv.Atoi(f[1])
}
