package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
)

type apiSession struct {
	ID        string  `json:"id"`
	SessionID string  `json:"sessionId"`
	StartedAt string  `json:"startedAt"`
	EndedAt   *string `json:"endedAt"`
	Active    bool    `json:"active"`
}

// TestSessionsBeyondTheActor: GET /{id}/sessions pages through every session
// in PostgreSQL, newest first, also beyond the newest 100 the actor holds, and
// reflects each acknowledged login at once. QUOTA_SESSIONS_PER_USER=0 lets the
// sessions pile up as they did before the quota; the end of the test turns it
// on and checks that one login brings every open session, held or not, to it.
func TestSessionsBeyondTheActor(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, map[string]string{"QUOTA_SESSIONS_PER_USER": "0"})
	st.waitConsumer(t)
	admin := st.adminToken(t)
	body := newUserBody(t)
	u := svc.createUser(t, admin, body)
	const n = userservice.MaxSessionsKept + 30
	start := time.Now().Add(-time.Hour).UTC()
	for i := range n {
		id, b := authEvent("auth.user.login", map[string]any{
			"authId": u.AuthID, "sessionId": fmt.Sprintf("s-%03d", i),
			"loginAt": userservice.NewTime(start.Add(time.Duration(i) * time.Second)).String(),
		})
		st.publish(t, "auth.user.login", id, b)
	}
	eventually(t, "every login applied", func() error {
		if c := st.count(t, `SELECT count(*) FROM sessions WHERE user_id = $1`, u.ID); c != n {
			return fmt.Errorf("%d sessions in PostgreSQL, want %d", c, n)
		}
		return nil
	})

	list := func(page, limit int) ([]apiSession, *userservice.Pagination) {
		t.Helper()
		var out []apiSession
		e := svc.do(t, "GET", fmt.Sprintf("/api/v1/users/%s/sessions?page=%d&limit=%d", u.ID, page, limit), admin, nil).data(t, http.StatusOK, &out)
		return out, e.Pagination
	}
	var all []apiSession
	for page := 1; ; page++ {
		items, p := list(page, 40)
		if p == nil || p.Total != n {
			t.Fatalf("page %d: pagination %+v, want total %d", page, p, n)
		}
		all = append(all, items...)
		if !p.HasNext {
			break
		}
	}
	if len(all) != n {
		t.Fatalf("%d sessions over every page, want %d", len(all), n)
	}
	for i, s := range all {
		if want := fmt.Sprintf("s-%03d", n-1-i); s.SessionID != want || !s.Active || s.EndedAt != nil {
			t.Fatalf("session %d is %+v, want %s, open (newest first)", i, s, want)
		}
	}
	// The user's own token reaches them too, and a logout shows at once.
	own := st.tokenFor(t, u)
	id, b := authEvent("auth.user.logout", map[string]any{"authId": u.AuthID, "sessionId": fmt.Sprintf("s-%03d", n-1)})
	st.publish(t, "auth.user.logout", id, b)
	eventually(t, "the logout", func() error {
		r, err := svc.send("GET", "/api/v1/users/me/sessions?limit=1", own, nil)
		if err != nil {
			return err
		}
		var items []apiSession
		if err := jsonData(r, &items); err != nil {
			return err
		}
		if len(items) != 1 || items[0].Active || items[0].EndedAt == nil {
			return fmt.Errorf("newest session %+v, want ended", items)
		}
		return nil
	})
	items, p := list(4, 40) // the last page: the oldest sessions, beyond the actor's 100
	if len(items) != n-3*40 || p.HasNext || items[len(items)-1].SessionID != "s-000" {
		t.Errorf("last page %+v %+v", items, p)
	}

	// A logout without a session id ends every open session, the ones only
	// PostgreSQL holds too (issue 11).
	id, b = authEvent("auth.user.logout", map[string]any{"authId": u.AuthID})
	st.publish(t, "auth.user.logout", id, b)
	eventually(t, "the logout of every session", func() error {
		if c := st.count(t, `SELECT count(*) FROM sessions WHERE user_id = $1 AND ended_at IS NULL`, u.ID); c != 0 {
			return fmt.Errorf("%d sessions still open in PostgreSQL", c)
		}
		return nil
	})
	for page := 1; page <= 4; page++ {
		items, _ := list(page, 40)
		for _, s := range items {
			if s.Active || s.EndedAt == nil {
				t.Fatalf("page %d: session %+v still open", page, s)
			}
		}
	}

	// With a quota of 5 open sessions, a user with 130 open sessions (30 of them
	// beyond the actor) who logs in once more keeps the newest 5.
	for i := range n {
		id, b := authEvent("auth.user.login", map[string]any{
			"authId": u.AuthID, "sessionId": fmt.Sprintf("r-%03d", i),
			"loginAt": userservice.NewTime(start.Add(time.Duration(i) * time.Second)).String(),
		})
		st.publish(t, "auth.user.login", id, b)
	}
	eventually(t, "the second round of logins", func() error {
		if c := st.count(t, `SELECT count(*) FROM sessions WHERE user_id = $1 AND ended_at IS NULL`, u.ID); c != n {
			return fmt.Errorf("%d sessions open in PostgreSQL, want %d", c, n)
		}
		return nil
	})
	if err := svc.stop(); err != nil {
		t.Fatal(err)
	}
	svc = st.start(t, map[string]string{"QUOTA_SESSIONS_PER_USER": "5"})
	st.waitConsumer(t)
	id, b = authEvent("auth.user.login", map[string]any{"authId": u.AuthID, "sessionId": "latest"})
	st.publish(t, "auth.user.login", id, b)
	eventually(t, "the quota of open sessions", func() error {
		if c := st.count(t, `SELECT count(*) FROM sessions WHERE user_id = $1 AND ended_at IS NULL`, u.ID); c != 5 {
			return fmt.Errorf("%d sessions open in PostgreSQL, want 5", c)
		}
		return nil
	})
	open := map[string]bool{}
	for page := 1; page <= 5; page++ {
		items, _ := list(page, 100)
		for _, s := range items {
			if s.Active {
				open[s.SessionID] = true
			}
		}
	}
	want := map[string]bool{"latest": true}
	for i := n - 4; i < n; i++ {
		want[fmt.Sprintf("r-%03d", i)] = true
	}
	if fmt.Sprint(open) != fmt.Sprint(want) {
		t.Fatalf("open sessions %v, want %v", open, want)
	}
	if c := st.count(t, `SELECT count(*) FROM sessions WHERE user_id = $1`, u.ID); c != 2*n+1 {
		t.Fatalf("%d session rows, want %d (ended ones stay)", c, 2*n+1)
	}
}
