package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/lms-platform/userservice"
)

// jwksServer publishes a JWK Set that a test can rotate, slow down, and count
// the fetches of.
type jwksServer struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	body    []byte
	delay   time.Duration
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T) *jwksServer {
	t.Helper()
	j := &jwksServer{t: t}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		body, delay := j.body, j.delay
		j.mu.Unlock()
		time.Sleep(delay)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(j.srv.Close)
	return j
}

// publish replaces the set with these public keys, by kid.
func (j *jwksServer) publish(keys map[string]any) {
	j.t.Helper()
	var set jwkset.JWKSMarshal
	for kid, k := range keys {
		alg := jwkset.AlgRS256
		if _, ok := k.(*ecdsa.PublicKey); ok {
			alg = jwkset.AlgES256
		}
		jwk, err := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg, USE: jwkset.UseSig}})
		if err != nil {
			j.t.Fatalf("cannot make a JWK: %v", err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		j.t.Fatal(err)
	}
	j.mu.Lock()
	j.body = b
	j.mu.Unlock()
}

func (j *jwksServer) setDelay(d time.Duration) {
	j.mu.Lock()
	j.delay = d
	j.mu.Unlock()
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func publicPEM(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// adminClaims are the claims of an admin without a profile (the token's role decides).
func adminClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"sub": userservice.NewID(), "authId": userservice.NewID(), "email": "admin@example.com", "role": "admin",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"jti": userservice.NewID(), // every token is new: no answer comes from the verified-token cache
	}
}

// signWith signs admin claims with method and key, naming kid when it is not "".
func signWith(t *testing.T, m jwt.SigningMethod, key any, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, adminClaims())
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("cannot sign a %s token: %v", m.Alg(), err)
	}
	return s
}

