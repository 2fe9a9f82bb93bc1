package http

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

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

// TestParseIfMatch: only a value outside RFC 9110's If-Match grammar is refused;
// a well-formed tag that names no version, a weak tag among them, is kept as one
// that matches nothing.
func TestParseIfMatch(t *testing.T) {
	re := ifMatchPattern(t)
	none := []int64(nil)
	for _, tc := range []struct {
		in       string
		bad      bool
		any      bool
		versions []int64
	}{
		{in: "*", any: true},
		{in: ` * `, any: true},
		{in: `"5"`, versions: []int64{5}},
		{in: ` "3" `, versions: []int64{3}},
		{in: `W/"7"`, versions: none},
		{in: `"definitely-not-the-version"`, versions: none},
		{in: `""`, versions: none},
		{in: `"05"`, versions: none},
		{in: `"-1"`, versions: none},
		{in: `"+5"`, versions: none},
		{in: `"99999999999999999999"`, versions: none},
		{in: `"4", "5"`, versions: []int64{4, 5}},
		{in: `"4",W/"5" ,"abc",,"6"`, versions: []int64{4, 6}},
		{in: `, "4" ,`, versions: []int64{4}},
		{in: "\"\x80\xff\"", versions: none}, // obs-text is an etagc
		{in: `5`, bad: true},
		{in: `garbage`, bad: true},
		{in: `W/5`, bad: true},
		{in: `w/"5"`, bad: true},
		{in: `"5`, bad: true},
		{in: `"5" "6"`, bad: true},
		{in: `"5";x`, bad: true},
		{in: `"a b"`, bad: true},
		{in: `"a"b"`, bad: true},
		{in: "\"a\x01\"", bad: true},
		{in: `*, "5"`, bad: true},
		{in: `**`, bad: true},
		{in: `,`, bad: true},
		{in: ` , , `, bad: true},
	} {
		p, err := parseIfMatch([]byte(tc.in))
		if documented := re.MatchString(tc.in); documented != (err == nil) {
			t.Errorf("%q: the document's pattern says %v, the parser %v", tc.in, documented, err)
		}
		switch {
		case tc.bad:
			if err == nil {
				t.Errorf("%q accepted as %+v", tc.in, p)
			} else if e := asDomain(err); e == nil || e.Code != userservice.ECodeInvalidParam {
				t.Errorf("%q: %v, want INVALID_PARAMETER", tc.in, err)
			}
		case err != nil || p == nil:
			t.Errorf("%q: %+v %v", tc.in, p, err)
		case p.Any != tc.any || !slices.Equal(p.Versions, tc.versions):
			t.Errorf("%q: %+v, want any=%v versions=%v", tc.in, *p, tc.any, tc.versions)
		}
	}
	if p, err := parseIfMatch(nil); p != nil || err != nil {
		t.Errorf("no header: %+v %v, want no precondition", p, err)
	}
}

// ifMatchPattern is the pattern that the OpenAPI document gives If-Match.
func ifMatchPattern(tb testing.TB) *regexp.Regexp {
	tb.Helper()
	var doc struct {
		Components struct {
			Parameters map[string]struct {
				Schema struct {
					Pattern string `json:"pattern"`
				} `json:"schema"`
			} `json:"parameters"`
		} `json:"components"`
	}
	if err := stdjson.Unmarshal(openAPIDocument, &doc); err != nil {
		tb.Fatal(err)
	}
	re, err := regexp.Compile(doc.Components.Parameters["If-Match"].Schema.Pattern)
	if err != nil {
		tb.Fatalf("If-Match pattern: %v", err)
	}
	return re
}

// FuzzParseIfMatch: the parser never panics, refuses only with a 400, and what
// it accepts is consistent: `*` is Any, and every version it keeps is named by
// a strong tag spelled exactly as the ETag the service sends. The OpenAPI
// document's pattern accepts exactly what the parser accepts.
func FuzzParseIfMatch(f *testing.F) {
	for _, s := range []string{"*", `"5"`, `W/"5"`, `"4", "5"`, `"definitely-not-the-version"`, `""`, "garbage", `"5" "6"`, `,`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	re := ifMatchPattern(f)
	f.Fuzz(func(t *testing.T, h []byte) {
		p, err := parseIfMatch(h)
		if len(bytes.Trim(h, " \t")) > 0 && utf8.Valid(h) && re.Match(h) != (err == nil) {
			t.Fatalf("%q: the document's pattern says %v, the parser %v", h, re.Match(h), err)
		}
		if err != nil {
			if e := asDomain(err); e == nil || e.Code != userservice.ECodeInvalidParam {
				t.Fatalf("%q: %v", h, err)
			}
			return
		}
		if p == nil {
			if len(bytes.Trim(h, " \t")) != 0 {
				t.Fatalf("%q: no precondition", h)
			}
			return
		}
		if p.Any != (string(bytes.Trim(h, " \t")) == "*") {
			t.Fatalf("%q: any=%v", h, p.Any)
		}
		for _, v := range p.Versions {
			if !bytes.Contains(h, []byte(`"`+strconv.FormatInt(v, 10)+`"`)) {
				t.Fatalf("%q: version %d is not one of its tags", h, v)
			}
		}
	})
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

// asDomain returns err's *userservice.Error, or nil.
func asDomain(err error) *userservice.Error {
	var e *userservice.Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
