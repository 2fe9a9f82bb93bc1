package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice"
)

// Statements of a mutation's erasure part (issue 14). The request, cancel and
// erase are fenced: each must change exactly one row of erasures, else the
// whole transaction aborts with the domain error, so an erasure runs once and
// never after a cancel.
const (
	requestErasureSQL = fenceHead + `INSERT INTO erasures (user_id, state, requested_at, scheduled_at, requested_by, previous_status)
	VALUES ($1, 'requested', $2, $3, $4, $5)
	ON CONFLICT (user_id) DO UPDATE SET state = 'requested', requested_at = EXCLUDED.requested_at,
	scheduled_at = EXCLUDED.scheduled_at, requested_by = EXCLUDED.requested_by,
	previous_status = EXCLUDED.previous_status, cancelled_at = NULL, cancelled_by = NULL
	WHERE erasures.state = 'cancelled'` + fenceTail
	cancelErasureSQL = fenceHead + `UPDATE erasures SET state = 'cancelled', cancelled_at = $2, cancelled_by = $3
	WHERE user_id = $1 AND state = 'requested'` + fenceTail
	eraseSQL = fenceHead + `UPDATE erasures SET state = 'done', done_at = $2
	WHERE user_id = $1 AND state = 'requested' AND scheduled_at <= $2` + fenceTail

	// What the user's actor does not hold: every session row (also those
	// beyond the newest the actor keeps), the audit records' before/after
	// (those of role and status changes hold no personal data and stay), the
	// data of the user's events still in the outbox or retained for the change
	// feed, and every stored idempotent answer of or about the user.
	scrubSessionsSQL = `UPDATE sessions SET ip_address = NULL, user_agent = NULL, ended_at = coalesce(ended_at, $2)
	WHERE user_id = $1`
	scrubAuditSQL = `UPDATE audit_log SET before = NULL, after = NULL
	WHERE user_id = $1 AND action NOT IN ('user.role_changed', 'user.status_changed', 'user.deleted', 'user.restored')
	AND (before IS NOT NULL OR after IS NOT NULL)`
	redactPayload   = `convert_to(jsonb_set(convert_from(payload, 'UTF8')::jsonb, '{data}', jsonb_build_object('userId', user_id::text, 'erased', true))::text, 'UTF8')`
	scrubOutboxSQL  = `UPDATE outbox SET payload = ` + redactPayload + ` WHERE user_id = $1`
	scrubEventsSQL  = `UPDATE event_log SET payload = ` + redactPayload + ` WHERE user_id = $1`
	scrubIdemSQL    = `DELETE FROM idempotency_keys WHERE caller_id = $1::text OR position(convert_to($1::text, 'UTF8') in body) > 0`
	erasureStateSQL = `SELECT state, requested_at, scheduled_at, requested_by, previous_status, cancelled_at, cancelled_by, done_at
	FROM erasures WHERE user_id = $1`
)

// queueErasure appends the erasure statements of m (none when m.Erasure is nil).
func queueErasure(m *userservice.Mutation, add func(want error, sql string, args ...any)) {
	e := m.Erasure
	if e == nil {
		return
	}
	switch e.Op {
	case userservice.ErasureOpRequest:
		add(userservice.ErrErasurePending, requestErasureSQL, m.UserID, e.At.Time, e.ScheduledAt.Time, e.By, string(e.PreviousStatus))
	case userservice.ErasureOpCancel:
		add(userservice.ErrNoErasure, cancelErasureSQL, m.UserID, e.At.Time, e.By)
	case userservice.ErasureOpErase:
		add(userservice.ErrNoErasure, eraseSQL, m.UserID, e.At.Time)
		add(nil, scrubSessionsSQL, m.UserID, e.At.Time)
		add(nil, scrubAuditSQL, m.UserID)
		add(nil, scrubOutboxSQL, m.UserID)
		add(nil, scrubEventsSQL, m.UserID)
		add(nil, scrubIdemSQL, m.UserID)
	}
}

// ErasureStore reads erasure requests. It is safe for concurrent use.
type ErasureStore struct{ db *DB }

var _ userservice.ErasureStore = (*ErasureStore)(nil)

// NewErasureStore returns an ErasureStore over db.
func NewErasureStore(db *DB) (*ErasureStore, error) {
	if db == nil {
		return nil, errors.New("cannot create erasure store: db is nil")
	}
	return &ErasureStore{db: db}, nil
}

