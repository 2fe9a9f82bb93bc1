package actors

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	userservice "github.com/lms-platform/userservice"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// grain is the cluster kind "user": the entry point of one user on its owner node.
// It holds no state of its own; it gates the local Registry's user actor. Until
// its activation is acquired (every other node released the user, see acquire) it
// queues requests; once aborted it answers "moved" and stops.
type grain struct {
	c          *Cluster
	h          *handle
	ready      bool
	queue      []queuedCall
	lastActive time.Time
	idle       *time.Timer
	self       *actor.PID
	stopping   bool // grainStop scheduled
}

type queuedCall struct {
	m      *wireMsg
	sender *actor.PID
}

// activated is the result of acquire, sent to the grain.
type activated struct{ err error }

// grainIdle is posted by the grain's idle timer.
type grainIdle struct{}

func (*grainIdle) IgnoreDeadLetterLogging() {}

// queueExpiry asks the grain to answer "moved" to queued calls whose callers are
// about to give up (see queueMargin).
type queueExpiry struct{}

func (*queueExpiry) IgnoreDeadLetterLogging() {}

// queueMargin is how long before its caller's deadline a call still queued behind
// an activation is answered "moved": the caller then knows it did not run and
// answers 503 with Retry-After, instead of timing out on a write whose outcome
// it cannot know (and the call never runs after its caller left).
const queueMargin = 250 * time.Millisecond

// grainStop ends an aborted grain after its grace period.
type grainStop struct{}

func (*grainStop) IgnoreDeadLetterLogging() {}

// grainFinal ends a grain that unregistered itself: everything posted to its
// mailbox before it is answered (see the grainStop case of Receive). proc is the
// grain's process, through which the stop still reaches it (its PID no longer
// resolves).
type grainFinal struct{ proc actor.Process }

func (*grainFinal) IgnoreDeadLetterLogging() {}

// finalGrace is how long an unregistered grain keeps answering what was posted
// to it: a sender that resolved the PID just before it was unregistered posts a
// few microseconds later.
const finalGrace = 50 * time.Millisecond

// grainPoisoned replaces a PoisonPill (the placement actor poisons grains whose
// owner moved; release poisons too): protoactor drops what is left in a stopped
// actor's mailbox, so a poisoned grain first answers "moved" for stopGrace, and
// only then stops.
type grainPoisoned struct{}

// stopGrace is how long an aborted grain answers "moved" before it stops: callers
// that still route to it learn to ask again instead of losing their message.
const stopGrace = 300 * time.Millisecond

// interceptPoison is the receive middleware of the grain kind that turns a
// PoisonPill into grainPoisoned.
func interceptPoison(next actor.ReceiverFunc) actor.ReceiverFunc {
	return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
		if _, ok := env.Message.(*actor.PoisonPill); ok {
			env = &actor.MessageEnvelope{Header: env.Header, Message: &grainPoisoned{}, Sender: env.Sender}
		}
		next(c, env)
	}
}

// Receive implements actor.Actor.
func (g *grain) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *cluster.ClusterInit:
		g.start(ctx, m.Identity.Identity)
	case *wrapperspb.BytesValue:
		w, err := decodeWire(m)
		if err != nil {
			g.c.log.Error("bad cluster request", slog.Any("error", err))
			return
		}
		g.request(ctx, w)
	case *wireMsg: // from this node: not serialized
		g.request(ctx, m)
	case *activated:
		if m.err != nil && errors.Is(m.err, userservice.ErrPlacementInFlux) && !g.h.isAborted() &&
			g.c.valid() && !g.c.closing.Load() {
			// Still this user's owner, but a peer has neither released it nor let its
			// lease lapse within the deadline: keep acquiring. Answering "moved" and
			// stopping instead would send callers straight back here (the placement
			// has not changed) to a grain that never gets quiet enough to stop.
			// Queued callers near their deadline are answered by queueExpiry.
			h, c, self, root := g.h, g.c, ctx.Self(), g.c.system.Root
			go func() { root.Send(self, &activated{err: c.acquire(h, time.Now().Add(c.cfg.CallTimeout))}) }()
			return
		}
		q := g.queue
		g.queue = nil
		if m.err != nil || g.h.isAborted() {
			for _, call := range q {
				g.moved(call.sender)
			}
			g.stop(ctx)
			return
		}
		g.ready = true
		if f := g.c.cfg.hooks.ready; f != nil {
			f(g.c.addr, g.h.userID)
		}
		for _, call := range q {
			g.dispatch(call.m, call.sender)
		}
	case *queueExpiry:
		now := time.Now()
		kept := g.queue[:0]
		for _, call := range g.queue {
			if !now.Before(call.m.deadline().Add(-queueMargin)) {
				g.moved(call.sender)
				continue
			}
			kept = append(kept, call)
		}
		clear(g.queue[len(kept):])
		g.queue = kept
	case *grainPoisoned:
		// The identity lookup moved this user to another node (a topology change).
		if g.ready && g.h != nil && !g.h.isAborted() {
			clusterHandoffs.Inc()
		}
		g.stop(ctx)
	case *grainStop:
		// Stop only after a quiet stopGrace: while callers still send here (their
		// views or caches lag) keep answering "moved".
		if quiet := time.Since(g.lastActive); quiet < stopGrace {
			self, root := ctx.Self(), g.c.system.Root
			time.AfterFunc(stopGrace-quiet, func() { root.Send(self, &grainStop{}) })
			return
		}
		if f := g.c.cfg.hooks.stopping; f != nil && g.h != nil {
			f(g.c.addr, g.h.userID)
		}
		// A stopping actor drops what is left in its mailbox without a word, and a
		// caller whose write was dropped so could only time out, not knowing the
		// outcome. So the grain first leaves the process registry — a call sent
		// from now on is a dead letter, which its caller retries elsewhere — and
		// answers what its mailbox already holds; grainFinal, posted behind it
		// through the process itself (the PID no longer resolves), stops it.
		self := ctx.Self()
		proc, ok := g.c.system.ProcessRegistry.GetLocal(self.Id)
		if !ok {
			ctx.Stop(self)
			return
		}
		g.c.system.ProcessRegistry.Remove(self)
		time.AfterFunc(finalGrace, func() { proc.SendUserMessage(self, &grainFinal{proc: proc}) })
	case *grainFinal:
		m.proc.Stop(ctx.Self())
	case *grainIdle:
		idle := g.c.local.cfg.IdleTimeout
		if rest := idle - time.Since(g.lastActive); rest > 0 || !g.ready {
			g.idle.Reset(max(rest, idle/4))
			return
		}
		g.stop(ctx)
	case *actor.Stopped:
		if g.idle != nil {
			g.idle.Stop()
		}
		if h := g.h; h != nil {
			go g.c.forget(h)
		}
	}
}

