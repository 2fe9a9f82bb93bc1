package http

import (
	stdjson "encoding/json"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/google/uuid"

	"github.com/lms-platform/userservice"
)

// renderSuccessAt is the generic encoder's envelope of data with message, at a
// given time.
func renderSuccessAt(data any, message string, at userservice.Time) ([]byte, error) {
	return json.Marshal(successBody{Success: true, Data: data, Message: message, Timestamp: at})
}

// FuzzPreferencesEnvelope: the hand-written encoder of preference answers (GET
// preferences, and every preference write's answer with its message) writes
// exactly what the generic encoder writes, for any strings and any valid stored
// value, compact or not.
func FuzzPreferencesEnvelope(f *testing.F) {
	f.Add("learning", "k_1", `{"a": [1, 2], "b": "<x>&y"}`, "id-1", int64(1767225600123), "")
	f.Add("notifications", "email\u2028\"\\\x01", `"\u2029 line"`, "\xff\xfe", int64(0), "Preferences updated successfully")
	f.Add("", "", `null`, "", int64(-1), "<&>\u2028")
	f.Add("c", "k", "  true ", "é☕", int64(253402300799999), "\xff")
	f.Fuzz(func(t *testing.T, category, key, value, id string, ms int64, message string) {
		if !stdjson.Valid([]byte(value)) {
			return
		}
		at := userservice.NewTime(time.UnixMilli(ms))
		prefs := []userservice.Preference{
			{ID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(id)), UserID: "u-" + id, Category: category, Key: key, Value: stdjson.RawMessage(value), CreatedAt: at, UpdatedAt: at},
			{Category: key, Key: category, Value: nil, CreatedAt: at},
		}
		for _, list := range [][]userservice.Preference{prefs, prefs[:0], nil} {
			want, err := renderSuccessAt(list, message, at)
			if err != nil {
				t.Skip(err) // a value the generic encoder refuses is not ours to compare
			}
			if got := appendPreferencesEnvelope(nil, list, message, at); string(got) != string(want) {
				t.Fatalf("hand-written:\n%s\ngeneric:\n%s", got, want)
			}
		}
	})
}

func BenchmarkPreferencesEnvelope(b *testing.B) {
	at := userservice.Now()
	prefs := make([]userservice.Preference, 16)
	for i := range prefs {
		prefs[i] = userservice.Preference{ID: userservice.NewUUID(), UserID: userservice.NewID(), Category: "notifications",
			Key: "key_" + string(rune('a'+i)), Value: stdjson.RawMessage(`{"enabled": true, "channels": ["email", "push"]}`), CreatedAt: at, UpdatedAt: at}
	}
	b.Run("generic", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := renderSuccessAt(prefs, "", at); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 8192)
		for b.Loop() {
			buf = appendPreferencesEnvelope(buf[:0], prefs, "", at)
		}
	})
}
