//go:build faulttest

package faulttest

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// TestKill9UnderLoad: 32 writers update profiles, enroll and record progress for 200
// users; the service is killed with SIGKILL at a random moment, restarted, and every
// acknowledged write must be there, and every committed change's event must reach
// RabbitMQ (CONTRACT.md, Durability: "kill -9 of the service at any moment loses no
// acknowledged write and no event of a committed change"). Three rounds, three kill
// moments.
func TestKill9UnderLoad(t *testing.T) {
	sum := newSummary(t)
	st := needStack(t)
	svc := newService(t, st)
	tp := newTap(t, svc)
	svc.start(t)
	c := newClient(svc.base, true)
	w := createUsers(t, c, 200)

	const rounds = 3
	for round := 1; round <= rounds; round++ {
		killAfter := time.Duration(1500+rand.IntN(3500)) * time.Millisecond
		ctx, stop := context.WithCancel(context.Background())
		wait := w.run(ctx, loadConfig{writers: 32})
		time.Sleep(killAfter)
		svc.kill(t)
		stop()
		wait()
		calls := w.takeCalls()
		ack, rej, unk := w.counts()
		if ack == 0 {
			t.Fatalf("round %d: no write was acknowledged before the kill at %s", round, killAfter)
		}

		svc.start(t)
		v := w.verify(t)
		events, dups := checkEvents(t, tp, v, 60*time.Second)
		sum.add("round %d: kill at %s, %d acked, %d unknown (%d of them committed), %d rejected, %d events (%d redelivered)",
			round, killAfter.Round(time.Millisecond), ack, unk, v.unknownCommited, rej, events, dups)
		t.Logf("round %d statuses: %s", round, statusCounts(calls))
		if t.Failed() {
			return
		}
	}
}
