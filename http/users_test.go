package http

import (
	"regexp"
	"strings"
	"testing"

	"github.com/lms-platform/userservice"
)

var timestampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func TestAccessMatrix(t *testing.T) {
	h := newHarness(t)
	type who struct {
		name string
		f    fixture
	}
	callers := []who{{"self", h.alice}, {"other student", h.bob}, {"instructor", h.teacher}, {"admin", h.admin}}
	for _, c := range callers {
		allowed := c.name == "self" || c.name == "admin"
		want := 403
		if allowed {
			want = 200
		}
		t.Run(c.name+" GET user", func(t *testing.T) {
			h.get(userPath(h.alice.id), c.f.token).expect(want, "")
		})
		t.Run(c.name+" PUT user", func(t *testing.T) {
			h.send("PUT", userPath(h.alice.id), c.f.token, map[string]any{"bio": "by " + c.name}).expect(want, "")
		})
		for _, sub := range []string{"stats", "enrollments", "enrollments/stats", "preferences", "preferences/ui", "sessions"} {
			t.Run(c.name+" GET "+sub, func(t *testing.T) {
				h.get(userPath(h.alice.id, sub), c.f.token).expect(want, "")
			})
		}
	}
	adminRoutes := []struct{ method, path, body string }{
		{"GET", "/api/v1/users", ""},
		{"POST", "/api/v1/users", `{"authId":"` + userservice.NewID() + `","email":"x@example.com","firstName":"X","lastName":"Y"}`},
		{"DELETE", userPath(h.bob.id), ""},
		{"PUT", userPath(h.bob.id, "role"), `{"role":"instructor"}`},
		{"PUT", "/api/v1/users/bulk/role", `{"userIds":["` + h.bob.id + `"],"role":"instructor"}`},
		{"PUT", userPath(h.bob.id, "status"), `{"status":"inactive"}`},
		{"GET", userPath(h.bob.id, "audit"), ""},
		{"GET", userPath("me", "audit"), ""},
	}
	for _, c := range callers[:3] { // everyone but the admin
		for _, rt := range adminRoutes {
			t.Run(c.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				var body any
				if rt.body != "" {
					body = rt.body
				}
				h.send(rt.method, rt.path, c.f.token, body).expect(403, userservice.ECodeForbidden)
			})
		}
	}
	v := h.users.state(h.bob.id).User
	if v.Role != userservice.RoleStudent || v.Status != userservice.StatusActive {
		t.Fatalf("a refused admin route changed bob: %+v", v)
	}
}

func TestCheckOrder(t *testing.T) {
	h := newHarness(t)
	unknown := userservice.NewID()
	tests := []struct {
		name         string
		method, path string
		token        string
		body         any
		want         int
		code         string
	}{
		{"401 before 400", "GET", userPath("not-a-uuid"), "", nil, 401, userservice.ECodeUnauthorized},
		{"malformed id is 400", "GET", userPath("not-a-uuid"), h.alice.token, nil, 400, userservice.ECodeInvalidParam},
		{"upper-case ME is not me", "GET", userPath("ME"), h.alice.token, nil, 400, userservice.ECodeInvalidParam},
		{"400 body before 403", "PUT", userPath(h.bob.id), h.alice.token, `{"firstName":`, 400, userservice.ECodeInvalidJSON},
		{"400 validation before 403", "PUT", userPath(h.bob.id), h.alice.token, `{"phone":"12"}`, 400, userservice.ECodeValidation},
		{"400 query before 403", "GET", "/api/v1/users?limit=101", h.alice.token, nil, 400, userservice.ECodeValidation},
		{"403 before 404", "GET", userPath(unknown), h.alice.token, nil, 403, userservice.ECodeForbidden},
		{"admin gets 404 for unknown user", "GET", userPath(unknown), h.admin.token, nil, 404, userservice.ECodeNotFound},
		{"admin PUT unknown user is 404", "PUT", userPath(unknown), h.admin.token, `{"bio":"x"}`, 404, userservice.ECodeNotFound},
		{"unknown category is 400", "GET", userPath("me", "preferences", "colors"), h.alice.token, nil, 400, userservice.ECodeInvalidParam},
		{"course id must be a UUID", "PUT", userPath("me", "enrollments", "abc", "progress"), h.alice.token, `{"progress":5}`, 400, userservice.ECodeInvalidParam},
		{"unknown enrollment is 404", "PUT", userPath("me", "enrollments", unknown, "progress"), h.alice.token, `{"progress":5}`, 404, userservice.ECodeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.send(tc.method, tc.path, tc.token, tc.body).expect(tc.want, tc.code)
		})
	}
}

