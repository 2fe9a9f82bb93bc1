package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	userservice "github.com/lms-platform/userservice"
)

// Config holds the knobs of a [Registry]. Zero values take the defaults.
type Config struct {
	// Owners is the number of owner actors the user ids are sharded over
	// (at least 128; default 256).
	Owners int
	// IdleTimeout is how long a user actor stays in memory without a message
	// (ACTOR_IDLE_TIMEOUT; default 10m).
	IdleTimeout time.Duration
	// MaxActive bounds the user actors in memory (ACTOR_MAX_ACTIVE; default 100000).
	// Each owner keeps at most ceil(MaxActive/Owners) and passivates its least
	// recently used child beyond that, so the bound is exact when MaxActive is a
	// multiple of Owners and otherwise exceeded by less than Owners.
	MaxActive int
	// CallTimeout bounds a call whose context has no deadline (default 5s).
	CallTimeout time.Duration
	// LoadTimeout bounds one LoadState at activation (default 5s).
	LoadTimeout time.Duration
	// TouchInterval coalesces lastActiveAt writes: at most one per user per interval
	// (default 1m; CONTRACT.md, Durability and consistency).
	TouchInterval time.Duration
	// OnCommit, when set, is called from the user's actor with every newly committed
	// state (the Redis snapshot refresh). It must not block.
	OnCommit func(*userservice.State)
	// Quotas are the per-user limits every command is applied with
	// (QUOTA_* variables; zero fields mean no limit).
	Quotas userservice.Quotas
	// OnPassivate, when set, is called from the user's actor with its state just
	// before it stops for being idle or over MaxActive (the snapshot written now,
	// since the next thing this user needs is an activation). Not called at
	// Shutdown. It must not block.
	OnPassivate func(*userservice.State)
}

func (c Config) withDefaults() (Config, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Owners == 0 {
		c.Owners = 256
	}
	if c.MaxActive == 0 {
		c.MaxActive = 100_000
	}
	switch {
	case c.Owners < 128:
		return c, fmt.Errorf("cannot configure actors: Owners must be at least 128, got %d", c.Owners)
	case c.MaxActive < 0:
		return c, fmt.Errorf("cannot configure actors: MaxActive must be positive, got %d", c.MaxActive)
	case c.IdleTimeout < 0 || c.CallTimeout < 0 || c.LoadTimeout < 0 || c.TouchInterval < 0:
		return c, errors.New("cannot configure actors: durations must not be negative")
	case c.IdleTimeout > 0 && c.IdleTimeout < time.Millisecond:
		// Shorter would passivate actors between the messages of one request.
		return c, fmt.Errorf("cannot configure actors: IdleTimeout must be at least 1ms, got %s", c.IdleTimeout)
	}
	def(&c.IdleTimeout, 10*time.Minute)
	def(&c.CallTimeout, 5*time.Second)
	def(&c.LoadTimeout, 5*time.Second)
	def(&c.TouchInterval, time.Minute)
	return c, nil
}

// Registry is the local [userservice.Users]: one virtual actor per user id, spread
// over sharded owner actors in one protoactor actor system. It is safe for
// concurrent use.
type Registry struct {
	cfg       Config
	perOwner  int // ceil(MaxActive/Owners)
	loader    userservice.StateLoader
	committer userservice.Committer
	log       *slog.Logger
	hooks     hooks

	system     *actor.ActorSystem
	owners     []*actor.PID
	childProps *actor.Props
	live       *liveActors // started user actors, for direct reads (hot.go)

	closed atomic.Bool
	// pending counts requests handed to the actors and not yet answered by them,
	// including those whose caller stopped waiting: Shutdown waits for it to drain
	// so every accepted write completes.
	pending     atomic.Int64
	active      atomic.Int64
	activations atomic.Uint64
}

var _ userservice.Users = (*Registry)(nil)

// hooks let tests observe the life of user actors (activation overlap).
type hooks struct {
	started func(userID string)
	stopped func(userID string)
}

// ErrShuttingDown is returned by calls made after Shutdown began. Its code is
// ECodeUnavailable.
var ErrShuttingDown = &userservice.Error{Code: userservice.ECodeUnavailable, Message: "Service is shutting down"}

