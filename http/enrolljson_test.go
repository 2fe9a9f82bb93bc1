package http

import (
	"math"
	"testing"
	"time"

	json "github.com/goccy/go-json"

	"github.com/lms-platform/userservice"
)

// FuzzEnrollmentEnvelope: the hand-written encoder of an enrollment answer (POST
// enrollment, PUT progress) writes exactly what the generic encoder writes, for
// any strings, any progress, the optional times set or not, and any times.
func FuzzEnrollmentEnvelope(f *testing.F) {
	f.Add("id-1", "course-1", "in_progress", 42.5, int64(3600), uint8(0), int64(1767225600123), "Enrollment created successfully")
	f.Add("\xff\xfe", "e\"\\\x01<&>", "completed", 100.0, int64(-1), uint8(3), int64(0), "")
	f.Add("é☕", "\u2028", "", 1e-7, int64(1<<62), uint8(1), int64(253402300799999), "\xff")
	f.Add("x", "y", "dropped", 0.1+0.2, int64(0), uint8(2), int64(-1), "m")
	f.Add("x", "y", "dropped", 1e21, int64(0), uint8(2), int64(1), "m")
	f.Add("x", "y", "dropped", -1.5e-9, int64(0), uint8(2), int64(1), "m")
	f.Fuzz(func(t *testing.T, id, course, status string, progress float64, spent int64, optional uint8, ms int64, message string) {
		if math.IsNaN(progress) || math.IsInf(progress, 0) {
			return // refused by validation before it is stored; the generic encoder refuses it too
		}
		at := userservice.NewTime(time.UnixMilli(ms))
		later := userservice.NewTime(time.UnixMilli(ms + 1500))
		e := userservice.Enrollment{
			ID: id, UserID: id + "-user", CourseID: course, EnrollmentStatus: userservice.EnrollmentStatus(status),
			Progress: progress, TimeSpentSeconds: spent, EnrolledAt: at, CreatedAt: at, UpdatedAt: later,
		}
		if optional&1 != 0 {
			e.CompletedAt = &later
		}
		if optional&2 != 0 {
			e.LastAccessedAt = &at
		}
		want, err := renderSuccessAt(e, message, at)
		if err != nil {
			t.Skip(err) // a value the generic encoder refuses is not ours to compare
		}
		if got := appendEnrollmentEnvelope(nil, &e, message, at); string(got) != string(want) {
			t.Fatalf("hand-written:\n%s\ngeneric:\n%s", got, want)
		}
	})
}

// TestRenderSuccessUsesTheEnrollmentEncoder: an enroll's and a progress write's
// answer (an Enrollment value) and a pointer to one take the hand-written path,
// which writes what the generic encoder writes; the allocation count tells the
// two paths apart (the answers alone cannot).
func TestRenderSuccessUsesTheEnrollmentEncoder(t *testing.T) {
	at := userservice.Now()
	e := userservice.Enrollment{ID: userservice.NewID(), UserID: userservice.NewID(), CourseID: userservice.NewID(),
		EnrollmentStatus: "active", Progress: 12.25, EnrolledAt: at, LastAccessedAt: &at, CreatedAt: at, UpdatedAt: at}
	if dataOf[userservice.Enrollment](e) == nil || dataOf[userservice.Enrollment](&e) == nil || dataOf[userservice.Enrollment]([]userservice.Enrollment{e}) != nil {
		t.Fatal("dataOf does not tell an enrollment from other data")
	}
	got, err := renderSuccess(e, "Progress updated", nil)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Data      userservice.Enrollment `json:"data"`
		Message   string                 `json:"message"`
		Timestamp userservice.Time       `json:"timestamp"`
	}
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, got)
	}
	if back.Data.ID != e.ID || back.Data.Progress != e.Progress || back.Message != "Progress updated" ||
		back.Data.LastAccessedAt == nil || !back.Data.LastAccessedAt.Equal(at.Time) {
		t.Fatalf("answer does not carry the enrollment: %s", got)
	}
	// The route itself: the hand-written path allocates the answer's buffer
	// and nothing else; the generic encoder allocates 7 times or more per answer.
	for _, data := range []any{e, &e} {
		if n := testing.AllocsPerRun(100, func() { _, _ = renderSuccess(data, "Progress updated", nil) }); n > 2 {
			t.Fatalf("renderSuccess(%T) allocates %.0f times: the enrollment takes the generic encoder", data, n)
		}
	}
}

func BenchmarkEnrollmentEnvelope(b *testing.B) {
	at := userservice.Now()
	e := userservice.Enrollment{ID: userservice.NewID(), UserID: userservice.NewID(), CourseID: userservice.NewID(),
		EnrollmentStatus: "active", Progress: 37.5, TimeSpentSeconds: 5400, EnrolledAt: at, LastAccessedAt: &at,
		CreatedAt: at, UpdatedAt: at}
	b.Run("generic", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := renderSuccessAt(e, "Progress updated successfully", at); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = appendEnrollmentEnvelope(make([]byte, 0, 512), &e, "Progress updated successfully", at)
		}
	})
}
