package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/lms-platform/userservice"
)

// TestQuotas: past a per-user limit a write answers 422 QUOTA_EXCEEDED with
// details naming the limit, and nothing changes (same version); deletes keep
// working for a user at or over a limit (issue 11).
func TestQuotas(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, map[string]string{
		"QUOTA_PREFERENCES_PER_USER": "18", "QUOTA_PREFERENCE_BYTES_PER_USER": "2048", "QUOTA_ENROLLMENTS_PER_USER": "2",
	})
	admin := st.adminToken(t)
	u := svc.createUser(t, admin, newUserBody(t))
	me := st.tokenFor(t, u)
	path := "/api/v1/users/" + u.ID
	version := func() int64 { return svc.do(t, "GET", path, admin, nil).version(t) }
	refused := func(method, p string, body any, field string) {
		t.Helper()
		before := version()
		e := svc.do(t, method, p, me, body).fail(t, http.StatusUnprocessableEntity, userservice.ECodeQuotaExceeded)
		if len(e.Details) != 1 || e.Details[0].Field != field || !strings.Contains(e.Details[0].Message, "at most") {
			t.Errorf("%s %s: details %+v, want one naming %s and the limit", method, p, e.Details, field)
		}
		if after := version(); after != before {
			t.Errorf("%s %s: a refused write moved the version %d → %d", method, p, before, after)
		}
	}
	pref := func(key, value string) map[string]any {
		return map[string]any{"preferences": []map[string]any{{"key": key, "value": value}}}
	}

	// 16 default preferences: two more fit, a third does not.
	svc.do(t, "PUT", path+"/preferences/ui", me, map[string]any{"preferences": []map[string]any{
		{"key": "extra_a", "value": 1}, {"key": "extra_b", "value": 2}}}).data(t, http.StatusOK, nil)
	refused("PUT", path+"/preferences/ui", pref("extra_c", "x"), "preferences")
	// Bytes: a large value on an existing key passes the byte limit.
	refused("PUT", path+"/preferences/ui", pref("extra_a", strings.Repeat("x", 2000)), "preferences")
	// At the key limit, updates and deletes still work.
	svc.do(t, "PUT", path+"/preferences/ui", me, pref("extra_a", "small")).data(t, http.StatusOK, nil)
	svc.do(t, "DELETE", path+"/preferences/ui/extra_b", me, nil).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", path+"/preferences/ui", me, pref("extra_c", "x")).data(t, http.StatusOK, nil)

	for i := range 2 {
		svc.do(t, "POST", path+"/enrollments", me, map[string]any{"courseId": fmt.Sprintf("b0eebc99-9c0b-4ef8-bb6d-6bb9bd3800%02d", i)}).data(t, http.StatusCreated, nil)
	}
	third := map[string]any{"courseId": "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380099"}
	refused("POST", path+"/enrollments", third, "enrollments")
	if n := st.count(t, `SELECT count(*) FROM enrollments WHERE user_id = $1`, u.ID); n != 2 {
		t.Fatalf("%d enrollments stored, want 2", n)
	}
	svc.do(t, "DELETE", path+"/enrollments/b0eebc99-9c0b-4ef8-bb6d-6bb9bd380000", me, nil).data(t, http.StatusOK, nil)
	svc.do(t, "POST", path+"/enrollments", me, third).data(t, http.StatusCreated, nil)
}
