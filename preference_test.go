package userservice

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// jsonString returns a JSON string literal of exactly n bytes (n >= 2).
func jsonString(n int) string { return `"` + strings.Repeat("x", n-2) + `"` }

func TestUpsertPreferencesValidate(t *testing.T) {
	padded := "[ " + strings.Repeat(" ", 5000) + "1 ,\n\t2 ]" // raw > 4096, compact "[1,2]"
	for _, tc := range []struct {
		name, body, path string
		fields           []string
	}{
		{"one item on the category route", `{"preferences":[{"key":"theme","value":"dark"}]}`, "ui", nil},
		{"items name their category on the all-categories route",
			`{"preferences":[{"category":"ui","key":"theme","value":"dark"},{"category":"privacy","key":"show_progress","value":false}]}`, "", nil},
		{"category missing on the all-categories route", `{"preferences":[{"key":"theme","value":"dark"}]}`, "", []string{"preferences[0].category"}},
		{"category matching the path", `{"preferences":[{"category":"ui","key":"theme","value":1}]}`, "ui", nil},
		{"category differing from the path", `{"preferences":[{"category":"privacy","key":"theme","value":1}]}`, "ui", []string{"preferences[0].category"}},
		{"unknown category", `{"preferences":[{"category":"games","key":"theme","value":1}]}`, "", []string{"preferences[0].category"}},
		{"bad key", `{"preferences":[{"key":"Theme","value":1},{"key":"ok","value":1},{"key":"","value":1}]}`, "ui",
			[]string{"preferences[0].key", "preferences[2].key"}},
		{"value missing", `{"preferences":[{"key":"theme"}]}`, "ui", []string{"preferences[0].value"}},
		{"null is a value", `{"preferences":[{"key":"theme","value":null}]}`, "ui", nil},
		{"object and array values", `{"preferences":[{"key":"a","value":{"x":[1,{"y":null}]}},{"key":"b","value":[]}]}`, "learning", nil},
		{"4096 bytes as compact JSON", `{"preferences":[{"key":"k","value":` + jsonString(4096) + `}]}`, "ui", nil},
		{"4097 bytes as compact JSON", `{"preferences":[{"key":"k","value":` + jsonString(4097) + `}]}`, "ui", []string{"preferences[0].value"}},
		{"whitespace-padded value under the limit once compacted", `{"preferences":[{"key":"k","value":` + padded + `}]}`, "ui", nil},
		{"preferences missing", `{}`, "ui", []string{"preferences"}},
		{"preferences null", `{"preferences":null}`, "ui", []string{"preferences"}},
		{"preferences empty", `{"preferences":[]}`, "ui", []string{"preferences"}},
		{"every problem of every item", `{"preferences":[{"category":"x","key":"A"},{"key":"ok","value":` + jsonString(5000) + `}]}`, "",
			[]string{"preferences[0].category", "preferences[0].key", "preferences[0].value", "preferences[1].category", "preferences[1].value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u UpsertPreferences
			if err := json.Unmarshal([]byte(tc.body), &u); err != nil {
				t.Fatal(err)
			}
			checkFields(t, u.Validate(tc.path), tc.fields...)
		})
	}
	t.Run("values are compacted in place", func(t *testing.T) {
		var u UpsertPreferences
		if err := json.Unmarshal([]byte(`{"preferences":[{"key":"k","value":`+padded+`},{"key":"s","value": " a  b " }]}`), &u); err != nil {
			t.Fatal(err)
		}
		checkFields(t, u.Validate("ui"))
		if got := string(u.Preferences[0].Value); got != "[1,2]" {
			t.Errorf("value = %q, want [1,2]", got)
		}
		if got := string(u.Preferences[1].Value); got != `" a  b "` {
			t.Errorf("string value = %q, want its inner spaces kept", got)
		}
	})
	t.Run("value that is not JSON", func(t *testing.T) {
		u := UpsertPreferences{Preferences: []PreferenceInput{{Key: "k", Value: json.RawMessage(`{"a":`)}}}
		checkFields(t, u.Validate("ui"), "preferences[0].value")
	})
	t.Run("at most MaxPreferencesPerRequest items", func(t *testing.T) {
		items := make([]PreferenceInput, MaxPreferencesPerRequest+1)
		for i := range items {
			items[i] = PreferenceInput{Key: "k" + strconv.Itoa(i), Value: json.RawMessage("1")}
		}
		checkFields(t, (&UpsertPreferences{Preferences: items[:MaxPreferencesPerRequest]}).Validate("ui"))
		checkFields(t, (&UpsertPreferences{Preferences: items}).Validate("ui"), "preferences")
	})
}

func TestCategories(t *testing.T) {
	for _, c := range []string{"notifications", "ui", "learning", "privacy"} {
		if !ValidCategory(c) {
			t.Errorf("ValidCategory(%q) = false", c)
		}
	}
	for _, c := range []string{"", "UI", "games", "ui "} {
		if ValidCategory(c) {
			t.Errorf("ValidCategory(%q) = true", c)
		}
	}
	if strings.Join(Categories, " ") != "notifications ui learning privacy" {
		t.Errorf("Categories = %v", Categories)
	}
}

// FuzzUpsertPreferencesValidate decodes arbitrary bodies and validates them: never a
// panic, and an accepted request has only valid keys and categories and compact
// values of at most 4 KiB.
func FuzzUpsertPreferencesValidate(f *testing.F) {
	f.Add([]byte(`{"preferences":[{"category":"ui","key":"theme","value":"dark"}]}`), "")
	f.Add([]byte(`{"preferences":[{"key":"items_per_page","value": 20 }]}`), "ui")
	f.Add([]byte(`{"preferences":[{"key":"k","value":{ "a" : [ 1 , null ] }}]}`), "learning")
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		var u UpsertPreferences
		if err := json.Unmarshal(body, &u); err != nil {
			return
		}
		if err := u.Validate(path); err != nil {
			fieldsOf(t, err) // must be a validation error with details
			return
		}
		if len(u.Preferences) == 0 || len(u.Preferences) > MaxPreferencesPerRequest {
			t.Fatalf("accepted %d items", len(u.Preferences))
		}
		for i, p := range u.Preferences {
			var buf bytes.Buffer
			if err := json.Compact(&buf, p.Value); err != nil {
				t.Fatalf("item %d: accepted value %q is not JSON: %v", i, p.Value, err)
			}
			if !bytes.Equal(buf.Bytes(), p.Value) {
				t.Errorf("item %d: value %q is not compact", i, p.Value)
			}
			if len(p.Value) > MaxPreferenceValueBytes {
				t.Errorf("item %d: value of %d bytes accepted", i, len(p.Value))
			}
			if !ValidPreferenceKey(p.Key) {
				t.Errorf("item %d: key %q accepted", i, p.Key)
			}
			cat := path
			if p.Category != nil {
				cat = *p.Category
			}
			if !ValidCategory(cat) && !(path != "" && p.Category == nil) {
				t.Errorf("item %d: category %q accepted", i, cat)
			}
		}
	})
}
