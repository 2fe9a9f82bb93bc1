package userservice

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Search limits.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
	MaxSearchLength = 200
)

// SortFields maps the sortBy values of the API to what they sort.
var SortFields = []string{"createdAt", "updatedAt", "firstName", "lastName", "email", "lastActiveAt"}

// UserSearch is the query of the admin search, GET /api/v1/users.
type UserSearch struct {
	Page      int
	Limit     int
	Search    string
	Role      Role   // "" for any
	Status    Status // "" for any but deleted
	SortBy    string
	SortOrder string // "asc" or "desc"
	// Count is CountExact (the default) or CountNone (no total is computed).
	Count string
	// After, when set, is the position of a cursor: the page holds the users
	// strictly after it in the sort order (keyset pagination), and Page is the
	// page number the cursor opens, for display only.
	After *Position
	// Attrs are the attr.<namespace>.<key>=<value> filters, AND-ed, ordered by
	// parameter name. The edge types each Value by the namespace's schema.
	Attrs []AttrFilter
}

// AttrFilter is one attr.<namespace>.<key>=<text> filter of the admin search.
type AttrFilter struct {
	Namespace, Key, Text string
	// Value is Text as the JSON value of the schema's type ("30" is 30 for an
	// integer); set by [AttributeSchema.FilterValue] before the search runs.
	Value json.RawMessage
}

// Param is the filter's query parameter name.
func (f AttrFilter) Param() string { return AttrParamPrefix + f.Namespace + "." + f.Key }

// AttrParamPrefix starts the query parameters that filter by custom attribute.
const AttrParamPrefix = "attr."

// MaxAttrFilters bounds the attr filters of one search.
const MaxAttrFilters = 10

// parseAttrFilters reads the attr.<namespace>.<key> parameters of q.
func parseAttrFilters(v *validator, q url.Values) []AttrFilter {
	var out []AttrFilter
	for _, k := range sortedKeys(q) {
		rest, ok := strings.CutPrefix(k, AttrParamPrefix)
		if !ok {
			continue
		}
		ns, key, _ := strings.Cut(rest, ".")
		text := q.Get(k)
		switch {
		case !ValidNamespace(ns) || !propertyName.MatchString(key):
			v.add(k, "must be attr.<namespace>.<key> with a valid namespace and property name")
		case len(q[k]) > 1:
			v.add(k, "must be given once")
		case len(text) > MaxSearchLength || hasNUL(text) || !utf8.ValidString(text):
			v.add(k, "must be valid UTF-8 without NUL characters, at most "+strconv.Itoa(MaxSearchLength)+" bytes")
		default:
			out = append(out, AttrFilter{Namespace: ns, Key: key, Text: text})
		}
	}
	if len(out) > MaxAttrFilters {
		v.add("attr", "at most "+strconv.Itoa(MaxAttrFilters)+" attribute filters")
	}
	return out
}

// Pagination describes one page of a list.
type Pagination struct {
	Page       int  `json:"page"`
	Limit      int  `json:"limit"`
	Total      int  `json:"total"`
	TotalPages int  `json:"totalPages"`
	HasNext    bool `json:"hasNext"`
	HasPrev    bool `json:"hasPrev"`
	// NextCursor opens the next page of a keyset-paginated list; nil on the last
	// page. Rendered (null or the cursor) only when Keyset is set.
	NextCursor *string `json:"nextCursor"`
	// Keyset says the list pages by cursor too (the admin search, enrollment lists).
	Keyset bool `json:"-"`
	// Uncounted is count=none: Total and TotalPages are not known and not rendered.
	Uncounted bool `json:"-"`
	// Next is the position of the page's last item when there is a next page; the
	// HTTP edge signs it into NextCursor.
	Next *Position `json:"-"`
}

