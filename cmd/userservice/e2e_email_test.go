package main

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/lms-platform/userservice"
)

// TestEmailVerified: emailVerified comes from auth.user.registered when the
// Auth Service sends it, and from auth.user.email_verified, which is consumed
// once per message id and changes a verified email no further.
func TestEmailVerified(t *testing.T) {
	st := newStack(t)
	tp := st.tap(t)
	svc := st.start(t, nil)
	st.waitConsumer(t)
	admin := st.adminToken(t)

	register := func(verified *bool) (authID string, u apiUser) {
		t.Helper()
		authID = userservice.NewID()
		tag := randomHex(t, 4)
		data := map[string]any{"authId": authID, "email": "v." + tag + "@example.com", "firstName": "Ada", "lastName": "L"}
		if verified != nil {
			data["emailVerified"] = *verified
		}
		id, body := authEvent("auth.user.registered", data)
		st.publish(t, "auth.user.registered", id, body)
		tok := st.token(t, userservice.NewID(), authID, "v."+tag+"@example.com", userservice.RoleStudent)
		eventually(t, "the registered profile", func() error {
			r, err := svc.send("GET", "/api/v1/users/me", tok, nil)
			if err != nil {
				return err
			}
			if r.Status != http.StatusOK {
				return fmt.Errorf("%s", r)
			}
			return jsonData(r, &u)
		})
		tp.expect(t, "user.created")
		return authID, u
	}
	yes := true

	_, verified := register(&yes)
	if !verified.EmailVerified {
		t.Errorf("registered with emailVerified true: %+v", verified)
	}
	authID, plain := register(nil)
	if plain.EmailVerified {
		t.Fatalf("registered without emailVerified: %+v", plain)
	}

	id, body := authEvent("auth.user.email_verified", map[string]any{"authId": authID, "verifiedAt": "2026-01-02T03:04:05.000Z"})
	st.publish(t, "auth.user.email_verified", id, body)
	st.publish(t, "auth.user.email_verified", id, body) // delivered twice
	var u apiUser
	eventually(t, "emailVerified after auth.user.email_verified", func() error {
		r, err := svc.send("GET", "/api/v1/users/"+plain.ID, admin, nil)
		if err != nil {
			return err
		}
		if err := jsonData(r, &u); err != nil {
			return err
		}
		if !u.EmailVerified {
			return fmt.Errorf("emailVerified still false")
		}
		return nil
	})
	e := tp.expect(t, "user.updated")[0]
	if ch, _ := e.Data["changes"].(map[string]any); e.userID() != plain.ID || ch["emailVerified"] != true {
		t.Errorf("user.updated %v", e)
	}
	if u.Version != plain.Version+1 {
		t.Errorf("version %d after one verification, want %d", u.Version, plain.Version+1)
	}
	// Another message for a verified email: consumed, nothing changes.
	id2, body2 := authEvent("auth.user.email_verified", map[string]any{"authId": authID})
	st.publish(t, "auth.user.email_verified", id2, body2)
	tp.expectNone(t)
	svc.do(t, "GET", "/api/v1/users/"+plain.ID, admin, nil).data(t, 200, &u)
	if u.Version != plain.Version+1 || !u.EmailVerified {
		t.Errorf("after a second verification: %+v", u)
	}
	if s := svc.platformStats(t, admin); s.Verification.EmailVerified != 2 || s.Total != 2 {
		t.Errorf("stats %+v, want 2 users, both verified", s)
	}
}
