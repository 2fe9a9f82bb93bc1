package userservice

// Event types published by this service. The routing key is the type itself.
const (
	EventUserCreated       = "user.created"
	EventUserUpdated       = "user.updated"
	EventUserDeleted       = "user.deleted"
	EventRoleChanged       = "user.role_changed"
	EventStatusChanged     = "user.status_changed"
	EventEnrolled          = "user.enrolled"
	EventUnenrolled        = "user.unenrolled"
	EventProgressUpdated   = "user.progress_updated"
	EventCourseCompleted   = "user.course_completed"
	EventUserRestored      = "user.restored"
	EventSourceUserService = "user-service"
)

// Event types consumed from the Auth Service.
const (
	AuthUserRegistered      = "auth.user.registered"
	AuthUserLogin           = "auth.user.login"
	AuthUserLogout          = "auth.user.logout"
	AuthUserPasswordChanged = "auth.user.password_changed"
	AuthUserEmailVerified   = "auth.user.email_verified"
)

// EnvelopeVersion is the format of the event envelope: 2 added sequence and
// version (CONTRACT.md, second round: change feed).
const EnvelopeVersion = 2

// Event is the envelope published to RabbitMQ (CONTRACT.md, Events).
//
// Sequence is the user's version after the change the event reports: it grows by
// one with every committed change of that user, so a consumer that tracks it
// per user sees reordering and duplicates. Changes that publish nothing
// (preferences, logins) also advance it, so a step of more than one is not by
// itself a lost event; several events of one change share their sequence.
type Event struct {
	ID            string        `json:"id"`
	Type          string        `json:"type"`
	Source        string        `json:"source"`
	Version       int           `json:"version"`
	Sequence      int64         `json:"sequence"`
	Data          any           `json:"data"`
	Timestamp     Time          `json:"timestamp"`
	CorrelationID string        `json:"correlationId"`
	Metadata      EventMetadata `json:"metadata"`
}

// EventMetadata is an event's metadata object. A struct rather than a map (issue
// 16): every write builds one or two events, and a map cost four allocations and
// a sort of its keys when the payload was encoded; the fields are in the keys'
// sorted order, so the JSON is byte for byte what the map gave.
type EventMetadata struct {
	ActorID     *string `json:"actorId,omitempty"`   // who asked; absent for system events
	RequestID   string  `json:"requestId,omitempty"` // the HTTP request's X-Request-ID; absent for consumed events
	UserVersion int64   `json:"userVersion"`         // the user's version after the change
}

// AuditRecord is one row of the audit log, stored in the same transaction as the
// change it describes. Before and After are already masked.
type AuditRecord struct {
	ID            string         `json:"id"`
	UserID        string         `json:"userId"`
	ActorID       *string        `json:"actorId"`
	Action        string         `json:"action"`
	Before        map[string]any `json:"before"`
	After         map[string]any `json:"after"`
	CorrelationID string         `json:"correlationId"`
	CreatedAt     Time           `json:"createdAt"`
}

// Audit actions.
const (
	AuditRoleChanged     = "user.role_changed"
	AuditStatusChanged   = "user.status_changed"
	AuditUserDeleted     = "user.deleted"
	AuditUserRestored    = "user.restored"
	AuditPasswordChanged = "auth.password_changed"
)