// TestJWTWithJWKS verifies RS256 and ES256 tokens against a JWKS served by the
// test: known kids pass, a rotated-in kid is fetched on first sight, a
// withdrawn one stops passing, a slow JWKS never delays a token whose key is
// known, and "none", HS256 (not enabled) and a public key used as an HMAC
// secret are refused.
func TestJWTWithJWKS(t *testing.T) {
	st := newStack(t)
	jwks := newJWKSServer(t)
	k1, k2, e1 := rsaKey(t), rsaKey(t), ecKey(t)
	jwks.publish(map[string]any{"k1": &k1.PublicKey, "e1": &e1.PublicKey})
	svc := st.start(t, map[string]string{
		"JWT_ALGORITHMS": "RS256, ES256", "JWT_JWKS_URL": jwks.srv.URL,
		"JWT_JWKS_REFRESH_INTERVAL": "1s",
	})
	search := func(tok string) *response { return svc.do(t, "GET", "/api/v1/users?limit=1", tok, nil) }

	t.Run("known keys pass", func(t *testing.T) {
		search(signWith(t, jwt.SigningMethodRS256, k1, "k1")).data(t, 200, nil)
		search(signWith(t, jwt.SigningMethodES256, e1, "e1")).data(t, 200, nil)
		search(signWith(t, jwt.SigningMethodRS256, k1, "")).data(t, 200, nil) // no kid: every RSA key of the set is tried
	})
	t.Run("refused", func(t *testing.T) {
		none, err := jwt.NewWithClaims(jwt.SigningMethodNone, adminClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		confused := jwt.NewWithClaims(jwt.SigningMethodHS256, adminClaims())
		confused.Header["kid"] = "k1"
		confusedTok, err := confused.SignedString([]byte(publicPEM(t, &k1.PublicKey)))
		if err != nil {
			t.Fatal(err)
		}
		for name, tok := range map[string]string{
			"alg none":                       none,
			"HS256 is not enabled":           st.adminToken(t),
			"RS256 key as an HS256 secret":   confusedTok,
			"signed by another key":          signWith(t, jwt.SigningMethodRS256, rsaKey(t), "k1"),
			"ES256 kid with an RS256 token":  signWith(t, jwt.SigningMethodRS256, k1, "e1"),
			"RS384 is not enabled":           signWith(t, jwt.SigningMethodRS384, k1, "k1"),
			"P-256 token naming the RSA kid": signWith(t, jwt.SigningMethodES256, e1, "k1"),
		} {
			t.Run(name, func(t *testing.T) { search(tok).fail(t, 401, "UNAUTHORIZED") })
		}
	})
	t.Run("a slow JWKS does not delay known keys", func(t *testing.T) {
		jwks.setDelay(2500 * time.Millisecond)
		defer jwks.setDelay(0)
		before := jwks.fetches.Load()
		deadline := time.Now().Add(4 * time.Second)
		var slowest time.Duration
		for time.Now().Before(deadline) {
			start := time.Now()
			search(signWith(t, jwt.SigningMethodRS256, k1, "k1")).data(t, 200, nil)
			slowest = max(slowest, time.Since(start))
			time.Sleep(100 * time.Millisecond)
		}
		if jwks.fetches.Load() == before {
			t.Fatal("no JWKS fetch happened while the JWKS was slow: the test proves nothing")
		}
		if slowest > time.Second {
			t.Errorf("a token with a known kid waited %v while the JWKS was slow", slowest)
		}
	})
	t.Run("rotation", func(t *testing.T) {
		jwks.publish(map[string]any{"k2": &k2.PublicKey, "e1": &e1.PublicKey})
		want := func(r *response, status int) error {
			if r.Status != status {
				return fmt.Errorf("%s: want %d", r, status)
			}
			return nil
		}
		eventually(t, "a rotated-in kid passes", func() error {
			return want(search(signWith(t, jwt.SigningMethodRS256, k2, "k2")), 200)
		})
		eventually(t, "a withdrawn kid stops passing", func() error {
			return want(search(signWith(t, jwt.SigningMethodRS256, k1, "k1")), 401)
		})
		search(signWith(t, jwt.SigningMethodES256, e1, "e1")).data(t, 200, nil)
	})
}

// TestJWTUnknownKIDRefreshIsBounded: tokens naming kids the JWKS does not have
// trigger at most one refetch per interval, and are refused at once.
func TestJWTUnknownKIDRefreshIsBounded(t *testing.T) {
	st := newStack(t)
	jwks := newJWKSServer(t)
	k1, k2 := rsaKey(t), rsaKey(t)
	jwks.publish(map[string]any{"k1": &k1.PublicKey})
	svc := st.start(t, map[string]string{"JWT_ALGORITHMS": "RS256", "JWT_JWKS_URL": jwks.srv.URL})
	search := func(tok string) *response { return svc.do(t, "GET", "/api/v1/users?limit=1", tok, nil) }
	search(signWith(t, jwt.SigningMethodRS256, k1, "k1")).data(t, 200, nil)
	start := jwks.fetches.Load()

	// The first unknown kid refetches the set, and finds k2.
	jwks.publish(map[string]any{"k1": &k1.PublicKey, "k2": &k2.PublicKey})
	search(signWith(t, jwt.SigningMethodRS256, k2, "k2")).data(t, 200, nil)
	if got := jwks.fetches.Load() - start; got != 1 {
		t.Fatalf("an unknown kid caused %d fetches, want 1", got)
	}
	// A flood of unknown kids within the interval: refused at once, no fetch.
	for i := range 30 {
		began := time.Now()
		search(signWith(t, jwt.SigningMethodRS256, rsaKey(t), "forged-"+strings.Repeat("x", i))).fail(t, 401, "UNAUTHORIZED")
		if d := time.Since(began); d > time.Second {
			t.Errorf("a token with an unknown kid took %v", d)
		}
	}
	if got := jwks.fetches.Load() - start; got != 1 {
		t.Errorf("30 unknown kids caused %d fetches in all, want 1", got)
	}
	search(signWith(t, jwt.SigningMethodRS256, k1, "k1")).data(t, 200, nil)
}

// TestJWTWithPublicKey verifies ES256 tokens against JWT_PUBLIC_KEY (given on
// one line with literal \n, as environment files hold it) beside HS256.
func TestJWTWithPublicKey(t *testing.T) {
	st := newStack(t)
	e1 := ecKey(t)
	pemKey := publicPEM(t, &e1.PublicKey)
	svc := st.start(t, map[string]string{
		"JWT_ALGORITHMS": "HS256,ES256", "JWT_PUBLIC_KEY": strings.ReplaceAll(pemKey, "\n", `\n`),
	})
	search := func(tok string) *response { return svc.do(t, "GET", "/api/v1/users?limit=1", tok, nil) }
	search(signWith(t, jwt.SigningMethodES256, e1, "")).data(t, 200, nil)
	search(st.adminToken(t)).data(t, 200, nil)
	search(signWith(t, jwt.SigningMethodHS256, []byte(pemKey), "")).fail(t, 401, "UNAUTHORIZED")
	search(signWith(t, jwt.SigningMethodES256, ecKey(t), "")).fail(t, 401, "UNAUTHORIZED")
	search(signWith(t, jwt.SigningMethodRS256, rsaKey(t), "")).fail(t, 401, "UNAUTHORIZED")
}
