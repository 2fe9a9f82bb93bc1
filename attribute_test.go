package userservice

import (
	"encoding/json"
	"testing"
)

const testHRSchema = `{"type": "object", "title": "HR",
 "properties": {
  "department": {"type": "string", "maxLength": 7, "enum": ["Math", "Physics"]},
  "grade": {"type": "integer", "minimum": 1, "maximum": 12},
  "gpa": {"type": "number", "maximum": 4},
  "alumni": {"type": "boolean"},
  "note": {"type": "string", "maxLength": 3}},
 "required": ["department"]}`

func mustSchema(tb testing.TB) *AttributeSchema {
	tb.Helper()
	s, err := ParseAttributeSchema("hr", []byte(testHRSchema))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestParseAttributeSchema(t *testing.T) {
	s := mustSchema(t)
	if len(s.Properties) != 5 || s.Properties["grade"].Type != AttrInteger || *s.Properties["grade"].Maximum != 12 {
		t.Fatalf("parsed %+v", s)
	}
	for _, tc := range []struct {
		name, body string
		fields     []string
	}{
		{"not an object", `[1]`, []string{"schema"}},
		{"no properties", `{}`, []string{"properties"}},
		{"type not object", `{"type": "array", "properties": {}}`, []string{"type"}},
		{"keyword outside the subset", `{"properties": {}, "allOf": []}`, []string{"allOf"}},
		{"property keyword outside the subset", `{"properties": {"a": {"type": "string", "format": "email"}}}`, []string{"properties.a.format"}},
		{"additionalProperties true", `{"properties": {}, "additionalProperties": true}`, []string{"additionalProperties"}},
		{"property without type", `{"properties": {"a": {}}}`, []string{"properties.a.type"}},
		{"array type", `{"properties": {"a": {"type": "array"}}}`, []string{"properties.a.type"}},
		{"bad property name", `{"properties": {"a-b": {"type": "string"}}}`, []string{"properties.a-b"}},
		{"maxLength on a boolean", `{"properties": {"a": {"type": "boolean", "maxLength": 1}}}`, []string{"properties.a.maxLength"}},
		{"minimum on a string", `{"properties": {"a": {"type": "string", "minimum": 1}}}`, []string{"properties.a"}},
		{"empty enum", `{"properties": {"a": {"type": "string", "enum": []}}}`, []string{"properties.a.enum"}},
		{"enum value of another type", `{"properties": {"a": {"type": "string", "enum": ["x", 1]}}}`, []string{"properties.a.enum[1]"}},
		{"required not a property", `{"properties": {"a": {"type": "string"}}, "required": ["b"]}`, []string{"required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAttributeSchema("x", []byte(tc.body))
			checkFields(t, err, tc.fields...)
		})
	}
}

func TestAttributeSchemaValidate(t *testing.T) {
	s := mustSchema(t)
	got, err := s.Validate([]byte(`{ "department" : "Math", "grade": 10, "gpa": 3.5, "alumni": true }`))
	if err != nil || string(got) != `{"department":"Math","grade":10,"gpa":3.5,"alumni":true}` {
		t.Fatalf("Validate = %s, %v", got, err)
	}
	for _, tc := range []struct {
		name, body string
		fields     []string
	}{
		{"not an object", `"x"`, []string{"attributes"}},
		{"required missing", `{"grade": 1}`, []string{"department"}},
		{"not in the enum", `{"department": "Art"}`, []string{"department"}},
		{"string too long", `{"department": "Math", "note": "abcd"}`, []string{"note"}},
		{"integer with a fraction", `{"department": "Math", "grade": 1.5}`, []string{"grade"}},
		{"below the minimum", `{"department": "Math", "grade": 0}`, []string{"grade"}},
		{"above the maximum", `{"department": "Math", "gpa": 4.01}`, []string{"gpa"}},
		{"wrong types", `{"department": 1, "grade": "10", "alumni": "yes"}`, []string{"alumni", "department", "grade"}},
		{"unknown property", `{"department": "Math", "shoe": 44}`, []string{"shoe"}},
		{"null value", `{"department": null}`, []string{"department"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Validate([]byte(tc.body))
			checkFields(t, err, tc.fields...)
		})
	}
}

func TestAttributeFilterValue(t *testing.T) {
	s := mustSchema(t)
	for _, tc := range []struct{ key, text, want, problem string }{
		{"grade", "30", "30", ""},
		{"grade", "30.0", "30", ""},
		{"grade", "3.5", "", "must be an integer"},
		{"gpa", "3.5", "3.5", ""},
		{"department", "30", `"30"`, ""},
		{"alumni", "true", "true", ""},
		{"alumni", "maybe", "", "must be true or false"},
		{"shoe", "1", "", "is not defined in the schema of namespace hr"},
	} {
		got, problem := s.FilterValue(tc.key, tc.text)
		if string(got) != tc.want || problem != tc.problem {
			t.Errorf("FilterValue(%s, %q) = %s, %q; want %s, %q", tc.key, tc.text, got, problem, tc.want, tc.problem)
		}
	}
}

// TestApplyAttributes: setting a value is one change with a user.updated event
// and an audit record; the same value again changes nothing; deleting an absent
// value is a 404; If-Match applies.
func TestApplyAttributes(t *testing.T) {
	s := registered(t)
	v := json.RawMessage(`{"department":"Math"}`)
	o := apply(t, s, SetAttributes{Namespace: "hr", Value: v}, at(1))
	m := o.Mutation
	if m == nil || len(m.AttributeUpserts) != 1 || len(m.Events) != 1 || m.Events[0].Type != EventUserUpdated || len(m.Audit) != 1 {
		t.Fatalf("mutation %+v", m)
	}
	if string(o.State.Attributes["hr"]) != string(v) || o.State.User.Version != s.User.Version+1 {
		t.Fatalf("state %+v", o.State.Attributes)
	}
	if again := apply(t, o.State, SetAttributes{Namespace: "hr", Value: v}, at(2)); again.Mutation != nil || again.State != o.State {
		t.Fatalf("the same value again wrote %+v", again.Mutation)
	}
	stale := at(3)
	stale.IfMatch = &Precondition{Versions: []int64{s.User.Version}}
	applyErr(t, o.State, SetAttributes{Namespace: "hr", Value: json.RawMessage(`{"department":"Physics"}`)}, stale, ECodeVersionMismatch)
	d := apply(t, o.State, RemoveAttributes{Namespace: "hr"}, at(4))
	if _, ok := d.State.Attributes["hr"]; ok || len(d.Mutation.AttributeDeletes) != 1 || len(d.Mutation.Events) != 1 {
		t.Fatalf("after delete %+v, %+v", d.State.Attributes, d.Mutation)
	}
	applyErr(t, d.State, RemoveAttributes{Namespace: "hr"}, at(5), ECodeNotFound)
}

// FuzzAttributeSchema: any schema document and any value either parse and
// validate or give a validation error, never a panic; a valid value comes back
// as compact JSON that validates again to the same bytes.
func FuzzAttributeSchema(f *testing.F) {
	f.Add([]byte(testHRSchema), []byte(`{"department":"Math","grade":10}`))
	f.Add([]byte(`{"properties":{"a":{"type":"number","minimum":-1e308}}}`), []byte(`{"a":1e400}`))
	f.Add([]byte(`{"properties":{"a":{"type":"string","enum":["\u00e9"]}}}`), []byte(`{"a":"\u00e9"}`))
	f.Fuzz(func(t *testing.T, schema, value []byte) {
		s, err := ParseAttributeSchema("ns", schema)
		if err != nil {
			if ErrorCode(err) != ECodeValidation {
				t.Fatalf("schema error %v is not a validation error", err)
			}
			return
		}
		got, err := s.Validate(value)
		if err != nil {
			if ErrorCode(err) != ECodeValidation {
				t.Fatalf("value error %v is not a validation error", err)
			}
			return
		}
		again, err := s.Validate(got)
		if err != nil || string(again) != string(got) {
			t.Fatalf("revalidating %s: %s, %v", got, again, err)
		}
	})
}
