package http

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// request is one API call as a handler sees it. It lives only while the handler
// runs: anything kept past it is copied out of fc first.
type request struct {
	fc  *fasthttp.RequestCtx
	ctx context.Context // carries the request's deadline
	s   *Server

	requestID     string
	correlationID string

	claims  *claims // the verified token, nil without one
	authErr error   // why the token was refused
	caller  *caller // resolved on demand by resolveCaller
	idem    *idemState
}

// writeJSON sends a JSON body.
func (r *request) writeJSON(status int, body []byte) {
	r.fc.Response.SetStatusCode(status)
	r.fc.Response.Header.SetContentType("application/json; charset=utf-8")
	r.fc.Response.SetBody(body)
}

// okUser sends the success envelope of one user profile (userjson.go) from a
// pooled buffer: GET /me's answer. A user in ok's data is encoded by the same
// appender through renderSuccess.
func (r *request) okUser(status int, u *userservice.User, message string) {
	buf := envelopeBuffers.Get().(*[]byte)
	*buf = appendUserEnvelope((*buf)[:0], u, message, userservice.Now())
	r.writeJSON(status, *buf) // copies
	if cap(*buf) <= 64<<10 {
		envelopeBuffers.Put(buf)
	}
}

// ok sends the success envelope.
func (r *request) ok(status int, data any, message string, page *userservice.Pagination) error {
	b, err := renderSuccess(data, message, page)
	if err != nil {
		return err
	}
	r.writeJSON(status, b)
	return nil
}

// etag sends the user's version as the entity tag.
func (r *request) etag(version int64) {
	b := make([]byte, 0, 24)
	b = append(b, '"')
	b = strconv.AppendInt(b, version, 10)
	b = append(b, '"')
	r.fc.Response.Header.SetBytesV("ETag", b)
}

// fail sends the error envelope for err. Only server-side failures are logged,
// with their cause; a 4xx answer of an idempotent request is stored for replay.
func (r *request) fail(err error) {
	e, status := wireError(err)
	msg := e.Message
	if status >= fasthttp.StatusInternalServerError {
		level := slog.LevelError
		if status == fasthttp.StatusServiceUnavailable {
			level = slog.LevelWarn
		}
		r.s.logger.LogAttrs(r.s.base, level, "request failed",
			slog.String("path", string(r.fc.Path())), slog.String("requestId", r.requestID),
			slog.String("code", e.Code), slog.String("error", r.s.mask.text(err.Error())))
		if status == fasthttp.StatusInternalServerError && r.s.cfg.Development && e.Err != nil {
			msg += ": " + r.s.mask.text(e.Err.Error())
		}
	}
	if status == fasthttp.StatusForbidden && r.caller != nil && r.s.logger.Enabled(r.s.base, slog.LevelDebug) {
		r.s.logger.LogAttrs(r.s.base, slog.LevelDebug, "access denied",
			slog.String("requestId", r.requestID), slog.String("userId", r.caller.id),
			slog.String("email", r.s.mask.field("email", r.caller.claims.Email)), slog.String("code", e.Code))
	}
	if status == fasthttp.StatusUnauthorized {
		r.fc.Response.Header.Set("WWW-Authenticate", `Bearer realm="user-service"`)
	}
	if errors.Is(err, userservice.ErrPlacementInFlux) || errors.Is(err, userservice.ErrOwnerLost) {
		r.fc.Response.Header.Set("Retry-After", "1") // cluster mode: the user is moving
	}
	body := renderError(e.Code, msg, e.Details, nil)
	r.writeJSON(status, body)
	if r.idem != nil && status < fasthttp.StatusInternalServerError {
		r.storeAnswer(status, body)
	}
}

// param returns a path parameter set by the router (already a copy).
func (r *request) param(name string) string {
	v, _ := r.fc.UserValue(name).(string)
	return v
}

// userIDParam returns the {id} path parameter: "me" or a canonical UUID.
func (r *request) userIDParam() (string, error) {
	v := r.param("id")
	if v == "me" {
		return v, nil
	}
	if id, ok := userservice.ParseID(v); ok {
		return id, nil
	}
	return "", invalidParam("id", "must be a UUID or 'me'")
}

