package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice"
)

var _ userservice.PersonalData = (*Directory)(nil)

// Keyset pages oldest first: (time, id) after the key, so that a page is one
// index range scan however far into the user's rows it starts
// (sessions_user_started_idx, audit_log_user_created_idx, read backwards).
const (
	sessionsAfterSQL = `SELECT ` + sessionColumns + ` FROM sessions
	WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (started_at, id) > ($2, $3::uuid))
	ORDER BY started_at, id LIMIT $4`
	auditAfterSQL = `SELECT ` + auditColumns + ` FROM audit_log
	WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
	ORDER BY created_at, id LIMIT $4`
)

// keyArgs are the $2 and $3 of a keyset query: NULLs for the first page.
func keyArgs(after *userservice.RowKey) (*time.Time, *string) {
	if after == nil {
		return nil, nil
	}
	at, id := after.At.Time, after.ID
	return &at, &id
}

// rowScanner is what scanSession and scanAudit read: a pgx.Row, pgx.Rows or
// pgx.CollectableRow.
type rowScanner interface{ Scan(dest ...any) error }

// sessionColumns are the columns scanSession reads, in its order.
const sessionColumns = `id, session_id, ip_address, user_agent, started_at, ended_at`

// scanSession reads one row of sessionColumns.
func scanSession(row rowScanner) (userservice.Session, error) {
	var s userservice.Session
	var started time.Time
	var ended *time.Time
	if err := row.Scan(&s.ID, &s.SessionID, &s.IPAddress, &s.UserAgent, &started, &ended); err != nil {
		return s, err
	}
	s.StartedAt = userservice.NewTime(started)
	if ended != nil {
		t := userservice.NewTime(*ended)
		s.EndedAt = &t
	}
	s.Active = ended == nil
	return s, nil
}

// auditColumns are the columns scanAudit reads, in its order.
const auditColumns = `id, actor_id, action, before::text, after::text, correlation_id, created_at`

// scanAudit reads one row of auditColumns of the user's audit records.
func scanAudit(row rowScanner, userID string) (userservice.AuditRecord, error) {
	a := userservice.AuditRecord{UserID: userID}
	var before, after *string
	var created time.Time
	if err := row.Scan(&a.ID, &a.ActorID, &a.Action, &before, &after, &a.CorrelationID, &created); err != nil {
		return a, err
	}
	a.CreatedAt = userservice.NewTime(created)
	var err error
	if a.Before, err = decodeObject(before); err != nil {
		return a, err
	}
	a.After, err = decodeObject(after)
	return a, err
}

// pageAfter runs one keyset page query (sessionsAfterSQL, auditAfterSQL) for
// the user and scans its rows; an id that is not a UUID has no rows.
func pageAfter[T any](ctx context.Context, d *Directory, what, sql, userID string, after *userservice.RowKey, limit int,
	scan func(row rowScanner, id string) (T, error)) ([]T, error) {
	id, ok := userservice.ParseID(userID)
	if !ok {
		return nil, nil
	}
	ctx, cancel := d.db.timeout(ctx)
	defer cancel()
	at, key := keyArgs(after)
	rows, err := d.db.pool.Query(ctx, sql, id, at, key, limit)
	if err != nil {
		return nil, unavailable("cannot read "+what, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) { return scan(row, id) })
	if err != nil {
		return nil, unavailable("cannot read "+what, err)
	}
	return out, nil
}

// SessionsAfter returns up to limit of the user's sessions that started after
// the key, oldest first.
func (d *Directory) SessionsAfter(ctx context.Context, userID string, after *userservice.RowKey, limit int) ([]userservice.Session, error) {
	return pageAfter(ctx, d, "the sessions", sessionsAfterSQL, userID, after, limit,
		func(row rowScanner, _ string) (userservice.Session, error) { return scanSession(row) })
}

// AuditAfter returns up to limit of the audit records about the user created
// after the key, oldest first.
func (d *Directory) AuditAfter(ctx context.Context, userID string, after *userservice.RowKey, limit int) ([]userservice.AuditRecord, error) {
	return pageAfter(ctx, d, "the audit log", auditAfterSQL, userID, after, limit, scanAudit)
}
