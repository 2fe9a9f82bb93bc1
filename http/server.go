// Package http is the HTTP edge of the User Service: it authenticates callers
// (JWT), decodes and validates requests, sends each change to the user's actor
// through userservice.Users, and renders the JSON envelope of CONTRACT.md. It is
// the only package that imports fasthttp.
//
// routes.go lists the whole API surface; each resource has its own file; auth,
// JSON, error-to-status mapping (errors.go) and middleware each live in one place.
//
// Every handler checks in the order of CONTRACT.md's Details: the token (401,
// in the middleware), then the path, query and body (400), then the caller's
// profile, role and ownership (403), then the target (404), and only then sends
// the command, whose actor answers 409 or 412. So a body is decoded and
// validated before the caller's profile is looked up.
//
// An Idempotency-Key is looked up once the caller is known; from then on the
// request's first answer is stored: a committed change stores it with the change
// itself (Meta.Idempotency), a 4xx or a change of nothing through
// IdempotencyStore.PutIdempotency, a 5xx never.
package http

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// Config holds the knobs of the HTTP edge.
type Config struct {
	// JWTSecret signs the HS256 tokens; at least 32 bytes when HS256 is enabled
	// (CONTRACT.md, Auth).
	JWTSecret []byte
	// JWTAlgorithms are the accepted signing algorithms, from
	// SupportedAlgorithms (JWT_ALGORITHMS). Default HS256.
	JWTAlgorithms []string
	// JWTPublicKey verifies RS256 or ES256 tokens (*rsa.PublicKey or
	// *ecdsa.PublicKey, from JWT_PUBLIC_KEY). At most one of JWTPublicKey and
	// JWKSURL; one of them when RS256 or ES256 is enabled.
	JWTPublicKey any
	// JWKSURL is where the RS256/ES256 keys are published (JWT_JWKS_URL).
	JWKSURL string
	// JWKSRefreshInterval is how often the JWKS is refetched in the background.
	// Default 10m.
	JWKSRefreshInterval time.Duration
	// JWKSUnknownKIDInterval bounds the refetches that tokens naming an unknown
	// kid trigger: at most one per interval. Default 30s.
	JWKSUnknownKIDInterval time.Duration
	// RequestTimeout bounds each request (its context's deadline). Default 10s.
	RequestTimeout time.Duration
	// ErasureCoolOff is how long after POST …/erasure the erasure runs
	// (ERASURE_COOL_OFF). Default 7 days.
	ErasureCoolOff time.Duration
	// MaxBodyBytes bounds a request body (413 beyond). Default 1 MiB.
	MaxBodyBytes int
	// TokenCacheSize bounds the number of verified tokens kept, and of authId →
	// profile id answers (TOKEN_CACHE_SIZE). Default 10000.
	TokenCacheSize int
	// DefaultPageSize and MaxPageSize bound list pages. Defaults 20 and 100.
	DefaultPageSize int
	MaxPageSize     int
	// CORS configures cross-origin requests; an empty Origin disables CORS.
	CORS CORS
	// SecurityHeaders adds helmet-like headers to every answer (HELMET_ENABLED).
	SecurityHeaders bool
	// Development lets an internal error's message appear in a body (never a stack).
	Development bool
	// SensitiveFields are masked in log lines (AUDIT_SENSITIVE_FIELDS).
	SensitiveFields []string
	// IdempotencyTTL is how long a stored Idempotency-Key answer is replayed. Default 24h.
	IdempotencyTTL time.Duration
	// HealthCheckTimeout bounds each dependency check of /health/detailed. Default 2s.
	HealthCheckTimeout time.Duration
	// HealthCacheTTL is how long the result of a readiness or dependency check is
	// shared between probes (HEALTH_CACHE_TTL). Default 1s; negative shares a
	// result only between probes that arrive while the check runs.
	HealthCacheTTL time.Duration
	// MaxConns bounds the connections served at once (HTTP_MAX_CONNS); beyond it a
	// new connection gets fasthttp's 503. MaxConnsPerIP bounds them per client IP
	// address (HTTP_MAX_CONNS_PER_IP); beyond it a new connection gets a 429 and is
	// closed; 0 means no per-IP limit. Defaults 10000 and 0.
	MaxConns      int
	MaxConnsPerIP int
	// TrustedProxies are the peers whose X-Forwarded-For is believed
	// (TRUST_PROXY); empty means the client IP is always the connection's peer.
	TrustedProxies []netip.Prefix
	// NoMetrics leaves /metrics out (METRICS_ENABLED=false): it answers 404.
	NoMetrics bool
	// NoAudit keeps no audit records of role, status and delete changes
	// (AUDIT_ENABLED=false).
	NoAudit bool
	// RateLimitSkipSuccessful counts only requests answered 400 or above against
	// the rate limit (RATE_LIMIT_SKIP_SUCCESSFUL).
	RateLimitSkipSuccessful bool
	// MaxJobItems bounds the items of one bulk job (JOB_MAX_ITEMS). Default 100,000.
	MaxJobItems int
	// ReadTimeout and IdleTimeout bound a connection. Defaults 30s and 120s.
	ReadTimeout time.Duration
	IdleTimeout time.Duration
	// DrainGrace is how long Shutdown keeps accepting and answering, with
	// "Connection: close" on every answer and /health/ready at 503, before it
	// closes the listener. Default 250ms; see Shutdown.
	DrainGrace time.Duration
}

