package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

const hrSchema = `{"type": "object",
 "properties": {
  "department": {"type": "string", "maxLength": 20, "enum": ["Math", "Physics", "History"]},
  "grade": {"type": "integer", "minimum": 1, "maximum": 12},
  "gpa": {"type": "number", "maximum": 4.0},
  "alumni": {"type": "boolean"}},
 "required": ["department"]}`

// fieldsOf returns the field names an error envelope's details name.
func fieldsOf(e envelope) []string {
	var out []string
	for _, d := range e.Details {
		out = append(out, d.Field)
	}
	return out
}

// TestAttributeSchemas: admins define namespaced schemas of the JSON Schema
// subset; anything outside the subset is a 400 naming the keyword, a bad
// namespace a 400, a non-admin a 403, an unknown namespace a 404; nothing is
// stored by a refusal.
func TestAttributeSchemas(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	u := svc.createUser(t, admin, newUserBody(t))
	tok := st.tokenFor(t, u)

	var got struct {
		Namespace  string                     `json:"namespace"`
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
		Version    int64                      `json:"version"`
	}
	svc.do(t, "PUT", "/api/v1/attributes/hr", admin, hrSchema).data(t, http.StatusOK, &got)
	if got.Namespace != "hr" || len(got.Properties) != 4 || !slices.Equal(got.Required, []string{"department"}) || got.Version == 0 {
		t.Fatalf("stored schema %+v", got)
	}
	svc.do(t, "PUT", "/api/v1/attributes/school", admin, `{"properties": {"house": {"type": "string"}}}`).data(t, http.StatusOK, nil)

	// Read: any authenticated caller.
	svc.do(t, "GET", "/api/v1/attributes/hr", tok, nil).data(t, http.StatusOK, &got)
	if got.Properties["grade"] == nil {
		t.Fatalf("read back %+v", got)
	}
	var list []struct{ Namespace string }
	svc.do(t, "GET", "/api/v1/attributes", tok, nil).data(t, http.StatusOK, &list)
	if len(list) != 2 || list[0].Namespace != "hr" || list[1].Namespace != "school" {
		t.Fatalf("list %+v", list)
	}

	refusals := []struct {
		name, ns, body string
		status         int
		code, field    string
	}{
		{"keyword outside the subset", "x1", `{"properties": {"a": {"type": "string", "pattern": "^a"}}}`, 400, "VALIDATION_ERROR", "properties.a.pattern"},
		{"top-level keyword outside the subset", "x2", `{"properties": {}, "oneOf": []}`, 400, "VALIDATION_ERROR", "oneOf"},
		{"unknown type", "x3", `{"properties": {"a": {"type": "array"}}}`, 400, "VALIDATION_ERROR", "properties.a.type"},
		{"maxLength on a number", "x4", `{"properties": {"a": {"type": "integer", "maxLength": 3}}}`, 400, "VALIDATION_ERROR", "properties.a.maxLength"},
		{"required names no property", "x5", `{"properties": {"a": {"type": "string"}}, "required": ["b"]}`, 400, "VALIDATION_ERROR", "required"},
		{"enum of the wrong type", "x6", `{"properties": {"a": {"type": "integer", "enum": ["one"]}}}`, 400, "VALIDATION_ERROR", "properties.a.enum[0]"},
		{"no properties", "x7", `{"type": "object"}`, 400, "VALIDATION_ERROR", "properties"},
		{"bad namespace", "Bad-NS", `{"properties": {}}`, 400, "INVALID_PARAMETER", "namespace"},
		{"not JSON", "x8", `{"properties":`, 400, "INVALID_JSON", ""},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			e := svc.do(t, "PUT", "/api/v1/attributes/"+tt.ns, admin, tt.body).fail(t, tt.status, tt.code)
			if tt.field != "" && !slices.Contains(fieldsOf(e), tt.field) {
				t.Errorf("details %v do not name %s", e.Details, tt.field)
			}
		})
	}
	svc.do(t, "PUT", "/api/v1/attributes/x9", tok, `{"properties": {}}`).fail(t, http.StatusForbidden, "")
	svc.do(t, "GET", "/api/v1/attributes/nope", tok, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
	if n := st.count(t, `SELECT count(*) FROM attribute_schemas`); n != 2 {
		t.Fatalf("%d schemas stored after refusals, want 2", n)
	}
}

