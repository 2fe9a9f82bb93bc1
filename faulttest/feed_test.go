//go:build faulttest

package faulttest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// follower is a change-feed consumer as the contract describes one: it reads an
// SSE feed, and when the connection breaks (the service was killed) it connects
// again with the Last-Event-ID it last saw, for as long as the test runs.
type follower struct {
	base, path, token string

	mu          sync.Mutex
	lastID      string
	ids         map[string]int            // event id -> times received under a Last-Event-ID
	pending     []string                  // event ids received since the last id: line
	seqs        map[string]map[int64]bool // user id -> sequences received
	lastPos     int64                     // global feed: the last position received
	problems    []string
	connections int
}

func newFollower(base, path, token string) *follower {
	return &follower{base: base, path: path, token: token, lastID: "0", ids: map[string]int{}, seqs: map[string]map[int64]bool{}}
}

// run follows until ctx ends.
func (f *follower) run(ctx context.Context) {
	hc := &http.Client{} // no timeout: a stream lasts
	for ctx.Err() == nil {
		f.follow(ctx, hc)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// follow reads one connection until it breaks.
func (f *follower) follow(ctx context.Context, hc *http.Client) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+f.path, nil)
	if err != nil {
		return
	}
	f.mu.Lock()
	req.Header.Set("Last-Event-ID", f.lastID)
	f.mu.Unlock()
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := hc.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return // starting up (503): try again
	}
	f.mu.Lock()
	f.connections++
	// A per-user feed sends id: on the last event of a change only, so the
	// events of a change cut short by the kill come again after the reconnect.
	f.pending = nil
	f.mu.Unlock()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var id, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		case line == "" && data != "":
			f.add(id, data)
			id, data = "", ""
		case line == "":
			id = ""
		}
	}
}

func (f *follower) add(id, data string) {
	var e struct {
		ID       string         `json:"id"`
		Sequence int64          `json:"sequence"`
		Data     map[string]any `json:"data"`
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := json.Unmarshal([]byte(data), &e); err != nil {
		f.problems = append(f.problems, fmt.Sprintf("undecodable event %q: %v", data, err))
		return
	}
	f.pending = append(f.pending, e.ID)
	user, _ := e.Data["userId"].(string)
	if f.seqs[user] == nil {
		f.seqs[user] = map[int64]bool{}
	}
	f.seqs[user][e.Sequence] = true
	if id != "" {
		if strings.HasPrefix(f.path, "/api/v1/events") {
			pos, err := strconv.ParseInt(id, 10, 64)
			if err != nil || pos <= f.lastPos {
				f.problems = append(f.problems, fmt.Sprintf("position %s after %d", id, f.lastPos))
			}
			f.lastPos = pos
		}
		f.lastID = id
		for _, eid := range f.pending {
			f.ids[eid]++
			if f.ids[eid] == 2 {
				f.problems = append(f.problems, "event "+eid+" received twice")
			}
		}
		f.pending = f.pending[:0]
	}
}

// gaps returns, per user of finals, the sequences 1..final not received.
func (f *follower) gaps(finals map[string]int64) map[string][]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]int64{}
	for user, final := range finals {
		for s := int64(1); s <= final; s++ {
			if !f.seqs[user][s] {
				out[user] = append(out[user], s)
			}
		}
	}
	return out
}

// TestChangeFeedAcrossKill9 (issue 15): consumers of the global feed and of
// per-user feeds follow them as Server-Sent Events while 32 writers change 60
// users; the service is killed with SIGKILL twice and restarted. Each consumer
// reconnects with its Last-Event-ID and, in the end, has received every change
// of every user it follows exactly once (per-user sequences 1..version with no
// gap, no event id twice, global positions strictly increasing across the
// reconnections), and every acknowledged write is there.
func TestChangeFeedAcrossKill9(t *testing.T) {
	sum := newSummary(t)
	st := needStack(t)
	svc := newService(t, st)
	svc.start(t)
	c := newClient(svc.base, true)
	w := createUsers(t, c, 60)
	admin := adminToken(t)

	ctx, stopFollowers := context.WithCancel(context.Background())
	defer stopFollowers()
	global := newFollower(svc.base, "/api/v1/events", admin)
	followers := []*follower{global}
	perUser := map[*follower]string{}
	for _, u := range w.users[:4] {
		f := newFollower(svc.base, "/api/v1/users/"+u.id+"/events", u.token)
		followers = append(followers, f)
		perUser[f] = u.id
	}
	var wg sync.WaitGroup
	for _, f := range followers {
		wg.Go(func() { f.run(ctx) })
	}

	var v verification
	const rounds = 2
	for round := 1; round <= rounds; round++ {
		killAfter := time.Duration(1500+rand.IntN(2500)) * time.Millisecond
		lctx, stop := context.WithCancel(context.Background())
		wait := w.run(lctx, loadConfig{writers: 32})
		time.Sleep(killAfter)
		svc.kill(t)
		stop()
		wait()
		ack, rej, unk := w.counts()
		w.takeCalls()
		if ack == 0 {
			t.Fatalf("round %d: no write was acknowledged before the kill at %s", round, killAfter)
		}
		svc.start(t)
		v = w.verify(t)
		sum.add("round %d: kill at %s, %d acked, %d unknown (%d of them committed), %d rejected",
			round, killAfter.Round(time.Millisecond), ack, unk, v.unknownCommited, rej)
		if t.Failed() {
			return
		}
	}

	// Every follower catches up with what is committed now.
	deadline := time.Now().Add(60 * time.Second)
	for _, f := range followers {
		finals := v.finals
		if id, ok := perUser[f]; ok {
			finals = map[string]int64{id: v.finals[id]}
		}
		for time.Now().Before(deadline) && len(f.gaps(finals)) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		gaps := f.gaps(finals)
		n := 0
		for user, seqs := range gaps {
			n += len(seqs)
			if len(gaps) <= 5 {
				t.Errorf("%s: user %s: sequences %v never received", f.path, user, seqs)
			}
		}
		if n > 0 {
			t.Errorf("%s: %d committed changes of %d users never received", f.path, n, len(gaps))
		}
	}
	stopFollowers()
	wg.Wait()
	var events int
	for _, f := range followers {
		f.mu.Lock()
		for i, p := range f.problems {
			if i == 10 {
				t.Errorf("%s: … %d more problems", f.path, len(f.problems)-10)
				break
			}
			t.Errorf("%s: %s", f.path, p)
		}
		if f.connections < rounds+1 {
			t.Errorf("%s: %d connections, want at least %d (one per run of the service)", f.path, f.connections, rounds+1)
		}
		if f == global {
			events = len(f.ids)
		}
		f.mu.Unlock()
	}
	var changes int64
	for _, final := range v.finals {
		changes += final
	}
	sum.add("global feed: %d events of %d changes over %d connections, no gap, no duplicate; %d per-user feeds likewise",
		events, changes, global.connections, len(perUser))
}
