package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/asynkron/protoactor-go/actor"
	userservice "github.com/lms-platform/userservice"
)

// Request latencies inside the actors are micro- to milliseconds; the default
// buckets start at 5ms.
var actorBuckets = []float64{
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
}

var (
	// mailboxWait is the time from a caller's send to the user actor's first Receive
	// of the request (owner hop and the child's mailbox).
	mailboxWait     = metrics.NewPrometheusHistogramExt("user_service_actor_mailbox_wait_seconds", actorBuckets)
	messageDuration = metrics.NewPrometheusHistogramExt("user_service_actor_message_duration_seconds", actorBuckets)
	loadErrors      = metrics.NewCounter("user_service_actor_load_errors_total")
)

type phase uint8

const (
	phaseLoading phase = iota // LoadState in flight; requests wait in queue
	phaseReady                // state (nil: unknown user) is the committed one
	phaseFailed               // the last load failed; the next request retries it
)

// userActor holds one user's committed state and is the only writer of that user.
// Nothing in Receive blocks: loads and commits run elsewhere and come back as
// messages.
type userActor struct {
	reg    *Registry
	userID string
	phase  phase
	state  *userservice.State // committed; nil when the user does not exist
	// queue holds requests in arrival order while loading, and executes while a
	// commit is in flight (gets are answered at once from the committed state then).
	queue       []held
	inflight    *inflight // the command whose mutation is being committed
	passivating bool      // passivateRequest sent, no confirm yet
	owesIdle    bool      // cancelled a passivation for being busy; tell the owner when idle
	// lastActive is when the actor last had something to do; idle fires at most
	// once per IdleTimeout and re-arms for the rest, so a busy actor costs no timer
	// operation per message.
	lastActive time.Time
	idle       *time.Timer
	self       *actor.PID
	// published is the committed state direct reads may serve (hot.go), nil while
	// a read must come as a message; seen is set by those reads.
	published atomic.Pointer[userservice.State]
	seen      atomic.Uint32
}

// inflight is a command waiting for its commit.
type inflight struct {
	outcome *userservice.Outcome
	to      chan<- any
}

// Receive implements actor.Actor.
func (u *userActor) Receive(ctx actor.Context) {
	start := time.Now()
	defer messageDuration.UpdateDuration(start)
	defer u.noticeIdle(ctx)
	switch m := ctx.Message().(type) {
	case *get:
		mailboxWait.Update(start.Sub(m.sent).Seconds())
		u.lastActive = start
		if u.phase == phaseReady {
			u.get(m, start)
		} else {
			u.enqueue(ctx, m)
		}
	case *execute:
		mailboxWait.Update(start.Sub(m.sent).Seconds())
		u.lastActive = start
		if u.phase == phaseReady && u.inflight == nil && len(u.queue) == 0 {
			u.execute(ctx, m, start)
		} else {
			u.enqueue(ctx, m)
		}
	case *reload:
		u.lastActive = start
		if u.phase == phaseReady && u.inflight == nil && len(u.queue) == 0 {
			u.reload(ctx, m)
		} else {
			u.enqueue(ctx, m)
		}
	case *loaded:
		u.lastActive = start
		u.loaded(ctx, m)
	case *commitResult:
		u.lastActive = start
		u.committed(ctx, m)
	case *idleCheck:
		if u.passivating {
			return // the owner's confirm is on its way
		}
		if u.seen.And(^seenIdle)&seenIdle != 0 {
			u.lastActive = start // read directly since the last check
		}
		if rest := u.reg.cfg.IdleTimeout - start.Sub(u.lastActive); rest > 0 || u.busy() {
			u.idle.Reset(max(rest, u.reg.cfg.IdleTimeout/4))
			return
		}
		u.requestPassivation(ctx)
	case *passivateConfirm:
		u.passivating = false
		if u.busy() {
			ctx.Send(ctx.Parent(), &passivateCancel{userID: u.userID, child: ctx.Self()})
			passivationsCancelled.Inc()
			u.owesIdle = true
			u.lastActive = start
			u.idle.Reset(u.reg.cfg.IdleTimeout)
			return
		}
		if f := u.reg.cfg.OnPassivate; f != nil && u.state != nil {
			f(u.state)
		}
		// Safe: the owner forwards nothing more and no load or commit will answer, so
		// the mailbox holds nothing that stopping would drop (an idleCheck at most).
		ctx.Stop(ctx.Self())
	case *actor.Started:
		u.self = ctx.Self()
		u.userID = userIDOf(ctx.Parent(), u.self)
		if h := u.reg.hooks.started; h != nil {
			h(u.userID)
		}
		u.lastActive = start
		u.idle = time.AfterFunc(u.reg.cfg.IdleTimeout, u.idleFired)
		u.reg.live.add(u.userID, u)
		u.load(ctx)
	case *actor.Stopped:
		u.published.Store(nil)
		u.reg.live.remove(u.userID, u)
		if u.idle != nil {
			u.idle.Stop()
		}
		if h := u.reg.hooks.stopped; h != nil {
			h(u.userID)
		}
	}
}

