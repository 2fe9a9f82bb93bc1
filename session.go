package userservice

// MaxSessionsKept bounds the sessions an actor keeps in memory and in its snapshot;
// older ones stay in PostgreSQL.
const MaxSessionsKept = 100

// Session is one login session, recorded from auth.user.login and ended by
// auth.user.logout.
type Session struct {
	ID        string  `json:"id"`
	SessionID string  `json:"sessionId"`
	IPAddress *string `json:"ipAddress"`
	UserAgent *string `json:"userAgent"`
	StartedAt Time    `json:"startedAt"`
	EndedAt   *Time   `json:"endedAt"`
	Active    bool    `json:"active"`
}
