package http

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/lms-platform/userservice"
)

func TestAuthenticationRefusals(t *testing.T) {
	h := newHarness(t)
	now := time.Now()
	valid := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": h.alice.id, "authId": h.alice.authID, "email": h.alice.email, "role": "student", "exp": now.Add(time.Hour).Unix()}
	}
	without := func(k string) string {
		c := valid()
		delete(c, k)
		return signToken(t, c)
	}
	with := func(k string, v any) string {
		c := valid()
		c[k] = v
		return signToken(t, c)
	}
	signed := func(m jwt.SigningMethod, key any) string {
		s, err := jwt.NewWithClaims(m, valid()).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := signToken(t, valid())
	parts := strings.Split(good, ".")
	tests := []struct {
		name   string
		header string // the whole Authorization header; "" sends none
	}{
		{"missing header", ""},
		{"not bearer", "Basic dXNlcjpwYXNz"},
		{"empty bearer", "Bearer "},
		{"malformed", "Bearer not.a.jwt"},
		{"garbage", "Bearer " + strings.Repeat("x", 40)},
		{"expired", "Bearer " + with("exp", now.Add(-time.Second).Unix())},
		{"expired within leeway is still expired", "Bearer " + with("exp", now.Add(-10*time.Second).Unix())},
		{"bad signature", "Bearer " + parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))},
		{"wrong secret", "Bearer " + signedWithSecret(t, valid(), []byte("another-secret-another-secret-0123"))},
		{"alg none", "Bearer " + signed(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)},
		{"alg HS512", "Bearer " + signed(jwt.SigningMethodHS512, testSecret)},
		{"alg HS384", "Bearer " + signed(jwt.SigningMethodHS384, testSecret)},
		{"missing sub", "Bearer " + without("sub")},
		{"missing authId", "Bearer " + without("authId")},
		{"missing email", "Bearer " + without("email")},
		{"missing role", "Bearer " + without("role")},
		{"missing exp", "Bearer " + without("exp")},
		{"unknown role", "Bearer " + with("role", "superuser")},
		{"exp not a number", "Bearer " + with("exp", "tomorrow")},
		{"iat in the future", "Bearer " + with("iat", now.Add(time.Minute).Unix())},
		{"nbf in the future", "Bearer " + with("nbf", now.Add(time.Minute).Unix())},
		{"tampered payload", "Bearer " + parts[0] + "." + jwtSegment(`{"sub":"x","authId":"y","email":"e","role":"admin","exp":9999999999}`) + "." + parts[2]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.header != "" {
				headers = []string{"Authorization", tc.header}
			}
			r := h.do(req{method: "GET", path: "/api/v1/users/me", headers: headers})
			r.expect(401, userservice.ECodeUnauthorized)
			if r.get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	t.Run("iat and nbf within the 30s leeway are accepted", func(t *testing.T) {
		c := valid()
		c["iat"], c["nbf"] = now.Add(20*time.Second).Unix(), now.Add(20*time.Second).Unix()
		h.get("/api/v1/users/me", signToken(t, c)).expect(200, "")
	})
	t.Run("lower-case bearer scheme is accepted", func(t *testing.T) {
		h.do(req{method: "GET", path: "/api/v1/users/me", headers: []string{"Authorization", "bearer " + good}}).expect(200, "")
	})
}

