package redis

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	userservice "github.com/lms-platform/userservice"
)

func TestSnapshotCodecRoundTrip(t *testing.T) {
	typical := typicalState(t)
	odd := func() *userservice.State {
		// Values the service never makes but the codec must still keep exactly:
		// non-UUID ids, upper-case UUIDs, empty strings, nil maps, zero and
		// sub-millisecond times, nil and empty preference values.
		s := &userservice.State{User: userservice.User{
			ID: "not-a-uuid", AuthID: strings.ToUpper(userservice.NewID()), Email: "",
			Username: ptr(""), Bio: ptr("not-a-uuid"), Version: math.MaxInt64, LoginCount: -1,
			CreatedAt:    userservice.Time{Time: time.Unix(1705314600, 123456789).UTC()},
			LastActiveAt: &userservice.Time{},
		}}
		s.Preferences = userservice.PreferenceList{
			{ID: uuid.MustParse("0190a5d0-0000-7000-8000-000000000001"), UserID: "not-a-uuid", Category: "ui", Key: "a", Value: nil},
			{UserID: "someone-else", Category: "ui", Key: "b", Value: json.RawMessage{}},
		}
		s.Sessions = []userservice.Session{}
		s.Attributes = map[string]json.RawMessage{"hr": nil, "empty": {}, "school": json.RawMessage(`{"grade":10}`)}
		return s
	}()
	tests := []struct {
		name string
		s    *userservice.State
	}{
		{"newly registered user", registered(t, time.Now())},
		{"typical user", typical},
		{"hidden login fields and sessions", apply(t, typical, userservice.RecordLogin{
			SessionID: "s2", UserAgent: ptr(strings.Repeat("ü", 300)), At: userservice.Now()}, time.Now())},
		{"odd values", odd},
		{"custom attributes", apply(t, typical, userservice.SetAttributes{
			Namespace: "hr", Value: json.RawMessage(`{"department":"Math","grade":7}`)}, time.Now())},
		{"empty state", &userservice.State{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := appendSnapshot(nil, tt.s)
			if err != nil {
				t.Fatalf("appendSnapshot: %v", err)
			}
			got, err := decodeSnapshot(b)
			if err != nil {
				t.Fatalf("decodeSnapshot: %v", err)
			}
			if !reflect.DeepEqual(got, tt.s) {
				t.Errorf("round trip differs\n got: %+v\nwant: %+v", got, tt.s)
			}
		})
	}
	t.Run("keeps what the API hides", func(t *testing.T) {
		got, err := decodeSnapshot(must(appendSnapshot(nil, typical)))
		if err != nil {
			t.Fatal(err)
		}
		if got.User.LoginCount != 2 || got.User.LastLoginAt == nil || !got.User.LastLoginAt.Equal(typical.User.LastLoginAt.Time) {
			t.Errorf("login bookkeeping lost: count %d, last %v", got.User.LoginCount, got.User.LastLoginAt)
		}
		if len(got.Sessions) != 2 || got.Sessions[0].EndedAt == nil || *got.Sessions[0].IPAddress != "203.0.113.7" {
			t.Errorf("sessions lost: %+v", got.Sessions)
		}
		k := userservice.PrefKey{Category: userservice.CategoryUI, Key: "items_per_page"}
		gp, _ := got.Preferences.Get(k)
		tp, _ := typical.Preferences.Get(k)
		if string(gp.Value) != string(tp.Value) || tp.Value == nil {
			t.Errorf("preference value %s, want byte-identical %s", gp.Value, tp.Value)
		}
	})
}

func TestAppendSnapshotRefusesInconsistentLists(t *testing.T) {
	s := typicalState(t)
	for name, l := range map[string]userservice.EnrollmentList{
		"out of order":        {{CourseID: "b"}, {CourseID: "a"}},
		"one course twice":    {{CourseID: "a"}, {CourseID: "a"}},
		"a later one earlier": {{CourseID: "a"}, {CourseID: "c"}, {CourseID: "b"}},
	} {
		bad := *s
		bad.Enrollments = l
		if _, err := appendSnapshot(nil, &bad); err == nil {
			t.Errorf("enrollments %s: want an error", name)
		}
	}
	// Snapshots written while preferences were a map hold them in any order:
	// they decode into the list's order.
	unordered := *s
	unordered.Preferences = userservice.PreferenceList{{Category: "privacy", Key: "b"}, {Category: "ui", Key: "y"}, {Category: "ui", Key: "x"}}
	got, err := decodeSnapshot(must(appendSnapshot(nil, &unordered)))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, p := range got.Preferences {
		order = append(order, p.Category+"/"+p.Key)
	}
	if strings.Join(order, " ") != "ui/x ui/y privacy/b" {
		t.Errorf("decoded preferences in order %v, want ui/x ui/y privacy/b", order)
	}
}

