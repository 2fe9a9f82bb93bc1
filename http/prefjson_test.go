package http

import (
	stdjson "encoding/json"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/google/uuid"

	"github.com/lms-platform/userservice"
)

// renderSuccessAt is renderSuccess(data, "", nil) at a given time.
func renderSuccessAt(data any, at userservice.Time) ([]byte, error) {
	return json.Marshal(successBody{Success: true, Data: data, Timestamp: at})
}

// FuzzPreferencesEnvelope: the hand-written encoder of GET preferences answers
// writes exactly what the generic encoder (renderSuccess's) writes, for any
// strings and any valid stored value, compact or not.
func FuzzPreferencesEnvelope(f *testing.F) {
	f.Add("learning", "k_1", `{"a": [1, 2], "b": "<x>&y"}`, "id-1", int64(1767225600123))
	f.Add("notifications", "email\u2028\"\\\x01", `"\u2029 line"`, "\xff\xfe", int64(0))
	f.Add("", "", `null`, "", int64(-1))
	f.Add("c", "k", "  true ", "é☕", int64(253402300799999))
	f.Fuzz(func(t *testing.T, category, key, value, id string, ms int64) {
		if !stdjson.Valid([]byte(value)) {
			return
		}
		at := userservice.NewTime(time.UnixMilli(ms))
		prefs := []userservice.Preference{
			{ID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(id)), UserID: "u-" + id, Category: category, Key: key, Value: stdjson.RawMessage(value), CreatedAt: at, UpdatedAt: at},
			{Category: key, Key: category, Value: nil, CreatedAt: at},
		}
		for _, list := range [][]userservice.Preference{prefs, prefs[:0], nil} {
			want, err := renderSuccessAt(list, at)
			if err != nil {
				t.Skip(err) // a value the generic encoder refuses is not ours to compare
			}
			if got := appendPreferencesEnvelope(nil, list, at); string(got) != string(want) {
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
			if _, err := renderSuccessAt(prefs, at); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 8192)
		for b.Loop() {
			buf = appendPreferencesEnvelope(buf[:0], prefs, at)
		}
	})
}