// CORS is the cross-origin configuration (CORS_ORIGIN, CORS_CREDENTIALS,
// CORS_METHODS, CORS_ALLOWED_HEADERS).
type CORS struct {
	// Origin is "*", one origin, or a comma-separated list of origins.
	Origin         string
	Credentials    bool
	Methods        []string
	AllowedHeaders []string
}

func (c *Config) withDefaults() (Config, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	out := *c
	if len(out.JWTAlgorithms) == 0 {
		out.JWTAlgorithms = []string{AlgHS256}
	}
	out.JWTAlgorithms = append([]string(nil), out.JWTAlgorithms...)
	asymmetric := false
	for _, alg := range out.JWTAlgorithms {
		switch alg {
		case AlgHS256:
			if len(out.JWTSecret) < 32 {
				return out, errors.New("JWT secret must be at least 32 bytes")
			}
		case AlgRS256, AlgES256:
			asymmetric = true
		default:
			return out, fmt.Errorf("JWT algorithm %q is not supported", alg)
		}
	}
	switch {
	case out.JWTPublicKey != nil && out.JWKSURL != "":
		return out, errors.New("give a JWT public key or a JWKS URL, not both")
	case asymmetric && out.JWTPublicKey == nil && out.JWKSURL == "":
		return out, errors.New("RS256 and ES256 need a JWT public key or a JWKS URL")
	}
	out.JWTSecret = append([]byte(nil), out.JWTSecret...)
	def(&out.JWKSRefreshInterval, 10*time.Minute)
	def(&out.JWKSUnknownKIDInterval, 30*time.Second)
	def(&out.RequestTimeout, 10*time.Second)
	def(&out.ErasureCoolOff, 7*24*time.Hour)
	def(&out.IdempotencyTTL, 24*time.Hour)
	def(&out.HealthCheckTimeout, 2*time.Second)
	def(&out.ReadTimeout, 30*time.Second)
	def(&out.IdleTimeout, 120*time.Second)
	def(&out.DrainGrace, 250*time.Millisecond)
	if out.HealthCacheTTL == 0 {
		out.HealthCacheTTL = time.Second
	}
	if out.MaxConns <= 0 {
		out.MaxConns = 10000
	}
	if out.MaxBodyBytes <= 0 {
		out.MaxBodyBytes = 1 << 20
	}
	if out.MaxJobItems <= 0 {
		out.MaxJobItems = userservice.MaxJobItems
	}
	if out.TokenCacheSize <= 0 {
		out.TokenCacheSize = 10000
	}
	if out.MaxPageSize <= 0 || out.MaxPageSize > userservice.MaxPageSize {
		out.MaxPageSize = userservice.MaxPageSize
	}
	if out.DefaultPageSize <= 0 {
		out.DefaultPageSize = userservice.DefaultPageSize
	}
	if out.DefaultPageSize > out.MaxPageSize {
		return out, fmt.Errorf("default page size %d exceeds the maximum %d", out.DefaultPageSize, out.MaxPageSize)
	}
	if len(out.CORS.Methods) == 0 {
		out.CORS.Methods = []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"}
	}
	if len(out.CORS.AllowedHeaders) == 0 {
		out.CORS.AllowedHeaders = []string{"Content-Type", "Authorization", "X-Requested-With"}
	}
	return out, nil
}

