package http

import (
	"context"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
)

func TestSearchUsers(t *testing.T) {
	h := newHarness(t)
	r := h.get("/api/v1/users?page=1&limit=2&role=student", h.admin.token).expect(200, "")
	p := r.json()["pagination"].(map[string]any)
	if len(r.dataList()) != 2 || p["total"] != float64(2) || p["limit"] != float64(2) {
		t.Fatalf("body %s", r.body)
	}
	for _, q := range []string{"limit=101", "page=0", "role=god", "status=x", "sortBy=password", "sortOrder=up", "limit=abc"} {
		t.Run(q, func(t *testing.T) {
			h.get("/api/v1/users?"+q, h.admin.token).expect(400, userservice.ECodeValidation)
		})
	}
	empty := h.get("/api/v1/users?search=nobody-matches", h.admin.token).expect(200, "")
	if string(empty.body[:len(`{"success":true,"data":[]`)]) != `{"success":true,"data":[]` {
		t.Fatalf("empty search: %s", empty.body)
	}
}

func TestRoleAndStatus(t *testing.T) {
	h := newHarness(t)
	r := h.send("PUT", userPath(h.bob.id, "role"), h.admin.token, `{"role":"instructor"}`).expect(200, "")
	if r.dataMap()["role"] != "instructor" || r.json()["message"] != "User role updated successfully" {
		t.Fatalf("body %s", r.body)
	}
	h.send("PUT", userPath(h.bob.id, "role"), h.admin.token, `{"role":"god"}`).expect(400, userservice.ECodeValidation)
	h.send("PUT", userPath(h.bob.id, "role"), h.admin.token, `{}`).expect(400, userservice.ECodeValidation)
	h.send("PUT", userPath(userservice.NewID(), "role"), h.admin.token, `{"role":"student"}`).expect(404, userservice.ECodeNotFound)
	r = h.send("PUT", userPath(h.bob.id, "status"), h.admin.token, `{"status":"suspended"}`).expect(200, "")
	if r.json()["message"] != "User status updated successfully" {
		t.Fatalf("body %s", r.body)
	}
	h.send("PUT", userPath(h.bob.id, "status"), h.admin.token, `{"status":"gone"}`).expect(400, userservice.ECodeValidation)

	t.Run("audit lists the records, newest first, paginated", func(t *testing.T) {
		r := h.get(userPath(h.bob.id, "audit")+"?limit=1", h.admin.token).expect(200, "")
		l := r.dataList()
		p := r.json()["pagination"].(map[string]any)
		if len(l) != 1 || p["total"] != float64(2) || l[0].(map[string]any)["action"] != userservice.AuditStatusChanged {
			t.Fatalf("body %s", r.body)
		}
		h.get(userPath(userservice.NewID(), "audit"), h.admin.token).expect(404, userservice.ECodeNotFound)
	})
}

func TestBulkRole(t *testing.T) {
	h := newHarness(t)
	unknown := userservice.NewID()
	body := map[string]any{
		"userIds": []string{h.alice.id, h.bob.id, h.alice.id, "not-a-uuid", "not-a-uuid", unknown},
		"role":    "instructor",
	}
	r := h.send("PUT", "/api/v1/users/bulk/role", h.admin.token, body).expect(200, "")
	d := r.dataMap()
	if d["successful"] != float64(2) || d["failed"] != float64(2) {
		t.Fatalf("body %s", r.body)
	}
	errs := map[string]string{}
	for _, e := range d["errors"].([]any) {
		m := e.(map[string]any)
		errs[m["id"].(string)] = m["error"].(string)
	}
	if errs[unknown] != "User not found" || errs["not-a-uuid"] == "" || len(errs) != 2 {
		t.Fatalf("errors %v", errs)
	}
	for _, id := range []string{h.alice.id, h.bob.id} {
		if h.users.state(id).User.Role != userservice.RoleInstructor {
			t.Fatalf("%s not changed", id)
		}
	}
	many := make([]string, 1001)
	for i := range many {
		many[i] = userservice.NewID()
	}
	for name, b := range map[string]any{
		"1001 ids":  map[string]any{"userIds": many, "role": "student"},
		"empty":     map[string]any{"userIds": []string{}, "role": "student"},
		"no ids":    map[string]any{"role": "student"},
		"bad role":  map[string]any{"userIds": []string{h.bob.id}, "role": "god"},
		"no role":   map[string]any{"userIds": []string{h.bob.id}},
		"not array": `{"userIds":"x","role":"student"}`,
	} {
		t.Run(name, func(t *testing.T) {
			h.send("PUT", "/api/v1/users/bulk/role", h.admin.token, b).expect(400, userservice.ECodeValidation)
		})
	}
	t.Run("1000 ids are accepted", func(t *testing.T) {
		r := h.send("PUT", "/api/v1/users/bulk/role", h.admin.token, map[string]any{"userIds": many[:1000], "role": "student"}).expect(200, "")
		if r.dataMap()["failed"] != float64(1000) {
			t.Fatalf("failed %v", r.dataMap()["failed"])
		}
	})
}

func TestSessions(t *testing.T) {
	h := newHarness(t)
	base := time.Now().Add(-time.Hour)
	for i, sid := range []string{"s1", "s2", "s3"} {
		cmd := userservice.RecordLogin{SessionID: sid, At: userservice.NewTime(base.Add(time.Duration(i) * time.Minute))}
		if _, err := h.users.Execute(context.Background(), h.alice.id, cmd, userservice.Meta{Now: userservice.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	r := h.get(userPath("me", "sessions")+"?limit=2", h.alice.token).expect(200, "")
	l := r.dataList()
	if len(l) != 2 || l[0].(map[string]any)["sessionId"] != "s3" || l[1].(map[string]any)["sessionId"] != "s2" {
		t.Fatalf("body %s", r.body)
	}
	s := l[0].(map[string]any)
	for _, k := range []string{"id", "sessionId", "ipAddress", "userAgent", "startedAt", "endedAt", "active"} {
		if _, ok := s[k]; !ok {
			t.Errorf("session lacks %q", k)
		}
	}
	if p := r.json()["pagination"].(map[string]any); p["total"] != float64(3) {
		t.Fatalf("pagination %v", p)
	}
	h.get(userPath(h.alice.id, "sessions"), h.bob.token).expect(403, userservice.ECodeForbidden)
}
