package postgres

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice"
)

// IdempotencyStore keeps the first answers of POSTs that carried an
// Idempotency-Key and changed nothing; answers that changed something are stored
// by the Writer with their change. It is safe for concurrent use.
type IdempotencyStore struct{ db *DB }

var _ userservice.IdempotencyStore = (*IdempotencyStore)(nil)

// NewIdempotencyStore returns an IdempotencyStore on db.
func NewIdempotencyStore(db *DB) (*IdempotencyStore, error) {
	if db == nil {
		return nil, errors.New("cannot create idempotency store: nil DB")
	}
	return &IdempotencyStore{db: db}, nil
}

// GetIdempotency returns the record stored for the caller's key, or nil when there
// is none younger than ttl.
func (s *IdempotencyStore) GetIdempotency(ctx context.Context, callerID, key string, ttl time.Duration) (*userservice.IdempotencyRecord, error) {
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	r := &userservice.IdempotencyRecord{CallerID: callerID, Key: key}
	var created time.Time
	err := s.db.pool.QueryRow(ctx, `SELECT request_hash, status, body, created_at FROM idempotency_keys
	WHERE caller_id = $1 AND key = $2 AND created_at > $3`, callerID, key, time.Now().Add(-ttl)).
		Scan(&r.RequestHash, &r.Status, &r.Body, &created)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, unavailable("cannot read an idempotency key", err)
	}
	r.CreatedAt = userservice.NewTime(created)
	return r, nil
}

// PutIdempotency stores rec unless the key is held by an answer younger than
// IdempotencyTTL, in which case it returns userservice.ErrIdempotencyKeyTaken.
func (s *IdempotencyStore) PutIdempotency(ctx context.Context, rec *userservice.IdempotencyRecord) error {
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	body := rec.Body
	if body == nil {
		body = []byte{}
	}
	ct, err := s.db.pool.Exec(ctx, insertIdempotencySQL, rec.CallerID, rec.Key, rec.RequestHash, rec.Status, body,
		rec.CreatedAt.Time, time.Now().Add(-IdempotencyTTL))
	if err != nil {
		return mapError(err)
	}
	if ct.RowsAffected() != 1 {
		return userservice.ErrIdempotencyKeyTaken
	}
	return nil
}

// IsProcessed reports whether the consumed message with that id was already
// applied.
func (db *DB) IsProcessed(ctx context.Context, messageID string) (bool, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	var ok bool
	err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM processed_messages WHERE message_id = $1)`, messageID).Scan(&ok)
	if err != nil {
		return false, unavailable("cannot read processed messages", err)
	}
	return ok, nil
}

// Pruned counts the rows one Prune removed.
type Pruned struct {
	UserCountRows int64 // user counter rows of ended backends folded (FoldUserCounts)
}

// Prune folds the user counters of ended backends. Old idempotency records and
// processed-message ids are deleted by the retention job ([Retention]), with
// configured periods, on one process at a time.
func (db *DB) Prune(ctx context.Context, now time.Time) (Pruned, error) {
	var p Pruned
	var err error
	if p.UserCountRows, err = db.FoldUserCounts(ctx); err != nil {
		return p, err
	}
	return p, nil
}

// RunPruner calls Prune every interval until ctx ends, logging what it removed
// and any failure.
func (db *DB) RunPruner(ctx context.Context, every time.Duration, logger *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p, err := db.Prune(ctx, now)
			if err != nil {
				logger.Warn("cannot fold user counters", "err", err)
				continue
			}
			if p.UserCountRows > 0 {
				logger.Debug("folded user counters", "rows", p.UserCountRows)
			}
		}
	}
}
