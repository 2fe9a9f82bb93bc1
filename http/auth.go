package http

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/lms-platform/userservice"
)

// clockSkew is the leeway granted to iat and nbf (CONTRACT.md, Auth).
const clockSkew = 30 * time.Second

// maxTokenBytes bounds a bearer token; anything longer is refused unparsed.
const maxTokenBytes = 8 << 10

// claims is what a verified token says about its bearer.
type claims struct {
	Subject string
	AuthID  string
	Email   string
	Role    userservice.Role
	Expires time.Time
}

// tokenClaims is the JWT payload as signed by the Auth Service.
type tokenClaims struct {
	jwt.RegisteredClaims
	AuthID string `json:"authId"`
	Email  string `json:"email"`
	Role   string `json:"role"`
}

// 401 answers; the messages follow the spec's auth middleware.
var (
	errNoToken        = &userservice.Error{Code: userservice.ECodeUnauthorized, Message: "Authorization header is required"}
	errBadToken       = &userservice.Error{Code: userservice.ECodeUnauthorized, Message: "Invalid token"}
	errExpiredToken   = &userservice.Error{Code: userservice.ECodeUnauthorized, Message: "Token has expired"}
	errTokenStructure = &userservice.Error{Code: userservice.ECodeUnauthorized, Message: "Invalid token structure"}
	errTokenNotYet    = &userservice.Error{Code: userservice.ECodeUnauthorized, Message: "Token is not valid yet"}
)

// Signing algorithms this service can verify (JWT_ALGORITHMS). Anything
// else, "none" first of all, is refused before a key is looked at.
const (
	AlgHS256 = "HS256"
	AlgRS256 = "RS256"
	AlgES256 = "ES256"
)

// SupportedAlgorithms lists the algorithms JWT_ALGORITHMS may name.
func SupportedAlgorithms() []string { return []string{AlgHS256, AlgRS256, AlgES256} }

// jwksFetchTimeout bounds one JWKS fetch: the first at start, a periodic
// refresh, or the refresh a token with an unknown kid triggers.
const jwksFetchTimeout = 5 * time.Second

// authenticator verifies bearer tokens and remembers the verified ones: HS256
// verification on every request cost about 35% of throughput. A cache hit is
// ~150x cheaper than a verification (140 ns, 0 allocs vs 21.7 µs, 45 allocs:
// go test -run X -bench TokenVerify ./http/). The key is the whole signed
// token, so a tampered token can only miss. Safe for concurrent use.
//
// Keys are chosen by the token's alg, never by what the key looks like: HS256
// uses only the secret, RS256 and ES256 only a public key of their own type
// (JWT_PUBLIC_KEY or the JWKS). So a public key can never act as an HMAC
// secret (algorithm confusion), and a JWKS "oct" key is never used.
type authenticator struct {
	secret    []byte          // HS256; nil when HS256 is not enabled
	publicKey any             // RS256/ES256 from JWT_PUBLIC_KEY, or nil
	jwks      keyfunc.Keyfunc // RS256/ES256 from JWT_JWKS_URL, or nil
	parser    *jwt.Parser
	tokens    *tokenCache
	dir       userservice.Directory
	ids       *idCache
	now       func() time.Time
}

// jwtKeys is what an authenticator verifies with.
type jwtKeys struct {
	algorithms []string
	secret     []byte
	publicKey  any
	jwks       keyfunc.Keyfunc
}

func newAuthenticator(keys jwtKeys, cacheSize int, dir userservice.Directory) *authenticator {
	a := &authenticator{
		publicKey: keys.publicKey,
		jwks:      keys.jwks,
		// Only the configured algorithms: "none", HS512, PS256... are refused
		// before any key is used.
		parser: jwt.NewParser(jwt.WithValidMethods(keys.algorithms), jwt.WithoutClaimsValidation()),
		tokens: newTokenCache(cacheSize),
		dir:    dir,
		ids:    newIDCache(cacheSize),
		now:    time.Now,
	}
	for _, alg := range keys.algorithms {
		if alg == AlgHS256 {
			a.secret = keys.secret
		}
	}
	return a
}