// idleFired runs on the timer's goroutine: it only posts a message (self and reg
// are set before the timer exists and never change).
func (u *userActor) idleFired() { u.reg.system.Root.Send(u.self, &idleCheck{}) }

// noticeIdle tells the owner, once, that the work that made this actor cancel a
// passivation is done, so the owner may pick it again (owner.enforceCap).
func (u *userActor) noticeIdle(ctx actor.Context) {
	if u.owesIdle && !u.busy() {
		u.owesIdle = false
		ctx.Send(ctx.Parent(), &idleNotice{userID: u.userID, child: u.self})
	}
}

// busy reports whether the actor has work that a stop would lose.
func (u *userActor) busy() bool {
	return u.phase == phaseLoading || u.inflight != nil || len(u.queue) > 0
}

func (u *userActor) enqueue(ctx actor.Context, msg any) {
	u.queue = append(u.queue, held{msg: msg})
	if u.phase == phaseFailed {
		u.load(ctx) // the previous load failed; this request retries it
	}
}

// load starts LoadState in a goroutine that sends the result back as loaded.
func (u *userActor) load(ctx actor.Context) {
	u.phase = phaseLoading
	u.published.Store(nil)
	self, root := ctx.Self(), u.reg.system.Root
	loader, userID, timeout := u.reg.loader, u.userID, u.reg.cfg.LoadTimeout
	go func() {
		lctx, cancel := context.WithTimeout(context.Background(), timeout)
		s, err := loader.LoadState(lctx, userID)
		cancel()
		root.Send(self, &loaded{state: s, err: err})
	}()
}

func (u *userActor) loaded(ctx actor.Context, m *loaded) {
	switch {
	case m.err == nil || errors.Is(m.err, userservice.ErrUserNotFound):
		u.state = m.state
		if m.err != nil {
			u.state = nil
		}
		u.phase = phaseReady
		u.published.Store(u.state)
		u.drain(ctx)
	default:
		// Nothing to serve from: fail the waiting requests and let the owner stop us,
		// so the next request starts over with a fresh load.
		loadErrors.Inc()
		u.reg.log.Warn("cannot load user state", slog.String("userId", u.userID), slog.Any("error", m.err))
		u.phase, u.state = phaseFailed, nil
		err := userservice.Wrap(userservice.ECodeUnavailable, "User data is temporarily unavailable", m.err)
		for _, h := range u.queue {
			u.reply(h.msg.(requester).req().reply, err)
		}
		u.queue = nil
		u.requestPassivation(ctx)
	}
}

// drain runs queued requests in order until the queue is empty or a commit starts.
func (u *userActor) drain(ctx actor.Context) {
	for len(u.queue) > 0 && u.phase == phaseReady && u.inflight == nil {
		h := u.queue[0]
		u.queue[0] = held{}
		u.queue = u.queue[1:]
		switch m := h.msg.(type) {
		case *get:
			u.get(m, time.Now())
		case *execute:
			u.execute(ctx, m, time.Now())
		case *reload:
			u.reload(ctx, m)
		}
	}
	if len(u.queue) == 0 {
		u.queue = nil // an idle actor keeps no buffer
	}
}

// reload acknowledges and starts a fresh load; what is queued after it waits.
func (u *userActor) reload(ctx actor.Context, m *reload) {
	u.published.Store(nil) // before the answer: nothing sent after it may read the old state
	u.reply(m.reply, &reloadDone{})
	u.load(ctx)
}

// get answers with the committed state, recording activity first when asked to
// and the stored lastActiveAt is older than TouchInterval.
func (u *userActor) get(m *get, now time.Time) {
	if m.expired(now) {
		u.reg.answered()
		return
	}
	s := u.state
	if s == nil {
		u.reply(m.reply, userservice.ErrUserNotFound)
		return
	}
	if u.reg.touchDue(s, m.touch) {
		// States are immutable: publish a copy (sharing the maps) with the new time.
		next, at := *s, *m.touch
		next.User.LastActiveAt = &at
		u.state, s = &next, &next
		u.published.Store(s)
		u.reg.committer.TouchLastActive(u.userID, at)
	}
	u.reply(m.reply, s)
}

