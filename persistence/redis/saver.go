package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"

	userservice "github.com/lms-platform/userservice"
)

var (
	snapshotCoalesced   = metrics.GetOrCreateCounter(`user_service_snapshot_writes_coalesced_total`)
	snapshotDroppedDown = metrics.GetOrCreateCounter(`user_service_snapshot_writes_dropped_total{reason="down"}`)
	snapshotDroppedFull = metrics.GetOrCreateCounter(`user_service_snapshot_writes_dropped_total{reason="full"}`)
	snapshotDroppedShut = metrics.GetOrCreateCounter(`user_service_snapshot_writes_dropped_total{reason="closed"}`)
	snapshotBatchSize   = metrics.GetOrCreatePrometheusHistogramExt(`user_service_snapshot_write_batch_size`,
		[]float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512})
)

// SaverConfig configures a [Saver].
type SaverConfig struct {
	// MaxPending bounds the users waiting for a snapshot write; past it Save drops
	// and everything pending is written at once.
	MaxPending int
	// BatchSize is the most snapshots written in one pipelined round trip.
	BatchSize int
	// Delay is SNAPSHOT_WRITE_DELAY: what Save records is written at the next tick
	// of a Delay ticker, so a user's snapshot is written at most once per Delay
	// however often it commits (plus at passivation, [Saver.SaveNow]). 0 writes
	// right after every commit.
	Delay time.Duration
}

// Defaults of [SaverConfig].
const (
	DefaultSaverMaxPending = 100_000
	DefaultSaverBatchSize  = 256
)

// Saver refreshes snapshots after commits without ever blocking its caller (an
// actor). A snapshot is read only when an actor activates, so it need not follow
// every commit: Save only records the newest state per user, and one background
// goroutine writes what is pending once per Delay, pipelined in batches; SaveNow
// (an actor passivating: the next thing to happen to this user is an activation)
// writes what is pending for the user at once. A write that is delayed, lost in a crash or dropped (Redis down,
// too much pending) costs only a slower next activation: a snapshot whose version
// is not PostgreSQL's is never served (docs/design.md). Safe for concurrent use.
type Saver struct {
	snaps *Snapshots
	cfg   SaverConfig
	log   *slog.Logger

	mu       sync.Mutex
	pending  map[string]*userservice.State // by user id, newest version only
	urgent   map[string]struct{}           // pending users to write at once
	pressure bool                          // MaxPending reached: write everything at once
	closed   bool

	wake chan struct{} // capacity 1
	stop chan struct{}
	done chan struct{}
}

// NewSaver starts a saver writing through snaps. Close stops it.
func NewSaver(snaps *Snapshots, cfg SaverConfig, log *slog.Logger) (*Saver, error) {
	if snaps == nil {
		return nil, errors.New("cannot create snapshot saver: nil snapshots")
	}
	if log == nil {
		return nil, errors.New("cannot create snapshot saver: nil logger")
	}
	if cfg.Delay < 0 {
		return nil, fmt.Errorf("cannot create snapshot saver: negative delay %v", cfg.Delay)
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultSaverMaxPending
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultSaverBatchSize
	}
	s := newSaver(snaps, cfg, log)
	go s.run()
	return s, nil
}