// Deps are the services the edge talks to. RateLimiter may be nil (disabled).
type Deps struct {
	Users       userservice.Users
	Directory   userservice.Directory
	Idempotency userservice.IdempotencyStore
	Health      Health
	RateLimiter RateLimiter
	// Events reads the change feed; nil answers its routes 503.
	Events userservice.EventHistory
	// PersonalData reads sessions and audit records for an export; nil
	// answers the export 503.
	PersonalData userservice.PersonalData
	// Erasures reads erasure requests; nil answers the erasure routes 503.
	Erasures userservice.ErasureStore
	// Attributes stores the custom attribute schemas; nil answers their routes 503.
	Attributes userservice.AttributeSchemas
	// Jobs keeps bulk jobs; nil answers the /jobs routes 503. JobsNotify, when
	// set, is called after a job was created (it wakes the local worker).
	Jobs       userservice.JobStore
	JobsNotify func()
}

// Health is what the /health* probes report.
type Health struct {
	// Ready returns nil once the service can serve (PostgreSQL reachable,
	// migrations applied); /health/ready answers 503 until then.
	Ready func(ctx context.Context) error
	// Checks are the dependency probes of /health/detailed, by name: "database"
	// (down means unhealthy), "redis", "rabbitmq" (down means degraded).
	Checks map[string]func(ctx context.Context) error
	// Version is reported by /health.
	Version string
	// Started is when the process started (uptime).
	Started time.Time
}

// Server is the HTTP edge. It is safe for concurrent use.
type Server struct {
	cfg     Config
	deps    Deps
	logger  *slog.Logger
	auth    *authenticator
	cursors *userservice.CursorSigner
	mask    masker
	cors    corsPolicy
	headers [][2][]byte // security headers, precomputed, keys normalized as fasthttp does

	router    *router.Router
	handler   fasthttp.RequestHandler
	srv       *fasthttp.Server
	unmatched map[string]*endpoint // by method label
	preflight *endpoint

	// base is the parent of every request context; it is cancelled once Shutdown
	// has let in-flight requests finish.
	base       context.Context
	cancelBase context.CancelFunc
	deadlines  *requestDeadlines // the request contexts, children of base
	// streams is cancelled when Shutdown starts: open event streams end then,
	// rather than holding the shutdown until its deadline.
	streams     context.Context
	stopStreams context.CancelFunc

	limiterWarn logThrottle

	readyProbe    *probeCache[error]
	detailedProbe *probeCache[dependencyReport]
	shutdown      sync.Once
	draining      atomic.Bool // Shutdown began: answers close their connection
}

