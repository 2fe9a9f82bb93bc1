package main

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/lms-platform/userservice"
)

// TestIfMatch drives If-Match (RFC 9110 §13.1.1, CONTRACT.md "Second round")
// through the real program: a well-formed tag that does not strongly match the
// current version is a 412 and changes nothing, `*` and a list with a matching
// member pass, only a malformed header is a 400, and 403 and 404 answer before
// 412: the precondition is evaluated only once the target exists.
func TestIfMatch(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	u := svc.createUser(t, admin, newUserBody(t))
	other := svc.createUser(t, admin, newUserBody(t))
	tok, otherTok := st.tokenFor(t, u), st.tokenFor(t, other)
	course := userservice.NewID()
	svc.do(t, "POST", "/api/v1/users/me/enrollments", tok, map[string]any{"courseId": course}).data(t, http.StatusCreated, nil)

	current := func(t *testing.T) int64 {
		t.Helper()
		v := svc.do(t, "GET", "/api/v1/users/me", tok, nil).version(t)
		if row := st.mustUserRow(t, u.ID); row.Version != v {
			t.Fatalf("ETag %d, row version %d", v, row.Version)
		}
		return v
	}
	tag := func(v int64) string { return fmt.Sprintf(`"%d"`, v) }
	// refused checks that a write answered status and committed nothing.
	refused := func(t *testing.T, r *response, status int, code string, before int64) {
		t.Helper()
		r.fail(t, status, code)
		if v := st.mustUserRow(t, u.ID).Version; v != before {
			t.Errorf("%s: version %d → %d", r, before, v)
		}
	}
	me, userPath := "/api/v1/users/me", "/api/v1/users/"+u.ID
	enrollment := me + "/enrollments/" + course

	t.Run("a well-formed tag that does not strongly match answers 412", func(t *testing.T) {
		v := current(t)
		for _, h := range []string{`"definitely-not-the-version"`, "W/" + tag(v), tag(v - 1), tag(v + 1), `""`, `"0` + fmt.Sprint(v) + `"`, tag(v-1) + ", W/" + tag(v)} {
			refused(t, svc.do(t, "PUT", me, tok, map[string]any{"bio": "stale"}, "If-Match", h), http.StatusPreconditionFailed, "PRECONDITION_FAILED", v)
		}
	})
	t.Run("a list matches when any member matches", func(t *testing.T) {
		v := current(t)
		r := svc.do(t, "PUT", me, tok, map[string]any{"bio": "listed"}, "If-Match", tag(v-1)+`, "x", `+tag(v))
		r.data(t, http.StatusOK, nil)
		if r.version(t) != v+1 || st.mustUserRow(t, u.ID).Version != v+1 {
			t.Errorf("%s: want version %d committed", r, v+1)
		}
	})
	t.Run("* matches any existing target", func(t *testing.T) {
		v := current(t)
		svc.do(t, "PUT", me, tok, map[string]any{"bio": "starred"}, "If-Match", "*").data(t, http.StatusOK, nil)
		if got := current(t); got != v+1 {
			t.Errorf("version %d, want %d", got, v+1)
		}
	})
	t.Run("only a malformed header answers 400", func(t *testing.T) {
		v := current(t)
		for _, h := range []string{"garbage", "5", `W/5`, `"5" "6"`, `"5`, `*, "5"`, ","} {
			e := svc.do(t, "PUT", me, tok, map[string]any{"bio": "bad"}, "If-Match", h)
			refused(t, e, http.StatusBadRequest, "INVALID_PARAMETER", v)
		}
		// 400 answers before 403: the header is judged before the caller's access.
		refused(t, svc.do(t, "PUT", userPath, otherTok, map[string]any{"bio": "x"}, "If-Match", "garbage"), http.StatusBadRequest, "INVALID_PARAMETER", v)
	})
	t.Run("a student's If-Match on another user's resource answers 403", func(t *testing.T) {
		v := current(t)
		for _, h := range []string{tag(v), `"stale"`, "*"} {
			refused(t, svc.do(t, "PUT", userPath, otherTok, map[string]any{"bio": "x"}, "If-Match", h), http.StatusForbidden, "", v)
			refused(t, svc.do(t, "DELETE", "/api/v1/users/"+u.ID+"/enrollments/"+course, otherTok, nil, "If-Match", h), http.StatusForbidden, "", v)
			refused(t, svc.do(t, "DELETE", "/api/v1/users/"+u.ID+"/preferences/ui/theme", otherTok, nil, "If-Match", h), http.StatusForbidden, "", v)
		}
	})
	t.Run("an admin's If-Match on an unknown target answers 404", func(t *testing.T) {
		v := current(t)
		unknownUser := "/api/v1/users/" + userservice.NewID()
		for _, h := range []string{`"999"`, `W/"1"`, "*", tag(v)} {
			svc.do(t, "PUT", unknownUser, admin, map[string]any{"bio": "x"}, "If-Match", h).fail(t, http.StatusNotFound, "NOT_FOUND")
			svc.do(t, "DELETE", unknownUser, admin, nil, "If-Match", h).fail(t, http.StatusNotFound, "NOT_FOUND")
			unknownCourse := userPath + "/enrollments/" + userservice.NewID()
			refused(t, svc.do(t, "DELETE", unknownCourse, admin, nil, "If-Match", h), http.StatusNotFound, "NOT_FOUND", v)
			refused(t, svc.do(t, "PUT", unknownCourse+"/progress", admin, map[string]any{"progress": 5}, "If-Match", h), http.StatusNotFound, "NOT_FOUND", v)
			refused(t, svc.do(t, "PUT", unknownCourse, admin, map[string]any{"enrollmentStatus": "dropped"}, "If-Match", h), http.StatusNotFound, "NOT_FOUND", v)
			refused(t, svc.do(t, "DELETE", userPath+"/preferences/ui/no_such_key", admin, nil, "If-Match", h), http.StatusNotFound, "NOT_FOUND", v)
		}
	})
	t.Run("412 once the target exists, and the target is kept", func(t *testing.T) {
		v := current(t)
		refused(t, svc.do(t, "DELETE", enrollment, tok, nil, "If-Match", tag(v-1)), http.StatusPreconditionFailed, "PRECONDITION_FAILED", v)
		refused(t, svc.do(t, "PUT", userPath+"/enrollments/"+course+"/progress", admin, map[string]any{"progress": 5}, "If-Match", "W/"+tag(v)), http.StatusPreconditionFailed, "PRECONDITION_FAILED", v)
		refused(t, svc.do(t, "DELETE", me+"/preferences/ui/theme", tok, nil, "If-Match", `"not-it"`), http.StatusPreconditionFailed, "PRECONDITION_FAILED", v)
		refused(t, svc.do(t, "DELETE", userPath, admin, nil, "If-Match", tag(v+1)), http.StatusPreconditionFailed, "PRECONDITION_FAILED", v)
		if n := st.count(t, `SELECT count(*) FROM enrollments WHERE user_id = $1 AND course_id = $2`, u.ID, course); n != 1 {
			t.Errorf("enrollment rows %d after 412", n)
		}
		if n := st.count(t, `SELECT count(*) FROM preferences WHERE user_id = $1 AND category = 'ui' AND key = 'theme'`, u.ID); n != 1 {
			t.Errorf("preference rows %d after 412", n)
		}
		svc.do(t, "DELETE", me+"/preferences/ui/theme", tok, nil, "If-Match", `"nope", `+tag(v)).data(t, http.StatusOK, nil)
		svc.do(t, "DELETE", enrollment, tok, nil, "If-Match", "*").data(t, http.StatusOK, nil)
		if got := current(t); got != v+2 {
			t.Errorf("version %d after two matching deletes, want %d", got, v+2)
		}
	})
}