// newSaver returns a saver whose writer is not running yet.
func newSaver(snaps *Snapshots, cfg SaverConfig, log *slog.Logger) *Saver {
	return &Saver{
		snaps: snaps, cfg: cfg, log: log,
		pending: make(map[string]*userservice.State),
		urgent:  make(map[string]struct{}),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Save schedules st, a committed state, to become the user's snapshot at the next
// tick (at once when Delay is 0). It never blocks: it keeps only the newest pending
// state per user and drops (with a metric) while Redis is down or too many users
// are pending.
func (s *Saver) Save(st *userservice.State) { s.save(st, s.cfg.Delay == 0, false) }

// SaveNow is for an actor that passivates, whose state is next needed when it
// activates again: if the user has a state waiting for the next tick, it is written
// at once (st if newer). With nothing pending the snapshot already holds the last
// commit (or its write was dropped, which only makes the next activation a full
// load), so nothing is written.
func (s *Saver) SaveNow(st *userservice.State) { s.save(st, true, true) }

func (s *Saver) save(st *userservice.State, now, onlyPending bool) {
	if st == nil {
		return
	}
	if !s.snaps.c.Up() {
		snapshotDroppedDown.Inc()
		return
	}
	id := st.User.ID
	s.mu.Lock()
	switch old, ok := s.pending[id]; {
	case s.closed:
		s.mu.Unlock()
		snapshotDroppedShut.Inc()
		return
	case ok:
		if st.User.Version >= old.User.Version {
			s.pending[id] = st
		}
		if !onlyPending {
			snapshotCoalesced.Inc()
		}
	case onlyPending:
		s.mu.Unlock()
		return
	case len(s.pending) >= s.cfg.MaxPending:
		// Full: drop this one, and have everything pending written now rather
		// than at the tick.
		s.pressure = true
		s.mu.Unlock()
		snapshotDroppedFull.Inc()
		select {
		case s.wake <- struct{}{}:
		default:
		}
		return
	default:
		s.pending[id] = st
	}
	if now {
		s.urgent[id] = struct{}{}
	}
	s.mu.Unlock()
	if now {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Close stops taking states, writes what is pending and stops the saver. It waits
// for that until ctx ends; each batch is bounded by the command timeout.
func (s *Saver) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Saver) run() {
	defer close(s.done)
	var tick <-chan time.Time
	if s.cfg.Delay > 0 {
		t := time.NewTicker(s.cfg.Delay)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-s.wake:
			s.mu.Lock()
			all := s.pressure
			s.pressure = false
			s.mu.Unlock()
			s.flush(all)
		case <-tick:
			s.flush(true)
		case <-s.stop:
			s.flush(true)
			return
		}
	}
}

// flush writes the urgent pending states, or with all every pending one,
// BatchSize per round trip.
func (s *Saver) flush(all bool) {
	s.mu.Lock()
	var batch map[string]*userservice.State
	if all {
		batch = s.pending
		s.pending = make(map[string]*userservice.State, len(batch))
	} else {
		batch = make(map[string]*userservice.State, len(s.urgent))
		for id := range s.urgent {
			if st, ok := s.pending[id]; ok {
				batch[id] = st
				delete(s.pending, id)
			}
		}
	}
	clear(s.urgent)
	s.mu.Unlock()

	states := make([]*userservice.State, 0, min(len(batch), s.cfg.BatchSize))
	for _, st := range batch {
		states = append(states, st)
		if len(states) == s.cfg.BatchSize {
			s.write(states)
			states = states[:0]
		}
	}
	if len(states) > 0 {
		s.write(states)
	}
}

// write stores states in one pipelined round trip.
func (s *Saver) write(states []*userservice.State) {
	c := s.snaps.c
	if !c.Up() {
		snapshotDroppedDown.AddInt64(int64(len(states)))
		return
	}
	type item struct {
		userID string
		b      []byte // nil: too large, delete instead
	}
	items := make([]item, 0, len(states))
	for _, st := range states {
		b, err := s.snaps.encode(st)
		if err != nil && !errors.Is(err, ErrSnapshotTooLarge) {
			s.log.Warn("cannot encode snapshot", "userId", st.User.ID, "error", err.Error())
			continue
		}
		items = append(items, item{st.User.ID, b})
	}
	if len(items) == 0 {
		return
	}
	snapshotBatchSize.Update(float64(len(items)))
	var results []rueidis.RedisResult
	err := c.call(context.Background(), func(ctx context.Context) error {
		// Built per attempt: rueidis recycles the commands it sent successfully.
		cmds := make(rueidis.Commands, 0, len(items)+1)
		cmds = append(cmds, s.snaps.loadScriptCommand())
		for _, it := range items {
			cmds = append(cmds, s.snaps.batchCommand(it.userID, it.b))
		}
		results = c.rdb.DoMulti(ctx, cmds...)
		for _, r := range results {
			if err := r.Error(); err != nil {
				return err
			}
		}
		return nil
	})
	if results == nil { // not sent: Redis is down
		snapshotDroppedDown.AddInt64(int64(len(items)))
		return
	}
	for i, r := range results[1:] {
		stored, rerr := r.AsInt64()
		switch {
		case rerr != nil:
			snapshotWritesErr.Inc()
		case items[i].b != nil: // not the DEL of an oversize one
			countStored(stored)
		}
	}
	if err != nil {
		s.log.Debug("cannot write snapshots", "count", len(items), "error", err.Error())
	}
}
