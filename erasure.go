package userservice

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Erasure (issue 14; GDPR Art. 17): POST /users/{id}/erasure suspends the user
// at once, revokes their sessions and schedules the erasure ERASURE_COOL_OFF
// later; DELETE cancels it until then; a leader-only worker ([ErasureWorker])
// then sends [Erase] through the user's actor, whose mutation replaces every
// personal field and scrubs what PostgreSQL holds about the user in one
// transaction that also moves the request to done, once.

// Erasure events and audit actions.
const (
	EventErasureRequested = "user.erasure_requested"
	EventUserErased       = "user.erased"
	AuditErasureRequested = "erasure_requested"
	AuditErasureCancelled = "erasure_cancelled"
	AuditErasureDone      = "erasure_done"
)

// Erasure states.
const (
	ErasureRequested = "requested"
	ErasureCancelled = "cancelled"
	ErasureDone      = "done"
)

// Erasure is the state of a user's erasure request.
type Erasure struct {
	UserID         string  `json:"userId"`
	State          string  `json:"state"`
	RequestedAt    Time    `json:"requestedAt"`
	ScheduledAt    Time    `json:"scheduledAt"`
	RequestedBy    *string `json:"requestedBy"`
	PreviousStatus Status  `json:"-"`
	CancelledAt    *Time   `json:"cancelledAt"`
	CancelledBy    *string `json:"cancelledBy"`
	DoneAt         *Time   `json:"doneAt"`
}

// RequestErasure schedules the user's erasure at ScheduledAt: the account is
// suspended (a deleted one stays deleted) and every session revoked. 409 when
// one is already requested.
type RequestErasure struct{ ScheduledAt Time }

// CancelErasure cancels a requested erasure and gives the user back the status
// they had before it (RestoreStatus). 404 when none is requested.
type CancelErasure struct{ RestoreStatus Status }

// Erase erases the user now; the worker sends it once the request is due.
// Erasing an erased user changes nothing.
type Erase struct{}

func (RequestErasure) command() {}
func (CancelErasure) command()  {}
func (Erase) command()          {}

// ErasureOp is what a mutation does to the user's erasure row.
type ErasureOp int

const (
	ErasureOpNone ErasureOp = iota
	// ErasureOpRequest inserts the request (or renews a cancelled one); fails
	// with [ErrErasurePending] when one is requested or done.
	ErasureOpRequest
	// ErasureOpCancel cancels a requested one; [ErrNoErasure] otherwise.
	ErasureOpCancel
	// ErasureOpErase scrubs the user's rows and marks the request done; fails
	// with [ErrNoErasure] unless one is requested and due.
	ErasureOpErase
)

// ErasureChange is the erasure part of a [Mutation].
type ErasureChange struct {
	Op             ErasureOp
	ScheduledAt    Time
	PreviousStatus Status
	At             Time
	By             *string
}

// Errors of the erasure commands.
var (
	ErrErasurePending = &Error{Code: ECodeConflict, Message: "An erasure is already requested for this user"}
	ErrNoErasure      = &Error{Code: ECodeNotFound, Message: "No erasure is requested for this user"}
)

// ErasedEmail is the email an erased user is left with: unique, in the
// reserved .invalid domain (RFC 2606), so the real one is free again.
func ErasedEmail(id string) string { return erasedEmailPrefix + id + erasedEmailSuffix }

const erasedEmailPrefix, erasedEmailSuffix = "erased+", "@invalid"

// ErasedName replaces first and last name (both NOT NULL).
const ErasedName = "Erased"

// Erased reports whether the user was erased: every route then answers 404.
// It builds no string: it runs on every request.
func (u *User) Erased() bool {
	rest, ok := strings.CutPrefix(u.Email, erasedEmailPrefix)
	if !ok {
		return false
	}
	id, ok := strings.CutSuffix(rest, erasedEmailSuffix)
	return ok && id == u.ID
}

func (c *change) requestErasure(cmd RequestErasure) {
	u := &c.next.User
	prev := u.Status
	if u.Status != StatusDeleted && u.Status != StatusSuspended {
		u.Status = StatusSuspended
	}
	u.UpdatedAt = c.meta.Now
	c.m.Erasure = &ErasureChange{Op: ErasureOpRequest, ScheduledAt: cmd.ScheduledAt, PreviousStatus: prev, At: c.meta.Now, By: c.meta.ActorID}
	c.event(EventErasureRequested, map[string]any{
		"userId": u.ID, "authId": u.AuthID, "scheduledAt": cmd.ScheduledAt, "requestedBy": c.meta.ActorID, "previousStatus": prev,
	})
	c.audit(AuditErasureRequested, map[string]any{"status": prev}, map[string]any{"status": u.Status, "scheduledAt": cmd.ScheduledAt})
	c.revokeSessions("", RevokeReasonErasure, false)
	c.result = Erasure{UserID: u.ID, State: ErasureRequested, RequestedAt: c.meta.Now, ScheduledAt: cmd.ScheduledAt, RequestedBy: c.meta.ActorID}
}