// Erasure returns the user's erasure request, or ErrNoErasure.
func (s *ErasureStore) Erasure(ctx context.Context, userID string) (*userservice.Erasure, error) {
	id, ok := userservice.ParseID(userID)
	if !ok {
		return nil, userservice.ErrNoErasure
	}
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	e := userservice.Erasure{UserID: id}
	var requested, scheduled time.Time
	var cancelled, done *time.Time
	var prev string
	err := s.db.pool.QueryRow(ctx, erasureStateSQL, id).Scan(&e.State, &requested, &scheduled, &e.RequestedBy, &prev, &cancelled, &e.CancelledBy, &done)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, userservice.ErrNoErasure
	}
	if err != nil {
		return nil, unavailable("cannot read the erasure", err)
	}
	e.RequestedAt, e.ScheduledAt, e.PreviousStatus = userservice.NewTime(requested), userservice.NewTime(scheduled), userservice.Status(prev)
	if cancelled != nil {
		t := userservice.NewTime(*cancelled)
		e.CancelledAt = &t
	}
	if done != nil {
		t := userservice.NewTime(*done)
		e.DoneAt = &t
	}
	return &e, nil
}

func (s *ErasureStore) ids(ctx context.Context, what, sql string, args ...any) ([]string, error) {
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	rows, err := s.db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, unavailable("cannot read "+what, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, unavailable("cannot read "+what, err)
	}
	return ids, nil
}

// Due returns up to limit users whose requested erasure is due at now.
func (s *ErasureStore) Due(ctx context.Context, now time.Time, limit int) ([]string, error) {
	return s.ids(ctx, "due erasures", `SELECT user_id::text FROM erasures WHERE state = 'requested' AND scheduled_at <= $1
	ORDER BY scheduled_at LIMIT $2`, now, limit)
}

// Uncleaned returns up to limit erased users whose caches are not cleaned yet.
func (s *ErasureStore) Uncleaned(ctx context.Context, limit int) ([]string, error) {
	return s.ids(ctx, "uncleaned erasures", `SELECT user_id::text FROM erasures WHERE state = 'done' AND cleaned_at IS NULL
	ORDER BY done_at LIMIT $1`, limit)
}

// DeletedBefore returns up to limit soft-deleted users last changed before
// `before` with no erasure requested or done (the partial index
// users_deleted_idx, migration 00070, narrows them to the deleted ones).
func (s *ErasureStore) DeletedBefore(ctx context.Context, before time.Time, limit int) ([]string, error) {
	return s.ids(ctx, "deleted users due", `SELECT u.id::text FROM users u
	LEFT JOIN erasures e ON e.user_id = u.id
	WHERE u.status = 'deleted' AND u.updated_at < $1 AND (e.user_id IS NULL OR e.state = 'cancelled')
	ORDER BY u.updated_at LIMIT $2`, before, limit)
}

// MarkCleaned records that the user's caches were cleaned.
func (s *ErasureStore) MarkCleaned(ctx context.Context, userID string) error {
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	if _, err := s.db.pool.Exec(ctx, `UPDATE erasures SET cleaned_at = now() WHERE user_id = $1 AND state = 'done'`, userID); err != nil {
		return unavailable("cannot mark the erasure cleaned", err)
	}
	return nil
}

// erasureLockClass is the first key of the erasure worker's advisory lock (the
// relay's pattern: the second is hashtext(current_schema())).
const erasureLockClass = 0x55534552 // "USER"

// WhileLeader runs fn while holding the erasure worker's transaction-scoped
// advisory lock on a connection of its own, if no other process holds it.
func (s *ErasureStore) WhileLeader(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	conn, err := s.db.pool.Acquire(ctx)
	if err != nil {
		return false, unavailable("cannot acquire a connection for the erasure lock", err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, unavailable("cannot begin the erasure lock", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // releases the lock
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1, hashtext(current_schema()))`, erasureLockClass).Scan(&ok); err != nil {
		return false, unavailable("cannot take the erasure lock", err)
	}
	if !ok {
		return false, nil
	}
	if err := fn(ctx); err != nil {
		return true, fmt.Errorf("erasure leader: %w", err)
	}
	return true, nil
}
