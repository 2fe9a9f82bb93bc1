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
}

// erasureBatch bounds the erasures of one tick.
const erasureBatch = 100

// NewErasureWorker returns a worker that looks for due erasures every
// interval. caches may be nil.
func NewErasureWorker(store ErasureStore, users Users, caches CacheScrubber, interval time.Duration, logger *slog.Logger) (*ErasureWorker, error) {
	switch {
	case store == nil || users == nil || logger == nil:
		return nil, errors.New("cannot create erasure worker: nil store, users or logger")
	case interval <= 0:
		return nil, errors.New("cannot create erasure worker: interval must be positive")
	}
	return &ErasureWorker{store: store, users: users, caches: caches, interval: interval, logger: logger}, nil
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
	due, err := w.store.Due(ctx, time.Now(), erasureBatch)
	if err != nil {
		return err
	}
	var errs []error
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
