package userservice

// Command is a change requested of one user. Every command is applied by that
// user's actor through [Apply], one at a time.
type Command interface{ command() }

// Register creates the user (POST /users, auth.user.registered).
type Register struct {
	ID    string // the new user's id, chosen by the caller of the actor
	Input CreateUser
	// EmailVerified is what auth.user.registered says of the email (admins
	// create users unverified).
	EmailVerified bool
}

// EditProfile applies an UpdateUser (PUT /users/{id}).
type EditProfile struct{ Input UpdateUser }

// ChangeRole sets the user's role (PUT /users/{id}/role, bulk role).
type ChangeRole struct{ Role Role }

// ChangeStatus sets the user's status (PUT /users/{id}/status).
type ChangeStatus struct{ Status Status }

// SoftDelete marks the user deleted (DELETE /users/{id}).
type SoftDelete struct{}

// Enroll enrolls the user in a course, or reactivates a dropped enrollment.
type Enroll struct{ CourseID string }

// EditEnrollment changes an enrollment's status and/or progress.
type EditEnrollment struct {
	CourseID string
	Input    UpdateEnrollment
}

// SetProgress records progress in a course.
type SetProgress struct {
	CourseID string
	Input    UpdateProgress
}

// Unenroll removes an enrollment.
type Unenroll struct{ CourseID string }

// SetPreferences upserts preferences, all or nothing. Category is the one named in
// the path, or "" for the all-categories route.
type SetPreferences struct {
	Category string
	Input    UpsertPreferences
}

// key is the key an item of cmd writes: its own category, or cmd's.
func (cmd SetPreferences) key(in PreferenceInput) PrefKey {
	if in.Category != nil {
		return PrefKey{*in.Category, in.Key}
	}
	return PrefKey{cmd.Category, in.Key}
}

// PatchPreferences applies a JSON merge patch (RFC 7396) to one category.
type PatchPreferences struct {
	Category string
	Patch    PreferencesPatch
}

// RemovePreference deletes one preference.
type RemovePreference struct{ Category, Key string }

// RemoveCategory deletes every preference of a category.
type RemoveCategory struct{ Category string }

// RecordLogin applies auth.user.login: login count, last login, a session.
type RecordLogin struct {
	SessionID string
	IPAddress *string
	UserAgent *string
	At        Time
	// NoSession counts the login without keeping a session
	// (ENABLE_SESSION_TRACKING=false).
	NoSession bool
}

// RecordLogout applies auth.user.logout: ends the session, or every open one when
// SessionID is "".
type RecordLogout struct {
	SessionID string
	At        Time
}

// RecordPasswordChange applies auth.user.password_changed: an audit record.
type RecordPasswordChange struct{ At Time }

// VerifyEmail applies auth.user.email_verified: emailVerified becomes true
// (user.updated); a verified email stays verified and changes nothing.
type VerifyEmail struct{ At Time }

// AllCommands returns a zero value of every command type, for code that must
// know each of them (the cluster's wire format registers them with gob). A test
// checks that every type with a command method is listed.
func AllCommands() []Command {
	return []Command{
		Register{}, VerifyEmail{}, EditProfile{}, ChangeRole{}, ChangeStatus{}, SoftDelete{}, Enroll{},
		EditEnrollment{}, SetProgress{}, Unenroll{}, SetPreferences{}, PatchPreferences{}, RemovePreference{}, RemoveCategory{},
		RecordLogin{}, RecordLogout{}, RecordPasswordChange{}, RevokeSessions{}, RecordExport{},
		RequestErasure{}, CancelErasure{}, Erase{}, SetAttributes{}, RemoveAttributes{},
	}
}

func (Register) command()             {}
func (VerifyEmail) command()          {}
func (EditProfile) command()          {}
func (ChangeRole) command()           {}
func (ChangeStatus) command()         {}
func (SoftDelete) command()           {}
func (Enroll) command()               {}
func (EditEnrollment) command()       {}
func (SetProgress) command()          {}
func (Unenroll) command()             {}
func (SetPreferences) command()       {}
func (PatchPreferences) command()     {}
func (RemovePreference) command()     {}
func (RemoveCategory) command()       {}
func (RecordLogin) command()          {}
func (RecordLogout) command()         {}
func (RecordPasswordChange) command() {}

// Meta is what every command carries besides its own fields.
type Meta struct {
	// ActorID is the profile id of whoever asked (nil for system events).
	ActorID *string
	// CorrelationID is copied into every event and audit record.
	CorrelationID string
	// RequestID is the HTTP request's id, copied into each event's metadata so a
	// consumer can tell its own writes' echoes ("" for consumed events).
	RequestID string
	// IfMatch, when set, must match the current version (else [ErrVersionMismatch]).
	IfMatch *Precondition
	// MessageID is the consumed message being applied, recorded for exactly-once.
	MessageID string
	// Idempotency, when set, asks for the rendered answer to be stored with the change.
	Idempotency *IdempotencyRequest
	// JobItem, when set, is the bulk job item this command applies: its result is
	// recorded with the change, and a second application fails with ErrJobItemDone.
	JobItem *JobItemRef
	// Now is the time of the change.
	Now Time
	// NoAudit keeps no audit record of the change (AUDIT_ENABLED=false).
	NoAudit bool
	// Quotas bounds what one user may hold; the user's actor sets it.
	Quotas Quotas
}

// Quotas are the per-user limits (issue 11): a write that would take a user past
// one is refused with [ECodeQuotaExceeded] and changes nothing. A write that does
// not grow what it counts is always allowed, so a user already over a limit that
// was lowered keeps the data and can still edit and delete. Zero means no limit.
type Quotas struct {
	Preferences     int // preference keys per user
	PreferenceBytes int // keys plus compact JSON values, summed over the user's preferences
	Enrollments     int // enrollments per user, dropped ones included
	// Sessions is the open sessions a user keeps (at most MaxSessionsKept): a login
	// beyond it ends the oldest open ones, since a login already happened at the
	// auth service and cannot be refused here.
	Sessions int
}

// IdempotencyRequest carries an Idempotency-Key into the actor. Render turns the
// command's result into the exact answer to store and replay; it runs in the actor
// before the commit, so the stored answer commits with the change.
type IdempotencyRequest struct {
	CallerID    string
	Key         string
	RequestHash string
	Render      func(o *Outcome) (status int, body []byte)
}

// Outcome is what [Apply] returns for an accepted command.
type Outcome struct {
	// State is the state after the command (the same pointer when nothing changed).
	State *State
	// Mutation is what to commit before replying, or nil when nothing changed.
	Mutation *Mutation
	// Result is the command's answer: a User, an Enrollment, []Preference, or nil.
	Result any
	// Created is true when the command created something (201).
	Created bool
}

// Precondition is an If-Match header (RFC 9110 §13.1.1) as [Apply] evaluates it.
// A version's entity tag is the strong tag of its decimal form ("6"), so a
// strong tag matches by naming that exact text and a weak tag (W/"6") never
// matches: If-Match uses the strong comparison.
type Precondition struct {
	// Any is `*`: any existing target matches.
	Any bool
	// Versions are the versions that the header's strong tags name. Tags that name
	// no version (weak ones, "abc", "05") match nothing and are not kept, so a
	// precondition with no Versions and not Any never matches.
	Versions []int64
}

// Matches reports whether an existing target at version satisfies p.
func (p *Precondition) Matches(version int64) bool {
	if p.Any {
		return true
	}
	for _, v := range p.Versions {
		if v == version {
			return true
		}
	}
	return false
}
