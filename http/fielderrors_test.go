package http

import (
	stdjson "encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/lms-platform/userservice"
)

// TestBodyErrorsNameTheField: on every route that takes a body, a value of the
// wrong type and a string PostgreSQL could not store (bytes that are not UTF-8,
// NUL, a lone surrogate) answer 400 naming the value's field by its path,
// never "body", and nothing is written.
func TestBodyErrorsNameTheField(t *testing.T) {
	h := newHarness(t)
	course := userservice.NewID()
	h.send("POST", "/api/v1/users/me/enrollments", h.alice.token, `{"courseId":"`+course+`"}`).expect(201, "")
	me, alice := "/api/v1/users/me", "/api/v1/users/"+h.alice.id
	pref := func(v string) string {
		return `{"preferences":[{"category":"ui","key":"a","value":1},{"category":"ui","key":"b","value":1},` +
			`{"category":"ui","key":"c","value":1},{"category":"ui","key":"d","value":` + v + `}]}`
	}
	for _, tc := range []struct {
		name, method, path, body, field string
		admin                           bool
	}{
		{"bio a number", "PUT", me, `{"bio":123}`, "bio", false},
		{"firstName a boolean", "PUT", me, `{"firstName":true}`, "firstName", false},
		{"timezone an object", "PUT", me, `{"timezone":{"a":1}}`, "timezone", false},
		{"bio not UTF-8", "PUT", me, "{\"bio\":\"caf\xe9\"}", "bio", false},
		{"bio with NUL", "PUT", me, `{"bio":"a\u0000b"}`, "bio", false},
		{"lastName a lone surrogate", "PUT", me, `{"lastName":"\udc00"}`, "lastName", false},
		{"create: email an array", "POST", "/api/v1/users", `{"authId":"x","email":["a@b.c"],"firstName":"A","lastName":"B"}`, "email", true},
		{"create: role a number", "POST", "/api/v1/users", `{"authId":"x","email":"a@b.c","firstName":"A","lastName":"B","role":1}`, "role", true},
		{"create: firstName not UTF-8", "POST", "/api/v1/users", "{\"authId\":\"x\",\"email\":\"a@b.c\",\"firstName\":\"\xff\",\"lastName\":\"B\"}", "firstName", true},
		{"role a boolean", "PUT", alice + "/role", `{"role":true}`, "role", true},
		{"status a number", "PUT", alice + "/status", `{"status":2}`, "status", true},
		{"bulk: an id a number", "PUT", "/api/v1/users/bulk/role", `{"userIds":["` + h.bob.id + `",7],"role":"teacher"}`, "userIds[1]", true},
		{"bulk: ids a string", "PUT", "/api/v1/users/bulk/role", `{"userIds":"x","role":"teacher"}`, "userIds", true},
		{"bulk: an id not UTF-8", "PUT", "/api/v1/users/bulk/role", "{\"userIds\":[\"a\",\"\xc3\"],\"role\":\"teacher\"}", "userIds[1]", true},
		{"enroll: courseId a number", "POST", me + "/enrollments", `{"courseId":7}`, "courseId", false},
		{"enroll: courseId with NUL", "POST", me + "/enrollments", `{"courseId":"\u0000"}`, "courseId", false},
		{"enrollment: progress a string", "PUT", me + "/enrollments/" + course, `{"progress":"7"}`, "progress", false},
		{"enrollment: status a number", "PUT", me + "/enrollments/" + course, `{"enrollmentStatus":1}`, "enrollmentStatus", false},
		{"progress: timeSpentSeconds a string", "PUT", me + "/enrollments/" + course + "/progress", `{"progress":5,"timeSpentSeconds":"9"}`, "timeSpentSeconds", false},
		{"preferences: a key a number", "PUT", me + "/preferences", `{"preferences":[{"category":"ui","key":"a","value":1},{"category":"ui","key":5,"value":1}]}`, "preferences[1].key", false},
		{"preferences: the list an object", "PUT", me + "/preferences", `{"preferences":{}}`, "preferences", false},
		{"preferences: a value not UTF-8", "PUT", me + "/preferences", pref("\"\xff\""), "preferences[3].value", false},
		{"preferences: a value with NUL", "PUT", me + "/preferences", pref(`"\u0000"`), "preferences[3].value", false},
		{"preferences: a nested value with NUL", "PUT", me + "/preferences", pref(`{"label":["x","\u0000"]}`), "preferences[3].value.label[1]", false},
		{"preferences: a key not UTF-8 inside a value", "PUT", me + "/preferences", pref("{\"\xff\":1}"), "preferences[3].value", false},
		{"category preferences: a category a number", "PUT", me + "/preferences/ui", `{"preferences":[{"category":3,"key":"a","value":1}]}`, "preferences[0].category", false},
		{"category preferences: a lone surrogate", "PUT", me + "/preferences/ui", `{"preferences":[{"key":"a","value":"\ud800"}]}`, "preferences[0].value", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := h.alice.token
			if tc.admin {
				tok = h.admin.token
			}
			before := h.users.state(h.alice.id).User.Version
			r := h.send(tc.method, tc.path, tok, tc.body).expect(400, userservice.ECodeValidation)
			details, _ := r.json()["details"].([]any)
			if len(details) != 1 {
				t.Fatalf("details %v, want one", details)
			}
			if f := details[0].(map[string]any)["field"]; f != tc.field {
				t.Errorf("field %v, want %s; body %s", f, tc.field, r.body)
			}
			if after := h.users.state(h.alice.id).User.Version; after != before {
				t.Errorf("version %d → %d", before, after)
			}
		})
	}
	t.Run("several wrong types are all named", func(t *testing.T) {
		r := h.send("PUT", me, h.alice.token, `{"firstName":true,"bio":123}`).expect(400, userservice.ECodeValidation)
		details, _ := r.json()["details"].([]any)
		if len(details) != 2 || details[0].(map[string]any)["field"] != "bio" || details[1].(map[string]any)["field"] != "firstName" {
			t.Errorf("details %v", details)
		}
	})
}