// newJWKS starts the JWKS client of url: it fetches the set once now (a failure
// is logged, not fatal: the next unknown kid or periodic refresh retries),
// refreshes it every refreshEvery in the background, and refetches when a token
// names a kid it does not hold, at most once per unknownKIDEvery. A request
// whose kid is known never waits for a fetch: refreshes replace the set
// atomically beside the readers. ctx ends the background refresh.
func newJWKS(ctx context.Context, url string, refreshEvery, unknownKIDEvery time.Duration, logger *slog.Logger) (keyfunc.Keyfunc, error) {
	var warn logThrottle
	k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, keyfunc.Override{
		HTTPTimeout:     jwksFetchTimeout,
		RefreshInterval: refreshEvery,
		// No wait of its own: the limiter's wait is bounded by the request's
		// deadline, and a refresh that cannot happen before it fails at once.
		RateLimitWaitMax:  -1,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(unknownKIDEvery), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				if warn.allow(time.Now(), 10*time.Second) {
					logger.Warn("cannot refresh the JWKS", slog.String("url", u), slog.Any("error", err))
				}
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cannot set up the JWKS client: %w", err)
	}
	return k, nil
}

// bearer extracts the token from an Authorization header value.
func bearer(header []byte) ([]byte, error) {
	if len(header) == 0 {
		return nil, errNoToken
	}
	const prefix = "bearer "
	if len(header) <= len(prefix) || !bytes.EqualFold(header[:len(prefix)], []byte(prefix)) {
		return nil, errBadToken
	}
	tok := bytes.TrimSpace(header[len(prefix):])
	if len(tok) == 0 || len(tok) > maxTokenBytes {
		return nil, errBadToken
	}
	return tok, nil
}

// verify returns the claims of a valid token, from the cache when it was
// verified before and has not expired since.
func (a *authenticator) verify(ctx context.Context, token []byte) (*claims, error) {
	now := a.now()
	if c := a.tokens.get(token, now); c != nil {
		return c, nil
	}
	c, err := a.parse(ctx, string(token), now)
	if err != nil {
		return nil, err
	}
	a.tokens.put(string(token), c, now)
	return c, nil
}

// parse verifies the signature and the claims of a token.
func (a *authenticator) parse(ctx context.Context, token string, now time.Time) (*claims, error) {
	var tc tokenClaims
	_, err := a.parser.ParseWithClaims(token, &tc, func(t *jwt.Token) (any, error) { return a.key(ctx, t) })
	if err != nil {
		return nil, errBadToken
	}
	// Claims are checked here rather than by the parser because the leeway
	// applies to iat and nbf only: an expired token is expired.
	if tc.ExpiresAt == nil {
		return nil, errTokenStructure
	}
	if !now.Before(tc.ExpiresAt.Time) {
		return nil, errExpiredToken
	}
	if tc.NotBefore != nil && tc.NotBefore.After(now.Add(clockSkew)) {
		return nil, errTokenNotYet
	}
	if tc.IssuedAt != nil && tc.IssuedAt.After(now.Add(clockSkew)) {
		return nil, errTokenNotYet
	}
	role := userservice.Role(tc.Role)
	if tc.Subject == "" || tc.AuthID == "" || tc.Email == "" || !role.Valid() {
		return nil, errTokenStructure
	}
	return &claims{Subject: tc.Subject, AuthID: tc.AuthID, Email: tc.Email, Role: role, Expires: tc.ExpiresAt.Time}, nil
}

