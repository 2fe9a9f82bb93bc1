package http

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// rateLimitErrors counts limiter failures; requests then pass (fail open).
var rateLimitErrors = metrics.NewCounter(`user_service_ratelimit_failopen_total`)

// Route labels of requests that matched no route, and of CORS preflights.
const (
	routeUnmatched = "unmatched"
	routePreflight = "preflight"
	methodOther    = "OTHER"
)

// knownMethods are the method labels of unmatched requests; anything else is
// counted as OTHER so clients cannot invent label values.
func knownMethods() []string {
	return []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", methodOther}
}

// handlerFunc is a route's handler. It writes the answer through r, or returns
// an error that errors.go turns into the error envelope.
type handlerFunc func(r *request) error

// endpoint is one route as the middleware sees it: its labels, whether it needs
// a token and counts against the rate limit, and its metrics, resolved once so
// the hot path allocates no metric names.
type endpoint struct {
	method, route string
	auth          bool
	limited       bool
	duration      *metrics.PrometheusHistogram
	byStatus      [600]atomic.Pointer[metrics.Counter]
}

func newEndpoint(method, route string, auth, limited bool) *endpoint {
	return &endpoint{
		method: method, route: route, auth: auth, limited: limited,
		duration: metrics.GetOrCreatePrometheusHistogram(
			fmt.Sprintf(`user_service_request_duration_seconds{method=%q,route=%q}`, method, route)),
	}
}

func (e *endpoint) count(status int) {
	if status < 100 || status >= len(e.byStatus) {
		status = 500
	}
	c := e.byStatus[status].Load()
	if c == nil {
		c = metrics.GetOrCreateCounter(fmt.Sprintf(`user_service_requests_total{method=%q,route=%q,status="%d"}`, e.method, e.route, status))
		e.byStatus[status].Store(c)
	}
	c.Inc()
}

// api registers an authenticated, rate-limited /api/v1 route.
func (s *Server) api(r *router.Router, method, route string, h handlerFunc) {
	ep := newEndpoint(method, route, true, true)
	r.Handle(method, route, func(fc *fasthttp.RequestCtx) { s.run(ep, h, fc) })
}

// public registers a route without token and without rate limit (/health*,
// /metrics, /docs*).
func (s *Server) public(r *router.Router, method, route string, h handlerFunc) {
	ep := newEndpoint(method, route, false, false)
	r.Handle(method, route, func(fc *fasthttp.RequestCtx) { s.run(ep, h, fc) })
}

// unmatchedHandler wraps the router's 404, 405 and OPTIONS answers.
func (s *Server) unmatchedHandler(h handlerFunc) fasthttp.RequestHandler {
	return func(fc *fasthttp.RequestCtx) {
		ep, ok := s.unmatched[string(fc.Method())]
		if !ok {
			ep = s.unmatched[methodOther]
		}
		s.run(ep, h, fc)
	}
}

// serve is the outermost handler: headers every answer carries, CORS, then
// the router.
func (s *Server) serve(fc *fasthttp.RequestCtx) {
	if s.draining.Load() {
		fc.SetConnectionClose() // shutting down: no next request on this connection
	}
	for _, h := range s.headers {
		fc.Response.Header.SetCanonical(h[0], h[1])
	}
	if s.cors.enabled {
		if origin := fc.Request.Header.Peek("Origin"); len(origin) > 0 {
			s.cors.apply(fc, origin)
			if fc.IsOptions() && len(fc.Request.Header.Peek("Access-Control-Request-Method")) > 0 {
				s.run(s.preflight, s.corsPreflight, fc)
				return
			}
		}
	}
	if !s.limitBody(fc) {
		return
	}
	s.router.Handler(fc)
}

// limitBody enforces MaxBodyBytes on every route but a job upload. The server
// streams every body (StreamRequestBody) instead of refusing large ones, so
// that POST /jobs can read an upload of any size row by row; for every other
// route the body is read here, up to the limit, and a larger one answers 413
// and closes the connection (its rest is never read). Reading it here also
// keeps handlers' PostBody from reading a stream (fasthttp warns on that). It
// reports whether the request goes on.
func (s *Server) limitBody(fc *fasthttp.RequestCtx) bool {
	if !fc.Request.IsBodyStream() || fc.IsPost() && string(fc.Path()) == jobsPath {
		return true
	}
	max := s.cfg.MaxBodyBytes
	if fc.Request.Header.ContentLength() > max {
		fc.SetConnectionClose()
		s.connectionError(fc, fasthttp.ErrBodyTooLarge)
		return false
	}
	buf := bodyBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 {
			buf.Reset()
			bodyBuffers.Put(buf)
		}
	}()
	buf.Reset()
	_, err := buf.ReadFrom(io.LimitReader(fc.RequestBodyStream(), int64(max)+1))
	if err == nil && buf.Len() > max {
		err = fasthttp.ErrBodyTooLarge
	}
	if err != nil {
		fc.SetConnectionClose()
		s.connectionError(fc, err)
		return false
	}
	fc.Request.SetBody(buf.Bytes())
	return true
}

