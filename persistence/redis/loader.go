package redis

import (
	"context"
	"errors"
	"log/slog"

	"github.com/VictoriaMetrics/metrics"

	userservice "github.com/lms-platform/userservice"
)

var (
	snapshotHits        = metrics.GetOrCreateCounter(`user_service_cache_hits_total{cache="snapshot"}`)
	snapshotMissAbsent  = metrics.GetOrCreateCounter(`user_service_cache_misses_total{cache="snapshot",reason="absent"}`)
	snapshotMissStale   = metrics.GetOrCreateCounter(`user_service_cache_misses_total{cache="snapshot",reason="stale"}`)
	snapshotMissError   = metrics.GetOrCreateCounter(`user_service_cache_misses_total{cache="snapshot",reason="error"}`)
	loadsFromRedis      = metrics.GetOrCreateCounter(`user_service_snapshot_loads_total{source="redis"}`)
	loadsFromPostgres   = metrics.GetOrCreateCounter(`user_service_snapshot_loads_total{source="postgres"}`)
	snapshotDroppedBusy = metrics.GetOrCreateCounter(`user_service_snapshot_writes_dropped_total{reason="busy"}`)
)

// maxRefreshesInFlight bounds the asynchronous snapshot writes after loads from
// PostgreSQL, so that a burst of activations against a slow Redis cannot pile up
// goroutines; past it a refresh is skipped (it is only an optimisation).
const maxRefreshesInFlight = 64

// VersionProbe reads the committed version of one user, and its lastActiveAt (which
// is written behind without a version change), with one cheap lookup. It returns
// userservice.ErrUserNotFound for an unknown user. persistence/postgres implements it.
type VersionProbe interface {
	UserVersion(ctx context.Context, userID string) (version int64, lastActiveAt *userservice.Time, err error)
}

// CachedLoader is a userservice.StateLoader that serves a Redis snapshot when, and
// only when, its version equals the version committed in PostgreSQL, and otherwise
// loads from the primary loader and refreshes the snapshot in the background (see
// the package documentation for why this never serves stale state). Redis errors
// never fail a load. It is safe for concurrent use.
type CachedLoader struct {
	primary   userservice.StateLoader
	probe     VersionProbe
	snaps     *Snapshots
	log       *slog.Logger
	refreshes chan struct{} // semaphore of asynchronous snapshot writes
}

var _ userservice.StateLoader = (*CachedLoader)(nil)

// NewCachedLoader returns a loader in front of primary.
func NewCachedLoader(primary userservice.StateLoader, probe VersionProbe, snaps *Snapshots, log *slog.Logger) (*CachedLoader, error) {
	switch {
	case primary == nil:
		return nil, errors.New("cannot create cached loader: nil primary loader")
	case probe == nil:
		return nil, errors.New("cannot create cached loader: nil version probe")
	case snaps == nil:
		return nil, errors.New("cannot create cached loader: nil snapshots")
	case log == nil:
		return nil, errors.New("cannot create cached loader: nil logger")
	}
	return &CachedLoader{
		primary: primary, probe: probe, snaps: snaps, log: log,
		refreshes: make(chan struct{}, maxRefreshesInFlight),
	}, nil
}

// LoadState implements userservice.StateLoader.
func (l *CachedLoader) LoadState(ctx context.Context, userID string) (*userservice.State, error) {
	if !l.snaps.c.Up() {
		snapshotMissError.Inc()
		return l.loadPrimary(ctx, userID, noRefresh)
	}
	type snapshot struct {
		st  *userservice.State
		err error
	}
	got := make(chan snapshot, 1)
	go func() {
		st, err := l.snaps.Get(ctx, userID) // bounded by the command timeout
		got <- snapshot{st, err}
	}()
	version, lastActiveAt, err := l.probe.UserVersion(ctx, userID)
	if err != nil { // got is buffered: the Get finishes on its own
		if errors.Is(err, userservice.ErrUserNotFound) {
			return nil, userservice.ErrUserNotFound
		}
		// Without the committed version no snapshot may be served; the primary
		// gives the authoritative answer or error.
		snapshotMissError.Inc()
		return l.loadPrimary(ctx, userID, refresh)
	}
	snap := <-got
	switch {
	case errors.Is(snap.err, errCorrupt): // worthless: overwrite it whatever its version
		snapshotMissError.Inc()
		l.log.Warn("unreadable snapshot; loading from PostgreSQL", "userId", userID, "error", snap.err.Error())
		return l.loadPrimary(ctx, userID, refreshForce)
	case snap.err != nil:
		snapshotMissError.Inc()
		return l.loadPrimary(ctx, userID, refresh)
	case snap.st == nil:
		snapshotMissAbsent.Inc()
		return l.loadPrimary(ctx, userID, refresh)
	case snap.st.User.ID != userID || snap.st.User.Version > version:
		// Ahead of PostgreSQL (a restored database) or misplaced: can only be
		// wrong, so the refresh overwrites it.
		snapshotMissStale.Inc()
		return l.loadPrimary(ctx, userID, refreshForce)
	case snap.st.User.Version < version:
		snapshotMissStale.Inc()
		return l.loadPrimary(ctx, userID, refresh)
	}
	st := snap.st // freshly decoded: ours to change
	if lastActiveAt != nil && (st.User.LastActiveAt == nil || lastActiveAt.After(st.User.LastActiveAt.Time)) {
		at := *lastActiveAt
		st.User.LastActiveAt = &at
	}
	snapshotHits.Inc()
	loadsFromRedis.Inc()
	return st, nil
}

// After a load from PostgreSQL, the snapshot is refreshed in the background:
type refreshMode int

const (
	noRefresh    refreshMode = iota // not at all (Redis is down)
	refresh                         // unless Redis holds a newer version
	refreshForce                    // overwriting whatever Redis holds
)

// loadPrimary loads from PostgreSQL and refreshes the user's snapshot as mode says.
func (l *CachedLoader) loadPrimary(ctx context.Context, userID string, mode refreshMode) (*userservice.State, error) {
	st, err := l.primary.LoadState(ctx, userID)
	if err != nil {
		return nil, err
	}
	loadsFromPostgres.Inc()
	if mode != noRefresh && l.snaps.c.Up() {
		select {
		case l.refreshes <- struct{}{}:
			go func() {
				defer func() { <-l.refreshes }()
				// Detached from the request, which may end first; Put has its own timeout.
				if err := l.snaps.store(context.WithoutCancel(ctx), st, mode == refreshForce); err != nil && !errors.Is(err, ErrSnapshotTooLarge) {
					l.log.Debug("cannot refresh snapshot", "userId", userID, "error", err.Error())
				}
			}()
		default:
			snapshotDroppedBusy.Inc()
		}
	}
	return st, nil
}
