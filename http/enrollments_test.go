package http

import (
	"testing"

	"github.com/lms-platform/userservice"
)

func TestEnrollmentFlow(t *testing.T) {
	h := newHarness(t)
	c1, c2, c3 := userservice.NewID(), userservice.NewID(), userservice.NewID()
	enroll := func(course string) *resp {
		return h.send("POST", userPath("me", "enrollments"), h.alice.token, map[string]any{"courseId": course})
	}
	t.Run("new enrollment is 201", func(t *testing.T) {
		for _, c := range []string{c1, c2, c3} {
			r := enroll(c).expect(201, "")
			if r.json()["message"] != "Enrollment created successfully" || r.dataMap()["enrollmentStatus"] != "active" {
				t.Fatalf("body %s", r.body)
			}
		}
	})
	t.Run("enrolling twice is 409", func(t *testing.T) {
		enroll(c1).expect(409, userservice.ECodeAlreadyEnrolled)
	})
	t.Run("bad course id is 400", func(t *testing.T) {
		h.send("POST", userPath("me", "enrollments"), h.alice.token, `{"courseId":"nope"}`).expect(400, userservice.ECodeValidation)
	})
	t.Run("list paginates and filters", func(t *testing.T) {
		r := h.get(userPath("me", "enrollments")+"?page=1&limit=2", h.alice.token).expect(200, "")
		p := r.json()["pagination"].(map[string]any)
		if len(r.dataList()) != 2 || p["total"] != float64(3) || p["totalPages"] != float64(2) || p["hasNext"] != true {
			t.Fatalf("body %s", r.body)
		}
		h.get(userPath("me", "enrollments")+"?status=finished", h.alice.token).expect(400, userservice.ECodeValidation)
		h.get(userPath("me", "enrollments")+"?limit=0", h.alice.token).expect(400, userservice.ECodeValidation)
	})
	t.Run("progress 100 completes", func(t *testing.T) {
		r := h.send("PUT", userPath("me", "enrollments", c1, "progress"), h.alice.token, `{"progress":100,"timeSpentSeconds":60}`).expect(200, "")
		d := r.dataMap()
		if d["enrollmentStatus"] != "completed" || d["completedAt"] == nil || r.json()["message"] != "Enrollment progress updated successfully" {
			t.Fatalf("body %s", r.body)
		}
		h.send("PUT", userPath("me", "enrollments", c1, "progress"), h.alice.token, `{"progress":101}`).expect(400, userservice.ECodeValidation)
		h.send("PUT", userPath("me", "enrollments", c1, "progress"), h.alice.token, `{}`).expect(400, userservice.ECodeValidation)
	})
	t.Run("drop then re-enroll reactivates with 200", func(t *testing.T) {
		h.send("PUT", userPath("me", "enrollments", c2), h.alice.token, `{"enrollmentStatus":"dropped"}`).expect(200, "")
		h.get(userPath("me", "enrollments")+"?status=dropped", h.alice.token).expect(200, "")
		r := enroll(c2).expect(200, "")
		if r.dataMap()["enrollmentStatus"] != "active" {
			t.Fatalf("body %s", r.body)
		}
	})
	t.Run("delete removes the enrollment", func(t *testing.T) {
		r := h.send("DELETE", userPath("me", "enrollments", c3), h.alice.token, nil).expect(200, "")
		if r.json()["message"] != "Enrollment deleted successfully" {
			t.Fatalf("body %s", r.body)
		}
		h.send("DELETE", userPath("me", "enrollments", c3), h.alice.token, nil).expect(404, userservice.ECodeNotFound)
		h.send("PUT", userPath("me", "enrollments", c3, "progress"), h.alice.token, `{"progress":5}`).expect(404, userservice.ECodeNotFound)
	})
	t.Run("stats count every enrollment", func(t *testing.T) {
		d := h.get(userPath(h.alice.id, "enrollments", "stats"), h.admin.token).expect(200, "").dataMap()
		if d["totalCourses"] != float64(2) || d["completedCourses"] != float64(1) || d["totalTimeSpent"] != float64(60) {
			t.Fatalf("stats %v", d)
		}
	})
	t.Run("GET on a course path is 405", func(t *testing.T) {
		h.get(userPath("me", "enrollments", c1), h.alice.token).expect(405, userservice.ECodeMethodNotAllowed)
	})
	t.Run("admin enrolls another user", func(t *testing.T) {
		h.send("POST", userPath(h.bob.id, "enrollments"), h.admin.token, map[string]any{"courseId": c1}).expect(201, "")
		h.send("POST", userPath(h.bob.id, "enrollments"), h.alice.token, map[string]any{"courseId": c2}).expect(403, userservice.ECodeForbidden)
	})
}
