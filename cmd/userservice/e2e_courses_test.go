package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/lms-platform/userservice"
)

type rosterRow struct {
	ID               string  `json:"id"`
	UserID           string  `json:"userId"`
	CourseID         string  `json:"courseId"`
	EnrollmentStatus string  `json:"enrollmentStatus"`
	Progress         float64 `json:"progress"`
	User             struct {
		ID          string  `json:"id"`
		Username    *string `json:"username"`
		FirstName   string  `json:"firstName"`
		LastName    string  `json:"lastName"`
		DisplayName *string `json:"displayName"`
		AvatarURL   *string `json:"avatarUrl"`
	} `json:"user"`
}

type rosterPage struct {
	Success    bool        `json:"success"`
	Data       []rosterRow `json:"data"`
	Pagination struct {
		Limit      int     `json:"limit"`
		Total      *int64  `json:"total"`
		HasNext    bool    `json:"hasNext"`
		NextCursor *string `json:"nextCursor"`
	} `json:"pagination"`
}

// TestCourseRoster: instructors and admins read a course's roster (keyset
// pages with the users' public profiles, status filter) and stats from
// PostgreSQL, reflecting every acknowledged write at once; students may not;
// deleted users are left out.
func TestCourseRoster(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	teacherBody := newUserBody(t)
	teacherBody["role"] = "instructor"
	teacher := st.tokenFor(t, svc.createUser(t, admin, teacherBody))
	course, other := userservice.NewID(), userservice.NewID()

	students := make([]apiUser, 5)
	tokens := make([]string, 5)
	for i := range students {
		students[i] = svc.createUser(t, admin, newUserBody(t))
		tokens[i] = st.tokenFor(t, students[i])
		svc.do(t, "POST", "/api/v1/users/me/enrollments", tokens[i], map[string]any{"courseId": course}).data(t, http.StatusCreated, nil)
	}
	svc.do(t, "POST", "/api/v1/users/me/enrollments", tokens[0], map[string]any{"courseId": other}).data(t, http.StatusCreated, nil)
	svc.do(t, "PUT", "/api/v1/users/me/enrollments/"+course+"/progress", tokens[0], map[string]any{"progress": 100}).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", "/api/v1/users/me/enrollments/"+course+"/progress", tokens[1], map[string]any{"progress": 40}).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", "/api/v1/users/me/enrollments/"+course, tokens[2], map[string]any{"enrollmentStatus": "dropped"}).data(t, http.StatusOK, nil)
	svc.do(t, "DELETE", "/api/v1/users/"+students[4].ID, admin, nil).data(t, http.StatusOK, nil)

	roster := func(token, query string) *response {
		return svc.do(t, "GET", "/api/v1/courses/"+course+"/enrollments"+query, token, nil)
	}
	decode := func(r *response) rosterPage {
		t.Helper()
		var p rosterPage
		r.data(t, http.StatusOK, nil)
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("pages", func(t *testing.T) {
		var all []rosterRow
		query := "?limit=2"
		for pages := 0; ; pages++ {
			r := roster(teacher, query)
			p := decode(r)
			if p.Pagination.Total == nil || *p.Pagination.Total != 4 || p.Pagination.Limit != 2 {
				t.Fatalf("pagination %+v", p.Pagination)
			}
			all = append(all, p.Data...)
			if !p.Pagination.HasNext {
				if p.Pagination.NextCursor != nil || r.Header.Get("Link") != "" {
					t.Errorf("last page with a next cursor or Link: %+v %q", p.Pagination, r.Header.Get("Link"))
				}
				break
			}
			link := r.Header.Get("Link")
			if !strings.Contains(link, `rel="next"`) || !strings.Contains(link, url.QueryEscape(*p.Pagination.NextCursor)) {
				t.Errorf("Link %q does not point at the next cursor", link)
			}
			query = "?limit=2&cursor=" + url.QueryEscape(*p.Pagination.NextCursor)
			if pages > 5 {
				t.Fatal("too many pages")
			}
		}
		if len(all) != 4 {
			t.Fatalf("%d rows over every page, want 4: %+v", len(all), all)
		}
		byUser := map[string]rosterRow{}
		for i, row := range all {
			if i > 0 && row.ID <= all[i-1].ID {
				t.Errorf("rows not in enrollment id order: %s after %s", row.ID, all[i-1].ID)
			}
			byUser[row.UserID] = row
		}
		for i, u := range students[:4] {
			row, ok := byUser[u.ID]
			if !ok || row.CourseID != course || row.User.ID != u.ID || row.User.FirstName != u.FirstName ||
				row.User.LastName != u.LastName || row.User.Username == nil || *row.User.Username != *u.Username {
				t.Errorf("student %d: row %+v", i, row)
			}
		}
		if _, ok := byUser[students[4].ID]; ok {
			t.Error("a deleted user is on the roster")
		}
		if byUser[students[0].ID].EnrollmentStatus != "completed" || byUser[students[2].ID].EnrollmentStatus != "dropped" {
			t.Errorf("statuses %+v", byUser)
		}
	})

	t.Run("filters and refusals", func(t *testing.T) {
		p := decode(roster(admin, "?status=completed&count=none"))
		if len(p.Data) != 1 || p.Data[0].UserID != students[0].ID || p.Pagination.Total != nil {
			t.Errorf("completed: %+v", p)
		}
		first := decode(roster(teacher, "?status=active&limit=1"))
		if len(first.Data) != 1 || first.Pagination.NextCursor == nil {
			t.Fatalf("first active page %+v", first)
		}
		next := decode(roster(teacher, "?limit=1&cursor="+url.QueryEscape(*first.Pagination.NextCursor)))
		if len(next.Data) != 1 || next.Data[0].EnrollmentStatus != "active" || next.Data[0].ID == first.Data[0].ID {
			t.Errorf("the cursor lost its status filter: %+v", next)
		}
		roster(teacher, "?status=active&cursor="+url.QueryEscape(*first.Pagination.NextCursor)).fail(t, 400, "VALIDATION_ERROR")
		roster(teacher, "?cursor=bm9wZQ").fail(t, 400, "VALIDATION_ERROR")
		roster(teacher, "?page=2").fail(t, 400, "VALIDATION_ERROR")
		roster(teacher, "?limit=101").fail(t, 400, "VALIDATION_ERROR")
		roster(teacher, "?status=paused").fail(t, 400, "VALIDATION_ERROR")
		roster(tokens[0], "").fail(t, 403, "FORBIDDEN")
		roster("", "").fail(t, 401, "UNAUTHORIZED")
		svc.do(t, "GET", "/api/v1/courses/not-a-uuid/enrollments", teacher, nil).fail(t, 400, "INVALID_PARAMETER")
		svc.do(t, "GET", "/api/v1/courses/"+course+"/stats", tokens[1], nil).fail(t, 403, "FORBIDDEN")
		if p := decode(svc.do(t, "GET", "/api/v1/courses/"+userservice.NewID()+"/enrollments", teacher, nil)); len(p.Data) != 0 {
			t.Errorf("a course nobody takes: %+v", p)
		}
	})

	t.Run("stats", func(t *testing.T) {
		var s userservice.CourseStats
		svc.do(t, "GET", "/api/v1/courses/"+course+"/stats", teacher, nil).data(t, http.StatusOK, &s)
		want := userservice.CourseStats{CourseID: course, Enrolled: 4, Active: 2, Completed: 1, Dropped: 1, AverageProgress: 35}
		if s != want {
			t.Errorf("stats %+v, want %+v", s, want)
		}
	})

	t.Run("read your writes", func(t *testing.T) {
		// Each acknowledged write shows in the very next read, no waiting.
		newcomer := svc.createUser(t, admin, newUserBody(t))
		tok := st.tokenFor(t, newcomer)
		svc.do(t, "POST", "/api/v1/users/me/enrollments", tok, map[string]any{"courseId": course}).data(t, http.StatusCreated, nil)
		var s userservice.CourseStats
		svc.do(t, "GET", "/api/v1/courses/"+course+"/stats", admin, nil).data(t, http.StatusOK, &s)
		if s.Enrolled != 5 || s.Active != 3 {
			t.Errorf("stats right after an enrollment: %+v", s)
		}
		svc.do(t, "PUT", "/api/v1/users/me/enrollments/"+course+"/progress", tok, map[string]any{"progress": 100}).data(t, http.StatusOK, nil)
		if p := decode(roster(admin, "?status=completed")); len(p.Data) != 2 {
			t.Errorf("completed right after a completion: %+v", p.Data)
		}
		svc.do(t, "DELETE", "/api/v1/users/me/enrollments/"+course, tok, nil).data(t, http.StatusOK, nil)
		if p := decode(roster(admin, "")); *p.Pagination.Total != 4 {
			t.Errorf("total right after an unenroll: %d", *p.Pagination.Total)
		}
	})

	t.Run("the roster query uses the course index", func(t *testing.T) {
		var plan string
		ctx := context.Background()
		tx, err := st.db(t).Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(ctx, `EXPLAIN (FORMAT TEXT) SELECT id FROM enrollments WHERE course_id = $1 AND id > $2 ORDER BY id LIMIT 21`,
			course, "00000000-0000-0000-0000-000000000000")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan += line + "\n"
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(plan, "enrollments_course_idx") {
			t.Errorf("plan does not use enrollments_course_idx: %s", plan)
		}
	})
}
