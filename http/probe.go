package http

import (
	"context"
	"sync"
	"time"
)

// probeCache coalesces the dependency checks behind /health/ready and
// /health/detailed (issue 11): those routes are unauthenticated and not rate
// limited, and each check takes a pool connection or opens an AMQP channel, so
// a flood of probes must not reach the dependencies. At most one check runs at
// a time; callers that arrive while it runs wait for its result, and a result
// is shared with every caller for ttl after it was taken. A negative ttl only
// coalesces concurrent callers. Safe for concurrent use.
type probeCache[T any] struct {
	ttl   time.Duration
	check func(context.Context) T

	mu     sync.Mutex
	at     time.Time // when val was taken; zero before the first check
	val    T
	flight chan struct{} // closed when the running check finished; nil when none runs
}

func newProbeCache[T any](ttl time.Duration, check func(context.Context) T) *probeCache[T] {
	return &probeCache[T]{ttl: ttl, check: check}
}

// get returns a result no older than ttl. The check runs under checkCtx's
// lifetime, not the caller's, because its result is shared: a caller that gives
// up (ctx done) leaves it running for the others and gets ok=false.
func (p *probeCache[T]) get(ctx context.Context, timeout time.Duration) (val T, ok bool) {
	p.mu.Lock()
	if !p.at.IsZero() && time.Since(p.at) < p.ttl {
		v := p.val
		p.mu.Unlock()
		return v, true
	}
	flight := p.flight
	if flight == nil {
		flight = make(chan struct{})
		p.flight = flight
		go p.run(flight, timeout)
	}
	p.mu.Unlock()
	select {
	case <-flight:
		p.mu.Lock()
		v := p.val
		p.mu.Unlock()
		return v, true
	case <-ctx.Done():
		var zero T
		return zero, false
	}
}

func (p *probeCache[T]) run(flight chan struct{}, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	v := p.check(ctx)
	p.mu.Lock()
	p.val, p.at, p.flight = v, time.Now(), nil
	p.mu.Unlock()
	close(flight)
}
