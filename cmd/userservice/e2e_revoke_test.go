package main

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/lms-platform/userservice"
)

// TestSessionRevocation (issue 14): DELETE …/sessions[/{sessionId}] by the
// user, and a role change, a suspension and a soft delete by an admin, each end
// the user's open sessions in PostgreSQL and publish one user.sessions_revoked
// naming them and the reason, with an audit record; a request that fails or
// ends nothing publishes nothing.
func TestSessionRevocation(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	st.waitConsumer(t)
	admin := st.adminToken(t)
	tp := st.tap(t)
	u := svc.createUser(t, admin, newUserBody(t))
	other := svc.createUser(t, admin, newUserBody(t))
	own := st.tokenFor(t, u)
	tp.expect(t, userservice.EventUserCreated, userservice.EventUserCreated)

	login := func(ids ...string) {
		t.Helper()
		for _, sid := range ids {
			id, b := authEvent("auth.user.login", map[string]any{"authId": u.AuthID, "sessionId": sid, "ipAddress": "198.51.100.4"})
			st.publish(t, "auth.user.login", id, b)
		}
		eventually(t, "the logins", func() error {
			for _, sid := range ids {
				if c := st.count(t, `SELECT count(*) FROM sessions WHERE user_id = $1 AND session_id = $2 AND ended_at IS NULL`, u.ID, sid); c != 1 {
					return fmt.Errorf("session %s not open", sid)
				}
			}
			return nil
		})
	}
	// revoked checks the next event: user.sessions_revoked for exactly ids.
	revoked := func(reason string, ids ...string) *event {
		t.Helper()
		e := tp.expect(t, userservice.EventSessionsRevoked)[0]
		var got []string
		for _, v := range e.Data["sessionIds"].([]any) {
			got = append(got, v.(string))
		}
		slices.Sort(got)
		slices.Sort(ids)
		if !slices.Equal(got, ids) || e.Data["reason"] != reason || e.Data["userId"] != u.ID || e.Data["authId"] != u.AuthID {
			t.Errorf("event %s, want sessions %v, reason %s", e, ids, reason)
		}
		if _, ok := e.Data["revokedBy"]; !ok {
			t.Errorf("event %s lacks revokedBy", e)
		}
		for _, sid := range ids {
			if c := st.count(t, `SELECT count(*) FROM sessions WHERE user_id = $1 AND session_id = $2 AND ended_at IS NOT NULL`, u.ID, sid); c != 1 {
				t.Errorf("session %s is still open in PostgreSQL", sid)
			}
		}
		return e
	}
	path := func(rest string) string { return "/api/v1/users/" + u.ID + "/sessions" + rest }
	var res userservice.SessionsRevoked

	t.Run("by the user, one and all", func(t *testing.T) {
		login("s1", "s2", "s3")
		svc.do(t, "DELETE", path("/s1"), own, nil).data(t, http.StatusOK, &res)
		if !slices.Equal(res.SessionIDs, []string{"s1"}) || res.AllSessions {
			t.Errorf("answer %+v, want s1 only", res)
		}
		if e := revoked(userservice.RevokeReasonRequested, "s1"); e.Data["revokedBy"] != u.ID {
			t.Errorf("revokedBy %v, want the user %s", e.Data["revokedBy"], u.ID)
		}
		// Already ended: 200, nothing ended, nothing published.
		svc.do(t, "DELETE", path("/s1"), own, nil).data(t, http.StatusOK, &res)
		if len(res.SessionIDs) != 0 {
			t.Errorf("revoking an ended session answered %+v", res)
		}
		svc.do(t, "DELETE", path("/never"), own, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
		svc.do(t, "DELETE", "/api/v1/users/"+other.ID+"/sessions", own, nil).fail(t, http.StatusForbidden, "FORBIDDEN")
		svc.do(t, "DELETE", "/api/v1/users/not-a-uuid/sessions", own, nil).fail(t, http.StatusBadRequest, "INVALID_PARAMETER")
		tp.expectNone(t)

		svc.do(t, "DELETE", "/api/v1/users/me/sessions", own, nil).data(t, http.StatusOK, &res)
		if !res.AllSessions || len(res.SessionIDs) != 2 {
			t.Errorf("answer %+v, want s2 and s3", res)
		}
		revoked(userservice.RevokeReasonRequested, "s2", "s3")
		// Nothing open: 200, nothing published.
		svc.do(t, "DELETE", path(""), admin, nil).data(t, http.StatusOK, &res)
		tp.expectNone(t)
	})

	t.Run("role change", func(t *testing.T) {
		login("r1")
		svc.do(t, "PUT", "/api/v1/users/"+u.ID+"/role", admin, map[string]any{"role": "boss"}).fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
		svc.do(t, "PUT", "/api/v1/users/"+u.ID+"/role", own, map[string]any{"role": "admin"}).fail(t, http.StatusForbidden, "FORBIDDEN")
		tp.expectNone(t)
		svc.do(t, "PUT", "/api/v1/users/"+u.ID+"/role", admin, map[string]any{"role": "instructor"}).data(t, http.StatusOK, nil)
		tp.expect(t, userservice.EventRoleChanged)
		revoked(userservice.RevokeReasonRoleChanged, "r1")
		// The same role again changes nothing, so nothing is revoked.
		login("r2")
		svc.do(t, "PUT", "/api/v1/users/"+u.ID+"/role", admin, map[string]any{"role": "instructor"}).data(t, http.StatusOK, nil)
		tp.expectNone(t)
		svc.do(t, "DELETE", path("/r2"), admin, nil).data(t, http.StatusOK, &res)
		if e := revoked(userservice.RevokeReasonRequested, "r2"); e.Data["revokedBy"] != nil {
			t.Errorf("an admin without a profile revoked, revokedBy %v, want null", e.Data["revokedBy"])
		}
	})

	t.Run("suspension", func(t *testing.T) {
		login("p1", "p2")
		svc.do(t, "PUT", "/api/v1/users/"+u.ID+"/status", admin, map[string]any{"status": "inactive"}).data(t, http.StatusOK, nil)
		tp.expect(t, userservice.EventStatusChanged) // inactive users may act: nothing revoked
		tp.expectNone(t)
		svc.do(t, "PUT", "/api/v1/users/"+u.ID+"/status", admin, map[string]any{"status": "suspended"}).data(t, http.StatusOK, nil)
		tp.expect(t, userservice.EventStatusChanged)
		revoked(userservice.RevokeReasonSuspended, "p1", "p2")
		svc.do(t, "GET", "/api/v1/users/me", own, nil).fail(t, http.StatusForbidden, "ACCOUNT_DISABLED")
		svc.do(t, "PUT", "/api/v1/users/"+u.ID+"/status", admin, map[string]any{"status": "active"}).data(t, http.StatusOK, nil)
		tp.expect(t, userservice.EventStatusChanged)
		tp.expectNone(t)
	})

	t.Run("soft delete", func(t *testing.T) {
		login("d1")
		svc.do(t, "DELETE", "/api/v1/users/"+u.ID, admin, nil).data(t, http.StatusOK, nil)
		tp.expect(t, userservice.EventUserDeleted)
		revoked(userservice.RevokeReasonDeleted, "d1")
		svc.do(t, "DELETE", "/api/v1/users/"+u.ID, admin, nil).data(t, http.StatusOK, nil)
		tp.expectNone(t)
	})

	if c := st.count(t, `SELECT count(*) FROM sessions WHERE user_id = $1 AND ended_at IS NULL`, u.ID); c != 0 {
		t.Errorf("%d sessions still open", c)
	}
	// One audit record per published revocation: s1, s2+s3, r1, r2, p1+p2, d1.
	if c := st.count(t, `SELECT count(*) FROM audit_log WHERE user_id = $1 AND action = $2`, u.ID, userservice.AuditSessionsRevoked); c != 6 {
		t.Errorf("%d sessions_revoked audit records, want 6", c)
	}
}
