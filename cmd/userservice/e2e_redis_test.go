package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
)

// snapshotVersion reads the user's snapshot from Redis: its bytes and the
// version it holds (byte 0 is the format, bytes 1–8 the big-endian version).
func (s *stack) snapshotVersion(tb testing.TB, userID string) ([]byte, int64) {
	tb.Helper()
	rdb := s.redis(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := rdb.Do(ctx, rdb.B().Get().Key(s.prefix+"snap:"+userID).Build()).AsBytes()
	if err != nil || len(b) < 9 {
		return nil, 0
	}
	return b, int64(binary.BigEndian.Uint64(b[1:9]))
}

// waitSnapshot waits until Redis holds the user's snapshot of the version.
func (s *stack) waitSnapshot(tb testing.TB, userID string, version int64) []byte {
	tb.Helper()
	var b []byte
	eventually(tb, fmt.Sprintf("snapshot version %d in Redis", version), func() error {
		var v int64
		if b, v = s.snapshotVersion(tb, userID); v != version {
			return fmt.Errorf("Redis holds version %d", v)
		}
		return nil
	})
	return b
}

// waitPassivated waits until the service holds no more actors than before its
// first request (user_service_actors_active back to its baseline).
func (svc *service) waitPassivated(tb testing.TB, baseline float64) {
	tb.Helper()
	eventually(tb, "every actor passivated", func() error {
		if n := svc.metric(tb, "user_service_actors_active"); n > baseline {
			return fmt.Errorf("%v actors active, baseline %v", n, baseline)
		}
		return nil
	})
}

// TestSnapshots checks activation from a Redis snapshot and that Redis never
// serves a state older than an acknowledged write. It is not parallel: the
// metrics it reads are the process's, so no other service may run meanwhile.
func TestSnapshots(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, map[string]string{"ACTOR_IDLE_TIMEOUT": "300ms"})
	baseline := svc.metric(t, "user_service_actors_active")
	u := svc.createUser(t, st.adminToken(t), newUserBody(t))
	tok := st.tokenFor(t, u)
	svc.do(t, "PUT", "/api/v1/users/me", tok, map[string]any{"bio": "first"}).data(t, http.StatusOK, nil)
	old := st.waitSnapshot(t, u.ID, 2)

	// activate waits until the user's actor has passivated, reads the user (one
	// activation) and returns where the state came from. A snapshot read that
	// fails (Redis slower than its 200 ms command timeout on a loaded machine)
	// says nothing about staleness: then it tries again, up to three times.
	type loads struct{ redis, postgres, stale float64 }
	activate := func(t *testing.T, before func()) (loads, apiUser) {
		t.Helper()
		read := func() (loads, float64) {
			return loads{
				redis:    svc.metric(t, `user_service_snapshot_loads_total{source="redis"}`),
				postgres: svc.metric(t, `user_service_snapshot_loads_total{source="postgres"}`),
				stale:    svc.metric(t, `user_service_cache_misses_total{cache="snapshot",reason="stale"}`),
			}, svc.metric(t, `user_service_cache_misses_total{cache="snapshot",reason="error"}`)
		}
		for attempt := 1; ; attempt++ {
			if before != nil {
				before()
			}
			svc.waitPassivated(t, baseline)
			l0, e0 := read()
			var got apiUser
			svc.do(t, "GET", "/api/v1/users/me", tok, nil).data(t, http.StatusOK, &got)
			l1, e1 := read()
			if e1 == e0 || attempt == 3 {
				return loads{l1.redis - l0.redis, l1.postgres - l0.postgres, l1.stale - l0.stale}, got
			}
			t.Logf("attempt %d: the snapshot read failed; trying again", attempt)
		}
	}

	t.Run("an activation after passivation is served from the snapshot", func(t *testing.T) {
		d, got := activate(t, nil)
		if got.Version != 2 || got.Bio == nil || *got.Bio != "first" {
			t.Errorf("after activation: version %d bio %v", got.Version, strPtr(got.Bio))
		}
		if d != (loads{redis: 1}) {
			t.Errorf("activations %+v, want one from Redis", d)
		}
	})

	t.Run("an older snapshot put back after a write is not served", func(t *testing.T) {
		svc.do(t, "PUT", "/api/v1/users/me", tok, map[string]any{"bio": "newest"}).data(t, http.StatusOK, nil)
		st.waitSnapshot(t, u.ID, 3)
		// As if the process had died between the commit and the cache update.
		putOld := func() {
			rdb := st.redis(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			key := st.prefix + "snap:" + u.ID
			if err := rdb.Do(ctx, rdb.B().Set().Key(key).Value(string(old)).PxMilliseconds(600_000).Build()).Error(); err != nil {
				t.Fatalf("cannot put the old snapshot back: %v", err)
			}
			if _, v := st.snapshotVersion(t, u.ID); v != 2 {
				t.Fatalf("Redis holds version %d, want the old 2", v)
			}
		}
		d, got := activate(t, putOld)
		if got.Version != 3 || got.Bio == nil || *got.Bio != "newest" {
			t.Errorf("after activation over an old snapshot: version %d bio %v, want 3 newest", got.Version, strPtr(got.Bio))
		}
		if d != (loads{postgres: 1, stale: 1}) {
			t.Errorf("activations %+v, want one from PostgreSQL after a stale snapshot", d)
		}
		st.waitSnapshot(t, u.ID, 3) // refreshed after the load
	})
}

// TestRateLimitAcrossInstances runs two instances sharing Redis and one key
// prefix with RATE_LIMIT_MAX=20: 40 requests of one user split across both get
// exactly 20 answers, and 20 429s with Retry-After and X-RateLimit-* headers.
func TestRateLimitAcrossInstances(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	env := map[string]string{"RATE_LIMIT_MAX": "20", "RATE_LIMIT_WINDOW": "60000"}
	a := st.start(t, env)
	b := st.start(t, env)
	admin := st.adminToken(t)

	// The limiter fails open when Redis answers slower than its command timeout
	// (200 ms), which a loaded test machine can cause: such a burst is repeated
	// with a fresh user; the limits are checked on a burst the limiter answered.
	const n = 40
	var (
		tok string
		rs  []*response
	)
	for attempt := 1; ; attempt++ {
		u := a.createUser(t, admin, newUserBody(t))
		tok = st.tokenFor(t, u)
		rs = make([]*response, n)
		errs := make([]error, n)
		parallel(n, n, func(i int) {
			svc := a
			if i%2 == 1 {
				svc = b
			}
			rs[i], errs[i] = svc.send("GET", "/api/v1/users/me", tok, nil)
		})
		unlimited := 0
		for i, r := range rs {
			if errs[i] != nil {
				t.Fatalf("request %d: %v", i, errs[i])
			}
			if r.Header.Get("X-RateLimit-Limit") == "" {
				unlimited++
			}
		}
		if unlimited == 0 {
			break
		}
		if attempt == 3 {
			t.Fatalf("the limiter let %d of %d requests through unchecked in each of %d bursts", unlimited, n, attempt)
		}
		t.Logf("burst %d: the limiter failed open for %d of %d requests; trying again", attempt, unlimited, n)
		time.Sleep(time.Second)
	}
	ok, limited := 0, 0
	remaining := map[string]bool{}
	for i, r := range rs {
		if r.Header.Get("X-RateLimit-Limit") != "20" || r.Header.Get("X-RateLimit-Remaining") == "" {
			t.Errorf("%s: X-RateLimit-Limit %q, X-RateLimit-Remaining %q", r, r.Header.Get("X-RateLimit-Limit"), r.Header.Get("X-RateLimit-Remaining"))
		}
		if reset, err := strconv.Atoi(r.Header.Get("X-RateLimit-Reset")); err != nil || reset < 0 || reset > 60 {
			t.Errorf("%s: X-RateLimit-Reset %q", r, r.Header.Get("X-RateLimit-Reset"))
		}
		switch r.Status {
		case http.StatusOK:
			ok++
			remaining[r.Header.Get("X-RateLimit-Remaining")] = true
		case http.StatusTooManyRequests:
			limited++
			e := r.fail(t, http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED")
			retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || retry < 1 || retry > 60 {
				t.Errorf("%s: Retry-After %q", r, r.Header.Get("Retry-After"))
			}
			if e.RetryAfter == nil || *e.RetryAfter != int64(retry) {
				t.Errorf("%s: retryAfter in the body differs from Retry-After %d", r, retry)
			}
			if r.Header.Get("X-RateLimit-Remaining") != "0" {
				t.Errorf("%s: X-RateLimit-Remaining %q on a 429", r, r.Header.Get("X-RateLimit-Remaining"))
			}
		default:
			t.Errorf("request %d: %s", i, r)
		}
	}
	if ok != 20 || limited != 20 {
		t.Errorf("%d answered, %d limited; want 20 and 20", ok, limited)
	}
	if len(remaining) != 20 {
		t.Errorf("X-RateLimit-Remaining of the 2xx answers: %v, want 20 distinct values", remaining)
	}

	// The limit is per user, and /health*, /metrics are not limited.
	for _, svc := range []*service{a, b} {
		svc.do(t, "GET", "/api/v1/users/me", tok, nil).fail(t, http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED")
		var users []apiUser
		svc.do(t, "GET", "/api/v1/users?limit=5", admin, nil).data(t, http.StatusOK, &users)
		for _, path := range []string{"/health", "/health/ready", "/health/live", "/metrics"} {
			if r := svc.do(t, "GET", path, tok, nil); r.Status != http.StatusOK {
				t.Errorf("%s", r)
			}
		}
	}
	other := st.token(t, userservice.NewID(), userservice.NewID(), "o@example.com", userservice.RoleStudent)
	a.do(t, "GET", "/api/v1/users/me", other, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
}

// searchCacheKeys lists the stack's admin search entries in Redis.
func (s *stack) searchCacheKeys(tb testing.TB) []string {
	tb.Helper()
	rdb := s.redis(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := rdb.Do(ctx, rdb.B().Keys().Pattern(s.prefix+"search:*").Build()).AsStrSlice()
	if err != nil {
		tb.Fatalf("cannot list search cache keys: %v", err)
	}
	return keys
}

// TestAdminSearchCache checks the admin search's Redis cache: an entry is stored
// and served (by every instance: a doctored entry shows through), and it is never
// served after a commit, also one made by another instance, and also a
// lastActiveAt written behind. The cache's generation is PostgreSQL's snapshot,
// which every commit on the shared test server moves, so the checks that an entry
// is served are repeated until one ran without a commit in between.
func TestAdminSearchCache(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	a, b := st.start(t, nil), st.start(t, nil)
	admin := st.adminToken(t) // no profile: the admin's requests change no row
	marker := "sc" + randomHex(t, 4)
	body := newUserBody(t)
	body["lastName"] = "Cache" + marker
	u := a.createUser(t, admin, body)
	q := "search=" + marker

	searchOne := func(svc *service) (apiUser, *userservice.Pagination) {
		t.Helper()
		var users []apiUser
		e := svc.do(t, "GET", "/api/v1/users?"+q, admin, nil).data(t, http.StatusOK, &users)
		if len(users) != 1 || users[0].ID != u.ID {
			t.Fatalf("search %s: %+v", q, users)
		}
		return users[0], e.Pagination
	}
	// doctor replaces every stored entry by one that says total 999, so that an
	// answer from the cache can be told from one of PostgreSQL.
	doctor := func() {
		t.Helper()
		time.Sleep(100 * time.Millisecond) // the entry is written in the background
		rdb := st.redis(t)
		for _, k := range st.searchCacheKeys(t) {
			v, err := rdb.Do(context.Background(), rdb.B().Get().Key(k).Build()).AsBytes()
			if err != nil || len(v) < 2 {
				continue // expired meanwhile
			}
			// version byte, pagination JSON, newline, users JSON
			page, users, ok := bytes.Cut(v[1:], []byte("\n"))
			var p map[string]any
			if !ok || json.Unmarshal(page, &p) != nil || !json.Valid(users) {
				t.Fatalf("entry %s: %q", k, v)
			}
			p["total"] = 999
			doctored, _ := json.Marshal(p)
			entry := string(v[:1]) + string(doctored) + "\n" + string(users)
			if err := rdb.Do(context.Background(), rdb.B().Set().Key(k).Value(entry).Keepttl().Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// servedFromCache stores an entry through svc, doctors it and reports whether
	// by then each of readers answered the doctored entry, trying again while
	// commits elsewhere move the generation.
	servedFromCache := func(svc *service, readers ...*service) {
		t.Helper()
		for attempt := 0; attempt < 100; attempt++ {
			searchOne(svc)
			doctor()
			served := true
			for _, r := range readers {
				if _, p := searchOne(r); p.Total != 999 {
					served = false
					break
				}
			}
			if served {
				return
			}
		}
		t.Fatal("no search was answered from the cache in 100 attempts")
	}

	// Storing an answer is best effort and happens after the answer (skipped while
	// the instance counts Redis as down, e.g. after one slow call on a loaded
	// machine): search again until an entry is there, for up to 5 s.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, p := searchOne(a); p.Total != 1 {
			t.Fatalf("first search: total %d", p.Total)
		}
		time.Sleep(50 * time.Millisecond)
		if len(st.searchCacheKeys(t)) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no search entry %ssearch:* in Redis", st.prefix)
		}
	}
	servedFromCache(a, a, b) // one entry, served by both instances

	// A write through b: no instance serves an entry read before it.
	b.do(t, "PUT", "/api/v1/users/"+u.ID, admin, map[string]any{"bio": "after " + marker}).data(t, http.StatusOK, nil)
	for name, svc := range map[string]*service{"a": a, "b": b} {
		if got, p := searchOne(svc); p.Total != 1 || got.Bio == nil || *got.Bio != "after "+marker {
			t.Fatalf("instance %s after a write: total %d, bio %v", name, p.Total, got.Bio)
		}
	}

	// lastActiveAt is written behind (once a second): the search shows it once it
	// is in PostgreSQL, however long the cache's TTL.
	servedFromCache(a, a)
	b.do(t, "GET", "/api/v1/users/me", st.tokenFor(t, u), nil).data(t, http.StatusOK, nil)
	eventually(t, "lastActiveAt in the search", func() error {
		got, p := searchOne(a)
		if p.Total != 1 || got.LastActiveAt == nil {
			return fmt.Errorf("total %d, lastActiveAt %v", p.Total, got.LastActiveAt)
		}
		return nil
	})
}

// TestRateLimitSkipSuccessful: with RATE_LIMIT_SKIP_SUCCESSFUL=true only failed
// requests use up the limit (the spec's skipSuccessfulRequests).
func TestRateLimitSkipSuccessful(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	svc := st.start(t, map[string]string{"RATE_LIMIT_MAX": "3", "RATE_LIMIT_WINDOW": "60000", "RATE_LIMIT_SKIP_SUCCESSFUL": "true"})
	admin := st.adminToken(t)
	u := svc.createUser(t, admin, newUserBody(t))
	tok := st.tokenFor(t, u)
	// The limiter fails open when Redis is slower than its command timeout, which
	// a loaded machine can cause; an answer without X-RateLimit-Limit says so.
	failedOpen := 0
	for range 8 {
		r := svc.do(t, "GET", "/api/v1/users/me", tok, nil)
		r.data(t, http.StatusOK, nil)
		if r.Header.Get("X-RateLimit-Limit") == "" {
			failedOpen++
		}
	}
	other := "/api/v1/users/" + userservice.NewID()
	failures := 0
	for range 10 { // 403: a student may not read another user
		r := svc.do(t, "GET", other, tok, nil)
		if r.Status == http.StatusTooManyRequests {
			if r.Header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After: %s", r)
			}
			break
		}
		r.fail(t, http.StatusForbidden, "FORBIDDEN")
		if r.Header.Get("X-RateLimit-Limit") == "" {
			failedOpen++
		}
		failures++
	}
	if failures != 3 && !(failedOpen > 0 && failures > 3 && failures < 10) {
		t.Fatalf("limited after %d failed requests (after 8 successes, RATE_LIMIT_MAX=3), want 3", failures)
	}
}