// key returns the verification key of a token whose alg the parser already
// allowed. The key depends on the alg alone (see authenticator).
func (a *authenticator) key(ctx context.Context, t *jwt.Token) (any, error) {
	switch t.Method {
	case jwt.SigningMethodHS256:
		if a.secret == nil {
			return nil, errBadToken
		}
		return a.secret, nil
	case jwt.SigningMethodRS256, jwt.SigningMethodES256:
	default:
		return nil, errBadToken
	}
	if a.publicKey != nil {
		if !keyFits(t.Method, a.publicKey) {
			return nil, errBadToken
		}
		return a.publicKey, nil
	}
	if a.jwks == nil {
		return nil, errBadToken
	}
	// An unknown kid may refetch the set; that wait is bounded here.
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	k, err := a.jwks.KeyfuncCtx(ctx)(t)
	if err != nil {
		return nil, errBadToken
	}
	switch k := k.(type) {
	case jwt.VerificationKeySet: // no kid: every key of the token's type is tried
		var fit jwt.VerificationKeySet
		for _, key := range k.Keys {
			if keyFits(t.Method, key) {
				fit.Keys = append(fit.Keys, key)
			}
		}
		if len(fit.Keys) == 0 {
			return nil, errBadToken
		}
		return fit, nil
	default:
		if !keyFits(t.Method, k) {
			return nil, errBadToken
		}
		return k, nil
	}
}

// keyFits reports whether key is a public key of the alg's own type: RSA (at
// least 2048 bits) for RS256, ECDSA P-256 for ES256.
func keyFits(m jwt.SigningMethod, key any) bool {
	switch m {
	case jwt.SigningMethodRS256:
		k, ok := key.(*rsa.PublicKey)
		return ok && k.N.BitLen() >= 2048
	case jwt.SigningMethodES256:
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve == elliptic.P256()
	}
	return false
}

// userIDByAuthID resolves an authId to a profile id; positive answers are kept
// in memory because that mapping never changes.
func (a *authenticator) userIDByAuthID(ctx context.Context, authID string) (string, error) {
	if id, ok := a.ids.get(authID); ok {
		return id, nil
	}
	id, err := a.dir.UserIDByAuthID(ctx, authID)
	if err != nil {
		return "", err
	}
	a.ids.put(authID, id)
	return id, nil
}

// caller is who makes an authenticated request.
type caller struct {
	claims *claims
	// id is the caller's profile id, "" when the caller has no profile.
	id string
	// state is the caller's profile, nil when there is none.
	state *userservice.State
	// role decides what the caller may do: the stored role when there is a
	// profile, else the token's.
	role userservice.Role
}

// scope is how idempotency keys are scoped to a caller.
func (c *caller) scope() string {
	if c.id != "" {
		return c.id
	}
	return "sub:" + c.claims.Subject
}

// actorID is the Meta.ActorID of the caller's commands.
func (c *caller) actorID() *string {
	if c.id == "" {
		return nil
	}
	id := c.id
	return &id
}

// errAccountDisabled answers a suspended or deleted caller.
var errAccountDisabled = &userservice.Error{Code: userservice.ECodeAccountInactive, Message: "Account is suspended or deleted"}

// resolveCaller finds the caller's profile: by sub when it is a user id, else by
// authId. touch records the caller's activity (lastActiveAt). A suspended or
// deleted caller is refused (403).
func (a *authenticator) resolveCaller(ctx context.Context, users userservice.Users, c *claims, touch userservice.Time) (*caller, error) {
	st, err := a.profile(ctx, users, c, touch)
	if err != nil {
		return nil, err
	}
	if st != nil && st.User.Erased() {
		st = nil // the profile is gone (issue 14): its routes answer 404
	}
	if st == nil {
		return &caller{claims: c, role: c.Role}, nil
	}
	if !st.User.Status.MayAct() {
		return nil, errAccountDisabled
	}
	return &caller{claims: c, id: st.User.ID, state: st, role: st.User.Role}, nil
}

func (a *authenticator) profile(ctx context.Context, users userservice.Users, c *claims, touch userservice.Time) (*userservice.State, error) {
	if id, ok := userservice.ParseID(c.Subject); ok {
		st, err := users.Get(ctx, id, &touch)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, userservice.ErrUserNotFound) {
			return nil, err
		}
	}
	authID, ok := userservice.ParseID(c.AuthID)
	if !ok {
		return nil, nil // authIds are UUIDs: no profile can have this one
	}
	id, err := a.userIDByAuthID(ctx, authID)
	if errors.Is(err, userservice.ErrUserNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := users.Get(ctx, id, &touch)
	if errors.Is(err, userservice.ErrUserNotFound) {
		return nil, nil
	}
	return st, err
}