// bodyBuffers are limitBody's read buffers.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// run is the middleware chain of every request: ids, deadline, token, rate
// limit, the handler, panic recovery, metrics and the log line.
func (s *Server) run(ep *endpoint, h handlerFunc, fc *fasthttp.RequestCtx) {
	start := time.Now()
	ctx := s.deadlines.context(start)
	r := &request{
		fc: fc, ctx: ctx, s: s,
		requestID:     headerID(fc.Request.Header.Peek("X-Request-ID")),
		correlationID: headerID(fc.Request.Header.Peek("X-Correlation-ID")),
	}
	fc.Response.Header.Set("X-Request-ID", r.requestID)
	fc.Response.Header.Set("X-Correlation-ID", r.correlationID)
	defer s.finish(ep, r, start)
	defer func() {
		if p := recover(); p != nil {
			s.logger.LogAttrs(s.base, slog.LevelError, "panic while serving request",
				slog.String("route", ep.route), slog.String("requestId", r.requestID),
				slog.String("panic", s.mask.text(fmt.Sprint(p))), slog.String("stack", string(debug.Stack())))
			fc.Response.ResetBody()
			r.writeJSON(fasthttp.StatusInternalServerError, renderError(userservice.ECodeInternal, "Internal server error", nil, nil))
		}
	}()

	limited := ep.limited && s.deps.RateLimiter != nil
	if ep.route == routeUnmatched {
		limited = s.deps.RateLimiter != nil && !exemptPath(fc.Path())
	}
	if ep.auth || (limited && len(fc.Request.Header.Peek("Authorization")) > 0) {
		tok, err := bearer(fc.Request.Header.Peek("Authorization"))
		if err == nil {
			r.claims, err = s.auth.verify(ctx, tok)
		}
		r.authErr = err
	}
	var counted string // the limiter key this request was counted under
	if limited {
		var ok bool
		if counted, ok = s.rateLimit(r); !ok {
			return
		}
	}
	if counted != "" && s.cfg.RateLimitSkipSuccessful {
		// Only failed requests count (RATE_LIMIT_SKIP_SUCCESSFUL, the spec's
		// skipSuccessfulRequests): an answer below 400 is refunded.
		defer func() {
			if r.fc.Response.StatusCode() < 400 {
				if err := s.deps.RateLimiter.Refund(r.ctx, counted); err != nil && s.limiterWarn.allow(time.Now(), 5*time.Second) {
					s.logger.Warn("rate limiter refund failed", "error", s.mask.text(err.Error()))
				}
			}
		}()
	}
	if ep.auth && r.authErr != nil {
		r.fail(r.authErr)
		return
	}
	if err := h(r); err != nil {
		r.fail(err)
	}
}

// finish records the metrics and writes the one log line of the request.
func (s *Server) finish(ep *endpoint, r *request, start time.Time) {
	status := r.fc.Response.StatusCode()
	ep.count(status)
	ep.duration.UpdateDuration(start)
	if !s.logger.Enabled(s.base, slog.LevelInfo) {
		return
	}
	userID := ""
	switch {
	case r.caller != nil && r.caller.id != "":
		userID = r.caller.id
	case r.claims != nil:
		userID = r.claims.Subject
	}
	s.logger.LogAttrs(s.base, slog.LevelInfo, "request",
		slog.String("method", ep.method),
		slog.String("route", ep.route),
		slog.Int("status", status),
		slog.Float64("durationMs", float64(time.Since(start).Microseconds())/1000),
		slog.String("requestId", r.requestID),
		slog.String("correlationId", r.correlationID),
		slog.String("userId", userID),
		slog.String("clientIp", s.clientIP(r.fc)),
	)
}

// headerID returns an id header's value when it is a sane token (at most 128
// characters of [A-Za-z0-9._:-]), else a new id: the value ends up in logs and
// events, so nothing else gets through.
func headerID(v []byte) string {
	if len(v) == 0 || len(v) > 128 {
		return userservice.NewID()
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return userservice.NewID()
		}
	}
	return string(v)
}