// TestBodyErrorsNameTheField: through the real program, a value of the wrong
// type and text PostgreSQL could not store answer 400 naming the field (never
// "body", never 503), write nothing, and leave the user writable at once.
func TestBodyErrorsNameTheField(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	u := svc.createUser(t, admin, newUserBody(t))
	tok := st.tokenFor(t, u)
	course := userservice.NewID()
	svc.do(t, "POST", "/api/v1/users/me/enrollments", tok, map[string]any{"courseId": course}).data(t, http.StatusCreated, nil)
	prefs := func(last string) string {
		return `{"preferences":[{"category":"ui","key":"k0","value":1},{"category":"ui","key":"k1","value":"x"},` +
			`{"category":"learning","key":"k2","value":true},{"category":"ui","key":"k3","value":` + last + `}]}`
	}
	for _, tc := range []struct {
		name, method, path, body, field string
	}{
		{"bio a number", "PUT", "/api/v1/users/me", `{"bio":123}`, "bio"},
		{"firstName a boolean", "PUT", "/api/v1/users/me", `{"firstName":true}`, "firstName"},
		{"bio not UTF-8", "PUT", "/api/v1/users/me", "{\"bio\":\"\xff\xfe\"}", "bio"},
		{"bio with NUL", "PUT", "/api/v1/users/me", `{"bio":"a\u0000"}`, "bio"},
		{"a preference value not UTF-8", "PUT", "/api/v1/users/me/preferences", prefs("\"\xff\""), "preferences[3].value"},
		{"a nested preference value not UTF-8", "PUT", "/api/v1/users/me/preferences", prefs("{\"a\":\"\xff\"}"), "preferences[3].value.a"},
		{"a preference key a number", "PUT", "/api/v1/users/me/preferences/ui", `{"preferences":[{"key":1,"value":1}]}`, "preferences[0].key"},
		{"progress a string", "PUT", "/api/v1/users/me/enrollments/" + course + "/progress", `{"progress":"50"}`, "progress"},
		{"enrollment status a number", "PUT", "/api/v1/users/me/enrollments/" + course, `{"enrollmentStatus":3}`, "enrollmentStatus"},
		{"courseId a number", "POST", "/api/v1/users/me/enrollments", `{"courseId":3}`, "courseId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := st.mustUserRow(t, u.ID).Version
			e := svc.do(t, tc.method, tc.path, tok, tc.body).fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
			if len(e.Details) != 1 || e.Details[0].Field != tc.field {
				t.Errorf("details %+v, want one naming %s", e.Details, tc.field)
			}
			if after := st.mustUserRow(t, u.ID).Version; after != before {
				t.Errorf("version %d → %d", before, after)
			}
		})
	}
	t.Run("admin bodies", func(t *testing.T) {
		for _, tc := range []struct{ method, path, body, field string }{
			{"PUT", "/api/v1/users/" + u.ID + "/role", `{"role":1}`, "role"},
			{"PUT", "/api/v1/users/" + u.ID + "/status", `{"status":false}`, "status"},
			{"PUT", "/api/v1/users/bulk/role", `{"userIds":["` + u.ID + `",2],"role":"teacher"}`, "userIds[1]"},
			{"POST", "/api/v1/users", "{\"authId\":\"a\",\"email\":\"x@example.com\",\"firstName\":\"\xc3\",\"lastName\":\"B\"}", "firstName"},
		} {
			e := svc.do(t, tc.method, tc.path, admin, tc.body).fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
			if len(e.Details) != 1 || e.Details[0].Field != tc.field {
				t.Errorf("%s %s: details %+v, want one naming %s", tc.method, tc.path, e.Details, tc.field)
			}
		}
	})
	t.Run("the user is still writable", func(t *testing.T) {
		svc.do(t, "PUT", "/api/v1/users/me/preferences", tok, prefs(`"café ☕"`)).data(t, http.StatusOK, nil)
		if n := st.count(t, `SELECT count(*) FROM preferences WHERE user_id = $1 AND key IN ('k0','k1','k2','k3')`, u.ID); n != 4 {
			t.Errorf("%d preferences written, want 4", n)
		}
	})
}