// request admits, queues or refuses one call.
func (g *grain) request(ctx actor.Context, w *wireMsg) {
	g.lastActive = time.Now()
	switch {
	case g.h == nil || g.h.isAborted():
		g.moved(ctx.Sender())
		g.stop(ctx)
	case !g.ready:
		g.queue = append(g.queue, queuedCall{m: w, sender: ctx.Sender()})
		self, root := ctx.Self(), g.c.system.Root
		time.AfterFunc(time.Until(w.deadline().Add(-queueMargin)), func() { root.Send(self, &queueExpiry{}) })
	default:
		g.dispatch(w, ctx.Sender())
	}
}

// start registers the activation and starts acquiring it.
func (g *grain) start(ctx actor.Context, userID string) {
	c := g.c
	g.self = ctx.Self()
	h := newHandle(userID)
	h.pid = ctx.Self()
	c.mu.Lock()
	if c.closing.Load() || !c.valid() {
		h.aborted = true
	}
	if old := c.grains[userID]; old != nil {
		// A previous activation here still registered: it admits nothing from now
		// on, and whoever aborts this one also waits for its requests.
		old.mu.Lock()
		old.aborted = true
		old.mu.Unlock()
		h.prev = old
	}
	c.grains[userID] = h
	c.mu.Unlock()
	g.h = h
	g.lastActive = time.Now()
	self, root := ctx.Self(), c.system.Root
	g.idle = time.AfterFunc(c.local.cfg.IdleTimeout, func() { root.Send(self, &grainIdle{}) })
	go func() {
		h.mu.Lock()
		old := h.prev
		h.mu.Unlock()
		if old != nil { // an earlier local activation of the same user finishes first
			old.abort()
		}
		root.Send(self, &activated{err: c.acquire(h, time.Now().Add(c.cfg.CallTimeout))})
	}()
}

// stop ends the activation: it takes no more requests, answers "moved" for
// stopGrace, then stops.
func (g *grain) stop(ctx actor.Context) {
	if g.h != nil {
		g.h.mu.Lock()
		g.h.aborted = true
		g.h.mu.Unlock()
	}
	if g.stopping {
		return
	}
	g.stopping = true
	self, root := ctx.Self(), g.c.system.Root
	time.AfterFunc(stopGrace, func() { root.Send(self, &grainStop{}) })
}

// forget removes a stopped activation once its requests in flight are answered
// (a release that finds it meanwhile waits for them too).
func (c *Cluster) forget(h *handle) {
	h.abort()
	c.mu.Lock()
	if c.grains[h.userID] == h {
		delete(c.grains, h.userID)
	}
	c.mu.Unlock()
}

func (g *grain) moved(to *actor.PID) {
	g.c.send(to, &wireMsg{Kind: wireMoved})
}

// dispatch hands the request to the local Registry and answers the caller from the
// goroutine that waits for it. The handle counts it so a release waits for it.
func (g *grain) dispatch(w *wireMsg, sender *actor.PID) {
	c, h := g.c, g.h
	if !h.enter() {
		g.moved(sender)
		return
	}
	go func() {
		defer h.leave()
		ctx, cancel := context.WithDeadline(context.Background(), w.deadline())
		defer cancel()
		reply := &wireMsg{Kind: wireReply}
		switch w.Kind {
		case wireGet:
			st, err := c.local.Get(ctx, w.UserID, w.Touch)
			switch {
			case !c.valid():
				reply.Kind = wireMoved // fenced while reading: never answer from it
			case err != nil:
				reply.Err = toWireError(err)
			default:
				reply.State = st
				if f := c.cfg.hooks.reply; f != nil {
					f(c.addr, w.UserID)
				}
			}
		case wireExecute:
			meta := w.Meta
			if meta.Idempotency != nil {
				status, body := w.IdemStatus, w.IdemBody
				idem := *meta.Idempotency
				idem.Render = func(*userservice.Outcome) (int, []byte) { return status, body }
				meta.Idempotency = &idem
			}
			out, err := c.local.Execute(ctx, w.UserID, w.Cmd, meta)
			switch {
			case errors.Is(err, userservice.ErrStaleVersion) || errors.Is(err, ErrShuttingDown):
				// Nothing was written: another activation wrote first (the local actor
				// dropped its copy and reloads), or this node is leaving. Re-route.
				reply.Kind = wireMoved
			case err != nil:
				reply.Err = toWireError(err)
			default:
				reply.Outcome = toWireOutcome(out)
			}
		}
		c.send(sender, reply)
	}()
}