// New starts the actor system and the owner actors. loader, committer and logger
// are required.
func New(cfg Config, loader userservice.StateLoader, committer userservice.Committer, logger *slog.Logger) (*Registry, error) {
	return newRegistry(cfg, loader, committer, logger, hooks{})
}

func newRegistry(cfg Config, loader userservice.StateLoader, committer userservice.Committer, logger *slog.Logger, h hooks) (*Registry, error) {
	switch {
	case loader == nil:
		return nil, errors.New("cannot create actor registry: nil state loader")
	case committer == nil:
		return nil, errors.New("cannot create actor registry: nil committer")
	case logger == nil:
		return nil, errors.New("cannot create actor registry: nil logger")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	actorsMax.Set(float64(cfg.MaxActive))
	r := &Registry{
		cfg:       cfg,
		perOwner:  max(1, (cfg.MaxActive+cfg.Owners-1)/cfg.Owners),
		loader:    loader,
		committer: committer,
		log:       logger,
		hooks:     h,
		live:      newLiveActors(),
	}
	// protoactor logs dead letters and its own start at Info; keep only its warnings.
	libLog := slog.New(minLevel{logger.Handler(), slog.LevelWarn}).With("component", "protoactor")
	r.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return libLog }))
	r.system.EventStream.Subscribe(r.deadLetter)
	r.childProps = actor.PropsFromProducer(func() actor.Actor { return &userActor{reg: r} },
		actor.WithMailbox(actor.UnboundedLockfree()), actor.WithDispatcher(mailboxWorkers))
	// A user actor that panics is stopped, not restarted: a restart would forget
	// its queue and its commit in flight. The owner sees Terminated and forgets it.
	stopOnFailure := actor.NewOneForOneStrategy(0, 0, func(reason any) actor.Directive {
		logger.Error("user actor failed; stopping it", slog.Any("reason", reason))
		return actor.StopDirective
	})
	ownerProps := actor.PropsFromProducer(func() actor.Actor { return newOwner(r) },
		actor.WithSupervisor(stopOnFailure), actor.WithDispatcher(mailboxWorkers))
	r.owners = make([]*actor.PID, cfg.Owners)
	for i := range r.owners {
		r.owners[i] = r.system.Root.Spawn(ownerProps)
	}
	return r, nil
}

// Get implements [userservice.Users].
func (r *Registry) Get(ctx context.Context, userID string, touch *userservice.Time) (*userservice.State, error) {
	if s := r.live.published(userID); s != nil && !r.touchDue(s, touch) && ctx.Err() == nil && !r.closed.Load() {
		directReads.Inc()
		return s, nil
	}
	deadline := r.deadline(ctx)
	v, err := r.call(ctx, userID, &get{request: request{userID: userID, sent: time.Now(), deadline: deadline}, touch: touch}, deadline)
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case *userservice.State:
		return v, nil
	case error:
		return nil, v
	}
	return nil, unexpectedReply(v)
}

// Execute implements [userservice.Users].
func (r *Registry) Execute(ctx context.Context, userID string, cmd userservice.Command, meta userservice.Meta) (*userservice.Outcome, error) {
	deadline := r.deadline(ctx)
	v, err := r.call(ctx, userID, &execute{request: request{userID: userID, sent: time.Now(), deadline: deadline}, cmd: cmd, meta: meta}, deadline)
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case *userservice.Outcome:
		return v, nil
	case error:
		return nil, v
	}
	return nil, unexpectedReply(v)
}

// Reload makes the user's actor (activating it if needed) load its state again
// before it serves anything sent after this call returns.
func (r *Registry) Reload(ctx context.Context, userID string) error {
	deadline := r.deadline(ctx)
	v, err := r.call(ctx, userID, &reload{request: request{userID: userID, sent: time.Now(), deadline: deadline}}, deadline)
	if err != nil {
		return err
	}
	switch v := v.(type) {
	case *reloadDone:
		return nil
	case error:
		return v
	}
	return unexpectedReply(v)
}

