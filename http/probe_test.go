package http

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestHealthProbesAreCoalesced: a flood of unauthenticated probes reaches the
// dependencies a handful of times, not once per request (issue 11).
func TestHealthProbesAreCoalesced(t *testing.T) {
	var readyCalls, dbCalls, mqCalls atomic.Int64
	h := newHarness(t, func(c *Config, d *Deps) {
		c.HealthCacheTTL = time.Second
		d.Health.Ready = func(context.Context) error {
			readyCalls.Add(1)
			time.Sleep(5 * time.Millisecond) // a pool round trip
			return nil
		}
		d.Health.Checks = map[string]func(context.Context) error{
			"database": func(context.Context) error { dbCalls.Add(1); time.Sleep(5 * time.Millisecond); return nil },
			"rabbitmq": func(context.Context) error { mqCalls.Add(1); time.Sleep(5 * time.Millisecond); return nil },
		}
	})
	const probes = 10000
	start := time.Now()
	var wg sync.WaitGroup
	var bad atomic.Int64
	for w := 0; w < 50; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < probes/50; i++ {
				path := "/health/ready"
				if i%2 == 1 {
					path = "/health/detailed"
				}
				if r := h.get(path, ""); r.status != 200 {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if bad.Load() != 0 {
		t.Fatalf("%d probes did not answer 200", bad.Load())
	}
	// One check per TTL, plus one for a TTL that ran out while a check was in flight.
	limit := 2 * (int64(elapsed/time.Second) + 2)
	for name, n := range map[string]int64{"ready": readyCalls.Load(), "database": dbCalls.Load(), "rabbitmq": mqCalls.Load()} {
		if n == 0 || n > limit {
			t.Errorf("%d probes in %v ran the %s check %d times, want 1..%d", probes, elapsed.Round(time.Millisecond), name, n, limit)
		}
	}
}

// TestHealthProbeWaitsForTheRunningCheck: probes that arrive while a check runs
// share its result, and a failed check is shared like a passed one.
func TestHealthProbeWaitsForTheRunningCheck(t *testing.T) {
	var calls atomic.Int64
	release := make(chan struct{})
	p := newProbeCache(-1, func(context.Context) error {
		calls.Add(1)
		<-release
		return fmt.Errorf("down")
	})
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err, ok := p.get(context.Background(), time.Second)
			if !ok {
				err = fmt.Errorf("not ok")
			}
			errs[i] = err
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("%d checks for 20 concurrent probes, want 1", calls.Load())
	}
	for _, err := range errs {
		if err == nil || err.Error() != "down" {
			t.Fatalf("a probe got %v, want the shared failure", err)
		}
	}
	// With a negative TTL the next probe checks again.
	release = make(chan struct{})
	close(release)
	if _, ok := p.get(context.Background(), time.Second); !ok || calls.Load() != 2 {
		t.Fatalf("after the check: %d checks, want 2", calls.Load())
	}
	// A caller that gives up gets ok=false at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := newProbeCache(time.Second, func(context.Context) error { time.Sleep(time.Second); return nil })
	if _, ok := slow.get(ctx, time.Second); ok {
		t.Fatal("a cancelled caller got a result")
	}
}

// serveReal serves h on a real listener with the fasthttp server's connection
// limits and returns its address.
func serveReal(t *testing.T, h *harness) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.srv.Serve(ln) }()
	t.Cleanup(func() { _ = h.srv.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// get sends one GET /health/live on a new connection from local (an IP on
// loopback) and returns the status, or an error.
func liveFrom(addr, local string) (int, error) {
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		return 0, err
	}
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		return 0, err
	}
	return resp.StatusCode(), nil
}

// idleConns opens n connections from local that send nothing.
func idleConns(t *testing.T, addr, local string, n int) {
	t.Helper()
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	for i := 0; i < n; i++ {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	time.Sleep(100 * time.Millisecond) // let the server accept them
}

// TestConnectionLimitPerIP: a client holding more idle connections than the
// per-IP limit is refused further ones, and other clients are still served.
func TestConnectionLimitPerIP(t *testing.T) {
	h := newHarness(t, func(c *Config, d *Deps) { c.MaxConnsPerIP = 8 })
	addr := serveReal(t, h)
	idleConns(t, addr, "127.0.0.1", 8)
	if status, err := liveFrom(addr, "127.0.0.1"); err == nil && status != fasthttp.StatusTooManyRequests {
		t.Fatalf("a 9th connection from the same IP: %d, want 429 or a refused connection", status)
	}
	for i := 0; i < 20; i++ {
		if status, err := liveFrom(addr, "127.0.0.2"); err != nil || status != 200 {
			t.Fatalf("another client while 127.0.0.1 is at its limit: %d %v", status, err)
		}
	}
}

// TestConnectionLimitTotal: past the total limit a new connection is answered
// 503 at once (not left hanging), and idle connections that time out make room.
func TestConnectionLimitTotal(t *testing.T) {
	h := newHarness(t, func(c *Config, d *Deps) {
		c.MaxConns = 8
		c.IdleTimeout = 500 * time.Millisecond
		c.ReadTimeout = 500 * time.Millisecond
	})
	addr := serveReal(t, h)
	idleConns(t, addr, "127.0.0.1", 8)
	start := time.Now()
	if status, err := liveFrom(addr, "127.0.0.2"); err == nil && status != fasthttp.StatusServiceUnavailable {
		t.Fatalf("a connection past the total limit: %d, want 503", status)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("a connection past the limit hung")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, err := liveFrom(addr, "127.0.0.2")
		if err == nil && status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle connections never timed out: %d %v", status, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