// TestTextProblem: the scanner names the first string PostgreSQL could not
// store, and leaves well-formed text and malformed JSON alone.
func TestTextProblem(t *testing.T) {
	for _, tc := range []struct{ body, path string }{
		{`{"a":"ok","b":["é","😀","\ud83d\ude00","\n\"\\"]}`, ""},
		{`{"a":`, ""},
		{`{"a":"x`, ""},
		{`{"a":"\u00"}`, ""},
		{"\"\xff\"", "body"},
		{`"\u0000"`, "body"},
		{`{"a":{"b":[1,{"c":"\ud800\u0041"}]}}`, "a.b[1].c"},
		{`{"a":"\ude00"}`, "a"},
		{`{"a\u0000":1}`, "body"},
		{`{"x":{"a\u0000":1}}`, "x"},
		{"[1,true,null,\"\xed\xa0\x80\"]", "[3]"},
	} {
		path, msg, bad := textProblem([]byte(tc.body))
		if path != tc.path || bad != (tc.path != "") || bad && msg == "" {
			t.Errorf("%q: %q %q %v, want %q", tc.body, path, msg, bad, tc.path)
		}
	}
}

// FuzzTextProblem: the scanner never panics, and a well-formed body it lets
// through holds only text PostgreSQL can store: valid UTF-8, no NUL in any key
// or string.
func FuzzTextProblem(f *testing.F) {
	for _, s := range []string{`{"bio":"x"}`, "{\"bio\":\"\xff\"}", `{"a":["\u0000"]}`, `{"a":"\ud800"}`, `{"a":"\ud83d\ude00"}`, `[{"k\u0000":1}]`, `{"a":`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		path, msg, bad := textProblem(body)
		if bad {
			if path == "" || msg == "" {
				t.Fatalf("%q: problem %q at %q", body, msg, path)
			}
			return
		}
		var v any
		if stdjson.Unmarshal(body, &v) != nil {
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("%q: not UTF-8, let through", body)
		}
		var walk func(any)
		walk = func(v any) {
			switch x := v.(type) {
			case string:
				if strings.ContainsRune(x, 0) {
					t.Fatalf("%q: NUL let through", body)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			case map[string]any:
				for k, e := range x {
					walk(k)
					walk(e)
				}
			}
		}
		walk(v)
	})
}
