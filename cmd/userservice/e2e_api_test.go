package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
)

// apiEnrollment is the Enrollment of the API.
type apiEnrollment struct {
	ID               string  `json:"id"`
	UserID           string  `json:"userId"`
	CourseID         string  `json:"courseId"`
	EnrollmentStatus string  `json:"enrollmentStatus"`
	Progress         float64 `json:"progress"`
	TimeSpentSeconds int64   `json:"timeSpentSeconds"`
	EnrolledAt       string  `json:"enrolledAt"`
	CompletedAt      *string `json:"completedAt"`
	LastAccessedAt   *string `json:"lastAccessedAt"`
	CreatedAt        string  `json:"createdAt"`
	UpdatedAt        string  `json:"updatedAt"`
}

// enrollmentRow reads an enrollment from PostgreSQL; ok is false when there is none.
func (s *stack) enrollmentRow(tb testing.TB, userID, courseID string) (status string, progress float64, spent int64, completed, ok bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := s.db(tb).Query(ctx, `SELECT enrollment_status, progress, time_spent_seconds, completed_at IS NOT NULL
		FROM enrollments WHERE user_id = $1 AND course_id = $2`, userID, courseID)
	if err != nil {
		tb.Fatalf("cannot read enrollment: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&status, &progress, &spent, &completed); err != nil {
			tb.Fatalf("cannot read enrollment: %v", err)
		}
		ok = true
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("cannot read enrollment: %v", err)
	}
	return status, progress, spent, completed, ok
}