// uuidParam returns a path parameter that must be a UUID, canonicalized.
func (r *request) uuidParam(name string) (string, error) {
	if id, ok := userservice.ParseID(r.param(name)); ok {
		return id, nil
	}
	return "", invalidParam(name, "must be a UUID")
}

// categoryParam returns the {category} path parameter.
func (r *request) categoryParam() (string, error) {
	c := r.param("category")
	if !userservice.ValidCategory(c) {
		return "", invalidParam("category", "must be one of notifications, ui, learning, privacy")
	}
	return c, nil
}

// userCourseParams returns the {id} and {courseId} path parameters, checked in
// that order.
func (r *request) userCourseParams() (id, course string, err error) {
	if id, err = r.userIDParam(); err != nil {
		return "", "", err
	}
	if course, err = r.uuidParam("courseId"); err != nil {
		return "", "", err
	}
	return id, course, nil
}

// userCategoryParams returns the {id} and {category} path parameters, checked
// in that order.
func (r *request) userCategoryParams() (id, category string, err error) {
	if id, err = r.userIDParam(); err != nil {
		return "", "", err
	}
	if category, err = r.categoryParam(); err != nil {
		return "", "", err
	}
	return id, category, nil
}

// query copies the query string out of the request.
func (r *request) query() url.Values {
	q := url.Values{}
	for k, v := range r.fc.QueryArgs().All() {
		q.Add(string(k), string(v))
	}
	return q
}

// page parses page and limit within the configured bounds.
func (r *request) page(q url.Values) (userservice.PageQuery, error) {
	p, err := userservice.ParsePageQuery(q, r.s.cfg.DefaultPageSize)
	if err != nil {
		return p, err
	}
	return p, r.s.checkLimit(p.Limit)
}

// checkLimit refuses a page size over the configured maximum (400).
func (s *Server) checkLimit(limit int) error {
	if limit > s.cfg.MaxPageSize {
		return userservice.ValidationError([]userservice.FieldError{{Field: "limit", Message: "must be an integer from 1 to " + strconv.Itoa(s.cfg.MaxPageSize)}})
	}
	return nil
}

// ifMatch parses If-Match (400 when malformed). Nil means no precondition.
func (r *request) ifMatch() (*userservice.Precondition, error) {
	return parseIfMatch(r.fc.Request.Header.Peek("If-Match"))
}

var errBadIfMatch = invalidParam("If-Match", `must be * or a comma-separated list of entity tags such as "5"`)

// parseIfMatch parses an If-Match value (RFC 9110 §13.1.1):
//
//	If-Match = "*" / #entity-tag
//	entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / %x80-FF
//
// with the list syntax of §5.6.1 (OWS around commas, empty elements allowed, at
// least one tag). Only a value outside this grammar is an error; a well-formed
// tag that names no version is kept as one that matches nothing (a 412 once the
// target exists). An empty value is no precondition.
func parseIfMatch(h []byte) (*userservice.Precondition, error) {
	v := bytes.Trim(h, " \t")
	if len(v) == 0 {
		return nil, nil
	}
	if len(v) == 1 && v[0] == '*' {
		return &userservice.Precondition{Any: true}, nil
	}
	p := &userservice.Precondition{}
	tags := 0
	for len(v) > 0 {
		v = bytes.TrimLeft(v, " \t")
		if len(v) > 0 && v[0] == ',' { // an empty list element
			v = v[1:]
			continue
		}
		if len(v) == 0 {
			break
		}
		weak := bytes.HasPrefix(v, []byte("W/"))
		if weak {
			v = v[2:]
		}
		if len(v) == 0 || v[0] != '"' {
			return nil, errBadIfMatch
		}
		end := 1
		for end < len(v) && isETagChar(v[end]) {
			end++
		}
		if end == len(v) || v[end] != '"' {
			return nil, errBadIfMatch
		}
		opaque := v[1:end]
		v = bytes.TrimLeft(v[end+1:], " \t")
		if len(v) > 0 && v[0] != ',' {
			return nil, errBadIfMatch
		}
		tags++
		if n, ok := versionTag(opaque); ok && !weak {
			p.Versions = append(p.Versions, n)
		}
	}
	if tags == 0 {
		return nil, errBadIfMatch
	}
	return p, nil
}