// cacheShards splits both caches so concurrent requests rarely share a lock.
const cacheShards = 64

// shardCapacity is what each of cacheShards shards holds so that size keys fit
// in the cache together: the shard's share of size, plus room for the hash's
// uneven spread. A shard's share of n keys varies by about √(n/cacheShards)
// (the count is Poisson), so with an even split the fuller half of the shards
// would overflow while the cache as a whole had room: with size 10,000 about
// 300 keys of a 10,000-key working set were evicted by others and missed again
// and again. Four deviations of room make an overflowing shard a one in 30,000
// event; the cache holds at most 1.3× size (size 10,000), 1.1× (size 100,000).
func shardCapacity(size int) int {
	share := max(1, (size+cacheShards-1)/cacheShards)
	return share + int(4*math.Sqrt(float64(share))) + 1
}

// sweepEvery bounds how often a full token shard looks for expired entries.
const sweepEvery = time.Minute

// tokenCache maps a token (the whole signed string) to its verified claims until
// the token expires. It holds at most about size entries (see shardCapacity).
// A put into a full shard drops the shard's expired entries if it has not looked
// for them within sweepEvery, and otherwise one arbitrary entry, so a put costs
// the same however full the cache is: a cache smaller than the tokens in use
// (one verification per miss) does not also walk a shard per miss.
type tokenCache struct {
	seed     maphash.Seed
	shards   [cacheShards]tokenShard
	perShard int
}

type tokenShard struct {
	mu      sync.RWMutex
	m       map[string]*claims
	sweptAt time.Time // the last look for expired entries
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed(), perShard: shardCapacity(size)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*claims)
	}
	return c
}

func (c *tokenCache) shard(token []byte) *tokenShard {
	return &c.shards[maphash.Bytes(c.seed, token)%cacheShards]
}

func (c *tokenCache) get(token []byte, now time.Time) *claims {
	sh := c.shard(token)
	sh.mu.RLock()
	cl := sh.m[string(token)] // no allocation: the compiler keys by the bytes
	sh.mu.RUnlock()
	if cl == nil || !now.Before(cl.Expires) {
		return nil
	}
	return cl
}

func (c *tokenCache) put(token string, cl *claims, now time.Time) {
	sh := c.shard([]byte(token))
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[token]; !ok && len(sh.m) >= c.perShard && now.Sub(sh.sweptAt) >= sweepEvery {
		sh.sweptAt = now
		for k, v := range sh.m {
			if !now.Before(v.Expires) {
				delete(sh.m, k)
			}
		}
	}
	makeRoom(sh.m, token, c.perShard)
	sh.m[token] = cl
}

// makeRoom deletes arbitrary entries of m (map order is random) until key fits
// among capacity entries; a key m holds already needs no room.
func makeRoom[V any](m map[string]V, key string, capacity int) {
	if _, ok := m[key]; ok {
		return
	}
	for k := range m {
		if len(m) < capacity {
			return
		}
		delete(m, k)
	}
}

// idCache maps authId to user id; bounded like tokenCache.
type idCache struct {
	seed     maphash.Seed
	shards   [cacheShards]idShard
	perShard int
}

type idShard struct {
	mu sync.RWMutex
	m  map[string]string
}

func newIDCache(size int) *idCache {
	c := &idCache{seed: maphash.MakeSeed(), perShard: shardCapacity(size)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]string)
	}
	return c
}

func (c *idCache) get(authID string) (string, bool) {
	sh := &c.shards[maphash.String(c.seed, authID)%cacheShards]
	sh.mu.RLock()
	id, ok := sh.m[authID]
	sh.mu.RUnlock()
	return id, ok
}

func (c *idCache) put(authID, id string) {
	sh := &c.shards[maphash.String(c.seed, authID)%cacheShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	makeRoom(sh.m, authID, c.perShard)
	sh.m[authID] = id
}
