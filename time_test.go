package userservice

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestTimeJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   time.Time
		want string
	}{
		{"three fractional digits and Z", time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC), `"2024-01-15T10:30:00.000Z"`},
		{"truncated, not rounded, to milliseconds", time.Date(2024, 1, 15, 10, 30, 0, 999_999_999, time.UTC), `"2024-01-15T10:30:00.999Z"`},
		{"converted to UTC", time.Date(2024, 1, 15, 12, 30, 0, 5_000_000, time.FixedZone("CEST", 2*3600)), `"2024-01-15T10:30:00.005Z"`},
		{"zero", time.Time{}, `"0001-01-01T00:00:00.000Z"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(NewTime(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("marshal = %s, want %s", b, tc.want)
			}
			if s := NewTime(tc.in).String(); `"`+s+`"` != tc.want {
				t.Errorf("String() = %s, want %s", s, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, in string
		want     time.Time
	}{
		{"wire format", `"2024-01-15T10:30:00.123Z"`, time.Date(2024, 1, 15, 10, 30, 0, 123_000_000, time.UTC)},
		{"offset", `"2024-01-15T12:30:00+02:00"`, time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC)},
		{"nanoseconds truncated", `"2024-01-15T10:30:00.123456789Z"`, time.Date(2024, 1, 15, 10, 30, 0, 123_000_000, time.UTC)},
	} {
		t.Run("unmarshal "+tc.name, func(t *testing.T) {
			var got Time
			if err := json.Unmarshal([]byte(tc.in), &got); err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.want) || got.Location() != time.UTC {
				t.Errorf("got %v, want %v in UTC", got.Time, tc.want)
			}
		})
	}
	for _, in := range []string{`"2024-01-15"`, `"yesterday"`, `1705314600`, `"2024-01-15T10:30:00"`, `""`, `"`, `true`,
		`"0000-01-01T00:00:00+01:00"`, `"9999-12-31T23:59:59-01:00"`} {
		t.Run("refuses "+in, func(t *testing.T) {
			var got Time
			if err := got.UnmarshalJSON([]byte(in)); err == nil {
				t.Errorf("UnmarshalJSON(%s) = %v, want an error", in, got)
			}
		})
	}
	t.Run("null leaves the value alone", func(t *testing.T) {
		got := NewTime(time.Unix(1, 0))
		if err := json.Unmarshal([]byte(`null`), &got); err != nil || !got.Equal(time.Unix(1, 0)) {
			t.Errorf("got %v, %v", got, err)
		}
	})
	t.Run("pointer fields marshal null", func(t *testing.T) {
		b, _ := json.Marshal(struct{ At *Time }{})
		if string(b) != `{"At":null}` {
			t.Errorf("got %s", b)
		}
	})
	t.Run("Now has millisecond precision", func(t *testing.T) {
		if n := Now(); n.Nanosecond()%int(time.Millisecond) != 0 || n.Location() != time.UTC {
			t.Errorf("Now() = %v", n.Time)
		}
		if p := TimePtr(time.Unix(0, 1_234_567)); p.UnixNano() != 1_000_000 {
			t.Errorf("TimePtr = %v", p.Time)
		}
	})
}

// FuzzTimeJSON checks the round trip both ways: a Time marshals to exactly
// TimeFormat and back to the same instant; any accepted RFC 3339 input re-marshals
// to TimeFormat and reads back unchanged.
func FuzzTimeJSON(f *testing.F) {
	f.Add(int64(1705314600), int64(123_456_789), "2024-01-15T10:30:00.123Z")
	f.Add(int64(0), int64(0), "1970-01-01T00:00:00+14:00")
	f.Add(int64(253402300799), int64(999_999_999), "9999-12-31T23:59:59.999999999Z")
	f.Add(int64(-62135596800), int64(0), "0000-01-01T00:00:00-01:00")
	f.Add(int64(1), int64(0), "0000-01-01T00:00:00+01:00")
	f.Add(int64(2), int64(0), "9999-12-31T23:59:59-01:00")
	f.Fuzz(func(t *testing.T, sec, nsec int64, text string) {
		roundTrip := func(tm Time) {
			t.Helper()
			b, err := json.Marshal(tm)
			if err != nil {
				t.Fatal(err)
			}
			s := strings.Trim(string(b), `"`)
			if p, err := time.Parse(TimeFormat, s); err != nil || len(b) != len(TimeFormat)+2 || !p.Equal(tm.Time) {
				t.Fatalf("%v marshals to %s, not TimeFormat of the same instant (%v)", tm.Time, b, err)
			}
			var back Time
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("%s does not unmarshal: %v", b, err)
			}
			if !back.Equal(tm.Time) {
				t.Fatalf("%s unmarshals to %v, want %v", b, back.Time, tm.Time)
			}
		}
		if tm := time.Unix(sec, nsec).UTC(); tm.Year() >= 0 && tm.Year() <= 9999 {
			roundTrip(NewTime(tm))
		}
		var parsed Time
		js, _ := json.Marshal(text)
		if err := json.Unmarshal(js, &parsed); err == nil {
			roundTrip(parsed)
		}
	})
}
