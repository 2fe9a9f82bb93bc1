package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
)

// TestEventEnvelopeSequence: a published event carries the user's version after
// the change as its sequence, the envelope version, and the actor and request id
// in its metadata, so a consumer can order a user's events and drop the echoes of
// its own requests (issue 15, change feed; the shape is checked by checkEnvelope).
func TestEventEnvelopeSequence(t *testing.T) {
	st := newStack(t)
	tp := st.tap(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	u := svc.createUser(t, admin, newUserBody(t))
	tp.expect(t, "user.created")

	tok := st.tokenFor(t, u)
	r := svc.do(t, "PUT", "/api/v1/users/me", tok, map[string]any{"bio": "sequenced"}, "X-Request-ID", "feed-test-request-1")
	r.data(t, http.StatusOK, nil)
	version := r.version(t)
	ev := tp.expect(t, "user.updated")[0]
	var seq int64
	if err := json.Unmarshal(ev.raw["sequence"], &seq); err != nil || seq != version {
		t.Errorf("sequence %s, want the answer's version %d", ev.raw["sequence"], version)
	}
	if ev.Metadata["requestId"] != "feed-test-request-1" || ev.Metadata["actorId"] != u.ID {
		t.Errorf("metadata %v, want the request id and the actor", ev.Metadata)
	}
}

// feedLine is one event of the change feed as a consumer reads it.
type feedLine struct {
	Type     string
	Sequence int64
	ID       string // the SSE id:, when sent
}

// readNDJSON reads the feed answer r as envelopes, one a line.
func readNDJSON(tb testing.TB, r *response) []feedLine {
	tb.Helper()
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/x-ndjson" {
		tb.Fatalf("feed: %s", r)
	}
	var out []feedLine
	for _, line := range strings.Split(strings.TrimSuffix(string(r.Body), "\n"), "\n") {
		if line == "" {
			continue
		}
		var e struct {
			Type     string `json:"type"`
			Sequence int64  `json:"sequence"`
			Version  int    `json:"version"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Version != userservice.EnvelopeVersion {
			tb.Fatalf("feed line %q: %v", line, err)
		}
		out = append(out, feedLine{Type: e.Type, Sequence: e.Sequence})
	}
	return out
}

func seqs(ls []feedLine) string {
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, "%s@%d ", l.Type, l.Sequence)
	}
	return b.String()
}

// sseStream is an open Server-Sent Events answer.
type sseStream struct {
	events chan feedLine
	cancel context.CancelFunc
}

// openStream opens the user's event stream with Last-Event-ID.
func openStream(tb testing.TB, svc *service, path, token, lastID string) *sseStream {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", svc.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		tb.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseStream{events: make(chan feedLine, 100), cancel: cancel}
	go func() {
		defer resp.Body.Close()
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var cur feedLine
		var data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if data != "" {
					var e struct {
						Sequence int64 `json:"sequence"`
					}
					_ = json.Unmarshal([]byte(data), &e)
					cur.Sequence = e.Sequence
					s.events <- cur
				}
				cur, data = feedLine{}, ""
			case strings.HasPrefix(line, "id: "):
				cur.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				cur.Type = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	tb.Cleanup(cancel)
	return s
}

// take reads n events from the stream within a few seconds.
func (s *sseStream) take(tb testing.TB, n int) []feedLine {
	tb.Helper()
	var out []feedLine
	deadline := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case e, ok := <-s.events:
			if !ok {
				tb.Fatalf("stream ended after %s", seqs(out))
			}
			out = append(out, e)
		case <-deadline:
			tb.Fatalf("stream: %d of %d events in 10s: %s", len(out), n, seqs(out))
		}
	}
	return out
}

// TestUserEventFeed: GET /users/{id}/events answers the user's events after a
// sequence as NDJSON, from the outbox and, once published, from the retained
// event log alike; as SSE it streams what the consumer missed and then new
// events as they commit, and Last-Event-ID resumes with no gap and no
// duplicate (issue 15, change feed).
func TestUserEventFeed(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	u := svc.createUser(t, admin, newUserBody(t))
	other := svc.createUser(t, admin, newUserBody(t))
	tok := st.tokenFor(t, u)
	for i := 0; i < 3; i++ {
		svc.do(t, "PUT", "/api/v1/users/me", tok, map[string]any{"bio": "v" + strconv.Itoa(i)}).data(t, http.StatusOK, nil)
	}
	course := userservice.NewID()
	svc.do(t, "POST", "/api/v1/users/me/enrollments", tok, map[string]any{"courseId": course}).data(t, http.StatusCreated, nil)
	svc.do(t, "PUT", "/api/v1/users/me/enrollments/"+course+"/progress", tok, map[string]any{"progress": 100}).data(t, http.StatusOK, nil)
	const all = "user.created@1 user.updated@2 user.updated@3 user.updated@4 user.enrolled@5 user.progress_updated@6 user.course_completed@6 "

	feed := func(query, token string) string {
		return seqs(readNDJSON(t, svc.do(t, "GET", "/api/v1/users/"+u.ID+"/events"+query, token, nil)))
	}
	if got := feed("?after=0", tok); got != all {
		t.Errorf("feed after 0:\n got %s\nwant %s", got, all)
	}
	// Once the relay published them, the events come from the event log.
	eventually(t, "events moved to the event log", func() error {
		if n := st.count(t, `SELECT count(*) FROM event_log WHERE user_id = $1`, u.ID); n != 7 {
			return fmt.Errorf("%d events in event_log", n)
		}
		return nil
	})
	if n := st.count(t, `SELECT count(*) FROM outbox WHERE user_id = $1`, u.ID); n != 0 {
		t.Errorf("%d rows left in the outbox", n)
	}
	if got := feed("", admin); got != all {
		t.Errorf("feed from the log, read by an admin:\n got %s\nwant %s", got, all)
	}
	if got := feed("?after=4", tok); got != "user.enrolled@5 user.progress_updated@6 user.course_completed@6 " {
		t.Errorf("feed after 4: %s", got)
	}
	// A page never ends inside one change: limit 6 stops before sequence 6.
	if got := feed("?after=0&limit=6", tok); got != "user.created@1 user.updated@2 user.updated@3 user.updated@4 user.enrolled@5 " {
		t.Errorf("feed limit 6: %s", got)
	}
	svc.do(t, "GET", "/api/v1/users/"+u.ID+"/events", st.tokenFor(t, other), nil).fail(t, http.StatusForbidden, "")
	svc.do(t, "GET", "/api/v1/users/me/events?after=-1", tok, nil).fail(t, http.StatusBadRequest, userservice.ECodeValidation)
	svc.do(t, "GET", "/api/v1/users/me/events?limit=1001", tok, nil).fail(t, http.StatusBadRequest, userservice.ECodeValidation)
	svc.do(t, "GET", "/api/v1/users/"+userservice.NewID()+"/events", admin, nil).fail(t, http.StatusNotFound, "")

	// A consumer that saw up to sequence 4 reads what it missed, then follows live.
	s := openStream(t, svc, "/api/v1/users/me/events", tok, "4")
	got := s.take(t, 3)
	if seqs(got) != "user.enrolled@5 user.progress_updated@6 user.course_completed@6 " || got[0].ID != "5" || got[1].ID != "" || got[2].ID != "6" {
		t.Errorf("missed events: %s ids %q %q %q", seqs(got), got[0].ID, got[1].ID, got[2].ID)
	}
	svc.do(t, "PUT", "/api/v1/users/me", tok, map[string]any{"bio": "live"}).data(t, http.StatusOK, nil)
	if live := s.take(t, 1); seqs(live) != "user.updated@7 " || live[0].ID != "7" {
		t.Errorf("live event: %s id %q", seqs(live), live[0].ID)
	}
	s.cancel()
	// Down for a while: two changes it did not see, then it resumes from its last id.
	svc.do(t, "PUT", "/api/v1/users/me", tok, map[string]any{"bio": "missed"}).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", "/api/v1/users/"+u.ID+"/status", admin, map[string]any{"status": "inactive"}).data(t, http.StatusOK, nil)
	s = openStream(t, svc, "/api/v1/users/"+u.ID+"/events", admin, "7")
	if got := s.take(t, 2); seqs(got) != "user.updated@8 user.status_changed@9 " {
		t.Errorf("resumed: %s", seqs(got))
	}
	svc.do(t, "PUT", "/api/v1/users/"+u.ID, admin, map[string]any{"bio": "after resume"}).data(t, http.StatusOK, nil)
	if got := s.take(t, 1); seqs(got) != "user.updated@10 " {
		t.Errorf("live after resume: %s", seqs(got))
	}
	select {
	case e := <-s.events:
		t.Errorf("unexpected event %s", seqs([]feedLine{e}))
	case <-time.After(300 * time.Millisecond):
	}

	// An open stream does not hold up a graceful shutdown: it ends, and run returns.
	start := time.Now()
	if err := svc.stop(); err != nil {
		t.Errorf("shutdown with an open stream: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown with an open stream took %v", d)
	}
	select {
	case _, ok := <-s.events:
		for ok {
			_, ok = <-s.events
		}
	case <-time.After(5 * time.Second):
		t.Error("the stream stayed open after the shutdown")
	}
}

// TestGlobalEventFeed: GET /events (admin) answers every user's published events
// in position order, each line with its position; a stream resumes from
// Last-Event-ID and follows new events with no gap and no duplicate.
func TestGlobalEventFeed(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	var users []apiUser
	for i := 0; i < 3; i++ {
		users = append(users, svc.createUser(t, admin, newUserBody(t)))
	}
	parallel(12, 6, func(i int) {
		u := users[i%3]
		r, err := svc.send("PUT", "/api/v1/users/"+u.ID, admin, map[string]any{"bio": "b" + strconv.Itoa(i)})
		if err != nil || r.Status != http.StatusOK {
			t.Errorf("update: %v %v", err, r)
		}
	})
	type line struct {
		Position int64          `json:"position"`
		Type     string         `json:"type"`
		Sequence int64          `json:"sequence"`
		Data     map[string]any `json:"data"`
	}
	var lines []line
	eventually(t, "15 events in the global feed", func() error {
		r := svc.do(t, "GET", "/api/v1/events?after=0&limit=1000", admin, nil)
		if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/x-ndjson" {
			return fmt.Errorf("feed: %s", r)
		}
		lines = nil
		for _, l := range strings.Split(strings.TrimSpace(string(r.Body)), "\n") {
			if l == "" {
				continue
			}
			var e line
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				return fmt.Errorf("line %q: %v", l, err)
			}
			lines = append(lines, e)
		}
		if len(lines) != 15 {
			return fmt.Errorf("%d events", len(lines))
		}
		return nil
	})
	lastSeq := map[string]int64{}
	for i, e := range lines {
		if i > 0 && e.Position <= lines[i-1].Position {
			t.Errorf("position %d after %d", e.Position, lines[i-1].Position)
		}
		uid, _ := e.Data["userId"].(string)
		if e.Sequence <= lastSeq[uid] {
			t.Errorf("user %s: sequence %d after %d", uid, e.Sequence, lastSeq[uid])
		}
		lastSeq[uid] = e.Sequence
	}
	svc.do(t, "GET", "/api/v1/events", st.tokenFor(t, users[0]), nil).fail(t, http.StatusForbidden, "")
	svc.do(t, "GET", "/api/v1/events?after=x", admin, nil).fail(t, http.StatusBadRequest, userservice.ECodeValidation)

	// A consumer that saw up to the 10th event reads the rest, then follows live.
	s := openStream(t, svc, "/api/v1/events", admin, strconv.FormatInt(lines[9].Position, 10))
	got := s.take(t, 5)
	for i, e := range got {
		if want := strconv.FormatInt(lines[10+i].Position, 10); e.ID != want || e.Sequence != lines[10+i].Sequence {
			t.Errorf("resumed event %d: id %s seq %d, want id %s seq %d", i, e.ID, e.Sequence, want, lines[10+i].Sequence)
		}
	}
	svc.do(t, "PUT", "/api/v1/users/"+users[1].ID, admin, map[string]any{"bio": "live"}).data(t, http.StatusOK, nil)
	live := s.take(t, 1)
	liveID, _ := strconv.ParseInt(live[0].ID, 10, 64)
	prevID, _ := strconv.ParseInt(got[4].ID, 10, 64)
	if live[0].Type != "user.updated" || liveID <= prevID {
		t.Errorf("live event %+v after %+v", live[0], got[4])
	}
	select {
	case e := <-s.events:
		t.Errorf("unexpected event %+v", e)
	case <-time.After(300 * time.Millisecond):
	}
}
