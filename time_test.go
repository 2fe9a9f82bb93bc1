package userservice

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
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

// TestTimeAppendWire checks the hand-written formatter against time's own, over
// instants spread across the four-digit years and every millisecond digit.
func TestTimeAppendWire(t *testing.T) {
	cases := []time.Time{
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC),
		time.Date(2024, 2, 29, 9, 5, 7, 8e6, time.FixedZone("x", -7*3600)),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		cases = append(cases, time.UnixMilli(r.Int64N(253402300799999)))
	}
	for _, c := range cases {
		v := NewTime(c)
		if got, want := string(v.AppendWire(nil)), v.UTC().Format(TimeFormat); got != want {
			t.Fatalf("AppendWire(%v) = %s, want %s", c, got, want)
		}
		b, err := v.MarshalJSON()
		if err != nil || string(b) != `"`+v.UTC().Format(TimeFormat)+`"` {
			t.Fatalf("MarshalJSON(%v) = %s, %v", c, b, err)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = cases[2].MarshalJSON() }); n > 1 {
		t.Errorf("MarshalJSON: %v allocations, want at most 1 (its result)", n)
	}
}

// TestNewID checks that ids are canonical version 7 UUIDs, unique and strictly
// increasing within the process, also from many goroutines at once.
func TestNewID(t *testing.T) {
	const perG, gs = 5000, 4
	out := make([][]string, gs)
	var wg sync.WaitGroup
	for g := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perG {
				out[g] = append(out[g], NewID())
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, ids := range out {
		for i, id := range ids {
			canon, ok := ParseID(id)
			u, err := uuid.Parse(id)
			switch {
			case !ok || canon != id || err != nil:
				t.Fatalf("%q is not a canonical UUID", id)
			case u.Version() != 7 || u.Variant() != uuid.RFC4122:
				t.Fatalf("%s: version %d variant %v, want 7 and RFC 4122", id, u.Version(), u.Variant())
			case seen[id]:
				t.Fatalf("%s handed out twice", id)
			case i > 0 && id <= ids[i-1]:
				t.Fatalf("%s after %s: not increasing", id, ids[i-1])
			}
			seen[id] = true
		}
	}
	// The time prefix is now's.
	u, _ := uuid.Parse(NewID())
	sec, nsec := u.Time().UnixTime()
	if d := time.Since(time.Unix(sec, nsec)); d < 0 || d > time.Minute {
		t.Errorf("the id's time is %v from now", d)
	}
	if n := testing.AllocsPerRun(100, func() { _ = NewID() }); n > 1 {
		t.Errorf("NewID: %v allocations, want 1 (its string)", n)
	}
}