// NewServer builds the edge. Users, Directory, Idempotency, Health.Ready and logger
// are required.
func NewServer(cfg Config, deps Deps, logger *slog.Logger) (*Server, error) {
	switch {
	case deps.Users == nil:
		return nil, errors.New("cannot create HTTP server: Users is nil")
	case deps.Directory == nil:
		return nil, errors.New("cannot create HTTP server: Directory is nil")
	case deps.Idempotency == nil:
		return nil, errors.New("cannot create HTTP server: Idempotency is nil")
	case deps.Health.Ready == nil:
		return nil, errors.New("cannot create HTTP server: Health.Ready is nil")
	case logger == nil:
		return nil, errors.New("cannot create HTTP server: logger is nil")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("cannot create HTTP server: %w", err)
	}
	if deps.Health.Started.IsZero() {
		deps.Health.Started = time.Now()
	}
	s := &Server{
		cfg:     c,
		deps:    deps,
		logger:  logger,
		cursors: userservice.NewCursorSigner(cursorKey(c.JWTSecret)),
		mask:    newMasker(c.SensitiveFields),
		cors:    newCORSPolicy(c.CORS),
	}
	if c.SecurityHeaders {
		// Set with SetCanonical: Set would normalize the key on every answer.
		for _, h := range securityHeaders() {
			s.headers = append(s.headers, [2][]byte{fasthttp.AppendNormalizedHeaderKey(nil, h[0]), []byte(h[1])})
		}
	}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.deadlines = newRequestDeadlines(s.base, c.RequestTimeout)
	keys := jwtKeys{algorithms: c.JWTAlgorithms, secret: c.JWTSecret, publicKey: c.JWTPublicKey}
	if c.JWKSURL != "" {
		// The JWKS client's background refresh ends with the server (cancelBase).
		if keys.jwks, err = newJWKS(s.base, c.JWKSURL, c.JWKSRefreshInterval, c.JWKSUnknownKIDInterval, logger); err != nil {
			s.cancelBase()
			return nil, fmt.Errorf("cannot create HTTP server: %w", err)
		}
	}
	s.auth = newAuthenticator(keys, c.TokenCacheSize, deps.Directory)
	s.readyProbe = newProbeCache(c.HealthCacheTTL, deps.Health.Ready)
	s.detailedProbe = newProbeCache(c.HealthCacheTTL, s.checkDependencies)
	s.streams, s.stopStreams = context.WithCancel(s.base)

	r := router.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.HandleOPTIONS = true
	s.unmatched = map[string]*endpoint{}
	for _, m := range knownMethods() {
		s.unmatched[m] = newEndpoint(m, routeUnmatched, false, true)
	}
	s.preflight = newEndpoint(fasthttp.MethodOptions, routePreflight, false, false)
	r.NotFound = s.unmatchedHandler(s.routeNotFound)
	r.MethodNotAllowed = s.unmatchedHandler(s.methodNotAllowed)
	r.GlobalOPTIONS = s.unmatchedHandler(s.options)
	s.routes(r)
	s.router = r
	s.handler = s.serve

	s.srv = &fasthttp.Server{
		Handler:            s.handler,
		ErrorHandler:       s.connectionError,
		MaxRequestBodySize: c.MaxBodyBytes,
		// Bodies beyond MaxRequestBodySize reach the handler as a stream: a job
		// upload (POST /jobs) is read row by row; any other route answers 413
		// (serve, limitBody).
		StreamRequestBody:     true,
		ReadBufferSize:        16 << 10, // room for long bearer tokens
		ReadTimeout:           c.ReadTimeout,
		WriteTimeout:          c.ReadTimeout,
		IdleTimeout:           c.IdleTimeout,
		Concurrency:           c.MaxConns,
		MaxConnsPerIP:         c.MaxConnsPerIP,
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
		// Every body is JSON: a multipart body must reach the handler to get its 415,
		// not be parsed (and refused with a reset) by the server first.
		DisablePreParseMultipartForm: true,
		Logger:                       fasthttpLogger{logger},
	}
	return s, nil
}

// Handler returns the request handler (for tests and custom servers).
func (s *Server) Handler() fasthttp.RequestHandler { return s.handler }

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); err != nil {
		return fmt.Errorf("cannot serve HTTP: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for in-flight requests to
// finish, or for ctx to end. Request contexts are cancelled afterwards.
//
// It first drains for DrainGrace: the server still accepts and answers, but
// every answer closes its connection and /health/ready answers 503. A request a
// client sent just before the signal may still sit unread, in the listener's
// accept queue or on a connection whose goroutine has not read it yet; closing
// the listener at once resets the first, and fasthttp's shutdown closes the
// second as idle (TestSIGTERMUnderLoad saw both under load: "connection reset"
// for requests sent 3 ms before SIGTERM). The grace gives them time to be read.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.shutdown.Do(func() {
		s.draining.Store(true)
		s.stopStreams()
		grace := time.NewTimer(s.cfg.DrainGrace)
		select {
		case <-grace.C:
		case <-ctx.Done():
			grace.Stop()
		}
		err = s.srv.ShutdownWithContext(ctx)
		s.cancelBase()
	})
	if err != nil {
		return fmt.Errorf("cannot shut down HTTP server: %w", err)
	}
	return nil
}

// fasthttpLogger sends fasthttp's own messages to the slog logger.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Warn(strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "fasthttp")
}

// cursorKey is the secret pagination cursors are signed with: the HS256 secret
// when there is one. A deployment that verifies only RS256/ES256 tokens may have
// no JWT_SECRET; its cursors are then signed with a random key of this process,
// valid until it restarts and only on this node (documented in the README).
func cursorKey(jwtSecret []byte) []byte {
	if len(jwtSecret) >= 32 {
		return jwtSecret
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(fmt.Sprintf("cannot read random bytes: %v", err)) // crypto/rand never fails on Linux
	}
	return key
}
