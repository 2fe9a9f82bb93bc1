package userservice

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestParseUserSearch(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		got, err := ParseUserSearch(url.Values{}, DefaultPageSize)
		want := UserSearch{Page: 1, Limit: 20, SortBy: "createdAt", SortOrder: "desc", Count: CountExact}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, %v, want %+v", got, err, want)
		}
	})
	for _, tc := range []struct {
		name, query string
		want        UserSearch
	}{
		{"limit 100", "limit=100", UserSearch{Page: 1, Limit: 100, SortBy: "createdAt", SortOrder: "desc", Count: CountExact}},
		{"limit 1 page 3", "limit=1&page=3", UserSearch{Page: 3, Limit: 1, SortBy: "createdAt", SortOrder: "desc", Count: CountExact}},
		{"search trimmed", "search=%20Ada%20", UserSearch{Page: 1, Limit: 20, Search: "Ada", SortBy: "createdAt", SortOrder: "desc", Count: CountExact}},
		{"role and status", "role=instructor&status=deleted", UserSearch{Page: 1, Limit: 20, Role: RoleInstructor, Status: StatusDeleted, SortBy: "createdAt", SortOrder: "desc", Count: CountExact}},
		{"sort order is case-insensitive", "sortBy=email&sortOrder=ASC", UserSearch{Page: 1, Limit: 20, SortBy: "email", SortOrder: "asc", Count: CountExact}},
		{"empty values mean the defaults", "role=&status=&sortBy=&sortOrder=&search=", UserSearch{Page: 1, Limit: 20, SortBy: "createdAt", SortOrder: "desc", Count: CountExact}},
		{"count none", "count=none", UserSearch{Page: 1, Limit: 20, SortBy: "createdAt", SortOrder: "desc", Count: CountNone}},
		{"attribute filters, ordered by name", "attr.hr.grade=30&attr.hr.department=Math", UserSearch{Page: 1, Limit: 20, SortBy: "createdAt", SortOrder: "desc", Count: CountExact,
			Attrs: []AttrFilter{{Namespace: "hr", Key: "department", Text: "Math"}, {Namespace: "hr", Key: "grade", Text: "30"}}}},
		{"search of 200 bytes", "search=" + strings.Repeat("a", 200), UserSearch{Page: 1, Limit: 20, Search: strings.Repeat("a", 200), SortBy: "createdAt", SortOrder: "desc", Count: CountExact}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			got, err := ParseUserSearch(q, DefaultPageSize)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, %v, want %+v", got, err, tc.want)
			}
		})
	}
	for _, sortBy := range SortFields {
		for _, order := range []string{"asc", "desc"} {
			t.Run("sortBy "+sortBy+" "+order, func(t *testing.T) {
				got, err := ParseUserSearch(url.Values{"sortBy": {sortBy}, "sortOrder": {order}}, DefaultPageSize)
				if err != nil || got.SortBy != sortBy || got.SortOrder != order {
					t.Errorf("got %+v, %v", got, err)
				}
			})
		}
	}
	if want := []string{"createdAt", "updatedAt", "firstName", "lastName", "email", "lastActiveAt"}; !reflect.DeepEqual(SortFields, want) {
		t.Errorf("SortFields = %v, want %v", SortFields, want)
	}
	for _, tc := range []struct {
		name, query string
		fields      []string
	}{
		{"limit 101", "limit=101", []string{"limit"}},
		{"limit 0", "limit=0", []string{"limit"}},
		{"limit empty", "limit=", []string{"limit"}},
		{"limit not a number", "limit=ten", []string{"limit"}},
		{"page 0", "page=0", []string{"page"}},
		{"page negative", "page=-1", []string{"page"}},
		{"page fractional", "page=1.5", []string{"page"}},
		{"bad role", "role=owner", []string{"role"}},
		{"role is case-sensitive", "role=Admin", []string{"role"}},
		{"bad status", "status=banned", []string{"status"}},
		{"bad sortBy", "sortBy=password", []string{"sortBy"}},
		{"bad sortOrder", "sortOrder=up", []string{"sortOrder"}},
		{"attr filter without a key", "attr.hr=1", []string{"attr.hr"}},
		{"attr filter with a bad namespace", "attr.HR.grade=1", []string{"attr.HR.grade"}},
		{"attr filter given twice", "attr.hr.grade=1&attr.hr.grade=2", []string{"attr.hr.grade"}},
		{"search too long", "search=" + strings.Repeat("a", 201), []string{"search"}},
		{"every problem", "page=0&limit=500&role=x&status=y&sortBy=z&sortOrder=w",
			[]string{"page", "limit", "role", "status", "sortBy", "sortOrder"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			_, err := ParseUserSearch(q, DefaultPageSize)
			checkFields(t, err, tc.fields...)
		})
	}
}