// Snapshots written while enrollments were a map by course hold them in any
// order: they decode into the list's order, with the same enrollments.
func TestDecodeSnapshotOrdersMapOrderEnrollments(t *testing.T) {
	s := typicalState(t)
	a, b := *s, *s
	a.Enrollments, b.Enrollments = s.Enrollments[:1], s.Enrollments[1:2]
	ab := a
	ab.Enrollments = s.Enrollments[:2]
	encA, encB, encAB := must(appendSnapshot(nil, &a)), must(appendSnapshot(nil, &b)), must(appendSnapshot(nil, &ab))
	// encAB is head, count 2, A, B, rest; encA head, count 1, A, rest; encB the same with B.
	k := 0
	for encA[k] == encAB[k] {
		k++ // the first difference is the enrollments' count
	}
	rest := len(encA) + len(encB) - len(encAB) - (k + 1)
	lenA, lenB := len(encA)-(k+1)-rest, len(encB)-(k+1)-rest
	swapped := slices.Concat(encAB[:k+1], encB[k+1:k+1+lenB], encA[k+1:k+1+lenA], encAB[len(encAB)-rest:])
	if len(swapped) != len(encAB) || bytes.Equal(swapped, encAB) {
		t.Fatal("could not build a snapshot with its enrollments out of order")
	}
	got, err := decodeSnapshot(swapped)
	if err != nil {
		t.Fatal(err)
	}
	want, err := decodeSnapshot(encAB)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) || !got.Enrollments.Ordered() || len(got.Enrollments) != 2 {
		t.Errorf("decoded out-of-order snapshot:\n got %+v\nwant %+v", got.Enrollments, want.Enrollments)
	}
}

func TestDecodeSnapshotRejectsBadInput(t *testing.T) {
	valid := must(appendSnapshot(nil, typicalState(t)))
	empty := must(appendSnapshot(nil, &userservice.State{}))
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown format", append([]byte{snapshotFormat + 1}, valid[1:]...)},
		{"trailing byte", append(append([]byte{}, valid...), 0)},
		{"huge count", append(append([]byte{}, empty[:len(empty)-3]...), 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeSnapshot(tt.b); !errors.Is(err, errCorrupt) {
				t.Errorf("decodeSnapshot: err %v, want errCorrupt", err)
			}
		})
	}
	t.Run("every truncation", func(t *testing.T) {
		for n := range len(valid) {
			if _, err := decodeSnapshot(valid[:n]); !errors.Is(err, errCorrupt) {
				t.Fatalf("decodeSnapshot of the first %d of %d bytes: err %v, want errCorrupt", n, len(valid), err)
			}
		}
	})
}

// FuzzDecodeSnapshot: decoding bytes from Redis never panics, and whatever decodes
// encodes back to the same state.
func FuzzDecodeSnapshot(f *testing.F) {
	f.Add(must(appendSnapshot(nil, typicalState(f))))
	f.Add(must(appendSnapshot(nil, registered(f, time.Now()))))
	f.Add(must(appendSnapshot(nil, &userservice.State{})))
	f.Add([]byte{snapshotFormat})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSnapshot(b)
		if err != nil {
			return
		}
		again, err := decodeSnapshot(must(appendSnapshot(nil, s)))
		if err != nil {
			t.Fatalf("re-decoding a decoded snapshot: %v", err)
		}
		for _, e := range s.Enrollments {
			if math.IsNaN(e.Progress) {
				return // NaN != NaN defeats DeepEqual
			}
		}
		if !reflect.DeepEqual(again, s) {
			t.Fatalf("round trip differs\n got: %+v\nwant: %+v", again, s)
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestTypicalSnapshotSize records the size the final report quotes and guards it
// against accidental growth.
func TestTypicalSnapshotSize(t *testing.T) {
	s := typicalState(t)
	b := must(appendSnapshot(nil, s))
	api, err := json.Marshal(struct {
		User        userservice.User
		Enrollments []userservice.Enrollment
		Preferences []userservice.Preference
		Sessions    []userservice.Session
	}{s.User, s.SortedEnrollments(""), s.SortedPreferences(""), s.Sessions})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("typical user (%d preferences, %d enrollments, %d sessions): snapshot %d bytes, API JSON %d bytes",
		len(s.Preferences), len(s.Enrollments), len(s.Sessions), len(b), len(api))
	if len(b) > 3000 {
		t.Errorf("typical snapshot is %d bytes; it was about 1.9 KB", len(b))
	}
}

func BenchmarkSnapshotEncode(b *testing.B) {
	s := typicalState(b)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		out, err := appendSnapshot(buf[:0], s)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.ReportMetric(float64(n), "bytes/snapshot")
}

func BenchmarkSnapshotDecode(b *testing.B) {
	enc := must(appendSnapshot(nil, typicalState(b)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeSnapshot(enc); err != nil {
			b.Fatal(err)
		}
	}
}
