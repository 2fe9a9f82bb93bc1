package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice"
)

var _ userservice.EventHistory = (*Directory)(nil)

// userEventsSQL reads a user's events after a sequence: those the relay moved
// to event_log once published, and those still in the outbox. One statement,
// one snapshot: the relay moves a row in one statement too, so a row is seen
// exactly once. The outbox has no user index; it holds only unpublished rows.
const userEventsSQL = `SELECT sequence, routing_key, payload FROM (
	SELECT sequence, outbox_id, routing_key, payload FROM event_log WHERE user_id = $1 AND sequence > $2
	UNION ALL
	SELECT coalesce((convert_from(payload, 'UTF8')::jsonb->>'sequence')::bigint, 0), id, routing_key, payload
	FROM outbox WHERE user_id = $1
) e WHERE sequence > $2 ORDER BY sequence, outbox_id LIMIT $3`

// Events returns up to limit published events after the global position
// `after`, in position order (see userservice.EventHistory).
func (d *Directory) Events(ctx context.Context, after int64, limit int) ([]userservice.FeedEvent, error) {
	ctx, cancel := d.db.timeout(ctx)
	defer cancel()
	rows, err := d.db.pool.Query(ctx, `SELECT position, sequence, routing_key, payload FROM event_log
		WHERE position > $1 ORDER BY position LIMIT $2`, after, limit)
	if err != nil {
		return nil, unavailable("cannot read the events", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (userservice.FeedEvent, error) {
		var e userservice.FeedEvent
		err := row.Scan(&e.Position, &e.Sequence, &e.Type, &e.Envelope)
		return e, err
	})
	if err != nil {
		return nil, unavailable("cannot read the events", err)
	}
	return out, nil
}

// UserEvents returns up to limit of the user's events after the sequence
// `after`, oldest first (see userservice.EventHistory).
func (d *Directory) UserEvents(ctx context.Context, userID string, after int64, limit int) ([]userservice.FeedEvent, error) {
	id, ok := userservice.ParseID(userID)
	if !ok {
		return nil, nil
	}
	ctx, cancel := d.db.timeout(ctx)
	defer cancel()
	rows, err := d.db.pool.Query(ctx, userEventsSQL, id, after, limit)
	if err != nil {
		return nil, unavailable("cannot read the user's events", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (userservice.FeedEvent, error) {
		var e userservice.FeedEvent
		err := row.Scan(&e.Sequence, &e.Type, &e.Envelope)
		return e, err
	})
	if err != nil {
		return nil, unavailable("cannot read the user's events", err)
	}
	// A full answer may end inside one change's events: leave that change to
	// the next read, so that `after` = the last sequence resumes exactly.
	if len(out) == limit && out[0].Sequence != out[len(out)-1].Sequence {
		last := out[len(out)-1].Sequence
		for len(out) > 0 && out[len(out)-1].Sequence == last {
			out = out[:len(out)-1]
		}
	}
	return out, nil
}