func TestParsePageQuery(t *testing.T) {
	p, err := ParsePageQuery(url.Values{}, 10)
	if err != nil || p != (PageQuery{Page: 1, Limit: 10}) || p.Offset() != 0 {
		t.Errorf("defaults: %+v, %v", p, err)
	}
	p, err = ParsePageQuery(url.Values{"page": {"3"}, "limit": {"25"}}, 10)
	if err != nil || p.Offset() != 50 {
		t.Errorf("page 3 of 25: %+v offset %d, %v", p, p.Offset(), err)
	}
	_, err = ParsePageQuery(url.Values{"page": {"0"}, "limit": {"101"}}, 10)
	checkFields(t, err, "page", "limit")
}

func TestNewPagination(t *testing.T) {
	for _, tc := range []struct {
		name               string
		page, limit, total int
		want               Pagination
	}{
		{"no items", 1, 20, 0, Pagination{Page: 1, Limit: 20, Total: 0, TotalPages: 0}},
		{"one partial page", 1, 20, 5, Pagination{Page: 1, Limit: 20, Total: 5, TotalPages: 1}},
		{"exact multiple, first page", 1, 20, 40, Pagination{Page: 1, Limit: 20, Total: 40, TotalPages: 2, HasNext: true}},
		{"exact multiple, last page", 2, 20, 40, Pagination{Page: 2, Limit: 20, Total: 40, TotalPages: 2, HasPrev: true}},
		{"one more than a multiple", 2, 20, 41, Pagination{Page: 2, Limit: 20, Total: 41, TotalPages: 3, HasNext: true, HasPrev: true}},
		{"page past the end", 5, 20, 40, Pagination{Page: 5, Limit: 20, Total: 40, TotalPages: 2, HasPrev: true}},
		{"zero limit", 1, 0, 10, Pagination{Page: 1, Limit: 0, Total: 10, TotalPages: 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NewPagination(tc.page, tc.limit, tc.total); got != tc.want {
				t.Errorf("NewPagination(%d, %d, %d) = %+v, want %+v", tc.page, tc.limit, tc.total, got, tc.want)
			}
		})
	}
}

// FuzzParseUserSearch parses arbitrary query strings: never a panic; an accepted
// query has a page of at least 1, a limit of 1-100 and known sort and filters.
func FuzzParseUserSearch(f *testing.F) {
	f.Add("page=2&limit=50&search=ada&role=student&status=active&sortBy=email&sortOrder=asc")
	f.Add("limit=101&page=0")
	f.Add("limit=&page=&role=&search=%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		s, err := ParseUserSearch(q, DefaultPageSize)
		if err != nil {
			fieldsOf(t, err)
			return
		}
		if s.Limit < 1 || s.Limit > MaxPageSize || s.Page < 1 {
			t.Fatalf("accepted page %d limit %d", s.Page, s.Limit)
		}
		if s.SortOrder != "asc" && s.SortOrder != "desc" {
			t.Errorf("accepted sortOrder %q", s.SortOrder)
		}
		if (s.Role != "" && !s.Role.Valid()) || (s.Status != "" && !s.Status.Valid()) || len(s.Search) > MaxSearchLength {
			t.Errorf("accepted %+v", s)
		}
		if !contains(SortFields, s.SortBy) {
			t.Errorf("accepted sortBy %q", s.SortBy)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestParseUserSearchRefusesNUL(t *testing.T) {
	for _, raw := range []string{"search=%00", "search=ab%00c", "search=%ff%fe"} {
		q, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseUserSearch(q, DefaultPageSize); ErrorCode(err) != ECodeValidation {
			t.Errorf("ParseUserSearch(%q): err = %v, want a validation error", raw, err)
		}
	}
}
