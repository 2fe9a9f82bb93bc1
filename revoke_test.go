package userservice

import (
	"fmt"
	"slices"
	"testing"
)

// loggedIn returns the test user with n sessions s0…s(n-1), all open.
func loggedIn(tb testing.TB, n int) *State {
	tb.Helper()
	s := registered(tb)
	for i := range n {
		s = apply(tb, s, RecordLogin{SessionID: fmt.Sprintf("s%d", i), At: timeAt(1)}, at(1)).State
	}
	return s
}

func TestRevokeSessions(t *testing.T) {
	t.Run("one session", func(t *testing.T) {
		s := loggedIn(t, 3)
		o := apply(t, s, RevokeSessions{SessionID: "s1"}, at(2))
		m := mutated(t, s, o)
		if got := eventTypes(m); !slices.Equal(got, []string{EventSessionsRevoked}) {
			t.Fatalf("events %v", got)
		}
		checkData(t, dataOf(t, m.Events[0]), map[string]any{
			"userId": testUserID, "authId": s.User.AuthID, "sessionIds": []any{"s1"}, "reason": RevokeReasonRequested,
			"revokedBy": testAdminID, "allSessions": false,
		})
		if len(m.SessionUpserts) != 1 || m.SessionUpserts[0].Active || m.SessionUpserts[0].EndedAt == nil || m.EndSessions != nil {
			t.Errorf("session writes %+v, end %+v", m.SessionUpserts, m.EndSessions)
		}
		if len(m.Audit) != 1 || m.Audit[0].Action != AuditSessionsRevoked {
			t.Errorf("audit %+v", m.Audit)
		}
		// Ended already: nothing to commit.
		unchanged(t, o.State, apply(t, o.State, RevokeSessions{SessionID: "s1"}, at(3)))
		if r := apply(t, o.State, RevokeSessions{SessionID: "s1"}, at(3)).Result.(SessionsRevoked); len(r.SessionIDs) != 0 {
			t.Errorf("result %+v", r)
		}
	})
	t.Run("unknown session", func(t *testing.T) {
		applyErr(t, loggedIn(t, 2), RevokeSessions{SessionID: "nope"}, at(2), ECodeNotFound)
	})
	t.Run("all, none open", func(t *testing.T) {
		s := registered(t)
		unchanged(t, s, apply(t, s, RevokeSessions{}, at(2)))
	})
	t.Run("all", func(t *testing.T) {
		s := loggedIn(t, 3)
		s = apply(t, s, RecordLogout{SessionID: "s0", At: timeAt(2)}, at(2)).State
		m := mutated(t, s, apply(t, s, RevokeSessions{}, at(3)))
		checkData(t, dataOf(t, m.Events[0]), map[string]any{"sessionIds": []any{"s1", "s2"}, "allSessions": true})
		if m.EndSessions != nil {
			t.Errorf("the actor holds every session, yet it ends more in PostgreSQL: %+v", m.EndSessions)
		}
	})
	// Beyond the newest MaxSessionsKept the actor cannot tell: PostgreSQL ends them.
	t.Run("beyond the actor", func(t *testing.T) {
		s := loggedIn(t, MaxSessionsKept+2)
		m := mutated(t, s, apply(t, s, RevokeSessions{SessionID: "s0"}, at(3)))
		if m.EndSessions == nil || m.EndSessions.SessionID != "s0" || len(m.SessionUpserts) != 0 {
			t.Errorf("end %+v, upserts %d", m.EndSessions, len(m.SessionUpserts))
		}
		checkData(t, dataOf(t, m.Events[0]), map[string]any{"sessionIds": []any{"s0"}})
		m = mutated(t, s, apply(t, s, RevokeSessions{}, at(3)))
		if m.EndSessions == nil || m.EndSessions.SessionID != "" || len(m.SessionUpserts) != MaxSessionsKept {
			t.Errorf("end %+v, upserts %d", m.EndSessions, len(m.SessionUpserts))
		}
	})
	t.Run("triggers", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			cmd    Command
			events []string
			reason string
		}{
			{"role change", ChangeRole{Role: RoleInstructor}, []string{EventRoleChanged, EventSessionsRevoked}, RevokeReasonRoleChanged},
			{"suspension", ChangeStatus{Status: StatusSuspended}, []string{EventStatusChanged, EventSessionsRevoked}, RevokeReasonSuspended},
			{"soft delete", SoftDelete{}, []string{EventUserDeleted, EventSessionsRevoked}, RevokeReasonDeleted},
			{"status deleted", ChangeStatus{Status: StatusDeleted}, []string{EventUserDeleted, EventSessionsRevoked}, RevokeReasonDeleted},
			{"inactive", ChangeStatus{Status: StatusInactive}, []string{EventStatusChanged}, ""},
			{"same role", ChangeRole{Role: RoleStudent}, nil, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := loggedIn(t, 2)
				o := apply(t, s, tc.cmd, at(2))
				if tc.events == nil {
					unchanged(t, s, o)
					return
				}
				m := mutated(t, s, o)
				if got := eventTypes(m); !slices.Equal(got, tc.events) {
					t.Fatalf("events %v, want %v", got, tc.events)
				}
				if tc.reason != "" {
					checkData(t, dataOf(t, m.Events[1]), map[string]any{"sessionIds": []any{"s0", "s1"}, "reason": tc.reason})
					for _, sess := range o.State.Sessions {
						if sess.Active {
							t.Errorf("session %s still active", sess.SessionID)
						}
					}
				}
			})
		}
		applyErr(t, loggedIn(t, 2), ChangeRole{Role: "boss"}, at(2), ECodeValidation)
	})
}