// TestUserAttributes: a user's value per namespace is validated against the
// schema (400 naming the field), goes through the actor (version, ETag,
// If-Match, a user.updated event with the change), is stored in
// user_attributes, survives a restart, and can be deleted; other users get 403.
func TestUserAttributes(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	u := svc.createUser(t, admin, newUserBody(t))
	other := svc.createUser(t, admin, newUserBody(t))
	tok, otherTok := st.tokenFor(t, u), st.tokenFor(t, other)
	svc.do(t, "PUT", "/api/v1/attributes/hr", admin, hrSchema).data(t, http.StatusOK, nil)
	path := "/api/v1/users/" + u.ID + "/attributes/hr"
	tp := st.tap(t)

	v0 := svc.do(t, "GET", "/api/v1/users/me", tok, nil).version(t)
	r := svc.do(t, "PUT", path, tok, `{"department": "Math", "grade": 10, "alumni": false}`, "If-Match", `"`+strconv.FormatInt(v0, 10)+`"`)
	var got struct {
		Namespace  string         `json:"namespace"`
		Attributes map[string]any `json:"attributes"`
	}
	r.data(t, http.StatusOK, &got)
	if got.Namespace != "hr" || got.Attributes["department"] != "Math" || got.Attributes["grade"] != float64(10) {
		t.Fatalf("answer %+v", got)
	}
	v1 := r.version(t)
	if v1 != v0+1 {
		t.Fatalf("version %d after a write from %d", v1, v0)
	}
	e := tp.expect(t, "user.updated")[0]
	ch, _ := e.Data["changes"].(map[string]any)
	attrs, _ := ch["attributes"].(map[string]any)
	hr, _ := attrs["hr"].(map[string]any)
	if e.userID() != u.ID || hr["department"] != "Math" || e.userVersion() != v1 {
		t.Fatalf("event %v", e)
	}

	// Refusals change nothing.
	cases := []struct {
		name, token, path, body string
		headers                 []string
		status                  int
		code                    string
		fields                  []string
	}{
		{"wrong type and out of range", tok, path, `{"department": "Math", "grade": "ten", "gpa": 5}`, nil, 400, "VALIDATION_ERROR", []string{"grade", "gpa"}},
		{"not in the enum", tok, path, `{"department": "Art"}`, nil, 400, "VALIDATION_ERROR", []string{"department"}},
		{"required missing", tok, path, `{"grade": 3}`, nil, 400, "VALIDATION_ERROR", []string{"department"}},
		{"integer with a fraction", tok, path, `{"department": "Math", "grade": 3.5}`, nil, 400, "VALIDATION_ERROR", []string{"grade"}},
		{"unknown property", tok, path, `{"department": "Math", "shoe": 44}`, nil, 400, "VALIDATION_ERROR", []string{"shoe"}},
		{"not an object", tok, path, `[1]`, nil, 400, "", nil},
		{"bad JSON", tok, path, `{"department":`, nil, 400, "INVALID_JSON", nil},
		{"bad namespace", tok, "/api/v1/users/" + u.ID + "/attributes/9x", `{}`, nil, 400, "INVALID_PARAMETER", []string{"namespace"}},
		{"unknown namespace", tok, "/api/v1/users/" + u.ID + "/attributes/nope", `{"a": 1}`, nil, 404, "NOT_FOUND", nil},
		{"another user", otherTok, path, `{"department": "Math"}`, nil, 403, "", nil},
		{"stale If-Match", tok, path, `{"department": "Physics"}`, []string{"If-Match", `"1"`}, 412, "PRECONDITION_FAILED", nil},
		{"malformed If-Match", tok, path, `{"department": "Physics"}`, []string{"If-Match", `abc`}, 400, "", nil},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			e := svc.do(t, "PUT", tt.path, tt.token, tt.body, tt.headers...).fail(t, tt.status, tt.code)
			for _, f := range tt.fields {
				if !slices.Contains(fieldsOf(e), f) {
					t.Errorf("details %v do not name %s", e.Details, f)
				}
			}
		})
	}
	if v := svc.do(t, "GET", "/api/v1/users/me", tok, nil).version(t); v != v1 {
		t.Fatalf("refusals moved the version to %d", v)
	}
	tp.expectNone(t)

	// Admins write too; reads by owner and admin.
	svc.do(t, "PUT", path, admin, `{"department": "Physics", "grade": 11}`).data(t, http.StatusOK, nil)
	tp.expect(t, "user.updated")
	var all map[string]map[string]any
	svc.do(t, "GET", "/api/v1/users/me/attributes", tok, nil).data(t, http.StatusOK, &all)
	if all["hr"]["department"] != "Physics" || all["hr"]["grade"] != float64(11) || len(all) != 1 {
		t.Fatalf("all attributes %v", all)
	}
	svc.do(t, "GET", "/api/v1/users/"+u.ID+"/attributes", otherTok, nil).fail(t, http.StatusForbidden, "")
	if n := st.count(t, `SELECT count(*) FROM user_attributes WHERE user_id = $1 AND namespace = 'hr' AND value @> '{"department":"Physics"}'`, u.ID); n != 1 {
		t.Fatalf("%d stored rows, want 1", n)
	}

	// After a restart the value is read back from the stores.
	if err := svc.stop(); err != nil {
		t.Fatal(err)
	}
	svc = st.start(t, nil)
	svc.do(t, "GET", path, tok, nil).data(t, http.StatusOK, &got)
	if got.Attributes["department"] != "Physics" {
		t.Fatalf("after a restart %+v", got)
	}

	// Delete: 200, then 404; the row is gone.
	svc.do(t, "DELETE", path, tok, nil).data(t, http.StatusOK, nil)
	svc.do(t, "DELETE", path, tok, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
	svc.do(t, "GET", path, tok, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
	if n := st.count(t, `SELECT count(*) FROM user_attributes WHERE user_id = $1`, u.ID); n != 0 {
		t.Fatalf("%d rows after delete", n)
	}
}

// TestUserSearchByAttribute: GET /users?attr.<ns>.<key>=<value> filters by
// attribute, typed by the schema ("10" matches the integer 10), several filters
// AND-ed; the keyset cursor binds the attr filters (another value with the
// cursor is a 400) and the Redis search cache tells filters apart; bad filters
// are 400 naming the parameter; the plan uses the GIN index.
func TestUserSearchByAttribute(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	svc.do(t, "PUT", "/api/v1/attributes/hr", admin, hrSchema).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", "/api/v1/attributes/school", admin, `{"properties": {"grade": {"type": "string"}}}`).data(t, http.StatusOK, nil)
	values := []string{
		`{"department": "Math", "grade": 10, "alumni": true}`,
		`{"department": "Math", "grade": 10}`,
		`{"department": "Math", "grade": 10, "alumni": false}`,
		`{"department": "Physics", "grade": 10}`,
		`{"department": "Math", "grade": 11}`,
	}
	ids := make([]string, len(values))
	for i, v := range values {
		u := svc.createUser(t, admin, newUserBody(t))
		ids[i] = u.ID
		svc.do(t, "PUT", "/api/v1/users/"+u.ID+"/attributes/hr", admin, v).data(t, http.StatusOK, nil)
	}
	// A user whose "grade" 10 is in another namespace (a string there) matches no hr filter.
	decoy := svc.createUser(t, admin, newUserBody(t))
	svc.do(t, "PUT", "/api/v1/users/"+decoy.ID+"/attributes/school", admin, `{"grade": "10"}`).data(t, http.StatusOK, nil)

	search := func(query string) []string {
		t.Helper()
		var users []apiUser
		svc.do(t, "GET", "/api/v1/users?"+query, admin, nil).data(t, http.StatusOK, &users)
		var out []string
		for _, u := range users {
			out = append(out, u.ID)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(xs ...string) []string { slices.Sort(xs); return xs }
	for _, tt := range []struct {
		query string
		want  []string
	}{
		{"attr.hr.grade=10", sorted(ids[0], ids[1], ids[2], ids[3])},
		{"attr.hr.grade=10.0", sorted(ids[0], ids[1], ids[2], ids[3])},
		{"attr.hr.grade=10&attr.hr.department=Math", sorted(ids[0], ids[1], ids[2])},
		{"attr.hr.grade=10&attr.hr.department=Math&attr.hr.alumni=false", sorted(ids[2])},
		{"attr.hr.department=Physics", sorted(ids[3])},
		{"attr.school.grade=10", sorted(decoy.ID)},
		{"attr.hr.department=Math&attr.school.grade=10", nil},
		{"attr.hr.grade=12", nil},
	} {
		if got := search(tt.query); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.query, got, tt.want)
		}
	}

	// Keyset pages keep the filters; the cursor binds them.
	seen := walkUsers(t, svc, admin, "/api/v1/users?limit=1&attr.hr.grade=10&attr.hr.department=Math")
	if slices.Sort(seen); !slices.Equal(seen, sorted(ids[0], ids[1], ids[2])) {
		t.Fatalf("walking pages saw %v", seen)
	}
	r := svc.do(t, "GET", "/api/v1/users?limit=1&attr.hr.grade=10", admin, nil)
	var page []apiUser
	e := r.data(t, http.StatusOK, &page)
	if e.Pagination == nil || e.Pagination.NextCursor == nil {
		t.Fatalf("no next cursor: %s", r)
	}
	cur := url.QueryEscape(*e.Pagination.NextCursor)
	svc.do(t, "GET", "/api/v1/users?limit=1&cursor="+cur, admin, nil).data(t, http.StatusOK, nil)
	svc.do(t, "GET", "/api/v1/users?limit=1&attr.hr.grade=10&cursor="+cur, admin, nil).data(t, http.StatusOK, nil)
	for _, q := range []string{"attr.hr.grade=11", "attr.hr.department=Math"} {
		e := svc.do(t, "GET", "/api/v1/users?limit=1&"+q+"&cursor="+cur, admin, nil).fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
		if name, _, _ := strings.Cut(q, "="); !slices.Contains(fieldsOf(e), name) {
			t.Errorf("cursor with %s: details %v", q, e.Details)
		}
	}

	// Bad filters: 400 naming the parameter.
	for _, tt := range []struct{ query, field string }{
		{"attr.hr.grade=ten", "attr.hr.grade"},
		{"attr.hr.grade=10.5", "attr.hr.grade"},
		{"attr.hr.alumni=maybe", "attr.hr.alumni"},
		{"attr.hr.shoe=1", "attr.hr.shoe"},
		{"attr.nope.x=1", "attr.nope.x"},
		{"attr.hr=1", "attr.hr"},
	} {
		e := svc.do(t, "GET", "/api/v1/users?"+tt.query, admin, nil).fail(t, http.StatusBadRequest, "")
		if !slices.Contains(fieldsOf(e), tt.field) {
			t.Errorf("%s: details %v do not name %s", tt.query, e.Details, tt.field)
		}
	}
	u := svc.createUser(t, admin, newUserBody(t))
	svc.do(t, "GET", "/api/v1/users?attr.hr.grade=10", st.tokenFor(t, u), nil).fail(t, http.StatusForbidden, "")

	// After a change the (cached) search answers the new truth.
	svc.do(t, "PUT", "/api/v1/users/"+ids[4]+"/attributes/hr", admin, `{"department": "Math", "grade": 10}`).data(t, http.StatusOK, nil)
	if got := search("attr.hr.grade=10&attr.hr.department=Math"); !slices.Equal(got, sorted(ids[0], ids[1], ids[2], ids[4])) {
		t.Errorf("after a change: %v", got)
	}

	// The plan: with sequential scans off (the table is tiny here), the filter
	// is answered by the GIN index user_attributes_doc_idx.
	plan := pgtest.Plan(t, st.db(t), `SELECT id FROM users WHERE status <> 'deleted'
		AND id IN (SELECT user_id FROM user_attributes WHERE doc @> $1::text::jsonb)`, `{"hr":{"grade":10}}`)
	if !strings.Contains(plan, "user_attributes_doc_idx") {
		t.Errorf("the plan does not use the GIN index:\n%s", plan)
	}
	t.Logf("plan:\n%s", plan)
}
