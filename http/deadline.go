package http

import (
	"context"
	"sync/atomic"
	"time"
)

// maxDeadlineTick bounds how far apart the deadlines of requests sharing one
// context can start (see requestDeadlines).
const maxDeadlineTick = 10 * time.Millisecond

// requestDeadlines hands out the contexts of requests: every request started
// within one tick shares one context, whose deadline is the tick's start plus the
// request timeout plus the tick. A request so gets at least its timeout and at
// most one tick more, and the server pays one timer per tick instead of one per
// request: context.WithTimeout and its cancel were 3% of the service's CPU under
// the write benchmarks (issue 16). Nothing ends a request's context early: it is
// the server's base context (cancelled on shutdown) with a deadline, and work a
// request starts beside itself has contexts of its own.
type requestDeadlines struct {
	parent  context.Context
	timeout time.Duration
	tick    time.Duration
	current atomic.Pointer[deadlineSlot]
}

// deadlineSlot is the context of the requests started before until.
type deadlineSlot struct {
	ctx context.Context
	// cancel is never called: cancelling would end the requests still using
	// ctx. Its timer ends ctx at the deadline, and the parent's cancel on
	// shutdown ends it sooner; either releases it.
	cancel context.CancelFunc
	until  time.Time
}

func newRequestDeadlines(parent context.Context, timeout time.Duration) *requestDeadlines {
	return &requestDeadlines{parent: parent, timeout: timeout, tick: min(maxDeadlineTick, timeout/100)}
}

// context returns the context of a request started at now.
func (d *requestDeadlines) context(now time.Time) context.Context {
	s := d.current.Load()
	if s != nil && now.Before(s.until) {
		return s.ctx
	}
	ctx, cancel := context.WithDeadline(d.parent, now.Add(d.timeout+d.tick))
	// Losing the swap to a request of the same tick is harmless: this request
	// keeps the context it made.
	d.current.CompareAndSwap(s, &deadlineSlot{ctx: ctx, cancel: cancel, until: now.Add(d.tick)})
	return ctx
}