// TestEnrollments drives enrollments end to end: a race of 20 enrolls in one
// course, the lifecycle (progress, completion once, drop, re-enroll keeping
// progress, delete), and the numbers of both stats endpoints.
func TestEnrollments(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	svc := st.start(t, nil)
	u := svc.createUser(t, st.adminToken(t), newUserBody(t))
	tok := st.tokenFor(t, u)
	const base = "/api/v1/users/me/enrollments"

	courseA := userservice.NewID()
	t.Run("20 concurrent enrolls in one course: one 201, nineteen 409", func(t *testing.T) {
		rs := make([]*response, 20)
		errs := make([]error, len(rs))
		parallel(len(rs), len(rs), func(i int) {
			rs[i], errs[i] = svc.send("POST", base, tok, map[string]any{"courseId": courseA})
		})
		created, conflicts := 0, 0
		for i, r := range rs {
			if errs[i] != nil {
				t.Fatalf("enroll %d: %v", i, errs[i])
			}
			switch r.Status {
			case http.StatusCreated:
				created++
				var e apiEnrollment
				r.data(t, http.StatusCreated, &e)
				if e.CourseID != courseA || e.UserID != u.ID || e.EnrollmentStatus != "active" || e.Progress != 0 {
					t.Errorf("created enrollment %+v", e)
				}
			case http.StatusConflict:
				conflicts++
				r.fail(t, http.StatusConflict, "ALREADY_ENROLLED")
			default:
				t.Errorf("enroll %d: %s", i, r)
			}
		}
		if created != 1 || conflicts != 19 {
			t.Errorf("%d created, %d conflicts; want 1 and 19", created, conflicts)
		}
		if n := st.count(t, `SELECT count(*) FROM enrollments WHERE user_id = $1`, u.ID); n != 1 {
			t.Errorf("%d enrollment rows, want 1", n)
		}
	})

	progress := func(t *testing.T, course string, body map[string]any) apiEnrollment {
		t.Helper()
		var e apiEnrollment
		svc.do(t, "PUT", base+"/"+course+"/progress", tok, body).data(t, http.StatusOK, &e)
		return e
	}

	t.Run("progress, completion once, and completion is permanent", func(t *testing.T) {
		e := progress(t, courseA, map[string]any{"progress": 30, "timeSpentSeconds": 60})
		if e.Progress != 30 || e.TimeSpentSeconds != 60 || e.EnrollmentStatus != "active" || e.LastAccessedAt == nil || e.CompletedAt != nil {
			t.Errorf("after 30%%: %+v", e)
		}
		if s, p, spent, done, _ := st.enrollmentRow(t, u.ID, courseA); s != "active" || p != 30 || spent != 60 || done {
			t.Errorf("row after 30%%: %s %v %d %v", s, p, spent, done)
		}
		e = progress(t, courseA, map[string]any{"progress": 100})
		if e.EnrollmentStatus != "completed" || e.CompletedAt == nil || !isTimestamp(*e.CompletedAt) {
			t.Fatalf("after 100%%: %+v", e)
		}
		completedAt := *e.CompletedAt
		e = progress(t, courseA, map[string]any{"progress": 80, "timeSpentSeconds": 30})
		if e.EnrollmentStatus != "completed" || e.CompletedAt == nil || *e.CompletedAt != completedAt || e.Progress != 80 || e.TimeSpentSeconds != 90 {
			t.Errorf("after 80%% on a completed enrollment: %+v (completedAt was %s)", e, completedAt)
		}
		if s, p, spent, done, _ := st.enrollmentRow(t, u.ID, courseA); s != "completed" || p != 80 || spent != 90 || !done {
			t.Errorf("row after 80%%: %s %v %d %v", s, p, spent, done)
		}
		svc.do(t, "PUT", base+"/"+courseA, tok, map[string]any{"enrollmentStatus": "dropped"}).fail(t, http.StatusConflict, "")
		svc.do(t, "PUT", base+"/"+courseA+"/progress", tok, map[string]any{"progress": 101}).fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
		svc.do(t, "PUT", base+"/"+courseA+"/progress", tok, map[string]any{}).fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
	})

	courseB, courseC, courseD := userservice.NewID(), userservice.NewID(), userservice.NewID()
	t.Run("drop, then re-enroll answers 200 and keeps progress", func(t *testing.T) {
		var first apiEnrollment
		svc.do(t, "POST", base, tok, map[string]any{"courseId": courseB}).data(t, http.StatusCreated, &first)
		progress(t, courseB, map[string]any{"progress": 40})
		var e apiEnrollment
		svc.do(t, "PUT", base+"/"+courseB, tok, map[string]any{"enrollmentStatus": "dropped"}).data(t, http.StatusOK, &e)
		if e.EnrollmentStatus != "dropped" || e.Progress != 40 {
			t.Errorf("after drop: %+v", e)
		}
		if s, _, _, _, _ := st.enrollmentRow(t, u.ID, courseB); s != "dropped" {
			t.Errorf("row after drop: %s", s)
		}
		svc.do(t, "PUT", base+"/"+courseB+"/progress", tok, map[string]any{"progress": 50}).fail(t, http.StatusConflict, "")
		svc.do(t, "POST", base, tok, map[string]any{"courseId": courseB}).data(t, http.StatusOK, &e)
		if e.ID != first.ID || e.EnrollmentStatus != "active" || e.Progress != 40 || e.EnrolledAt != first.EnrolledAt {
			t.Errorf("re-enrolled: %+v, first was %+v", e, first)
		}
		svc.do(t, "POST", base, tok, map[string]any{"courseId": courseB}).fail(t, http.StatusConflict, "ALREADY_ENROLLED")

		svc.do(t, "POST", base, tok, map[string]any{"courseId": courseC}).data(t, http.StatusCreated, nil)
		progress(t, courseC, map[string]any{"progress": 10})
		svc.do(t, "PUT", base+"/"+courseC, tok, map[string]any{"enrollmentStatus": "dropped"}).data(t, http.StatusOK, nil)
	})

	t.Run("delete removes the enrollment", func(t *testing.T) {
		svc.do(t, "POST", base, tok, map[string]any{"courseId": courseD}).data(t, http.StatusCreated, nil)
		svc.do(t, "DELETE", base+"/"+courseD, tok, nil).data(t, http.StatusOK, nil)
		if _, _, _, _, ok := st.enrollmentRow(t, u.ID, courseD); ok {
			t.Error("the deleted enrollment is still in PostgreSQL")
		}
		svc.do(t, "DELETE", base+"/"+courseD, tok, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
		svc.do(t, "PUT", base+"/"+courseD+"/progress", tok, map[string]any{"progress": 5}).fail(t, http.StatusNotFound, "NOT_FOUND")
		svc.do(t, "PUT", base+"/not-a-uuid/progress", tok, map[string]any{"progress": 5}).fail(t, http.StatusBadRequest, "INVALID_PARAMETER")
		svc.do(t, "POST", base, tok, map[string]any{"courseId": "nope"}).fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
	})

	t.Run("lists and stats count every enrollment", func(t *testing.T) {
		var all []apiEnrollment
		e := svc.do(t, "GET", base, tok, nil).data(t, http.StatusOK, &all)
		if len(all) != 3 || e.Pagination == nil || e.Pagination.Total != 3 {
			t.Errorf("list: %d items, pagination %+v", len(all), e.Pagination)
		}
		var dropped []apiEnrollment
		svc.do(t, "GET", base+"?status=dropped", tok, nil).data(t, http.StatusOK, &dropped)
		if len(dropped) != 1 || dropped[0].CourseID != courseC {
			t.Errorf("dropped: %+v", dropped)
		}
		var page []apiEnrollment
		e = svc.do(t, "GET", base+"?limit=2&page=1", tok, nil).data(t, http.StatusOK, &page)
		if len(page) != 2 || !e.Pagination.HasNext || e.Pagination.TotalPages != 2 {
			t.Errorf("page 1 of 2: %d items, %+v", len(page), e.Pagination)
		}

		var es userservice.EnrollmentStats
		svc.do(t, "GET", base+"/stats", tok, nil).data(t, http.StatusOK, &es)
		if es.LastAccessedCourse == nil || *es.LastAccessedCourse != courseC || es.LastAccessedAt == nil {
			t.Errorf("last accessed: %v, want %s", es.LastAccessedCourse, courseC)
		}
		es.LastAccessedCourse, es.LastAccessedAt = nil, nil
		want := userservice.EnrollmentStats{TotalCourses: 3, ActiveCourses: 1, CompletedCourses: 1, DroppedCourses: 1,
			AverageProgress: 43.33, TotalTimeSpent: 90}
		if es != want {
			t.Errorf("enrollment stats\n got %+v\nwant %+v", es, want)
		}

		var us userservice.UserStats
		svc.do(t, "GET", "/api/v1/users/"+u.ID+"/stats", tok, nil).data(t, http.StatusOK, &us)
		wantUS := userservice.UserStats{TotalEnrollments: 3, ActiveEnrollments: 1, CompletedEnrollments: 1,
			TotalProgress: 130, AverageProgress: 43.33, ProfileCompletionPercentage: 75}
		if !reflect.DeepEqual(us, wantUS) {
			t.Errorf("user stats\n got %+v\nwant %+v", us, wantUS)
		}
	})
}

// defaultPreferences is CONTRACT.md's list of a new user's preferences.
const defaultPreferences = `{
	"notifications": {"email_enabled": true, "push_enabled": true, "course_updates": true, "assignment_reminders": true, "marketing_emails": false},
	"ui": {"theme": "light", "language": "en", "timezone": "UTC", "items_per_page": 20},
	"learning": {"auto_play_videos": true, "show_subtitles": false, "playback_speed": 1.0, "reminder_frequency": "daily"},
	"privacy": {"profile_visibility": "public", "show_progress": true, "allow_messages": true}
}`

type apiPreference struct {
	ID        string          `json:"id"`
	UserID    string          `json:"userId"`
	Category  string          `json:"category"`
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	CreatedAt string          `json:"createdAt"`
	UpdatedAt string          `json:"updatedAt"`
}

// TestPreferences checks a new user's defaults, 50 concurrent upserts of
// distinct keys, all-or-nothing batches, the object format and deletes.
func TestPreferences(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	svc := st.start(t, nil)
	u := svc.createUser(t, st.adminToken(t), newUserBody(t))
	tok := st.tokenFor(t, u)
	const base = "/api/v1/users/me/preferences"

	object := func(t *testing.T, path string) map[string]map[string]any {
		t.Helper()
		var got map[string]map[string]any
		svc.do(t, "GET", path, tok, nil).data(t, http.StatusOK, &got)
		return got
	}

	t.Run("a new user has exactly the default preferences", func(t *testing.T) {
		var want map[string]map[string]any
		if err := json.Unmarshal([]byte(defaultPreferences), &want); err != nil {
			t.Fatal(err)
		}
		if got := object(t, base+"?format=object"); !reflect.DeepEqual(got, want) {
			t.Errorf("defaults\n got %v\nwant %v", got, want)
		}
		var list []apiPreference
		svc.do(t, "GET", base, tok, nil).data(t, http.StatusOK, &list)
		if len(list) != 16 {
			t.Fatalf("%d preferences, want 16", len(list))
		}
		var order []string
		for _, p := range list {
			order = append(order, p.Category)
			if p.UserID != u.ID || p.ID == "" || !isTimestamp(p.CreatedAt) || !isTimestamp(p.UpdatedAt) || len(p.Value) == 0 {
				t.Errorf("preference %+v", p)
			}
		}
		if got := strings.Join(order, ","); !strings.HasPrefix(got, "notifications,notifications") || !strings.HasSuffix(got, "privacy,privacy") {
			t.Errorf("list order by category: %s", got)
		}
		if n := st.count(t, `SELECT count(*) FROM preferences WHERE user_id = $1`, u.ID); n != 16 {
			t.Errorf("%d preference rows, want 16", n)
		}
		var ui []apiPreference
		svc.do(t, "GET", base+"/ui", tok, nil).data(t, http.StatusOK, &ui)
		if len(ui) != 4 {
			t.Errorf("ui: %d preferences, want 4", len(ui))
		}
		if got := object(t, base+"/privacy?format=object"); len(got) != 1 || len(got["privacy"]) != 3 {
			t.Errorf("privacy as an object: %v", got)
		}
	})

	t.Run("50 concurrent upserts of distinct keys all land", func(t *testing.T) {
		const n = 50
		rs := make([]*response, n)
		errs := make([]error, n)
		parallel(n, n, func(i int) {
			rs[i], errs[i] = svc.send("PUT", base+"/learning", tok,
				map[string]any{"preferences": []map[string]any{{"key": fmt.Sprintf("k_%02d", i), "value": map[string]any{"n": i}}}})
		})
		for i, r := range rs {
			if errs[i] != nil {
				t.Fatalf("upsert %d: %v", i, errs[i])
			}
			r.data(t, http.StatusOK, nil)
		}
		got := object(t, base+"/learning?format=object")["learning"]
		for i := range n {
			v, _ := got[fmt.Sprintf("k_%02d", i)].(map[string]any)
			if v == nil || v["n"] != float64(i) {
				t.Errorf("k_%02d = %v", i, got[fmt.Sprintf("k_%02d", i)])
			}
		}
		if len(got) != n+4 {
			t.Errorf("learning has %d keys, want %d", len(got), n+4)
		}
		var me apiUser
		svc.do(t, "GET", "/api/v1/users/me", tok, nil).data(t, http.StatusOK, &me)
		if me.Version != n+1 {
			t.Errorf("version %d after %d upserts, want %d", me.Version, n, n+1)
		}
		if c := st.count(t, `SELECT count(*) FROM preferences WHERE user_id = $1 AND category = 'learning'`, u.ID); c != n+4 {
			t.Errorf("%d learning rows in PostgreSQL, want %d", c, n+4)
		}
	})

	t.Run("a batch with one invalid item changes nothing", func(t *testing.T) {
		before := st.count(t, `SELECT count(*) FROM preferences WHERE user_id = $1`, u.ID)
		r := svc.do(t, "PUT", base, tok, map[string]any{"preferences": []map[string]any{
			{"category": "ui", "key": "good_key", "value": 1},
			{"category": "ui", "key": "Bad Key", "value": 2},
		}})
		e := r.fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
		if len(e.Details) != 1 || e.Details[0].Field != "preferences[1].key" {
			t.Errorf("details %+v", e.Details)
		}
		big := strings.Repeat("x", 4096)
		svc.do(t, "PUT", base, tok, map[string]any{"preferences": []map[string]any{
			{"category": "ui", "key": "good_key", "value": 1},
			{"category": "ui", "key": "big", "value": big},
		}}).fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
		svc.do(t, "PUT", base, tok, `{"preferences":[{"category":"ui","key":"good_key","value":1},{"category":"ui","key":"no_value"}]}`).
			fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
		svc.do(t, "PUT", base, tok, map[string]any{"preferences": []map[string]any{{"key": "no_category", "value": 1}}}).
			fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
		if _, ok := object(t, base+"/ui?format=object")["ui"]["good_key"]; ok {
			t.Error("good_key of a refused batch was stored")
		}
		if after := st.count(t, `SELECT count(*) FROM preferences WHERE user_id = $1`, u.ID); after != before {
			t.Errorf("%d preference rows after refused batches, %d before", after, before)
		}
	})

	t.Run("a batch across categories, null values, deletes", func(t *testing.T) {
		var out []apiPreference
		svc.do(t, "PUT", base, tok, map[string]any{"preferences": []map[string]any{
			{"category": "ui", "key": "theme", "value": "dark"},
			{"category": "privacy", "key": "nickname", "value": nil},
		}}).data(t, http.StatusOK, &out)
		if len(out) != 2 {
			t.Errorf("upsert answered %d preferences", len(out))
		}
		got := object(t, base+"?format=object")
		if got["ui"]["theme"] != "dark" {
			t.Errorf("theme = %v", got["ui"]["theme"])
		}
		if v, ok := got["privacy"]["nickname"]; !ok || v != nil {
			t.Errorf("nickname = %v (present %v), want null", v, ok)
		}
		svc.do(t, "DELETE", base+"/ui/theme", tok, nil).data(t, http.StatusOK, nil)
		svc.do(t, "DELETE", base+"/ui/theme", tok, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
		svc.do(t, "DELETE", base+"/privacy", tok, nil).data(t, http.StatusOK, nil)
		var none []apiPreference
		svc.do(t, "GET", base+"/privacy", tok, nil).data(t, http.StatusOK, &none)
		if none == nil || len(none) != 0 {
			t.Errorf("an emptied category: %v, want []", none)
		}
		if c := st.count(t, `SELECT count(*) FROM preferences WHERE user_id = $1 AND (category = 'privacy' OR (category = 'ui' AND key = 'theme'))`, u.ID); c != 0 {
			t.Errorf("%d deleted preferences still in PostgreSQL", c)
		}
		svc.do(t, "GET", base+"/colours", tok, nil).fail(t, http.StatusBadRequest, "INVALID_PARAMETER")
		svc.do(t, "GET", base+"?format=xml", tok, nil).fail(t, http.StatusBadRequest, "INVALID_PARAMETER")
	})
}

// searchIDs runs an admin search and returns the ids found and the pagination.
func searchIDs(t *testing.T, svc *service, admin, query string) ([]string, *userservice.Pagination) {
	t.Helper()
	var users []json.RawMessage
	e := svc.do(t, "GET", "/api/v1/users?"+query, admin, nil).data(t, http.StatusOK, &users)
	ids := make([]string, 0, len(users))
	for _, raw := range users {
		checkUserShape(t, raw)
		var u apiUser
		if err := json.Unmarshal(raw, &u); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	if e.Pagination == nil {
		t.Fatalf("search %s: no pagination", query)
	}
	return ids, e.Pagination
}

func sameIDs(got []string, want ...string) bool {
	a := append([]string(nil), got...)
	b := append([]string(nil), want...)
	sort.Strings(a)
	sort.Strings(b)
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// TestAdminSearch checks that the admin search reflects every acknowledged
// write at once, hides deleted users unless asked, and validates its query.
func TestAdminSearch(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	marker := "mk" + randomHex(t, 4)
	q := "search=" + strings.ToUpper(marker)

	b1 := newUserBody(t)
	b1["firstName"] = "Quill" + marker
	b2 := newUserBody(t)
	b2["email"] = "someone." + marker + "@example.com"
	b3 := newUserBody(t)
	b3["username"] = "user_" + marker
	u1, u2, u3 := svc.createUser(t, admin, b1), svc.createUser(t, admin, b2), svc.createUser(t, admin, b3)
	u4 := svc.createUser(t, admin, newUserBody(t))

	if ids, p := searchIDs(t, svc, admin, q); !sameIDs(ids, u1.ID, u2.ID, u3.ID) || p.Total != 3 {
		t.Errorf("search after creates: %v (total %d)", ids, p.Total)
	}
	svc.do(t, "PUT", "/api/v1/users/"+u1.ID, admin, map[string]any{"firstName": "Renamed"}).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", "/api/v1/users/"+u4.ID, admin, map[string]any{"displayName": "The " + marker}).data(t, http.StatusOK, nil)
	if ids, _ := searchIDs(t, svc, admin, q); !sameIDs(ids, u2.ID, u3.ID, u4.ID) {
		t.Errorf("search after updates: %v", ids)
	}
	svc.do(t, "DELETE", "/api/v1/users/"+u2.ID, admin, nil).data(t, http.StatusOK, nil)
	if ids, _ := searchIDs(t, svc, admin, q); !sameIDs(ids, u3.ID, u4.ID) {
		t.Errorf("search after delete: %v", ids)
	}
	if ids, _ := searchIDs(t, svc, admin, q+"&status=deleted"); !sameIDs(ids, u2.ID) {
		t.Errorf("search status=deleted: %v", ids)
	}
	svc.do(t, "PUT", "/api/v1/users/"+u3.ID+"/role", admin, map[string]any{"role": "instructor"}).data(t, http.StatusOK, nil)
	if ids, _ := searchIDs(t, svc, admin, q+"&role=instructor"); !sameIDs(ids, u3.ID) {
		t.Errorf("search role=instructor: %v", ids)
	}
	svc.do(t, "PUT", "/api/v1/users/"+u4.ID+"/status", admin, map[string]any{"status": "suspended"}).data(t, http.StatusOK, nil)
	if ids, _ := searchIDs(t, svc, admin, q+"&status=suspended"); !sameIDs(ids, u4.ID) {
		t.Errorf("search status=suspended: %v", ids)
	}

	ids, p := searchIDs(t, svc, admin, q+"&limit=1&page=2&sortBy=email&sortOrder=asc")
	if len(ids) != 1 || p.Total != 2 || p.TotalPages != 2 || p.HasNext || !p.HasPrev || p.Page != 2 || p.Limit != 1 {
		t.Errorf("page 2 of 2: %v %+v", ids, p)
	}
	all, _ := searchIDs(t, svc, admin, q+"&sortBy=email&sortOrder=asc")
	if len(all) != 2 || ids[0] != all[1] {
		t.Errorf("pages disagree with the full list: page 2 %v, all %v", ids, all)
	}

	for _, bad := range []string{"limit=101", "limit=0", "page=0", "sortBy=password", "sortOrder=up", "role=root", "status=gone"} {
		r := svc.do(t, "GET", "/api/v1/users?"+bad, admin, nil)
		if e := r.fail(t, http.StatusBadRequest, "VALIDATION_ERROR"); len(e.Details) == 0 {
			t.Errorf("%s: no details", r)
		}
	}
}

// TestBulkRole creates about a thousand users through the API and changes
// their role in one request: per-id results, and one user.role_changed per user
// whose role actually changed.
func TestBulkRole(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	tp := st.tap(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)

	const n, already = 997, 97
	bodies := make([]map[string]any, n)
	for i := range bodies {
		bodies[i] = newUserBody(t)
		if i < already {
			bodies[i]["role"] = "instructor"
		}
	}
	users := make([]apiUser, n)
	errs := make([]error, n)
	parallel(n, 32, func(i int) {
		r, err := svc.send("POST", "/api/v1/users", admin, bodies[i])
		if err == nil && r.Status != http.StatusCreated {
			err = fmt.Errorf("%s", r)
		}
		if err == nil {
			err = jsonData(r, &users[i])
		}
		errs[i] = err
	})
	ids := make([]string, 0, 1000)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		ids = append(ids, users[i].ID)
	}
	for _, e := range tp.take(t, n) {
		if e.Type != "user.created" {
			t.Fatalf("unexpected event %s", e)
		}
	}

	unknown := userservice.NewID()
	all := append(append([]string(nil), ids...), ids[n-1], "not-a-uuid", unknown) // 1000 ids, one a duplicate
	var res struct {
		Successful int `json:"successful"`
		Failed     int `json:"failed"`
		Errors     []struct {
			ID    string `json:"id"`
			Error string `json:"error"`
		} `json:"errors"`
	}
	r := svc.do(t, "PUT", "/api/v1/users/bulk/role", admin, map[string]any{"userIds": all, "role": "instructor"})
	r.data(t, http.StatusOK, &res)
	if res.Successful != n || res.Failed != 2 || len(res.Errors) != 2 {
		t.Errorf("bulk result: %d successful, %d failed, errors %+v; want %d, 2", res.Successful, res.Failed, res.Errors, n)
	}
	failed := map[string]string{}
	for _, e := range res.Errors {
		failed[e.ID] = e.Error
	}
	if failed["not-a-uuid"] == "" || failed[unknown] == "" {
		t.Errorf("per-id errors %v lack the bad or the unknown id", failed)
	}
	if c := st.count(t, `SELECT count(*) FROM users WHERE role = 'instructor'`); c != n {
		t.Errorf("%d instructors in PostgreSQL, want %d", c, n)
	}

	changed := map[string]bool{}
	for _, e := range tp.take(t, n-already) {
		if e.Type != "user.role_changed" || e.Data["newRole"] != "instructor" || e.Data["oldRole"] != "student" {
			t.Errorf("unexpected event %s", e)
		}
		if changed[e.userID()] {
			t.Errorf("two role changes published for %s", e.userID())
		}
		changed[e.userID()] = true
	}
	for i := already; i < n; i++ {
		if !changed[ids[i]] {
			t.Errorf("no user.role_changed for %s", ids[i])
		}
	}
	tp.expectNone(t)

	svc.do(t, "PUT", "/api/v1/users/bulk/role", admin, map[string]any{"userIds": append(all, unknown), "role": "student"}).
		fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
	svc.do(t, "PUT", "/api/v1/users/bulk/role", admin, map[string]any{"userIds": []string{}, "role": "student"}).
		fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
	svc.do(t, "PUT", "/api/v1/users/bulk/role", st.tokenFor(t, users[already]), map[string]any{"userIds": ids[:1], "role": "admin"}).
		fail(t, http.StatusForbidden, "FORBIDDEN")
}
