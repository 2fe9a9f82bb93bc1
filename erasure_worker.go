package userservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErasureWorker runs due erasures (issue 14). On every tick, on one process at
// a time (ErasureStore.WhileLeader), it sends [Erase] through each due user's
// actor, then scrubs the caches of users erased but not cleaned yet. All its
// state is in PostgreSQL, so a process killed at any moment leaves work that
// the next tick (here or on another node) finishes, and the erase commit's
// fence makes it happen once.
type ErasureWorker struct {
	store    ErasureStore
	users    Users
	caches   CacheScrubber // nil: no cache to scrub
	interval time.Duration
	logger   *slog.Logger
	// deletedRetention is DELETED_USER_RETENTION: a user soft-deleted longer
	// ago is erased (0: never).
	deletedRetention time.Duration
}

// erasureBatch bounds the erasures of one tick.
const erasureBatch = 100

// NewErasureWorker returns a worker that looks for due erasures every
// interval and erases users soft-deleted more than deletedRetention ago (0:
// never). caches may be nil.
func NewErasureWorker(store ErasureStore, users Users, caches CacheScrubber, interval, deletedRetention time.Duration, logger *slog.Logger) (*ErasureWorker, error) {
	switch {
	case store == nil || users == nil || logger == nil:
		return nil, errors.New("cannot create erasure worker: nil store, users or logger")
	case interval <= 0:
		return nil, errors.New("cannot create erasure worker: interval must be positive")
	}
	return &ErasureWorker{store: store, users: users, caches: caches, interval: interval, logger: logger, deletedRetention: deletedRetention}, nil
}

// Run ticks until ctx ends.
func (w *ErasureWorker) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		if _, err := w.store.WhileLeader(ctx, w.Tick); err != nil && ctx.Err() == nil {
			w.logger.Warn("erasure worker", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick erases every due user and cleans the caches of erased ones; the
// caller holds the leadership.
func (w *ErasureWorker) Tick(ctx context.Context) error {
	var errs []error
	if err := w.purgeDeleted(ctx); err != nil {
		errs = append(errs, err)
	}
	due, err := w.store.Due(ctx, time.Now(), erasureBatch)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, id := range due {
		meta := Meta{CorrelationID: NewID(), Now: Now()}
		if _, err := w.users.Execute(ctx, id, Erase{}, meta); err != nil && !errors.Is(err, ErrNoErasure) {
			// ErrNoErasure: cancelled (or erased) since Due read it.
			errs = append(errs, fmt.Errorf("cannot erase user %s: %w", id, err))
			continue
		}
		w.logger.Info("user erased", "userId", id)
	}
	if w.caches != nil {
		ids, err := w.store.Uncleaned(ctx, erasureBatch)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		for _, id := range ids {
			if err := w.caches.ScrubUser(ctx, id); err != nil {
				errs = append(errs, err)
				break // Redis is down: the next tick retries
			}
			if err := w.store.MarkCleaned(ctx, id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// purgeDeleted requests, due at once, the erasure of every user soft-deleted
// more than deletedRetention ago (issue 14: DELETED_USER_RETENTION); the next
// tick erases them like any other request. Until then an admin may restore
// the user, which moves updated_at and so restarts the period.
func (w *ErasureWorker) purgeDeleted(ctx context.Context) error {
	if w.deletedRetention <= 0 {
		return nil
	}
	ids, err := w.store.DeletedBefore(ctx, time.Now().Add(-w.deletedRetention), erasureBatch)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		meta := Meta{CorrelationID: NewID(), Now: Now()}
		_, err := w.users.Execute(ctx, id, RequestErasure{ScheduledAt: meta.Now}, meta)
		switch {
		case err == nil:
			w.logger.Info("deleted user past retention: erasure requested", "userId", id)
		case errors.Is(err, ErrErasurePending), errors.Is(err, ErrUserNotFound):
			// requested or erased meanwhile
		default:
			errs = append(errs, fmt.Errorf("cannot request the erasure of deleted user %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