// ActiveCount returns the number of user actors in memory (including those being
// passivated).
func (r *Registry) ActiveCount() int { return int(r.active.Load()) }

// Activations returns how many user actors were started since New.
func (r *Registry) Activations() uint64 { return r.activations.Load() }

// Shutdown stops accepting calls, waits until every request already handed to an
// actor is answered (so accepted writes are committed or failed), then stops the
// actors. If ctx ends first it stops them anyway and returns an error.
func (r *Registry) Shutdown(ctx context.Context) error {
	if !r.closed.CompareAndSwap(false, true) {
		return nil
	}
	var err error
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for err == nil && r.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("cannot drain actors (%d requests in flight): %w", r.pending.Load(), ctx.Err())
		case <-tick.C:
		}
	}
	stopped := make(chan struct{})
	go func() {
		// protoactor's stop futures time out by themselves (10s).
		futures := make([]*actor.Future, len(r.owners))
		for i, pid := range r.owners {
			futures[i] = r.system.Root.StopFuture(pid)
		}
		for _, f := range futures {
			_ = f.Wait()
		}
		r.system.Shutdown()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		if err == nil {
			err = fmt.Errorf("cannot stop actors: %w", ctx.Err())
		}
	}
	return err
}

func (r *Registry) deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(r.cfg.CallTimeout)
}

// call sends msg to the user's owner, with the caller's channel for the answer
// (request.reply), and waits for the reply or the deadline. A caller that stops
// waiting does not stop the actor: a write already started still completes.
func (r *Registry) call(ctx context.Context, userID string, msg requester, deadline time.Time) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, timeoutError(err)
	}
	r.pending.Add(1)
	if r.closed.Load() {
		r.pending.Add(-1)
		return nil, ErrShuttingDown
	}
	reply := make(chan any, 1)
	msg.req().reply = reply
	r.system.Root.Send(r.ownerOf(userID), msg)

	var expire <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expire = t.C
	}
	select {
	case v := <-reply:
		return v, nil
	case <-ctx.Done():
		return nil, timeoutError(ctx.Err())
	case <-expire:
		return nil, timeoutError(context.DeadlineExceeded)
	}
}

// touchDue reports whether a read with touch must record activity on s: its
// stored lastActiveAt is unset or TouchInterval older than touch.
func (r *Registry) touchDue(s *userservice.State, touch *userservice.Time) bool {
	return touch != nil && (s.User.LastActiveAt == nil || touch.Sub(s.User.LastActiveAt.Time) >= r.cfg.TouchInterval)
}

// answered is called by a user actor once per request it answered or dropped
// because its caller had given up.
func (r *Registry) answered() { r.pending.Add(-1) }

// reply answers a request on its caller's channel, which is buffered for the one
// answer (a second would be a bug upstream: it is dropped rather than block an
// actor), and counts it answered.
func (r *Registry) reply(to chan<- any, v any) {
	select {
	case to <- v:
	default:
	}
	r.answered()
}

// deadLetter answers a request that protoactor could not deliver (sent to an actor
// that no longer exists) with the DeadLetterResponse a reply process used to get,
// which the caller maps to ErrShuttingDown; no actor will answer it.
func (r *Registry) deadLetter(evt any) {
	if dl, ok := evt.(*actor.DeadLetterEvent); ok {
		if m, ok := dl.Message.(requester); ok {
			r.reply(m.req().reply, &actor.DeadLetterResponse{Target: dl.PID})
		}
	}
}

// ownerOf hashes the user id (FNV-1a, 32 bits) to its owner.
func (r *Registry) ownerOf(userID string) *actor.PID {
	return r.owners[fnv32(userID)%uint32(len(r.owners))]
}

func timeoutError(cause error) error {
	return userservice.Wrap(userservice.ECodeTimeout, "The request timed out", cause)
}

func unexpectedReply(v any) error {
	if _, ok := v.(*actor.DeadLetterResponse); ok {
		return ErrShuttingDown
	}
	return userservice.Wrap(userservice.ECodeInternal, "Internal server error", fmt.Errorf("unexpected actor reply %T", v))
}

// minLevel drops records below level; it quiets protoactor's own logging.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}
