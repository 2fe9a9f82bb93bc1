package http

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/lms-platform/userservice"
)

func newUserBody(email string) map[string]any {
	return map[string]any{"authId": userservice.NewID(), "email": email, "firstName": "New", "lastName": "User"}
}

func TestCreateUser(t *testing.T) {
	h := newHarness(t)
	t.Run("201 with default preferences", func(t *testing.T) {
		r := h.send("POST", "/api/v1/users", h.admin.token, newUserBody("Carol@Example.com")).expect(201, "")
		d := r.dataMap()
		if d["email"] != "carol@example.com" || r.json()["message"] != "User created successfully" || r.get("ETag") != `"1"` {
			t.Fatalf("body %s etag %s", r.body, r.get("ETag"))
		}
		prefs := h.get(userPath(d["id"].(string), "preferences"), h.admin.token).expect(200, "").dataList()
		if len(prefs) != len(userservice.DefaultPreferences) {
			t.Fatalf("%d preferences, want %d", len(prefs), len(userservice.DefaultPreferences))
		}
	})
	t.Run("duplicate email is 409", func(t *testing.T) {
		h.send("POST", "/api/v1/users", h.admin.token, newUserBody("alice@example.com")).expect(409, userservice.ECodeConflict)
	})
	t.Run("validation", func(t *testing.T) {
		h.send("POST", "/api/v1/users", h.admin.token, `{"authId":"x","email":"nope"}`).expect(400, userservice.ECodeValidation)
	})
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t)
	body := newUserBody("dave@example.com")
	first := h.send("POST", "/api/v1/users", h.admin.token, body, "Idempotency-Key", "create-dave").expect(201, "")
	users := len(h.users.states)

	t.Run("same request replays the first answer byte for byte", func(t *testing.T) {
		again := h.send("POST", "/api/v1/users", h.admin.token, body, "Idempotency-Key", "create-dave").expect(201, "")
		if !bytes.Equal(first.body, again.body) {
			t.Fatalf("replay differs:\n%s\n%s", first.body, again.body)
		}
		if again.get("Idempotent-Replayed") != "true" {
			t.Error("replay not marked")
		}
		if len(h.users.states) != users {
			t.Fatal("replay created another user")
		}
	})
	t.Run("same key, other body is 422 and changes nothing", func(t *testing.T) {
		h.send("POST", "/api/v1/users", h.admin.token, newUserBody("erin@example.com"), "Idempotency-Key", "create-dave").
			expect(422, userservice.ECodeIdempotencyKeyReuse)
		if len(h.users.states) != users {
			t.Fatal("422 created a user")
		}
	})
	t.Run("keys are scoped to the caller", func(t *testing.T) {
		other := h.register("admin2@example.com", "admin_two", userservice.RoleAdmin)
		h.send("POST", "/api/v1/users", other.token, newUserBody("frank@example.com"), "Idempotency-Key", "create-dave").expect(201, "")
	})
	t.Run("a 4xx first answer is replayed too", func(t *testing.T) {
		dup := newUserBody("alice@example.com")
		a := h.send("POST", "/api/v1/users", h.admin.token, dup, "Idempotency-Key", "dup-alice").expect(409, userservice.ECodeConflict)
		b := h.send("POST", "/api/v1/users", h.admin.token, dup, "Idempotency-Key", "dup-alice").expect(409, userservice.ECodeConflict)
		if !bytes.Equal(a.body, b.body) {
			t.Fatal("stored 409 not replayed")
		}
	})
	t.Run("a 5xx answer is not stored", func(t *testing.T) {
		h.users.execHook = func(context.Context, string, userservice.Command) error { return userservice.ErrUnavailable }
		h.send("POST", "/api/v1/users", h.admin.token, newUserBody("gina@example.com"), "Idempotency-Key", "flaky").expect(503, userservice.ECodeUnavailable)
		h.users.execHook = nil
		h.send("POST", "/api/v1/users", h.admin.token, newUserBody("gina@example.com"), "Idempotency-Key", "flaky").expect(201, "")
	})
	t.Run("bad keys are 400", func(t *testing.T) {
		long := make([]byte, 256)
		for i := range long {
			long[i] = 'k'
		}
		h.send("POST", "/api/v1/users", h.admin.token, newUserBody("h@example.com"), "Idempotency-Key", string(long)).expect(400, userservice.ECodeInvalidParam)
		h.send("POST", "/api/v1/users", h.admin.token, newUserBody("h@example.com"), "Idempotency-Key", "tab\there").expect(400, userservice.ECodeInvalidParam)
	})
	t.Run("enroll with a key replays, reactivation included", func(t *testing.T) {
		course := userservice.NewID()
		a := h.send("POST", userPath("me", "enrollments"), h.alice.token, map[string]any{"courseId": course}, "Idempotency-Key", "enroll-1").expect(201, "")
		b := h.send("POST", userPath("me", "enrollments"), h.alice.token, map[string]any{"courseId": course}, "Idempotency-Key", "enroll-1").expect(201, "")
		if !bytes.Equal(a.body, b.body) {
			t.Fatal("enroll replay differs")
		}
		h.send("POST", userPath("me", "enrollments"), h.alice.token, map[string]any{"courseId": course}, "Idempotency-Key", "enroll-2").expect(409, userservice.ECodeAlreadyEnrolled)
	})
	t.Run("concurrent duplicates create one user", func(t *testing.T) {
		body := newUserBody("ivy@example.com")
		before := len(h.users.states)
		var wg sync.WaitGroup
		results := make([]*resp, 8)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = h.send("POST", "/api/v1/users", h.admin.token, body, "Idempotency-Key", "ivy")
			}()
		}
		wg.Wait()
		for _, r := range results {
			// Losers of the race replay the winner's answer, whether they lost on
			// the key or on the email the winner took.
			if r.status != 201 || !bytes.Equal(r.body, results[0].body) {
				t.Errorf("status %d: %s", r.status, r.body)
			}
		}
		h.users.mu.Lock()
		n := len(h.users.states)
		h.users.mu.Unlock()
		if n != before+1 {
			t.Fatalf("%d users created, want 1", n-before)
		}
	})
}