// isETagChar reports whether c is an etagc: any visible byte but DQUOTE, or obs-text.
func isETagChar(c byte) bool {
	return c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80
}

// versionTag returns the version that an opaque tag names: exactly the decimal
// text that [request.etag] sends, so "05" or "+5" name nothing.
func versionTag(opaque []byte) (int64, bool) {
	n, err := strconv.ParseInt(string(opaque), 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != string(opaque) {
		return 0, false
	}
	return n, true
}

// decode reads the JSON body into v (413, 415, 400).
func (r *request) decode(v any) error {
	body := r.fc.Request.Body()
	if err := checkBody(body, r.fc.Request.Header.ContentType(), r.s.cfg.MaxBodyBytes); err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// meta is the Meta of a command sent on behalf of this request.
func (r *request) meta(ifMatch *userservice.Precondition) userservice.Meta {
	m := userservice.Meta{CorrelationID: r.correlationID, RequestID: r.requestID, IfMatch: ifMatch, Now: userservice.Now(), NoAudit: r.s.cfg.NoAudit}
	if r.caller != nil {
		m.ActorID = r.caller.actorID()
	}
	return m
}

// access is who may use a user-scoped route.
type access int

const (
	ownerOrAdmin access = iota // the user themself, or an admin
	adminOnly
)

// resolveCaller finds the caller's profile once per request (403 when suspended
// or deleted). It also records the caller's activity.
func (r *request) resolveCaller() (*caller, error) {
	if r.caller != nil {
		return r.caller, nil
	}
	c, err := r.s.auth.resolveCaller(r.ctx, r.s.deps.Users, r.claims, userservice.Now())
	if err != nil {
		return nil, err
	}
	r.caller = c
	return c, nil
}

// requireAdmin resolves the caller and refuses anyone but an admin.
func (r *request) requireAdmin() error {
	c, err := r.resolveCaller()
	if err != nil {
		return err
	}
	if c.role != userservice.RoleAdmin {
		return errForbiddenAdmin
	}
	return nil
}

// authorize resolves the caller and the target of a user-scoped route ({id} or
// "me") and applies the access rule: 403 before 404.
func (r *request) authorize(pathID string, a access) (string, error) {
	c, err := r.resolveCaller()
	if err != nil {
		return "", err
	}
	admin := c.role == userservice.RoleAdmin
	if a == adminOnly && !admin {
		return "", errForbiddenAdmin
	}
	id := pathID
	if id == "me" {
		if c.id == "" {
			return "", userservice.ErrUserNotFound // a token without a profile
		}
		id = c.id
	}
	if admin || id == c.id {
		return id, nil
	}
	if sub, ok := userservice.ParseID(c.claims.Subject); ok && c.id == "" && sub == id {
		return id, nil // the caller's own id, not created yet: 404 follows
	}
	return "", errForbiddenOwner
}

// state returns the target's committed state, reusing the caller's when the
// target is the caller.
func (r *request) state(id string) (*userservice.State, error) {
	if r.caller != nil && r.caller.state != nil && r.caller.id == id {
		return r.caller.state, nil
	}
	st, err := r.s.deps.Users.Get(r.ctx, id, nil)
	if err == nil && st.User.Erased() {
		return nil, userservice.ErrUserNotFound // erased (issue 14): gone for every route
	}
	return st, err
}

// paginate returns one page of items and its metadata.
func paginate[T any](items []T, p userservice.PageQuery) ([]T, userservice.Pagination) {
	total := len(items)
	from := min(p.Offset(), total)
	to := min(from+p.Limit, total)
	return items[from:to], userservice.NewPagination(p.Page, p.Limit, total)
}