// exemptPath reports whether the path is outside rate limiting (CONTRACT.md,
// Details: /health*, /metrics, /docs*).
func exemptPath(p []byte) bool {
	return bytes.HasPrefix(p, []byte("/health")) || bytes.Equal(p, []byte("/metrics")) || bytes.HasPrefix(p, []byte("/docs"))
}

// RateLimiter decides whether a request may proceed. Implementations are safe
// for concurrent use.
type RateLimiter interface {
	// Allow counts one request against key ("user:<sub>" or "ip:<addr>").
	Allow(ctx context.Context, key string) (Decision, error)
	// Refund takes back one request counted by Allow (RATE_LIMIT_SKIP_SUCCESSFUL).
	Refund(ctx context.Context, key string) error
}

// Decision is a RateLimiter's answer.
type Decision struct {
	Allowed    bool
	Limit      int
	Remaining  int
	Reset      time.Time     // when the window resets
	RetryAfter time.Duration // when refused: how long to wait
}

// rateLimit applies the limiter; it answers 429 and returns false when the
// request must stop. A failing limiter lets requests through. key is the key the
// request was counted under, "" when the limiter failed.
func (s *Server) rateLimit(r *request) (key string, ok bool) {
	if r.claims != nil {
		key = "user:" + r.claims.Subject
	} else {
		key = "ip:" + s.clientIP(r.fc)
	}
	d, err := s.deps.RateLimiter.Allow(r.ctx, key)
	if err != nil {
		rateLimitErrors.Inc()
		if s.limiterWarn.allow(time.Now(), 5*time.Second) {
			s.logger.Warn("rate limiter failed; letting requests through", "error", s.mask.text(err.Error()))
		}
		return "", true
	}
	// X-RateLimit-Reset is in seconds until the window resets, as the spec's
	// @fastify/rate-limit sends it.
	h := &r.fc.Response.Header
	var num [20]byte // the header copies the value: no string per header and request
	h.SetBytesV("X-RateLimit-Limit", strconv.AppendInt(num[:0], int64(d.Limit), 10))
	h.SetBytesV("X-RateLimit-Remaining", strconv.AppendInt(num[:0], int64(max(0, d.Remaining)), 10))
	h.SetBytesV("X-RateLimit-Reset", strconv.AppendInt(num[:0], ceilSeconds(time.Until(d.Reset)), 10))
	if d.Allowed {
		return key, true
	}
	retry := max(1, ceilSeconds(d.RetryAfter))
	h.Set("Retry-After", strconv.FormatInt(retry, 10))
	r.writeJSON(fasthttp.StatusTooManyRequests, renderError(userservice.ECodeRateLimited, "Rate limit exceeded", nil, &retry))
	return key, false
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(math.Ceil(d.Seconds()))
}

