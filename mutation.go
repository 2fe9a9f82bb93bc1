package userservice

// Mutation is everything one command changes, as rows for the writer to commit in
// one transaction: the user row (always: every mutation advances the version), the
// rows beside it, the events for the outbox, audit records, the consumed message id
// and the idempotency record. The writer fences on BaseVersion: a stored version
// other than BaseVersion means another writer got there first, and nothing is
// written ([ErrStaleVersion]).
type Mutation struct {
	UserID      string
	BaseVersion int64 // 0 when Create
	Create      bool
	User        User // the full row after the change; User.Version = BaseVersion+1
	// VersionOnly says the change leaves every column of the user's row as it
	// was at BaseVersion but the version (an enrollment, progress, a preference):
	// the writer may then update only that. Set by Apply from a comparison of the
	// whole rows, never by hand.
	VersionOnly bool
	// EnrollmentKnown[i] and PreferenceKnown[i] (nil: none) say that upsert i
	// changes a row of the state at BaseVersion, which PostgreSQL holds: the
	// writer may update it rather than insert it. Set by Apply, never by hand;
	// a wrong claim fails the writer's fenced UPDATE, which then upserts.
	EnrollmentKnown, PreferenceKnown []bool

	EnrollmentUpserts []Enrollment
	EnrollmentDeletes []string // course ids
	PreferenceUpserts []Preference
	PreferenceDeletes []PrefKey
	SessionUpserts    []Session // inserted or updated by (user, sessionId)
	AttributeUpserts  []AttributeValue
	AttributeDeletes  []string // namespaces
	// EndSessions, when set, ends open sessions in PostgreSQL that the actor may
	// not hold: it keeps only the newest MaxSessionsKept (issue 11: a logout
	// without a session id ends every open session of the user).
	EndSessions *SessionsEnd

	Events []Event
	Audit  []AuditRecord

	// ProcessedMessageID is the id of the consumed message this mutation applies, or
	// "". Recording it in the same transaction makes redelivery a no-op
	// ([ErrDuplicateMessage]).
	ProcessedMessageID string
	// Idempotency, when set, is stored with the change so that a retry with the
	// same key replays the first answer ([ErrIdempotencyKeyTaken] if taken).
	Idempotency *IdempotencyRecord
	// Erasure, when set, changes the user's erasure request (issue 14) in the
	// same transaction; an erase also scrubs the user's other rows.
	Erasure *ErasureChange
	// JobItem, when set, is the result of the bulk job item this mutation applies,
	// recorded in the same transaction; an item that has a result already fails
	// the commit ([ErrJobItemDone]).
	JobItem *JobItemDone
}

// EnrollmentIsKnown reports whether EnrollmentUpserts[i] changes a row of the
// state at BaseVersion (EnrollmentKnown; nil: none does).
func (m *Mutation) EnrollmentIsKnown(i int) bool {
	return i < len(m.EnrollmentKnown) && m.EnrollmentKnown[i]
}

// PreferenceIsKnown is EnrollmentIsKnown for PreferenceUpserts[i].
func (m *Mutation) PreferenceIsKnown(i int) bool {
	return i < len(m.PreferenceKnown) && m.PreferenceKnown[i]
}

// SessionsEnd ends the user's open sessions at At: the one named SessionID, or
// every open one when SessionID is "", except those named in Except (the ones the
// actor holds and writes itself).
type SessionsEnd struct {
	SessionID string
	At        Time
	Except    []string
}

// IdempotencyRecord is the stored first answer of a POST with an Idempotency-Key.
type IdempotencyRecord struct {
	CallerID    string
	Key         string
	RequestHash string // hex SHA-256 of method, path and body
	Status      int
	Body        []byte // the response body as first sent
	CreatedAt   Time
}
