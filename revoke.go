package userservice

// Session revocation (issue 14): a user's sessions end on request
// (DELETE /users/{id}/sessions[/{sessionId}]) and whenever the user is
// suspended, deleted, erased or changes role, in the same transaction as that
// change, with one user.sessions_revoked event for the Auth Service to act on.

// EventSessionsRevoked reports sessions ended by this service:
// {userId, authId, sessionIds, reason, revokedBy, allSessions}.
const EventSessionsRevoked = "user.sessions_revoked"

// AuditSessionsRevoked is the audit action of a revocation.
const AuditSessionsRevoked = "sessions_revoked"

// Reasons of a revocation, as user.sessions_revoked carries them.
const (
	RevokeReasonRequested   = "requested"    // DELETE …/sessions[/{sessionId}] by the user or an admin
	RevokeReasonSuspended   = "suspended"    // status set to suspended
	RevokeReasonDeleted     = "deleted"      // soft delete
	RevokeReasonRoleChanged = "role_changed" // role changed
	RevokeReasonErasure     = "erasure"      // erasure requested or done
)

// RevokeSessions ends the user's open sessions: the one named SessionID, or
// every open one when SessionID is "". Ending a session that is already ended
// changes nothing and publishes nothing; an unknown SessionID is
// [ErrSessionNotFound].
type RevokeSessions struct{ SessionID string }

func (RevokeSessions) command() {}

// ErrSessionNotFound is returned when a revocation names a session the user
// never had.
var ErrSessionNotFound = &Error{Code: ECodeNotFound, Message: "Session not found"}

// SessionsRevoked is the result of [RevokeSessions]: the session ids it ended.
// AllSessions says every open session of the user was ended, including any
// older than the newest MaxSessionsKept that the actor holds (those are ended
// in PostgreSQL but not listed).
type SessionsRevoked struct {
	SessionIDs  []string `json:"sessionIds"`
	AllSessions bool     `json:"allSessions"`
}

func (c *change) revokeSessionsCmd(cmd RevokeSessions) error {
	found := cmd.SessionID == ""
	for _, s := range c.base.Sessions {
		if s.SessionID == cmd.SessionID {
			found = true
		}
	}
	// The actor holds only the newest MaxSessionsKept sessions; once it holds
	// that many, a session it does not know may exist in PostgreSQL.
	full := len(c.base.Sessions) >= MaxSessionsKept
	if !found && !full {
		return ErrSessionNotFound
	}
	r := c.revokeSessions(cmd.SessionID, RevokeReasonRequested, !found)
	c.result = r
	return nil
}

// revokeSessions ends the open sessions that sessionID names ("" for all) and,
// when any may have ended, publishes user.sessions_revoked and audits it.
// beyond says sessionID is not among the sessions the actor holds but may be
// in PostgreSQL.
func (c *change) revokeSessions(sessionID, reason string, beyond bool) SessionsRevoked {
	r := SessionsRevoked{SessionIDs: []string{}, AllSessions: sessionID == ""}
	sessions := make([]Session, len(c.next.Sessions))
	copy(sessions, c.next.Sessions)
	at := c.meta.Now
	for i := range sessions {
		s := &sessions[i]
		if !s.Active || (sessionID != "" && s.SessionID != sessionID) {
			continue
		}
		s.Active, s.EndedAt = false, &at
		c.m.SessionUpserts = append(c.m.SessionUpserts, *s)
		r.SessionIDs = append(r.SessionIDs, s.SessionID)
	}
	c.next.Sessions = sessions
	// Sessions older than the newest MaxSessionsKept live in PostgreSQL only:
	// end them there too (they are not listed, AllSessions says so).
	if len(sessions) >= MaxSessionsKept && (sessionID == "" || beyond) {
		c.m.EndSessions = &SessionsEnd{SessionID: sessionID, At: at}
		if beyond {
			r.SessionIDs = append(r.SessionIDs, sessionID)
		}
	} else if len(r.SessionIDs) == 0 {
		return r // nothing was open: nothing to publish
	}
	u := &c.next.User
	c.event(EventSessionsRevoked, map[string]any{
		"userId": u.ID, "authId": u.AuthID, "sessionIds": r.SessionIDs, "reason": reason,
		"revokedBy": c.meta.ActorID, "allSessions": r.AllSessions,
	})
	c.audit(AuditSessionsRevoked, nil, map[string]any{"sessionIds": r.SessionIDs, "reason": reason, "allSessions": r.AllSessions})
	return r
}
