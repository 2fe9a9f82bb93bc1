package userservice

import (
	"context"
	"time"
)

// Users is how the edges (HTTP handlers, the event consumer) reach per-user actors.
// Implementations are safe for concurrent use. actors.Registry is the local one; a
// cluster mode would replace only this.
type Users interface {
	// Get returns the committed state of the user, from memory once the user's actor
	// is active. When touch is non-nil the call also records activity at that time:
	// lastActiveAt is written behind, at most once a minute per user, without waiting.
	// Returns ErrUserNotFound for an unknown id.
	Get(ctx context.Context, userID string, touch *Time) (*State, error)
	// Execute applies cmd through the user's actor and returns once the change is
	// committed in PostgreSQL (or failed, with nothing changed).
	Execute(ctx context.Context, userID string, cmd Command, meta Meta) (*Outcome, error)
}

// StateLoader loads one user's committed state (actor activation). It returns
// ErrUserNotFound when the user does not exist.
type StateLoader interface {
	LoadState(ctx context.Context, userID string) (*State, error)
}

// Committer group-commits mutations. Safe for concurrent use.
type Committer interface {
	// Commit queues m for the next group commit and calls done exactly once, from
	// another goroutine, with nil once m is committed, or the error. An error that is
	// an *Error with a 4xx code (conflict, duplicate message, stale version) means
	// nothing of m was written; any other error means the outcome is unknown and the
	// caller must reload the user's state.
	Commit(m *Mutation, done func(error))
	// TouchLastActive records lastActiveAt for the user behind the caller's back:
	// it never blocks and never changes the version.
	TouchLastActive(userID string, at Time)
}

// Directory answers the questions that cross users, from PostgreSQL.
type Directory interface {
	// UserIDByAuthID returns the id of the user with that authId, or ErrUserNotFound.
	UserIDByAuthID(ctx context.Context, authID string) (string, error)
	// SearchUsers runs the admin search.
	SearchUsers(ctx context.Context, q UserSearch) ([]User, Pagination, error)
	// AuditLog returns one page of the user's audit records, newest first, and the total.
	AuditLog(ctx context.Context, userID string, page PageQuery) ([]AuditRecord, int, error)
	// PlatformStats counts every user by status, role and verification, exactly
	// as of the last committed write.
	PlatformStats(ctx context.Context) (PlatformStats, error)
	// Sessions returns one page of the user's sessions, newest first, and the
	// total: every session ever recorded, not only the newest MaxSessionsKept
	// that the user's actor holds.
	Sessions(ctx context.Context, userID string, page PageQuery) ([]Session, int, error)
	// CourseRoster returns one page of a course's enrollments with their users'
	// public profiles, and the total when q.CountTotal (else -1), as of the last
	// committed write.
	CourseRoster(ctx context.Context, q RosterQuery) ([]CourseEnrollment, int64, error)
	// CourseStats counts a course's enrollments, as of the last committed write.
	CourseStats(ctx context.Context, courseID string) (CourseStats, error)
}

// IdempotencyStore keeps the first answers of POSTs that carried an Idempotency-Key.
type IdempotencyStore interface {
	// GetIdempotency returns the stored record, or nil when there is none younger than ttl.
	GetIdempotency(ctx context.Context, callerID, key string, ttl time.Duration) (*IdempotencyRecord, error)
	// PutIdempotency stores rec unless the key is taken (then it returns
	// ErrIdempotencyKeyTaken). Used for answers that changed nothing.
	PutIdempotency(ctx context.Context, rec *IdempotencyRecord) error
}

// FeedEvent is one retained event of the change feed: its envelope as published.
type FeedEvent struct {
	// Position is the event's place in the global feed (0 while unpublished).
	Position int64
	Sequence int64
	Type     string
	Envelope []byte // the JSON envelope, exactly as published
}

// EventHistory reads the change feed (issue 15): the events retained
// (EVENT_RETENTION) plus those not yet published.
type EventHistory interface {
	// UserEvents returns up to limit of the user's events with a sequence after
	// `after`, in the order they happened. It never ends inside the events of one
	// change (which share a sequence), unless a single change has more than limit.
	UserEvents(ctx context.Context, userID string, after int64, limit int) ([]FeedEvent, error)
	// Events returns up to limit published events of every user with a position
	// after `after`, in the order their publication committed.
	Events(ctx context.Context, after int64, limit int) ([]FeedEvent, error)
}
