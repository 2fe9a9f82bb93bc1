package actors

import (
	"log/slog"
	"strings"

	"github.com/VictoriaMetrics/metrics"
	"github.com/asynkron/protoactor-go/actor"
)

var (
	actorsActive          = metrics.NewGauge("user_service_actors_active", nil)
	actorsMax             = metrics.NewGauge("user_service_actors_max", nil) // ACTOR_MAX_ACTIVE, for the "near the bound" alert
	actorActivations      = metrics.NewCounter("user_service_actor_activations_total")
	actorPassivations     = metrics.NewCounter("user_service_actor_passivations_total")
	actorUnexpectedStops  = metrics.NewCounter("user_service_actor_unexpected_stops_total")
	passivationsCancelled = metrics.NewCounter("user_service_actor_passivations_cancelled_total")
	overCapWaits          = metrics.NewCounter("user_service_actor_over_cap_waits_total")
)

// owner is the parent of the user actors whose ids hash to it. It alone decides
// when a child exists: it spawns on demand, forwards requests (the caller stays the
// sender), runs the passivation handshake and bounds its children to perOwner.
type owner struct {
	reg      *Registry
	entries  map[string]*entry // by user id; the key is a substring of the child's PID id
	draining int               // entries with passivating set
	clock    uint64            // bumped per routed message: the LRU order
	stopping bool
}

// entry is one child as its owner sees it.
type entry struct {
	pid         *actor.PID
	lastUsed    uint64
	passivating bool // confirm sent; messages go to buffer until Terminated or cancel
	// deferred: the child cancelled a passivation for being busy; it is no eviction
	// candidate until its idleNotice.
	deferred bool
	buffer   []held // in arrival order
}

// held is a message buffered while its user's child passivates.
type held struct {
	msg any
}

func newOwner(r *Registry) *owner {
	return &owner{reg: r, entries: map[string]*entry{}}
}

// Receive implements actor.Actor.
func (o *owner) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *get:
		o.route(ctx, m.userID)
	case *execute:
		o.route(ctx, m.userID)
	case *reload:
		o.route(ctx, m.userID)
	case *passivateRequest:
		if e := o.entries[m.userID]; e != nil && e.pid == m.child && !e.passivating {
			o.passivate(ctx, e)
		}
	case *passivateCancel:
		e := o.entries[m.userID]
		if e == nil || e.pid != m.child || !e.passivating {
			return
		}
		e.passivating = false
		e.deferred = true // until the child reports idle
		o.draining--
		for _, h := range e.buffer {
			ctx.Send(e.pid, h.msg)
		}
		e.buffer = nil
		o.enforceCap(ctx)
	case *idleNotice:
		if e := o.entries[m.userID]; e != nil && e.pid == m.child && e.deferred {
			e.deferred = false
			o.enforceCap(ctx)
		}
	case *actor.Terminated:
		o.terminated(ctx, m.Who)
	case *actor.Stopping:
		o.stopping = true
	}
}

// route forwards the current request to the user's child, spawning it if needed,
// or buffers it while the child passivates.
func (o *owner) route(ctx actor.Context, userID string) {
	o.clock++
	e := o.entries[userID]
	if e == nil {
		e = o.activate(ctx, userID)
	}
	e.lastUsed = o.clock
	if e.passivating {
		e.buffer = append(e.buffer, held{msg: ctx.Message()})
		return
	}
	ctx.Forward(e.pid)
}

// activate spawns a child for userID. The child's id is "<owner>/<userID>$<seq>":
// unique per activation (never a reused name), and it carries the user id, so the
// map key and the child's own userID are substrings of it and Terminated maps back
// to the entry without a second map.
func (o *owner) activate(ctx actor.Context, userID string) *entry {
	pid := ctx.SpawnPrefix(o.reg.childProps, userID)
	e := &entry{pid: pid, lastUsed: o.clock}
	o.entries[userIDOf(ctx.Self(), pid)] = e
	o.reg.active.Add(1)
	o.reg.activations.Add(1)
	actorsActive.Inc()
	actorActivations.Inc()
	o.enforceCap(ctx)
	return e
}

// enforceCap starts passivating least recently used children while more than
// perOwner are not already passivating. Children known to be busy (deferred) are
// skipped: when every other child is passivating, the owner stays over its cap
// until a busy child reports idle (idleNotice) or a passivation completes, so the
// cap is soft while more users than it are busy at once, and no message is spent
// asking a busy child again.
//
// A child read directly (hot.go) since the owner last looked counts as used now:
// it is spared once and the choice made again, at most once per child per call.
func (o *owner) enforceCap(ctx actor.Context) {
	spared := 0
	for len(o.entries)-o.draining > o.reg.perOwner {
		var lru *entry
		var lruID string
		for id, e := range o.entries {
			if !e.passivating && !e.deferred && (lru == nil || e.lastUsed < lru.lastUsed) {
				lru, lruID = e, id
			}
		}
		if lru == nil {
			overCapWaits.Inc()
			return
		}
		if u := o.reg.live.get(lruID); u != nil && spared < len(o.entries) && u.seen.And(^seenLRU)&seenLRU != 0 {
			spared++
			o.clock++
			lru.lastUsed = o.clock
			continue
		}
		o.passivate(ctx, lru)
	}
}

// passivate stops forwarding to e and tells its child it may stop.
func (o *owner) passivate(ctx actor.Context, e *entry) {
	e.passivating = true
	o.draining++
	ctx.Send(e.pid, &passivateConfirm{})
}

// terminated forgets a stopped child and, when messages were buffered for its user,
// spawns its successor and replays them in order.
func (o *owner) terminated(ctx actor.Context, who *actor.PID) {
	userID := userIDOf(ctx.Self(), who)
	e := o.entries[userID]
	if e == nil || e.pid.Id != who.Id {
		return
	}
	delete(o.entries, userID)
	o.reg.active.Add(-1)
	actorsActive.Dec()
	actorPassivations.Inc()
	if e.passivating {
		o.draining--
	} else if !o.stopping {
		// It failed (panicked): what was forwarded to it is lost; callers time out.
		actorUnexpectedStops.Inc()
		o.reg.log.Error("user actor stopped unexpectedly", slog.String("userId", userID))
	}
	if len(e.buffer) == 0 || o.stopping {
		o.enforceCap(ctx) // a deferred child may be next, now that a slot is free
		return
	}
	next := o.activate(ctx, userID)
	for _, h := range e.buffer {
		ctx.Send(next.pid, h.msg)
	}
}

// userIDOf extracts the user id from a child PID id "<owner id>/<userID>$<seq>".
func userIDOf(owner, child *actor.PID) string {
	id := child.Id[len(owner.Id)+1:]
	return id[:strings.LastIndexByte(id, '$')]
}