func (c *change) cancelErasure(cmd CancelErasure) error {
	if !cmd.RestoreStatus.Valid() {
		return Errorf(ECodeInternal, "cancel erasure: restore status %q", cmd.RestoreStatus)
	}
	u := &c.next.User
	old := u.Status
	u.Status, u.UpdatedAt = cmd.RestoreStatus, c.meta.Now
	c.m.Erasure = &ErasureChange{Op: ErasureOpCancel, At: c.meta.Now, By: c.meta.ActorID}
	c.audit(AuditErasureCancelled, map[string]any{"status": old}, map[string]any{"status": u.Status})
	c.result = u.Status
	return nil
}

// erase replaces every personal field, deletes the preferences and custom
// attributes and forgets
// the sessions' IPs and user agents; enrollments and progress stay, anonymous.
// The writer scrubs the rest (ErasureOpErase).
func (c *change) erase() {
	u := &c.next.User
	authID := u.AuthID
	*u = User{
		ID: u.ID, AuthID: authID, Email: ErasedEmail(u.ID), FirstName: ErasedName, LastName: ErasedName,
		Timezone: "UTC", Language: "en", Role: u.Role, Status: StatusDeleted, LoginCount: u.LoginCount,
		Version: u.Version, CreatedAt: u.CreatedAt, UpdatedAt: c.meta.Now,
	}
	for _, p := range c.next.Preferences {
		c.m.PreferenceDeletes = append(c.m.PreferenceDeletes, PrefKey{p.Category, p.Key})
	}
	c.next.Preferences, c.ownPreferences = PreferenceList{}, true
	if len(c.next.Attributes) > 0 {
		for ns := range c.next.Attributes {
			c.m.AttributeDeletes = append(c.m.AttributeDeletes, ns)
		}
		slices.Sort(c.m.AttributeDeletes)
		c.next.Attributes = nil
	}
	sessions := make([]Session, len(c.next.Sessions))
	at := c.meta.Now
	for i, s := range c.next.Sessions {
		s.IPAddress, s.UserAgent = nil, nil
		if s.Active {
			s.Active, s.EndedAt = false, &at
		}
		sessions[i] = s
	}
	c.next.Sessions = sessions // the writer scrubs every session row of the user
	c.m.Erasure = &ErasureChange{Op: ErasureOpErase, At: c.meta.Now}
	c.event(EventUserErased, map[string]any{"userId": u.ID, "authId": authID})
	c.audit(AuditErasureDone, nil, nil)
	c.dirty = true
	c.result = map[string]any{"erased": true}
}

// ErasureStore reads erasure requests and holds the worker's leadership.
// Implementations are safe for concurrent use.
type ErasureStore interface {
	// Erasure returns the user's erasure request, or ErrNoErasure.
	Erasure(ctx context.Context, userID string) (*Erasure, error)
	// Due returns up to limit user ids whose requested erasure is due at now.
	Due(ctx context.Context, now time.Time, limit int) ([]string, error)
	// Uncleaned returns up to limit user ids erased whose caches were not
	// cleaned yet.
	Uncleaned(ctx context.Context, limit int) ([]string, error)
	// MarkCleaned records that the user's caches were cleaned.
	MarkCleaned(ctx context.Context, userID string) error
	// DeletedBefore returns up to limit soft-deleted users whose last change
	// (the delete, for a user nobody restored) is older than before, and whose
	// erasure is neither requested nor done: DELETED_USER_RETENTION's purge.
	DeletedBefore(ctx context.Context, before time.Time, limit int) ([]string, error)
	// WhileLeader runs fn if this process gets the erasure leadership (a
	// PostgreSQL advisory lock held for fn's duration) and reports whether it
	// ran.
	WhileLeader(ctx context.Context, fn func(ctx context.Context) error) (bool, error)
}

// CacheScrubber removes what caches hold about an erased user.
type CacheScrubber interface {
	ScrubUser(ctx context.Context, userID string) error
}
