//go:build faulttest

package faulttest

import (
	"context"
	"math/rand/v2"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestSIGTERMUnderLoad sends SIGTERM while 32 writers are busy (CONTRACT.md,
// Durability: "SIGTERM: stop accepting, finish in-flight requests, flush, drain the
// outbox briefly, exit 0"): every request in flight at the signal gets its answer,
// the process exits 0 with an empty outbox, and after a restart every acknowledged
// write is there and every committed change was published. The clients open a
// connection per request, so that a request refused after the signal is told apart
// from one dropped in flight.
func TestSIGTERMUnderLoad(t *testing.T) {
	sum := newSummary(t)
	st := needStack(t)
	svc := newService(t, st)
	tp := newTap(t, svc)
	svc.start(t)
	c := newClient(svc.base, false)
	w := createUsers(t, c, 100)

	ctx, stop := context.WithCancel(context.Background())
	wait := w.run(ctx, loadConfig{writers: 32})
	time.Sleep(time.Duration(1000+rand.IntN(2000)) * time.Millisecond)
	signalled := time.Now()
	svc.signal(syscall.SIGTERM)
	state, exited := svc.wait(40 * time.Second)
	stopped := time.Since(signalled)
	stop()
	wait()
	if !exited {
		t.Fatalf("the service did not exit within 40s of SIGTERM")
	}
	if code := state.ExitCode(); code != 0 {
		t.Errorf("exit status %d after SIGTERM (%v), want 0", code, state)
	}
	calls := w.takeCalls()
	ack, rej, unk := w.counts()

	// In flight at the signal: started before, ended after. Each must have its answer.
	// A request whose connection was never accepted was refused, not in flight.
	inFlight := window(calls, func(c call) bool {
		return c.at.Before(signalled) && c.at.Add(c.dur).After(signalled) && !refused(c.err)
	})
	for _, c := range inFlight {
		if c.err != nil || c.status >= 500 {
			t.Errorf("a request in flight at SIGTERM (started %s before) ended with %d %v",
				signalled.Sub(c.at).Round(time.Microsecond), c.status, c.err)
		}
	}
	if len(inFlight) == 0 {
		t.Error("no request was in flight at SIGTERM; the test proved nothing")
	}
	after := window(calls, func(c call) bool { return !c.at.Before(signalled) })
	for _, c := range after {
		if c.err == nil && c.status >= 500 {
			t.Errorf("a request after SIGTERM answered %d", c.status)
		}
	}

	// The outbox drained before the exit.
	ctxDB, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctxDB, st.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var pending, total int
	// Published rows are deleted; the sequence counts every event ever written.
	if err := conn.QueryRow(ctxDB, "SELECT (SELECT count(*) FROM "+pgx.Identifier{svc.name, "outbox"}.Sanitize()+
		" WHERE published_at IS NULL), (SELECT last_value FROM "+pgx.Identifier{svc.name, "outbox_id_seq"}.Sanitize()+")").Scan(&pending, &total); err != nil {
		t.Fatal(err)
	}
	if pending > 0 {
		t.Errorf("%d of %d events were still unpublished after the exit", pending, total)
	}

	svc.start(t)
	v := w.verify(t)
	events, dups := checkEvents(t, tp, v, 60*time.Second)
	if r := c.do(http.MethodGet, "/health/ready", "", nil, nil); r.status != http.StatusOK {
		t.Errorf("after the restart /health/ready: %s", r)
	}
	sum.add("exit %d after %s; %d requests in flight at SIGTERM: %s; after it: %s; %d of %d events unpublished at exit; %d acked, %d unknown (%d committed), %d rejected; %d events (%d redelivered)",
		state.ExitCode(), stopped.Round(time.Millisecond), len(inFlight), statusCounts(inFlight), statusCounts(after),
		pending, total, ack, unk, v.unknownCommited, rej, events, dups)
}
