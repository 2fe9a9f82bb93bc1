package http

import (
	"bytes"
	"strings"
	"testing"

	"github.com/lms-platform/userservice"
)

// Decoded strings and raw values end up in actor state that outlives the
// request, so they must not share memory with the request body or with a
// decoder buffer that is reused.
func TestDecodedValuesDoNotAliasTheBody(t *testing.T) {
	body := []byte(`{"preferences":[{"category":"ui","key":"theme","value":{"mode":"dark"}}]}`)
	var in userservice.UpsertPreferences
	if err := decodeJSON(body, &in); err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'X'
	}
	for range 100 { // give any pooled buffer a chance to be reused
		var other userservice.UpsertPreferences
		_ = decodeJSON([]byte(`{"preferences":[{"category":"zz","key":"qqqqq","value":{"mode":"ZZZZ"}}]}`), &other)
	}
	p := in.Preferences[0]
	if *p.Category != "ui" || p.Key != "theme" || string(p.Value) != `{"mode":"dark"}` {
		t.Fatalf("decoded values changed with the buffers: %q %q %q", *p.Category, p.Key, p.Value)
	}
}

func TestValueNullAndMissingDiffer(t *testing.T) {
	var in userservice.UpsertPreferences
	if err := decodeJSON([]byte(`{"preferences":[{"key":"a"},{"key":"b","value":null}]}`), &in); err != nil {
		t.Fatal(err)
	}
	if in.Preferences[0].Value != nil {
		t.Errorf("missing value decoded as %q", in.Preferences[0].Value)
	}
	if string(in.Preferences[1].Value) != "null" {
		t.Errorf("null value decoded as %q", in.Preferences[1].Value)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body  string
		code, field string
	}{
		{"syntax", `{"bio":`, userservice.ECodeInvalidJSON, ""},
		{"unknown field", `{"nope":1}`, userservice.ECodeValidation, "nope"},
		{"type", `{"firstName":true}`, userservice.ECodeValidation, ""},
		{"trailing", `{} []`, userservice.ECodeInvalidJSON, ""},
		{"trailing garbage", `{}x`, userservice.ECodeInvalidJSON, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in userservice.UpdateUser
			err := decodeJSON([]byte(tc.body), &in)
			e, status := wireError(err)
			if status != 400 || e.Code != tc.code {
				t.Fatalf("status %d code %s (%v)", status, e.Code, err)
			}
			if tc.field != "" && (len(e.Details) != 1 || e.Details[0].Field != tc.field) {
				t.Fatalf("details %v", e.Details)
			}
		})
	}
	if err := decodeJSON([]byte(" {\"bio\":\"x\"} \n"), &userservice.UpdateUser{}); err != nil {
		t.Errorf("surrounding whitespace refused: %v", err)
	}
}

func TestCheckBody(t *testing.T) {
	for _, tc := range []struct {
		name, body, ct string
		want           int
	}{
		{"json", `{}`, "application/json", 0},
		{"json charset", `{}`, "Application/JSON; charset=utf-8", 0},
		{"vendor json", `{}`, "application/merge-patch+json", 0},
		{"text", `{}`, "text/plain", 415},
		{"none", `{}`, "", 415},
		{"empty", ``, "text/plain", 400},
		{"too large", strings.Repeat(" ", 11), "application/json", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkBody([]byte(tc.body), []byte(tc.ct), 10)
			status := 0
			if err != nil {
				_, status = wireError(err)
			}
			if status != tc.want {
				t.Fatalf("status %d, want %d", status, tc.want)
			}
		})
	}
}

func TestParseIfMatch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64 // -1: no precondition, -2: 400
	}{
		{"", -1}, {"*", -1}, {`"5"`, 5}, {`W/"7"`, 7}, {` "3" `, 3},
		{`5`, -2}, {`"five"`, -2}, {`"-1"`, -2}, {`""`, -2}, {`"1", "2"`, -2}, {`W/5`, -2},
	} {
		v, err := parseIfMatch([]byte(tc.in))
		switch {
		case tc.want == -2 && err == nil:
			t.Errorf("%q accepted", tc.in)
		case tc.want == -1 && (err != nil || v != nil):
			t.Errorf("%q: %v %v, want no precondition", tc.in, v, err)
		case tc.want >= 0 && (err != nil || v == nil || *v != tc.want):
			t.Errorf("%q: %v %v, want %d", tc.in, v, err, tc.want)
		}
	}
}

func TestRenderSuccessOmitsEmptyParts(t *testing.T) {
	b, err := renderSuccess([]int{}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(`{"success":true,"data":[],"timestamp":"`)) {
		t.Fatalf("%s", b)
	}
}

// TestFieldNamesAreExact: a key that names a field only up to case is an unknown
// field (400 with its path), for every body the API decodes, nested ones too; the
// exact names pass.
func TestFieldNamesAreExact(t *testing.T) {
	for _, tc := range []struct {
		name  string
		into  func() any
		body  string
		field string // "" when the body is fine
	}{
		{"update user exact", func() any { return &userservice.UpdateUser{} }, `{"firstName":"A","bio":null}`, ""},
		{"update user case", func() any { return &userservice.UpdateUser{} }, `{"FirstName":"A"}`, "FirstName"},
		{"update user lower", func() any { return &userservice.UpdateUser{} }, `{"firstname":"A"}`, "firstname"},
		{"create user case", func() any { return &userservice.CreateUser{} }, `{"authId":"x","EMAIL":"a@b.co"}`, "EMAIL"},
		{"enroll case", func() any { return &userservice.CreateEnrollment{} }, `{"courseid":"c"}`, "courseid"},
		{"enroll exact", func() any { return &userservice.CreateEnrollment{} }, `{"courseId":"c"}`, ""},
		{"progress case", func() any { return &userservice.UpdateProgress{} }, `{"progress":1,"TimeSpentSeconds":2}`, "TimeSpentSeconds"},
		{"enrollment update case", func() any { return &userservice.UpdateEnrollment{} }, `{"EnrollmentStatus":"dropped"}`, "EnrollmentStatus"},
		{"role case", func() any { return &roleBody{} }, `{"Role":"admin"}`, "Role"},
		{"status case", func() any { return &statusBody{} }, `{"STATUS":"active"}`, "STATUS"},
		{"bulk case", func() any { return &bulkRoleBody{} }, `{"userids":[],"role":"admin"}`, "userids"},
		{"preferences exact, any value", func() any { return &userservice.UpsertPreferences{} },
			`{"preferences":[{"category":"ui","key":"theme","value":{"Any":"Case","x":[{"Y":1}]}}]}`, ""},
		{"preferences top case", func() any { return &userservice.UpsertPreferences{} }, `{"Preferences":[]}`, "Preferences"},
		{"preference item case", func() any { return &userservice.UpsertPreferences{} },
			`{"preferences":[{"key":"a","value":1},{"Key":"theme","value":"dark"}]}`, "preferences[1].Key"},
		{"preferences null", func() any { return &userservice.UpsertPreferences{} }, `{"preferences":null}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := decodeJSON([]byte(tc.body), tc.into())
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			e, status := wireError(err)
			if status != 400 || e.Code != userservice.ECodeValidation || len(e.Details) != 1 || e.Details[0].Field != tc.field {
				t.Fatalf("status %d code %s details %v (%v), want 400 naming %s", status, e.Code, e.Details, err, tc.field)
			}
		})
	}
}