// execute applies a command and, when it changed something, commits it; the reply
// waits for the commit.
func (u *userActor) execute(ctx actor.Context, m *execute, now time.Time) {
	if m.expired(now) {
		// Its caller was told "timeout" (outcome unknown); not running a command
		// nobody waits for keeps an overloaded actor from falling further behind.
		u.reg.answered()
		return
	}
	meta := m.meta
	meta.Quotas = u.reg.cfg.Quotas
	out, err := apply(u.state, m.cmd, meta)
	switch {
	case err != nil:
		if userservice.ErrorCode(err) == userservice.ECodeInternal {
			u.reg.log.Error("cannot apply command", slog.String("userId", u.userID), slog.Any("error", err))
		}
		u.reply(m.reply, err)
	case out.Mutation == nil:
		u.reply(m.reply, out)
	default:
		u.inflight = &inflight{outcome: out, to: m.reply}
		self, root := ctx.Self(), u.reg.system.Root
		u.reg.committer.Commit(out.Mutation, func(err error) { root.Send(self, &commitResult{err: err}) })
	}
}

// committed finishes the command in flight: on success the new state becomes the
// committed one; on an error that says nothing was written the state stays; on any
// other error the actor reloads before doing anything else, so nothing
// half-applied stays in memory.
func (u *userActor) committed(ctx actor.Context, m *commitResult) {
	c := u.inflight
	u.inflight = nil
	if c == nil {
		return
	}
	if m.err == nil {
		next := c.outcome.State
		if cur := u.state; cur != nil && newer(cur.User.LastActiveAt, next.User.LastActiveAt) {
			// A touch landed while the commit was in flight; keep it.
			cp := *next
			cp.User.LastActiveAt = cur.User.LastActiveAt
			next = &cp
		}
		u.state = next
		u.published.Store(next) // before the answer: a read after it sees the write
		if f := u.reg.cfg.OnCommit; f != nil {
			f(next)
		}
		u.reply(c.to, c.outcome)
		u.drain(ctx)
		return
	}
	if nothingWritten(m.err) {
		u.reply(c.to, m.err)
		u.drain(ctx)
		return
	}
	// Withdrawn before the answer: once the caller hears "unknown", reads wait
	// for the reload, as they do through the mailbox.
	u.published.Store(nil)
	u.reply(c.to, m.err)
	u.reg.log.Warn("commit outcome unknown; reloading user state", slog.String("userId", u.userID), slog.Any("error", m.err))
	u.load(ctx)
}

func (u *userActor) requestPassivation(ctx actor.Context) {
	if u.passivating {
		return
	}
	u.passivating = true
	ctx.Send(ctx.Parent(), &passivateRequest{userID: u.userID, child: ctx.Self()})
}

// reply answers a request; every request gets exactly one reply (or is dropped
// once its caller gave up), which is what Shutdown counts on.
func (u *userActor) reply(to chan<- any, v any) { u.reg.reply(to, v) }

// apply runs userservice.Apply; a panic in it becomes an internal error, and
// since Apply never changes the state it was given, the actor carries on.
func apply(s *userservice.State, cmd userservice.Command, meta userservice.Meta) (out *userservice.Outcome, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, userservice.Wrap(userservice.ECodeInternal, "Internal server error", fmt.Errorf("panic applying %T: %v", cmd, p))
		}
	}()
	return userservice.Apply(s, cmd, meta)
}

// nothingWritten reports whether a commit error guarantees that nothing of the
// mutation was written (a 4xx-class code), so the in-memory state is still right.
func nothingWritten(err error) bool {
	switch userservice.ErrorCode(err) {
	case userservice.ECodeValidation, userservice.ECodeConflict, userservice.ECodeAlreadyEnrolled,
		userservice.ECodeNotFound, userservice.ECodeVersionMismatch, userservice.ECodeIdempotencyKeyReuse:
		return true // includes ErrDuplicateMessage and ErrIdempotencyKeyTaken (CONFLICT)
	}
	return false // ErrStaleVersion, unavailable, timeouts, anything unknown
}

func newer(a, b *userservice.Time) bool {
	return a != nil && (b == nil || a.After(b.Time))
}