func signedWithSecret(t *testing.T, c jwt.MapClaims, secret []byte) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jwtSegment(s string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func TestTokenCacheServesVerifiedTokensUntilExpiry(t *testing.T) {
	a := newAuthenticator(jwtKeys{algorithms: []string{AlgHS256}, secret: testSecret}, 128, &memDirectory{users: newMemUsers(newMemIdem())})
	now := time.Now()
	a.now = func() time.Time { return now }
	tok := signToken(t, jwt.MapClaims{"sub": "s", "authId": "a", "email": "e@x.io", "role": "student", "exp": now.Add(time.Minute).Unix()})
	c1, err := a.verify(context.Background(), []byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := a.verify(context.Background(), []byte(tok))
	if err != nil || c1 != c2 {
		t.Fatalf("second verify did not come from the cache: %v %p %p", err, c1, c2)
	}
	now = now.Add(2 * time.Minute)
	if _, err := a.verify(context.Background(), []byte(tok)); err != errExpiredToken {
		t.Fatalf("expired cached token: err = %v, want errExpiredToken", err)
	}
}

func TestTokenCacheIsBounded(t *testing.T) {
	const size = cacheShards * 2
	c := newTokenCache(size)
	exp := time.Now().Add(time.Hour)
	for i := range 10000 {
		c.put(sprintf("token-%d", i), &claims{Expires: exp}, time.Now())
	}
	n := 0
	for i := range c.shards {
		if l := len(c.shards[i].m); l > c.perShard {
			t.Fatalf("shard %d holds %d tokens, its bound is %d", i, l, c.perShard)
		}
		n += len(c.shards[i].m)
	}
	if bound := cacheShards * shardCapacity(size); n > bound {
		t.Fatalf("cache holds %d tokens, bound is %d", n, bound)
	}
}

// A working set as large as the cache fits in it: no shard overflows while the
// cache as a whole has room (with an even split, about 300 of 10,000 tokens
// were evicted by others).
func TestTokenCacheHoldsAWorkingSetOfItsSize(t *testing.T) {
	const size = 10000
	for _, extra := range []float64{0, 1} { // then twice as many: at most 1.34 × size stay
		c := newTokenCache(size)
		exp := time.Now().Add(time.Hour)
		n := size + int(extra*size)
		for i := range n {
			c.put(sprintf("eyJhbGciOiJIUzI1NiJ9.token-%d", i), &claims{Expires: exp}, time.Now())
		}
		if extra > 0 {
			held := 0
			for i := range c.shards {
				held += len(c.shards[i].m)
			}
			if limit := size * 134 / 100; held > limit {
				t.Fatalf("%d tokens put: the cache holds %d, more than %d", n, held, limit)
			}
			continue
		}
		missing := 0
		for i := range n {
			if c.get([]byte(sprintf("eyJhbGciOiJIUzI1NiJ9.token-%d", i)), time.Now()) == nil {
				missing++
			}
		}
		// An overflowing shard is a 4-sigma event per shard; allow for one.
		if missing > 5 {
			t.Fatalf("%d of %d tokens were evicted from a cache of size %d", missing, n, size)
		}
	}
}

// A full shard drops its expired tokens before live ones, looking for them at
// most once per sweepEvery; between looks it evicts an arbitrary entry.
func TestTokenCacheSweepsExpiredTokensAtMostOncePerInterval(t *testing.T) {
	c := newTokenCache(1) // every shard holds shardCapacity(1) = 6 tokens
	now := time.Now()
	sh := &c.shards[0]
	var inShard []string // tokens of shard 0
	for i := 0; len(inShard) < 3*c.perShard; i++ {
		if tok := sprintf("t%d", i); c.shard([]byte(tok)) == sh {
			inShard = append(inShard, tok)
		}
	}
	live := &claims{Expires: now.Add(time.Hour)}
	dead := &claims{Expires: now.Add(time.Second)}
	for _, tok := range inShard[:c.perShard-1] {
		c.put(tok, dead, now)
	}
	c.put(inShard[c.perShard-1], live, now) // full: five expiring, one live
	later := now.Add(2 * time.Second)       // the five have expired
	c.put(inShard[c.perShard], live, later) // sweeps: the five go
	if len(sh.m) != 2 || sh.m[inShard[c.perShard-1]] == nil || sh.m[inShard[c.perShard]] == nil {
		t.Fatalf("after the sweep the shard holds %d tokens, want the 2 live ones", len(sh.m))
	}
	// Fill it again with expiring tokens; within sweepEvery of the last look a put
	// evicts one arbitrary entry instead of walking the shard.
	for _, tok := range inShard[c.perShard+1 : 2*c.perShard-1] {
		c.put(tok, dead, later)
	}
	if len(sh.m) != c.perShard {
		t.Fatalf("shard holds %d tokens, want it full (%d)", len(sh.m), c.perShard)
	}
	muchLater := later.Add(2 * time.Second)
	c.put(inShard[2*c.perShard-1], live, muchLater)
	if len(sh.m) != c.perShard {
		t.Fatalf("a put within sweepEvery of the last sweep left %d tokens, want %d (one evicted, none swept)", len(sh.m), c.perShard)
	}
	// Past sweepEvery the expired ones go.
	c.put(inShard[2*c.perShard], live, later.Add(sweepEvery))
	for k, v := range sh.m {
		if v == dead {
			t.Fatalf("token %s expired and was kept past the sweep", k)
		}
	}
	// Putting a token the shard already holds evicts nothing.
	before := len(sh.m)
	for k := range sh.m {
		c.put(k, live, later.Add(sweepEvery))
	}
	if len(sh.m) != before {
		t.Fatalf("re-putting held tokens changed the shard from %d to %d", before, len(sh.m))
	}
}

func TestShardCapacity(t *testing.T) {
	for _, tc := range []struct{ size, want int }{
		{1, 6},         // share 1: 1 + 4 + 1
		{10000, 208},   // share 157: 157 + 50 + 1 (×64 = 13,312)
		{100000, 1722}, // share 1563: 1563 + 158 + 1 (×64 = 110,208)
	} {
		if got := shardCapacity(tc.size); got != tc.want {
			t.Errorf("shardCapacity(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func TestCallerResolution(t *testing.T) {
	h := newHarness(t)
	t.Run("sub that is not a user id falls back to authId", func(t *testing.T) {
		tok := signToken(t, jwt.MapClaims{"sub": "auth-subject-42", "authId": h.alice.authID, "email": h.alice.email, "role": "student", "exp": time.Now().Add(time.Hour).Unix()})
		r := h.get("/api/v1/users/me", tok).expect(200, "")
		if r.dataMap()["id"] != h.alice.id {
			t.Fatalf("me resolved to %v, want %s", r.dataMap()["id"], h.alice.id)
		}
		before := h.dir.lookup
		h.get("/api/v1/users/me", tok).expect(200, "")
		if h.dir.lookup != before {
			t.Error("authId → id was looked up again; positive answers must be cached")
		}
	})
	t.Run("token without profile: me is 404, token role decides", func(t *testing.T) {
		tok := signToken(t, jwt.MapClaims{"sub": userservice.NewID(), "authId": userservice.NewID(), "email": "new@example.com", "role": "student", "exp": time.Now().Add(time.Hour).Unix()})
		h.get("/api/v1/users/me", tok).expect(404, userservice.ECodeNotFound)
		h.get(userPath(h.alice.id), tok).expect(403, userservice.ECodeForbidden)
		admin := signToken(t, jwt.MapClaims{"sub": userservice.NewID(), "authId": userservice.NewID(), "email": "boss@example.com", "role": "admin", "exp": time.Now().Add(time.Hour).Unix()})
		h.get(userPath(h.alice.id), admin).expect(200, "")
		h.get("/api/v1/users/me", admin).expect(404, userservice.ECodeNotFound)
	})
	t.Run("stored role wins over the token's", func(t *testing.T) {
		tok := signToken(t, jwt.MapClaims{"sub": h.bob.id, "authId": h.bob.authID, "email": h.bob.email, "role": "admin", "exp": time.Now().Add(time.Hour).Unix()})
		h.get("/api/v1/users", tok).expect(403, userservice.ECodeForbidden)
	})
	t.Run("a request touches the caller's lastActiveAt", func(t *testing.T) {
		before := h.users.touched[h.alice.id]
		h.get("/api/v1/users/me", h.alice.token).expect(200, "")
		if h.users.touched[h.alice.id] != before+1 {
			t.Fatalf("touched %d times, want %d", h.users.touched[h.alice.id], before+1)
		}
	})
}

func TestAccountStatus(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		status userservice.Status
		want   int
	}{
		{userservice.StatusInactive, 200},
		{userservice.StatusSuspended, 403},
		{userservice.StatusDeleted, 403},
		{userservice.StatusActive, 200},
	} {
		t.Run(string(tc.status), func(t *testing.T) {
			h.send("PUT", userPath(h.alice.id, "status"), h.admin.token, map[string]any{"status": tc.status}).expect(200, "")
			r := h.get("/api/v1/users/me", h.alice.token).expect(tc.want, "")
			if tc.want == 403 {
				r.expect(403, userservice.ECodeAccountInactive)
			}
		})
	}
	t.Run("admin still sees a deleted user", func(t *testing.T) {
		h.send("DELETE", userPath(h.bob.id), h.admin.token, nil).expect(200, "")
		r := h.get(userPath(h.bob.id), h.admin.token).expect(200, "")
		if r.dataMap()["status"] != "deleted" {
			t.Fatalf("status = %v", r.dataMap()["status"])
		}
		h.get(userPath(h.bob.id), h.bob.token).expect(403, userservice.ECodeAccountInactive)
		// Deleting again answers 200 and changes nothing.
		v := h.users.state(h.bob.id).User.Version
		h.send("DELETE", userPath(h.bob.id), h.admin.token, nil).expect(200, "")
		if h.users.state(h.bob.id).User.Version != v {
			t.Error("second delete changed the user")
		}
	})
}
