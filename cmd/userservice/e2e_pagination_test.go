package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lms-platform/userservice"
)

// nextLink returns the target of the RFC 8288 Link rel="next" of r, "" without one.
func nextLink(tb testing.TB, r *response) string {
	tb.Helper()
	h := r.Header.Get("Link")
	if h == "" {
		return ""
	}
	target, params, ok := strings.Cut(h, ";")
	target = strings.TrimSpace(target)
	if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") || strings.TrimSpace(params) != `rel="next"` {
		tb.Fatalf("Link %q is not <…>; rel=\"next\"", h)
	}
	return target[1 : len(target)-1]
}

// rawPagination returns the pagination object of r as JSON fields.
func rawPagination(tb testing.TB, r *response) map[string]json.RawMessage {
	tb.Helper()
	var body struct {
		Pagination map[string]json.RawMessage `json:"pagination"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Pagination == nil {
		tb.Fatalf("no pagination in %s", r)
	}
	return body.Pagination
}

// walkUsers follows Link rel="next" from path to the last page and returns every
// id in the order seen. It checks that nextCursor and Link agree on each page.
func walkUsers(tb testing.TB, svc *service, admin, path string) []string {
	tb.Helper()
	var seen []string
	for pages := 0; path != ""; pages++ {
		if pages > 1000 {
			tb.Fatal("no last page after 1000 pages")
		}
		r := svc.do(tb, "GET", path, admin, nil)
		var users []apiUser
		e := r.data(tb, http.StatusOK, &users)
		for _, u := range users {
			seen = append(seen, u.ID)
		}
		next := nextLink(tb, r)
		p := rawPagination(tb, r)
		switch {
		case next == "" && string(p["nextCursor"]) != "null":
			tb.Fatalf("last page (no Link) with nextCursor %s", p["nextCursor"])
		case next != "" && (e.Pagination.NextCursor == nil || !strings.Contains(next, "cursor="+url.QueryEscape(*e.Pagination.NextCursor))):
			tb.Fatalf("Link %q does not carry nextCursor %s", next, p["nextCursor"])
		case next != "" && !e.Pagination.HasNext:
			tb.Fatalf("Link %q with hasNext false", next)
		}
		path = next
	}
	return seen
}

// TestCursorPagination walks the admin search page by page, following the Link
// headers, while other clients create, update and delete users: every user that
// existed the whole time appears exactly once (issue 15, keyset pagination).
func TestCursorPagination(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)

	const stableN, churnN = 60, 30
	stable := make([]apiUser, stableN)
	churn := make([]apiUser, churnN)
	parallel(stableN+churnN, 16, func(i int) {
		b := newUserBody(t)
		b["lastName"] = "Stable" + strconv.Itoa(i%7) // ties in lastName
		if i < stableN {
			stable[i] = svc.createUser(t, admin, b)
		} else {
			churn[i-stableN] = svc.createUser(t, admin, b)
		}
	})

	t.Run("stable under concurrent writes", func(t *testing.T) {
		for _, sort := range []string{"", "&sortBy=lastName&sortOrder=asc", "&sortBy=createdAt&sortOrder=asc"} {
			var stop atomic.Bool
			var wg sync.WaitGroup
			var writes atomic.Int64
			for w := 0; w < 3; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; !stop.Load(); i++ {
						var r *response
						var err error
						switch i % 3 {
						case 0: // a new user, before or after any position
							b := newUserBody(t)
							b["lastName"] = "Stable" + strconv.Itoa(i%7)
							r, err = svc.send("POST", "/api/v1/users", admin, b)
						case 1: // an update of a stable user (its sort keys stay)
							u := stable[(i*7+w)%stableN]
							r, err = svc.send("PUT", "/api/v1/users/"+u.ID, admin, map[string]any{"bio": "bio " + strconv.Itoa(i)})
						case 2: // a delete of a churn user: hidden from the default search
							u := churn[(i*5+w)%churnN]
							r, err = svc.send("DELETE", "/api/v1/users/"+u.ID, admin, nil)
						}
						if err != nil || r.Status >= 300 {
							t.Errorf("concurrent write: %v %v", err, r)
							return
						}
						writes.Add(1)
					}
				}()
			}
			seen := walkUsers(t, svc, admin, "/api/v1/users?limit=7&count=none"+sort)
			stop.Store(true)
			wg.Wait()
			if writes.Load() == 0 {
				t.Fatal("no write ran during the walk")
			}
			count := map[string]int{}
			for _, id := range seen {
				count[id]++
				if count[id] == 2 {
					t.Errorf("sort %q: user %s seen twice", sort, id)
				}
			}
			for _, u := range stable {
				if count[u.ID] != 1 {
					t.Errorf("sort %q: stable user %s seen %d times", sort, u.ID, count[u.ID])
				}
			}
			t.Logf("sort %q: %d users over the walk, %d concurrent writes", sort, len(seen), writes.Load())
		}
	})

	t.Run("cursor binds filters", func(t *testing.T) {
		r := svc.do(t, "GET", "/api/v1/users?limit=5&role=student&sortBy=lastName", admin, nil)
		var first []apiUser
		e := r.data(t, http.StatusOK, &first)
		if e.Pagination.NextCursor == nil || nextLink(t, r) == "" {
			t.Fatalf("first page of many: no cursor or Link: %s", r)
		}
		cur := url.QueryEscape(*e.Pagination.NextCursor)
		if _, ok := rawPagination(t, r)["total"]; !ok {
			t.Error("count=exact (the default) has no total")
		}

		// The cursor alone keeps the filters and sort it was issued for.
		var second []apiUser
		e2 := svc.do(t, "GET", "/api/v1/users?limit=5&cursor="+cur, admin, nil).data(t, http.StatusOK, &second)
		if e2.Pagination.Page != 2 || !e2.Pagination.HasPrev || len(second) != 5 {
			t.Errorf("second page: %d users, %+v", len(second), e2.Pagination)
		}
		for i := range second {
			if i > 0 && second[i].LastName < second[i-1].LastName || second[i].Role != "student" {
				t.Errorf("second page lost the cursor's sort or filter: %+v", second)
			}
		}
		// The same parameters again are accepted; others, a page, or an altered cursor are not.
		svc.do(t, "GET", "/api/v1/users?limit=5&role=student&sortBy=lastName&cursor="+cur, admin, nil).data(t, http.StatusOK, nil)
		for _, q := range []string{"role=admin", "sortBy=email", "sortOrder=asc", "search=x", "status=deleted", "page=2"} {
			r := svc.do(t, "GET", "/api/v1/users?"+q+"&cursor="+cur, admin, nil)
			e := r.fail(t, http.StatusBadRequest, userservice.ECodeValidation)
			if len(e.Details) != 1 || e.Details[0].Field != strings.Split(q, "=")[0] {
				t.Errorf("%s with a cursor: details %+v", q, e.Details)
			}
		}
		// limit and count are free from page to page.
		r3 := svc.do(t, "GET", "/api/v1/users?limit=2&count=none&cursor="+cur, admin, nil)
		var third []apiUser
		if r3.data(t, http.StatusOK, &third); len(third) != 2 || third[0].ID != second[0].ID {
			t.Errorf("the cursor with limit=2: %d users, first %v, want the second page's first", len(third), third)
		}
		if _, ok := rawPagination(t, r3)["total"]; ok || !strings.Contains(nextLink(t, r3), "count=none") {
			t.Errorf("count=none with a cursor: %s, Link %q", r3.Body, nextLink(t, r3))
		}
		c := *e.Pagination.NextCursor
		tampered := c[:5] + string(rune('A'+(c[5]-'A'+1)%26)) + c[6:]
		for _, bad := range []string{tampered, "abc", "", c + "x"} {
			svc.do(t, "GET", "/api/v1/users?cursor="+url.QueryEscape(bad), admin, nil).fail(t, http.StatusBadRequest, userservice.ECodeValidation)
		}
		// A student's token cannot use the admin search, cursor or not.
		student := st.tokenFor(t, stable[0])
		svc.do(t, "GET", "/api/v1/users?cursor="+cur, student, nil).fail(t, http.StatusForbidden, "")
	})

	t.Run("count=none", func(t *testing.T) {
		r := svc.do(t, "GET", "/api/v1/users?limit=3&count=none", admin, nil)
		r.data(t, http.StatusOK, nil)
		p := rawPagination(t, r)
		if _, ok := p["total"]; ok {
			t.Errorf("count=none has a total: %s", r.Body)
		}
		if _, ok := p["totalPages"]; ok {
			t.Errorf("count=none has totalPages: %s", r.Body)
		}
		if string(p["hasNext"]) != "true" {
			t.Errorf("count=none: hasNext %s on the first of many pages", p["hasNext"])
		}
		svc.do(t, "GET", "/api/v1/users?count=some", admin, nil).fail(t, http.StatusBadRequest, userservice.ECodeValidation)
		// The last page by offset, as before, and nextCursor null on it.
		r = svc.do(t, "GET", "/api/v1/users?page=1&search="+url.QueryEscape(stable[0].Email), admin, nil)
		if r.data(t, http.StatusOK, nil); string(rawPagination(t, r)["nextCursor"]) != "null" || r.Header.Get("Link") != "" {
			t.Errorf("single page: nextCursor %s, Link %q", rawPagination(t, r)["nextCursor"], r.Header.Get("Link"))
		}
	})

	t.Run("enrollments", func(t *testing.T) {
		u := stable[1]
		tok := st.tokenFor(t, u)
		want := map[string]bool{}
		for i := 0; i < 5; i++ {
			course := userservice.NewID()
			want[course] = true
			svc.do(t, "POST", "/api/v1/users/me/enrollments", tok, map[string]any{"courseId": course}).data(t, http.StatusCreated, nil)
		}
		seen := map[string]int{}
		path := "/api/v1/users/me/enrollments?limit=2&count=none"
		for pages := 0; path != ""; pages++ {
			if pages > 5 {
				t.Fatal("too many pages")
			}
			r := svc.do(t, "GET", path, tok, nil)
			var items []apiEnrollment
			r.data(t, http.StatusOK, &items)
			for _, e := range items {
				seen[e.CourseID]++
			}
			if _, ok := rawPagination(t, r)["total"]; ok {
				t.Error("count=none enrollment page has a total")
			}
			path = nextLink(t, r)
		}
		for c := range want {
			if seen[c] != 1 {
				t.Errorf("course %s seen %d times", c, seen[c])
			}
		}
		r := svc.do(t, "GET", "/api/v1/users/me/enrollments?limit=2", tok, nil)
		e := r.data(t, http.StatusOK, nil)
		cur := url.QueryEscape(*e.Pagination.NextCursor)
		svc.do(t, "GET", "/api/v1/users/me/enrollments?status=dropped&cursor="+cur, tok, nil).fail(t, http.StatusBadRequest, userservice.ECodeValidation)
		// A cursor of one list does not open another.
		svc.do(t, "GET", "/api/v1/users/"+u.ID+"/enrollments?cursor="+cur, tok, nil).fail(t, http.StatusBadRequest, userservice.ECodeValidation)
		svc.do(t, "GET", "/api/v1/users?cursor="+cur, admin, nil).fail(t, http.StatusBadRequest, userservice.ECodeValidation)
	})
}