func TestGetAndUpdateUser(t *testing.T) {
	h := newHarness(t)
	t.Run("me and id give the same user with exactly the spec's fields", func(t *testing.T) {
		a := h.get("/api/v1/users/me", h.alice.token).expect(200, "")
		b := h.get(userPath(h.alice.id), h.alice.token).expect(200, "")
		if a.dataMap()["id"] != b.dataMap()["id"] {
			t.Fatal("me and id differ")
		}
		want := []string{"id", "authId", "email", "username", "firstName", "lastName", "displayName", "avatarUrl", "bio", "phone",
			"timezone", "language", "role", "status", "emailVerified", "profileCompleted", "lastActiveAt", "createdAt", "updatedAt", "version"}
		got := a.dataMap()
		if len(got) != len(want) {
			t.Errorf("user has %d fields, want %d: %v", len(got), len(want), got)
		}
		for _, k := range want {
			if _, ok := got[k]; !ok {
				t.Errorf("user lacks %q", k)
			}
		}
		if a.get("ETag") != `"1"` {
			t.Errorf("ETag = %q, want \"1\"", a.get("ETag"))
		}
	})
	t.Run("update answers the new user, message and ETag", func(t *testing.T) {
		r := h.send("PUT", "/api/v1/users/me", h.alice.token, map[string]any{"firstName": "Alicia", "bio": "hi", "timezone": "Europe/Paris"}).expect(200, "")
		m := r.json()
		if m["message"] != "User updated successfully" || r.dataMap()["firstName"] != "Alicia" {
			t.Fatalf("body %s", r.body)
		}
		if r.get("ETag") != `"2"` || r.dataMap()["version"] != float64(2) {
			t.Fatalf("ETag %q version %v, want 2", r.get("ETag"), r.dataMap()["version"])
		}
	})
	t.Run("null clears an optional field", func(t *testing.T) {
		r := h.send("PUT", "/api/v1/users/me", h.alice.token, `{"bio":null}`).expect(200, "")
		if r.dataMap()["bio"] != nil {
			t.Fatalf("bio = %v", r.dataMap()["bio"])
		}
	})
	t.Run("If-Match", func(t *testing.T) {
		cur := h.users.state(h.alice.id).User.Version
		tag := sprintf(`"%d"`, cur)
		h.send("PUT", "/api/v1/users/me", h.alice.token, `{"bio":"a"}`, "If-Match", sprintf(`"%d"`, cur+5)).expect(412, userservice.ECodeVersionMismatch)
		if h.users.state(h.alice.id).User.Version != cur {
			t.Fatal("412 changed the user")
		}
		h.send("PUT", "/api/v1/users/me", h.alice.token, `{"bio":"a"}`, "If-Match", "five").expect(400, userservice.ECodeInvalidParam)
		h.send("PUT", "/api/v1/users/me", h.alice.token, `{"bio":"a"}`, "If-Match", tag).expect(200, "")
		h.send("PUT", "/api/v1/users/me", h.alice.token, `{"bio":"b"}`, "If-Match", "W/"+sprintf(`"%d"`, cur+1)).expect(412, userservice.ECodeVersionMismatch)
		h.send("PUT", "/api/v1/users/me", h.alice.token, `{"bio":"b"}`, "If-Match", sprintf(`"x", "%d"`, cur+1)).expect(200, "")
		h.send("PUT", "/api/v1/users/me", h.alice.token, `{"bio":"c"}`, "If-Match", "*").expect(200, "")
	})
	t.Run("duplicate username is 409", func(t *testing.T) {
		h.send("PUT", "/api/v1/users/me", h.alice.token, `{"username":"bob"}`).expect(409, userservice.ECodeConflict)
	})
	t.Run("bad bodies are 400, 413 or 415, never 500", func(t *testing.T) {
		for _, tc := range []struct {
			name, body, ct string
			want           int
			code           string
		}{
			{"unknown field", `{"bio":"x","isAdmin":true}`, "", 400, userservice.ECodeValidation},
			{"bad json", `{"bio":`, "", 400, userservice.ECodeInvalidJSON},
			{"trailing data", `{"bio":"x"} {"bio":"y"}`, "", 400, userservice.ECodeInvalidJSON},
			{"array", `[]`, "", 400, userservice.ECodeValidation},
			{"wrong type", `{"bio":5}`, "", 400, userservice.ECodeValidation},
			{"empty object", `{}`, "", 400, userservice.ECodeValidation},
			{"empty body", ``, "", 400, userservice.ECodeInvalidJSON},
			{"text body", `bio=x`, "text/plain", 415, userservice.ECodeUnsupportedMedia},
			{"form body", `bio=x`, "application/x-www-form-urlencoded", 415, userservice.ECodeUnsupportedMedia},
			{"too large", `{"bio":"` + strings.Repeat("x", 1<<20) + `"}`, "", 413, userservice.ECodePayloadTooLarge},
			{"json with charset", `{"bio":"ok"}`, "application/json; charset=utf-8", 200, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				hdr := []string{}
				if tc.ct != "" {
					hdr = append(hdr, "Content-Type", tc.ct)
				}
				h.send("PUT", "/api/v1/users/me", h.alice.token, tc.body, hdr...).expect(tc.want, tc.code)
			})
		}
	})
	t.Run("validation answers carry field details", func(t *testing.T) {
		r := h.send("PUT", "/api/v1/users/me", h.alice.token, `{"phone":"12","timezone":"Mars/Base"}`).expect(400, userservice.ECodeValidation)
		details, _ := r.json()["details"].([]any)
		fields := map[string]bool{}
		for _, d := range details {
			fields[d.(map[string]any)["field"].(string)] = true
		}
		if !fields["phone"] || !fields["timezone"] {
			t.Fatalf("details %v", details)
		}
	})
	t.Run("stats", func(t *testing.T) {
		d := h.get(userPath("me", "stats"), h.alice.token).expect(200, "").dataMap()
		if _, ok := d["profileCompletionPercentage"]; !ok {
			t.Fatalf("stats %v", d)
		}
	})
}