// clientIP is the address the rate limiter and the log line know a client by:
// the connection's peer, unless that peer is a trusted proxy (TRUST_PROXY).
// Then X-Forwarded-For is read from the right, each hop appended by a proxy we
// trust, and the first address not in TRUST_PROXY is the client: whatever a
// client writes into the header itself sits left of it and is never believed.
// When every hop is trusted the leftmost is the client; a hop that is not an IP
// address ends the walk at the last good one.
func (s *Server) clientIP(fc *fasthttp.RequestCtx) string {
	peer, _ := netip.AddrFromSlice(fc.RemoteIP())
	peer = peer.Unmap()
	if len(s.cfg.TrustedProxies) == 0 || !s.trusted(peer) {
		return peer.String()
	}
	var hops []string
	for _, v := range fc.Request.Header.PeekAll("X-Forwarded-For") {
		for _, h := range strings.Split(string(v), ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	client := peer
	for i := len(hops) - 1; i >= 0 && s.trusted(client); i-- {
		hop, err := netip.ParseAddr(hops[i])
		if err != nil {
			break
		}
		client = hop.Unmap()
	}
	return client.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// logThrottle lets a repeated log line through at most once per interval.
type logThrottle struct{ last atomic.Int64 }

func (t *logThrottle) allow(now time.Time, every time.Duration) bool {
	last := t.last.Load()
	if now.UnixNano()-last < int64(every) {
		return false
	}
	return t.last.CompareAndSwap(last, now.UnixNano())
}

// corsPolicy is the CORS configuration, parsed once.
type corsPolicy struct {
	enabled     bool
	anyOrigin   bool
	origins     map[string]bool
	credentials bool
	methods     string
	headers     string
}

// exposedHeaders are the answer headers a browser script may read.
const exposedHeaders = "ETag, Location, X-Request-ID, X-Correlation-ID, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After, Idempotent-Replayed"

// ownRequestHeaders are the request headers this service defines; a
// preflight always allows them besides CORS_ALLOWED_HEADERS (whose default is
// the spec's), or a browser client could not use conditional writes,
// idempotent retries or request tracing.
var ownRequestHeaders = []string{"If-Match", "Idempotency-Key", "X-Correlation-ID", "X-Request-ID"}

func newCORSPolicy(c CORS) corsPolicy {
	allowed := append([]string(nil), c.AllowedHeaders...)
	for _, h := range ownRequestHeaders {
		if !slices.ContainsFunc(allowed, func(a string) bool { return strings.EqualFold(a, h) }) {
			allowed = append(allowed, h)
		}
	}
	p := corsPolicy{origins: map[string]bool{}, credentials: c.Credentials,
		methods: strings.Join(c.Methods, ", "), headers: strings.Join(allowed, ", ")}
	for _, o := range strings.Split(c.Origin, ",") {
		o = strings.TrimSpace(o)
		switch o {
		case "":
		case "*":
			p.anyOrigin, p.enabled = true, true
		default:
			p.origins[strings.TrimRight(o, "/")] = true
			p.enabled = true
		}
	}
	return p
}

// apply adds the CORS answer headers for an allowed origin.
func (p *corsPolicy) apply(fc *fasthttp.RequestCtx, origin []byte) {
	h := &fc.Response.Header
	h.Add("Vary", "Origin")
	if !p.anyOrigin && !p.origins[string(origin)] {
		return
	}
	if p.anyOrigin && !p.credentials {
		h.Set("Access-Control-Allow-Origin", "*")
	} else { // browsers refuse "*" together with credentials: echo the origin
		h.SetBytesV("Access-Control-Allow-Origin", origin)
	}
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	h.Set("Access-Control-Expose-Headers", exposedHeaders)
}

// corsPreflight answers an OPTIONS preflight.
func (s *Server) corsPreflight(r *request) error {
	h := &r.fc.Response.Header
	if len(h.Peek("Access-Control-Allow-Origin")) > 0 {
		h.Set("Access-Control-Allow-Methods", s.cors.methods)
		h.Set("Access-Control-Allow-Headers", s.cors.headers)
		h.Set("Access-Control-Max-Age", "600")
	}
	r.fc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// securityHeaders are helmet's defaults, with the CSP of the spec's app setup.
func securityHeaders() [][2]string {
	return [][2]string{
		{"Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; img-src 'self' data: https:; base-uri 'self'; font-src 'self' https: data:; form-action 'self'; frame-ancestors 'self'; object-src 'none'"},
		{"Cross-Origin-Opener-Policy", "same-origin"},
		{"Cross-Origin-Resource-Policy", "same-origin"},
		{"Origin-Agent-Cluster", "?1"},
		{"Referrer-Policy", "no-referrer"},
		{"Strict-Transport-Security", "max-age=15552000; includeSubDomains"},
		{"X-Content-Type-Options", "nosniff"},
		{"X-DNS-Prefetch-Control", "off"},
		{"X-Download-Options", "noopen"},
		{"X-Frame-Options", "SAMEORIGIN"},
		{"X-Permitted-Cross-Domain-Policies", "none"},
		{"X-XSS-Protection", "0"},
	}
}

// routeNotFound answers a path no route has (404 in the envelope).
func (s *Server) routeNotFound(r *request) error { return errRouteNotFound }

// methodNotAllowed answers a known path with another method; the router has set
// Allow already.
func (s *Server) methodNotAllowed(r *request) error { return errMethod }

// options answers a plain OPTIONS request; the router has set Allow already.
func (s *Server) options(r *request) error {
	r.fc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// connectionError answers what fasthttp rejects before any handler runs (body
// too large, header too large, read timeout, malformed request) in the envelope.
func (s *Server) connectionError(fc *fasthttp.RequestCtx, err error) {
	code, msg := codeBadRequest, "Malformed request"
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		code, msg = errTooLarge.Code, errTooLarge.Message
	case errors.As(err, &small):
		code, msg = codeHeaderTooLarge, "Request headers are too large"
	default:
		if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
			code, msg = codeRequestTimeout, "Request timed out"
		}
	}
	for _, h := range s.headers {
		fc.Response.Header.SetCanonical(h[0], h[1])
	}
	fc.Response.SetStatusCode(statusByCode[code])
	fc.Response.Header.SetContentType("application/json; charset=utf-8")
	fc.Response.SetBody(renderError(code, msg, nil, nil))
	ep := s.unmatched[methodOther]
	ep.count(statusByCode[code])
	if s.logger.Enabled(s.base, slog.LevelDebug) {
		s.logger.Debug("request rejected by the server", "status", statusByCode[code], "error", err.Error())
	}
}
