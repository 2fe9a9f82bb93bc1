package main

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"testing"

	"github.com/lms-platform/userservice"
)

// platformStats is GET /api/v1/users/stats.
func (svc *service) platformStats(t *testing.T, token string) userservice.PlatformStats {
	t.Helper()
	var s userservice.PlatformStats
	svc.do(t, "GET", "/api/v1/users/stats", token, nil).data(t, http.StatusOK, &s)
	return s
}

// usersTableStats counts the users table of the stack directly.
func (s *stack) usersTableStats(t *testing.T) userservice.PlatformStats {
	t.Helper()
	out := userservice.NewPlatformStats()
	rows, err := s.db(t).Query(context.Background(), `SELECT role, status, email_verified, profile_completed, count(*) FROM users GROUP BY 1, 2, 3, 4`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var role, status string
		var v, c bool
		var n int64
		if err := rows.Scan(&role, &status, &v, &c, &n); err != nil {
			t.Fatal(err)
		}
		out.Add(userservice.Role(role), userservice.Status(status), v, c, n)
	}
	return out
}

// TestPlatformStats: GET /api/v1/users/stats (admin) counts every user exactly
// after each acknowledged write, the route is not taken for /users/{id}, and
// /metrics exports the counts as gauges and registrations, enrollments and
// completions as counters.
func TestPlatformStats(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	counter := func(name string) float64 { return svc.metric(t, name) }
	regs, enrolls, completes := counter("user_service_registrations_total"), counter("user_service_enrollments_total"), counter("user_service_course_completions_total")

	if s := svc.platformStats(t, admin); !reflect.DeepEqual(s, userservice.NewPlatformStats()) {
		t.Fatalf("stats of an empty platform: %+v", s)
	}
	users := make([]apiUser, 6)
	parallel(len(users), 6, func(i int) {
		body := newUserBody(t)
		if i < 2 {
			body["role"] = "instructor"
		}
		r, err := svc.send("POST", "/api/v1/users", admin, body)
		if err == nil {
			err = jsonData(r, &users[i])
		}
		if err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	svc.do(t, "PUT", "/api/v1/users/"+users[2].ID+"/status", admin, map[string]any{"status": "suspended"}).data(t, 200, nil)
	svc.do(t, "DELETE", "/api/v1/users/"+users[3].ID, admin, nil).data(t, 200, nil)
	svc.do(t, "PUT", "/api/v1/users/"+users[4].ID, admin, map[string]any{
		"displayName": "Ada", "avatarUrl": "https://example.com/a.png", "bio": "b", "phone": "+14155550123",
	}).data(t, 200, nil)
	student := st.tokenFor(t, users[5])
	course := userservice.NewID()
	svc.do(t, "POST", "/api/v1/users/me/enrollments", student, map[string]any{"courseId": course}).data(t, 201, nil)
	svc.do(t, "PUT", "/api/v1/users/me/enrollments/"+course+"/progress", student, map[string]any{"progress": 100}).data(t, 200, nil)

	got := svc.platformStats(t, admin)
	if want := st.usersTableStats(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("stats %+v, the users table says %+v", got, want)
	}
	if got.Total != 6 || got.ByStatus[userservice.StatusActive] != 4 || got.ByStatus[userservice.StatusSuspended] != 1 ||
		got.ByStatus[userservice.StatusDeleted] != 1 || got.ByRole[userservice.RoleInstructor] != 2 || got.ByRole[userservice.RoleStudent] != 4 {
		t.Errorf("stats %+v", got)
	}

	t.Run("access and routing", func(t *testing.T) {
		svc.do(t, "GET", "/api/v1/users/stats", student, nil).fail(t, 403, "FORBIDDEN")
		svc.do(t, "GET", "/api/v1/users/stats", "", nil).fail(t, 401, "UNAUTHORIZED")
		svc.do(t, "GET", "/api/v1/users/me/stats", student, nil).data(t, 200, nil) // a user's own stats are still theirs
		svc.do(t, "GET", "/api/v1/users/"+users[0].ID, admin, nil).data(t, 200, nil)
	})

	t.Run("metrics", func(t *testing.T) {
		eventually(t, "the user gauges", func() error {
			for name, want := range map[string]float64{
				"user_service_users": 6, `user_service_users_by_status{status="deleted"}`: 1,
				`user_service_users_by_status{status="suspended"}`: 1, `user_service_users_by_role{role="instructor"}`: 2,
				"user_service_users_profile_completed": float64(got.Verification.ProfileCompleted),
				"user_service_users_email_verified":    0,
			} {
				if v := counter(name); v != want {
					return fmt.Errorf("%s = %v, want %v", name, v, want)
				}
			}
			return nil
		})
		for name, want := range map[string]float64{
			"user_service_registrations_total":      regs + 6,
			"user_service_enrollments_total":        enrolls + 1,
			"user_service_course_completions_total": completes + 1,
		} {
			if v := counter(name); v != want {
				t.Errorf("%s = %v, want %v", name, v, want)
			}
		}
	})
}