func TestEnvelope(t *testing.T) {
	h := newHarness(t)
	for _, r := range []*resp{
		h.get("/api/v1/users/me", h.alice.token),
		h.get("/api/v1/users/me", ""),
		h.get("/api/v1/nowhere", ""),
	} {
		m := r.json()
		ts, _ := m["timestamp"].(string)
		if !timestampRE.MatchString(ts) {
			t.Errorf("timestamp %q lacks three fractional digits and Z", ts)
		}
		if r.status == 200 {
			if m["success"] != true || m["data"] == nil {
				t.Errorf("success envelope %s", r.body)
			}
			continue
		}
		if m["success"] != false || m["error"] == "" || m["code"] == "" {
			t.Errorf("error envelope %s", r.body)
		}
		if ct := r.get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type %q", ct)
		}
	}
	u := h.get("/api/v1/users/me", h.alice.token).dataMap()
	if !timestampRE.MatchString(u["createdAt"].(string)) {
		t.Errorf("createdAt %v", u["createdAt"])
	}
}

func TestRouting(t *testing.T) {
	h := newHarness(t)
	t.Run("unknown route is a 404 envelope", func(t *testing.T) {
		h.get("/api/v1/nope", h.alice.token).expect(404, userservice.ECodeRouteNotFound)
		h.get("/", "").expect(404, userservice.ECodeRouteNotFound)
		h.get("/api/v1/users/me/", h.alice.token).expect(404, userservice.ECodeRouteNotFound)
	})
	t.Run("wrong method is 405 with Allow", func(t *testing.T) {
		r := h.send("PATCH", "/api/v1/users/me", h.alice.token, nil).expect(405, userservice.ECodeMethodNotAllowed)
		for _, m := range []string{"GET", "PUT", "DELETE"} {
			if !strings.Contains(r.get("Allow"), m) {
				t.Errorf("Allow %q lacks %s", r.get("Allow"), m)
			}
		}
		r = h.send("POST", "/api/v1/users/bulk/role", h.admin.token, `{}`).expect(405, userservice.ECodeMethodNotAllowed)
		if !strings.Contains(r.get("Allow"), "PUT") {
			t.Errorf("Allow %q", r.get("Allow"))
		}
	})
	t.Run("bulk/role is not taken for {id}/role", func(t *testing.T) {
		r := h.send("PUT", "/api/v1/users/bulk/role", h.admin.token, map[string]any{"userIds": []string{h.bob.id}, "role": "instructor"}).expect(200, "")
		if r.json()["message"] != "Bulk role update completed" {
			t.Fatalf("body %s", r.body)
		}
	})
}
