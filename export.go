package userservice

import "context"

// Export (issue 14; GDPR Art. 15 and 20): GET /users/{id}/export answers one
// JSON document with everything the service holds about the user.

// ExportFormatVersion is the export document's formatVersion. It changes when a
// field is removed or changes meaning; added fields keep it.
const ExportFormatVersion = 1

// AuditDataExported is the audit action of an export: who asked (actorId) and
// when.
const AuditDataExported = "data_exported"

// RecordExport records that the user's data was exported: a data_exported
// audit record (nothing when AUDIT_ENABLED=false), committed before the export
// is sent so that no export goes unrecorded.
type RecordExport struct{}

func (RecordExport) command() {}

func (c *change) recordExport() {
	c.audit(AuditDataExported, nil, map[string]any{"formatVersion": ExportFormatVersion})
	c.result = c.next.User
}

// RowKey is where a keyset page ends: the time and id of its last row.
type RowKey struct {
	At Time
	ID string
}

// PersonalData reads, in keyset pages oldest first, what the service keeps
// about a user outside the user's actor, for an export that streams a user of
// any size without holding it in memory.
type PersonalData interface {
	// SessionsAfter returns up to limit of the user's sessions that started
	// after the key (every one from the oldest when after is nil), oldest first.
	SessionsAfter(ctx context.Context, userID string, after *RowKey, limit int) ([]Session, error)
	// AuditAfter returns up to limit of the audit records about the user created
	// after the key (from the oldest when after is nil), oldest first.
	AuditAfter(ctx context.Context, userID string, after *RowKey, limit int) ([]AuditRecord, error)
}
