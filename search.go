package userservice

import (
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
}

// Pagination describes one page of a list.
type Pagination struct {
	Page       int  `json:"page"`
	Limit      int  `json:"limit"`
	Total      int  `json:"total"`
	TotalPages int  `json:"totalPages"`
	HasNext    bool `json:"hasNext"`
	HasPrev    bool `json:"hasPrev"`
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
	s := UserSearch{Page: p.Page, Limit: p.Limit, SortBy: "createdAt", SortOrder: "desc"}
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
	return s, v.err()
}