// MarshalJSON renders the API shape: total and totalPages unless uncounted,
// nextCursor only for a keyset list.
func (p Pagination) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 128)
	b = append(b, `{"page":`...)
	b = strconv.AppendInt(b, int64(p.Page), 10)
	b = append(b, `,"limit":`...)
	b = strconv.AppendInt(b, int64(p.Limit), 10)
	if !p.Uncounted {
		b = append(b, `,"total":`...)
		b = strconv.AppendInt(b, int64(p.Total), 10)
		b = append(b, `,"totalPages":`...)
		b = strconv.AppendInt(b, int64(p.TotalPages), 10)
	}
	b = append(b, `,"hasNext":`...)
	b = strconv.AppendBool(b, p.HasNext)
	b = append(b, `,"hasPrev":`...)
	b = strconv.AppendBool(b, p.HasPrev)
	if p.Keyset {
		b = append(b, `,"nextCursor":`...)
		if p.NextCursor == nil {
			b = append(b, "null"...)
		} else {
			b = strconv.AppendQuote(b, *p.NextCursor) // base64url and '.': nothing to escape
		}
	}
	return append(b, '}'), nil
}

// NewPagination computes the page metadata for total items.
func NewPagination(page, limit, total int) Pagination {
	pages := 0
	if limit > 0 {
		pages = (total + limit - 1) / limit
	}
	return Pagination{Page: page, Limit: limit, Total: total, TotalPages: pages, HasNext: page < pages, HasPrev: page > 1}
}

// PageQuery is page and limit as parsed from a query string.
type PageQuery struct {
	Page  int
	Limit int
}

// Offset is the index of the first item of the page.
func (p PageQuery) Offset() int { return (p.Page - 1) * p.Limit }

// ParsePage reads page and limit from q with the defaults and bounds of the spec,
// adding field errors to v.
func parsePage(v *validator, q url.Values, defaultLimit int) PageQuery {
	p := PageQuery{Page: 1, Limit: defaultLimit}
	if s := q.Get("page"); s != "" || q.Has("page") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1_000_000 {
			v.add("page", "must be an integer of at least 1")
		} else {
			p.Page = n
		}
	}
	if s := q.Get("limit"); s != "" || q.Has("limit") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			v.add("limit", "must be an integer from 1 to "+strconv.Itoa(MaxPageSize))
		} else {
			p.Limit = n
		}
	}
	return p
}

// ParsePageQuery parses page and limit alone.
func ParsePageQuery(q url.Values, defaultLimit int) (PageQuery, error) {
	var v validator
	p := parsePage(&v, q, defaultLimit)
	return p, v.err()
}

// ParseUserSearch parses and validates the admin search query string.
func ParseUserSearch(q url.Values, defaultLimit int) (UserSearch, error) {
	var v validator
	p := parsePage(&v, q, defaultLimit)
	s := UserSearch{Page: p.Page, Limit: p.Limit, SortBy: "createdAt", SortOrder: "desc", Count: parseCount(&v, q)}
	s.Search = strings.TrimSpace(q.Get("search"))
	if len(s.Search) > MaxSearchLength {
		v.add("search", "must be at most "+strconv.Itoa(MaxSearchLength)+" characters")
	} else if hasNUL(s.Search) || !utf8.ValidString(s.Search) {
		v.add("search", "must be valid UTF-8 without NUL characters")
	}
	if r := q.Get("role"); r != "" {
		s.Role = Role(r)
		if !s.Role.Valid() {
			v.add("role", "must be one of admin, instructor, student")
		}
	}
	if st := q.Get("status"); st != "" {
		s.Status = Status(st)
		if !s.Status.Valid() {
			v.add("status", "must be one of active, inactive, suspended, deleted")
		}
	}
	if sb := q.Get("sortBy"); sb != "" {
		s.SortBy = sb
		ok := false
		for _, f := range SortFields {
			ok = ok || f == sb
		}
		if !ok {
			v.add("sortBy", "must be one of "+strings.Join(SortFields, ", "))
		}
	}
	if so := q.Get("sortOrder"); so != "" {
		s.SortOrder = strings.ToLower(so)
		if s.SortOrder != "asc" && s.SortOrder != "desc" {
			v.add("sortOrder", "must be asc or desc")
		}
	}
	s.Attrs = parseAttrFilters(&v, q)
	return s, v.err()
}
