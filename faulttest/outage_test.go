//go:build faulttest

package faulttest

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"

	json "github.com/goccy/go-json"
)

// window filters calls by when they started and ended.
func window(calls []call, keep func(c call) bool) []call {
	var out []call
	for _, c := range calls {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// checkClean fails t for every answer that is neither a success, a 4xx nor a 503,
// for transport errors and for answers slower than the request timeout allows.
func checkClean(t *testing.T, calls []call) {
	t.Helper()
	var bad []string
	for _, c := range calls {
		switch {
		case c.err != nil:
			bad = append(bad, fmt.Sprintf("%s after %s: %v", c.at.Format("15:04:05.000"), c.dur.Round(time.Millisecond), c.err))
		case c.status >= 500 && c.status != http.StatusServiceUnavailable:
			bad = append(bad, fmt.Sprintf("%s: status %d", c.at.Format("15:04:05.000"), c.status))
		case c.dur > requestTimeout+2*time.Second:
			bad = append(bad, fmt.Sprintf("%s: status %d after %s (REQUEST_TIMEOUT is %s)", c.at.Format("15:04:05.000"), c.status, c.dur.Round(time.Millisecond), requestTimeout))
		}
	}
	for i, b := range bad {
		if i == 10 {
			t.Errorf("… and %d more", len(bad)-10)
			break
		}
		t.Error(b)
	}
}

func p99(calls []call) time.Duration {
	if len(calls) == 0 {
		return 0
	}
	d := make([]time.Duration, len(calls))
	for i, c := range calls {
		d[i] = c.dur
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)*99/100].Round(time.Millisecond)
}

// health reads /health/detailed.
type health struct {
	Status   string `json:"status"`
	Services map[string]struct {
		Status string `json:"status"`
	} `json:"services"`
}

func readHealth(c *client) (health, int, error) {
	r := c.do(http.MethodGet, "/health/detailed", "", nil, nil)
	var h health
	if r.err != nil {
		return h, 0, r.err
	}
	err := json.Unmarshal(r.body, &h)
	return h, r.status, err
}

// waitHealth polls /health/detailed until want holds, and returns how long it took.
func waitHealth(t *testing.T, c *client, timeout time.Duration, what string, want func(h health, status int) bool) time.Duration {
	t.Helper()
	started := time.Now()
	var last string
	for time.Since(started) < timeout {
		h, status, err := readHealth(c)
		if err == nil && want(h, status) {
			return time.Since(started)
		}
		last = fmt.Sprintf("%d %+v %v", status, h, err)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("/health/detailed never showed %s within %s; last: %s", what, timeout, last)
	return 0
}

// waitDegraded waits until /health/detailed answers 200 "degraded" with dep
// disconnected, and returns how long it took.
func waitDegraded(t *testing.T, c *client, timeout time.Duration, dep string) time.Duration {
	t.Helper()
	return waitHealth(t, c, timeout, dep+" disconnected", func(h health, status int) bool {
		return status == http.StatusOK && h.Status == "degraded" && h.Services[dep].Status == "disconnected"
	})
}

// waitHealthy waits until /health/detailed answers 200 "healthy", and returns how
// long it took.
func waitHealthy(t *testing.T, c *client, timeout time.Duration) time.Duration {
	t.Helper()
	return waitHealth(t, c, timeout, "healthy", func(h health, status int) bool {
		return status == http.StatusOK && h.Status == "healthy"
	})
}

// TestPostgresRestartUnderLoad stops PostgreSQL for a few seconds under load: while
// it is down, writes must answer 503 (never 500, never hang past the request
// timeout) and reads of live actors whose state is settled still answer 200
// (CONTRACT.md: "Reads of a live actor never touch PostgreSQL or Redis"); once it
// is back, writes succeed again; nothing acknowledged is lost and every committed
// change is published. (A user whose write failed with an unknown outcome must
// reload its state, so its reads may answer 503 while PostgreSQL is down.)
//
// The writers slow down while PostgreSQL stops and pause once some of their writes
// have been answered 503: the test profile's port lies in the ephemeral range, and
// the service dials PostgreSQL for every write (and every reload) while it is down,
// so one of those dials can connect to itself and hold the port in TIME_WAIT, which
// keeps PostgreSQL from binding it for a minute (see stack.ctl). Readers of settled
// users go on throughout: they need no connection.
func TestPostgresRestartUnderLoad(t *testing.T) {
	sum := newSummary(t)
	st := needStack(t)
	st.ensureUp(t)
	svc := newService(t, st)
	tp := newTap(t, svc)
	svc.start(t)
	c := newClient(svc.base, true)
	w := createUsers(t, c, 100)
	quiet := createUsers(t, c, 20) // read, never written during the test
	for _, u := range quiet.users {
		if r := c.do(http.MethodGet, "/api/v1/users/me", u.token, nil, nil); r.status != http.StatusOK {
			t.Fatalf("GET /me: %s", r)
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	wait := w.run(ctx, loadConfig{writers: 16, readers: 8, readUsers: quiet.users, pause: time.Millisecond})
	time.Sleep(2 * time.Second)
	stopping := time.Now()
	w.writersSlow.Store(true)
	st.ctl(t, "stop-postgres")
	down := time.Now()
	for time.Since(down) < 3*time.Second && count503(w, down) < 50 {
		time.Sleep(20 * time.Millisecond)
	}
	w.writersPaused.Store(true)
	time.Sleep(5*time.Second - time.Since(down))
	starting := time.Now()
	st.ctl(t, "start-postgres")
	w.writersPaused.Store(false)
	w.writersSlow.Store(false)
	up := time.Now()
	// Load goes on until writes have succeeded again for a while.
	deadline := up.Add(30 * time.Second)
	var recovered time.Duration
	for time.Now().Before(deadline) && recovered == 0 {
		time.Sleep(100 * time.Millisecond)
		w.mu.Lock()
		for _, c := range w.calls {
			if c.write && c.outcome == acked && c.at.After(up) {
				recovered = c.at.Add(c.dur).Sub(up)
				break
			}
		}
		w.mu.Unlock()
	}
	time.Sleep(2 * time.Second)
	stop()
	wait()
	calls := w.takeCalls()
	ack, rej, unk := w.counts()

	checkClean(t, calls)
	whileDown := window(calls, func(c call) bool { return c.at.After(down) && c.at.Add(c.dur).Before(starting) })
	writesDown := window(whileDown, func(c call) bool { return c.write })
	var writes503, writesOK int
	for _, c := range writesDown {
		switch {
		case c.err == nil && c.status == http.StatusServiceUnavailable:
			writes503++
		case c.outcome == acked:
			writesOK++
			t.Errorf("a write that started at %s, while PostgreSQL was down, was acknowledged (%d)", c.at.Format("15:04:05.000"), c.status)
		}
	}
	if writes503 == 0 {
		t.Errorf("no write answered 503 while PostgreSQL was down (%d writes: %s)", len(writesDown), statusCounts(writesDown))
	}
	if recovered == 0 {
		t.Errorf("no write succeeded within 30s of PostgreSQL's return")
	}
	readsDown := window(whileDown, func(c call) bool { return !c.write })
	var readsFailed int
	for _, c := range readsDown {
		if c.outcome != acked {
			readsFailed++
		}
	}
	if readsFailed > 0 {
		t.Errorf("%d of %d reads of live, settled users failed while PostgreSQL was down (%s); they need neither PostgreSQL nor Redis",
			readsFailed, len(readsDown), statusCounts(readsDown))
	}
	v := w.verify(t)
	events, dups := checkEvents(t, tp, v, 60*time.Second)
	sum.add("stop took %s, down %s; while down: writes %s, reads %s, p99 %s; writes back %s after start; %d acked, %d unknown (%d committed), %d rejected; %d events (%d redelivered)",
		down.Sub(stopping).Round(time.Millisecond), starting.Sub(down).Round(time.Millisecond), statusCounts(writesDown),
		statusCounts(readsDown), p99(whileDown), recovered.Round(time.Millisecond), ack, unk, v.unknownCommited, rej, events, dups)
}

// count503 counts the writes answered 503 that started after since.
func count503(w *workload, since time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.calls {
		if c.write && c.status == http.StatusServiceUnavailable && c.at.After(since) {
			n++
		}
	}
	return n
}

// TestRabbitMQOutageUnderLoad stops RabbitMQ for 30 s under load: writes keep
// succeeding (the outbox grows), /health/detailed says degraded, and once RabbitMQ
// is back every committed change is published.
func TestRabbitMQOutageUnderLoad(t *testing.T) {
	sum := newSummary(t)
	st := needStack(t)
	st.ensureUp(t)
	svc := newService(t, st)
	tp := newTap(t, svc)
	svc.start(t)
	c := newClient(svc.base, true)
	w := createUsers(t, c, 100)

	ctx, stop := context.WithCancel(context.Background())
	wait := w.run(ctx, loadConfig{writers: 16, readers: 4, pause: 2 * time.Millisecond})
	time.Sleep(2 * time.Second)
	stopping := time.Now()
	st.ctl(t, "stop-rabbitmq")
	down := time.Now()
	degradedAfter := waitDegraded(t, c, 15*time.Second, "rabbitmq")
	time.Sleep(30*time.Second - time.Since(down))
	starting := time.Now()
	st.ctl(t, "start-rabbitmq")
	up := time.Now()
	healthyAfter := waitHealthy(t, c, 60*time.Second)
	time.Sleep(2 * time.Second)
	stop()
	wait()
	calls := w.takeCalls()
	ack, rej, unk := w.counts()

	checkClean(t, calls)
	for _, c := range calls {
		if c.outcome != acked {
			t.Errorf("a request at %s was not acknowledged: status %d, %v", c.at.Format("15:04:05.000"), c.status, c.err)
			break
		}
	}
	writesDown := window(calls, func(c call) bool { return c.write && c.at.After(down) && c.at.Before(starting) })
	if len(writesDown) == 0 {
		t.Error("no write was made while RabbitMQ was down")
	}
	v := w.verify(t)
	drainStarted := time.Now()
	events, dups := checkEvents(t, tp, v, 120*time.Second)
	sum.add("stop took %s, down %s, start took %s; degraded after %s, healthy %s after start; writes while down: %s (p99 %s); %d acked, %d unknown, %d rejected; all %d events published %s after the check began (%d redelivered)",
		down.Sub(stopping).Round(time.Millisecond), starting.Sub(down).Round(time.Millisecond), up.Sub(starting).Round(time.Millisecond),
		degradedAfter.Round(time.Millisecond), healthyAfter.Round(time.Millisecond), statusCounts(writesDown), p99(writesDown),
		ack, unk, rej, events, time.Since(drainStarted).Round(time.Millisecond), dups)
}

// TestRedisOutage stops Redis under load: the service keeps answering (2xx),
// /health/detailed says degraded, and once Redis is back it says healthy again.
func TestRedisOutage(t *testing.T) {
	sum := newSummary(t)
	st := needStack(t)
	st.ensureUp(t)
	svc := newService(t, st)
	tp := newTap(t, svc)
	svc.start(t)
	c := newClient(svc.base, true)
	w := createUsers(t, c, 60)

	ctx, stop := context.WithCancel(context.Background())
	wait := w.run(ctx, loadConfig{writers: 8, readers: 8, pause: 2 * time.Millisecond})
	time.Sleep(time.Second)
	st.ctl(t, "stop-redis")
	down := time.Now()
	degradedAfter := waitDegraded(t, c, 15*time.Second, "redis")
	// New users' actors activate without Redis too.
	more := createUsers(t, c, 10)
	for _, u := range more.users {
		if r := c.do(http.MethodGet, "/api/v1/users/me", u.token, nil, nil); r.err != nil || r.status != http.StatusOK {
			t.Errorf("GET /me of a user created while Redis is down: %s", r)
		}
	}
	time.Sleep(5*time.Second - time.Since(down))
	starting := time.Now()
	st.ctl(t, "start-redis")
	healthyAfter := waitHealthy(t, c, 30*time.Second)
	time.Sleep(2 * time.Second)
	stop()
	wait()
	calls := w.takeCalls()
	ack, rej, unk := w.counts()

	checkClean(t, calls)
	var notOK []call
	for _, c := range calls {
		if c.outcome != acked {
			notOK = append(notOK, c)
		}
	}
	if len(notOK) > 0 {
		t.Errorf("%d of %d requests failed with Redis down or back: %s", len(notOK), len(calls), statusCounts(notOK))
	}
	whileDown := window(calls, func(c call) bool { return c.at.After(down) && c.at.Before(starting) })
	if len(whileDown) == 0 {
		t.Error("no request was made while Redis was down")
	}
	v := w.verify(t)
	events, _ := checkEvents(t, tp, v, 60*time.Second)
	sum.add("degraded after %s; while down: %s, p99 %s; healthy %s after start; %d acked, %d unknown, %d rejected; %d events",
		degradedAfter.Round(time.Millisecond), statusCounts(whileDown), p99(whileDown), healthyAfter.Round(time.Millisecond), ack, unk, rej, events)
}
