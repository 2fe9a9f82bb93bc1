package userservice

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
)

// Count modes of a list (count=exact|none): the exact total costs a count of
// every match, which a dashboard that only scrolls need not pay for (issue 15).
const (
	CountExact = "exact"
	CountNone  = "none"
)

// Position is where a keyset-paginated list stopped: the sort key of the last
// item and its id, the tie-breaker. A later page holds the items strictly after
// it in the list's order, so items inserted or removed meanwhile shift nothing.
type Position struct {
	// Key is the sort key as text (RFC 3339 with microseconds for a timestamp).
	Key string `json:"k"`
	// Null says the sort key is NULL (lastActiveAt of a user never active).
	Null bool `json:"n,omitempty"`
	// ID is the id of the last item.
	ID string `json:"i"`
}

// Cursor is the decoded `cursor` query parameter: a position in one list, the
// filters and sort it was issued for, and the page number it opens.
type Cursor struct {
	List    string            `json:"l"`
	Filters map[string]string `json:"f,omitempty"`
	Page    int               `json:"p"`
	Pos     Position          `json:"a"`
}

// Cursor lists and the query parameters each one binds.
const (
	CursorListUsers = "users"
	// cursorListEnrollments is followed by the user's id.
	cursorListEnrollments = "enrollments/"
)

// UserSearchFilters are the query parameters of the admin search that a cursor is
// bound to: a cursor answers 400 with any other value of them. limit and count
// are not bound: each page may choose them (say, the total on the first page
// only).
// "attr.*" binds every attr.<namespace>.<key> filter (a name ending in * binds
// every parameter with that prefix).
var UserSearchFilters = []string{"search", "role", "status", "sortBy", "sortOrder", AttrParamPrefix + "*"}

// expandParams replaces each prefix pattern of params ("attr.*") with the names
// having that prefix among the keys of q and of bound.
func expandParams(params []string, q url.Values, bound map[string]string) []string {
	out := make([]string, 0, len(params))
	for _, p := range params {
		prefix, ok := strings.CutSuffix(p, "*")
		if !ok {
			out = append(out, p)
			continue
		}
		seen := map[string]bool{}
		for k := range q {
			seen[k] = seen[k] || strings.HasPrefix(k, prefix)
		}
		for k := range bound {
			seen[k] = seen[k] || strings.HasPrefix(k, prefix)
		}
		for _, k := range sortedKeys(seen) {
			if seen[k] {
				out = append(out, k)
			}
		}
	}
	return out
}

// EnrollmentListFilters are the query parameters of an enrollment list that a
// cursor is bound to.
var EnrollmentListFilters = []string{"status"}

// EnrollmentCursorList names the enrollment list of one user.
func EnrollmentCursorList(userID string) string { return cursorListEnrollments + userID }

// ErrInvalidCursor is answered (400) for a cursor that was not issued by this
// service, was altered, or belongs to another list.
var ErrInvalidCursor = ValidationError([]FieldError{{Field: "cursor", Message: "is not a cursor this list issued"}})

// errCursorFilters is answered (400) for a cursor sent with a filter, sort or page
// other than those it was issued for.
func errCursorFilters(param string) error {
	return ValidationError([]FieldError{{Field: param, Message: "differs from the query the cursor was issued for; send the cursor alone or with the same parameters"}})
}

// CursorSigner issues and checks cursors. A cursor is base64url(JSON) "." followed
// by base64url(HMAC-SHA256) over the JSON, so a client cannot forge a position
// or carry a cursor over to other filters. It is safe for concurrent use.
type CursorSigner struct{ key []byte }

// NewCursorSigner derives the signing key from secret (the JWT secret): a
// separate key, so that a cursor's MAC can never serve as a token signature.
func NewCursorSigner(secret []byte) *CursorSigner {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("userservice cursor key v1"))
	return &CursorSigner{key: m.Sum(nil)}
}

func (s *CursorSigner) mac(b []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(b)
	return m.Sum(nil)[:16]
}

// Encode returns the opaque text of c.
func (s *CursorSigner) Encode(c Cursor) string {
	b, _ := json.Marshal(c) // strings and ints only: cannot fail
	enc := base64.RawURLEncoding
	return enc.EncodeToString(b) + "." + enc.EncodeToString(s.mac(b))
}

// Decode checks text's signature and returns the cursor, or ErrInvalidCursor.
func (s *CursorSigner) Decode(text string) (Cursor, error) {
	var c Cursor
	body, sig, ok := strings.Cut(text, ".")
	if !ok || len(text) > 4096 {
		return c, ErrInvalidCursor
	}
	enc := base64.RawURLEncoding
	b, err1 := enc.DecodeString(body)
	got, err2 := enc.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(got, s.mac(b)) {
		return c, ErrInvalidCursor
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil || c.Page < 2 {
		return Cursor{}, ErrInvalidCursor
	}
	return c, nil
}

// Resolve applies a `cursor` parameter to the query q of list: without one it
// returns q and nil. With one it checks the signature and the list, refuses
// (400) a `page` or a filter of params whose value differs from the one the cursor
// was issued for, and returns q with those filters filled in from the cursor (so
// the cursor alone is enough) and the cursor.
func (s *CursorSigner) Resolve(list string, q url.Values, params []string) (url.Values, *Cursor, error) {
	if !q.Has("cursor") {
		return q, nil, nil
	}
	c, err := s.Decode(q.Get("cursor"))
	if err != nil {
		return q, nil, err
	}
	if c.List != list {
		return q, nil, ErrInvalidCursor
	}
	if q.Has("page") {
		return q, nil, errCursorFilters("page")
	}
	out := url.Values{}
	for k, v := range q {
		out[k] = v
	}
	for _, p := range expandParams(params, q, c.Filters) {
		want, bound := c.Filters[p]
		if q.Has(p) && (!bound || q.Get(p) != want) {
			return q, nil, errCursorFilters(p)
		}
		if bound {
			out.Set(p, want)
		}
	}
	return out, &c, nil
}

// Filters returns the values of params that q carries, for binding a cursor.
func Filters(q url.Values, params []string) map[string]string {
	var m map[string]string
	for _, p := range expandParams(params, q, nil) {
		if q.Has(p) {
			if m == nil {
				m = make(map[string]string, len(params))
			}
			m[p] = q.Get(p)
		}
	}
	return m
}

// parseCount reads count=exact|none (default exact).
func parseCount(v *validator, q url.Values) string {
	switch c := q.Get("count"); {
	case !q.Has("count") || c == CountExact:
		return CountExact
	case c == CountNone:
		return CountNone
	default:
		v.add("count", "must be exact or none")
		return CountExact
	}
}

// ParseListQuery parses page, limit and count of an in-memory list.
func ParseListQuery(q url.Values, defaultLimit int) (PageQuery, string, error) {
	var v validator
	p := parsePage(&v, q, defaultLimit)
	c := parseCount(&v, q)
	return p, c, v.err()
}

// String renders p for logs and test failures: "key"/id.
func (p Position) String() string {
	if p.Null {
		return "null/" + p.ID
	}
	return strconv.Quote(p.Key) + "/" + p.ID
}
