package userservice

import (
	"errors"
	"strings"
	"testing"
)

func mustPatch(tb testing.TB, body string) PreferencesPatch {
	tb.Helper()
	p, err := ParsePreferencesPatch([]byte(body))
	if err != nil {
		tb.Fatalf("ParsePreferencesPatch(%s): %v", body, err)
	}
	return p
}

func prefValue(s *State, category, key string) string {
	p, ok := s.Preferences.Get(PrefKey{category, key})
	if !ok {
		return "<absent>"
	}
	return string(p.Value)
}

// TestPatchPreferences: RFC 7396 on a category: null deletes a key, objects
// merge recursively (null deleting a member), other values replace; members that
// change nothing write nothing; quotas and value size apply to the result.
func TestPatchPreferences(t *testing.T) {
	s := registered(t)
	patch := func(s *State, body string, n int) *Outcome {
		t.Helper()
		return apply(t, s, PatchPreferences{Category: CategoryUI, Patch: mustPatch(t, body)}, at(n))
	}
	o := patch(s, `{"theme": "dark", "items_per_page": null, "layout": {"sidebar": true, "density": null}, "language": "en"}`, 1)
	m := mutated(t, s, o)
	if got := prefValue(o.State, CategoryUI, "theme"); got != `"dark"` {
		t.Errorf("theme %s", got)
	}
	if got := prefValue(o.State, CategoryUI, "layout"); got != `{"sidebar":true}` {
		t.Errorf("layout %s", got)
	}
	if got := prefValue(o.State, CategoryUI, "items_per_page"); got != "<absent>" {
		t.Errorf("items_per_page %s", got)
	}
	if len(m.PreferenceUpserts) != 2 || m.PreferenceUpserts[0].Key != "layout" || m.PreferenceUpserts[1].Key != "theme" ||
		len(m.PreferenceDeletes) != 1 || m.PreferenceDeletes[0] != (PrefKey{CategoryUI, "items_per_page"}) {
		t.Fatalf("rows: upserts %+v, deletes %+v (language was already \"en\": no row)", m.PreferenceUpserts, m.PreferenceDeletes)
	}
	if prefs, ok := o.Result.([]Preference); !ok || len(prefs) != 4 || prefs[0].Category != CategoryUI {
		t.Fatalf("result %#v, want the ui category (4 keys)", o.Result)
	}
	if got := prefValue(o.State, CategoryNotifications, "email_enabled"); got != "true" {
		t.Errorf("another category changed: %s", got)
	}

	// Recursive merge into an existing object.
	o2 := patch(o.State, `{"layout": {"sidebar": null, "columns": {"left": 1}}}`, 2)
	mutated(t, o.State, o2)
	if got := prefValue(o2.State, CategoryUI, "layout"); got != `{"columns":{"left":1}}` {
		t.Errorf("layout after a nested patch %s", got)
	}
	// A scalar replaces an object, an object replaces a scalar.
	o3 := patch(o2.State, `{"layout": 3, "theme": {"name": "dark"}}`, 3)
	if a, b := prefValue(o3.State, CategoryUI, "layout"), prefValue(o3.State, CategoryUI, "theme"); a != "3" || b != `{"name":"dark"}` {
		t.Errorf("replacements: layout %s, theme %s", a, b)
	}
	// Nothing to change: no mutation, no version.
	unchanged(t, o3.State, patch(o3.State, `{"layout": 3, "missing_key": null}`, 4))

	// Quotas apply to the result; a patch that frees a key for another is allowed.
	q := at(5)
	q.Quotas.Preferences = len(o3.State.Preferences)
	applyErr(t, o3.State, PatchPreferences{Category: CategoryUI, Patch: mustPatch(t, `{"extra": 1}`)}, q, ECodeQuotaExceeded)
	o4 := apply(t, o3.State, PatchPreferences{Category: CategoryUI, Patch: mustPatch(t, `{"extra": 1, "layout": null}`)}, q)
	if len(o4.State.Preferences) != len(o3.State.Preferences) {
		t.Errorf("%d preferences after swapping a key", len(o4.State.Preferences))
	}
	// A merged value past the size limit names the key.
	big := `{"theme": {"blob": "` + strings.Repeat("x", MaxPreferenceValueBytes) + `"}}`
	_, err := Apply(o3.State, PatchPreferences{Category: CategoryUI, Patch: mustPatch(t, big)}, at(6))
	var e *Error
	if !errors.As(err, &e) || e.Code != ECodeValidation || len(e.Details) != 1 || e.Details[0].Field != "theme" {
		t.Fatalf("oversized merge: %v", err)
	}
}

func TestParsePreferencesPatch(t *testing.T) {
	for _, c := range []struct{ body, field string }{
		{`[]`, "body"}, {`"x"`, "body"}, {`null`, "body"}, {`{}`, "body"}, {`{"a":`, "body"},
		{`{"Bad-Key": 1}`, "Bad-Key"}, {`{"ok": 1, "also bad": 2}`, "also bad"},
	} {
		_, err := ParsePreferencesPatch([]byte(c.body))
		var e *Error
		if !errors.As(err, &e) || e.Code != ECodeValidation || len(e.Details) == 0 || e.Details[0].Field != c.field {
			t.Errorf("%s: %v, want a validation error on %q", c.body, err, c.field)
		}
	}
	p := mustPatch(t, `{"b": {"x": [1, 2]}, "a": null}`)
	if len(p.Members) != 2 || p.Members[0].Key != "a" || string(p.Members[0].Value) != "null" || string(p.Members[1].Value) != `{"x":[1,2]}` {
		t.Fatalf("members %+v", p.Members)
	}
}

// FuzzParsePreferencesPatch: any body either parses into valid keys and compact
// JSON values, or is refused with a validation error; it never panics.
func FuzzParsePreferencesPatch(f *testing.F) {
	for _, s := range []string{`{"theme":"dark"}`, `{"a":null,"b":{"c":[1,{"d":null}]}}`, `[]`, `{"\u00e9":1}`, "{\"k\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePreferencesPatch(body)
		if err != nil {
			if ErrorCode(err) != ECodeValidation {
				t.Fatalf("error %v is not a validation error", err)
			}
			return
		}
		for _, m := range p.Members {
			if !ValidPreferenceKey(m.Key) || len(m.Value) == 0 {
				t.Fatalf("member %+v", m)
			}
			if _, err := mergePreferenceValue(nil, m.Value); err != nil && string(m.Value) != "null" {
				t.Fatalf("member %s does not merge into nothing: %v", m.Key, err)
			}
		}
	})
}
