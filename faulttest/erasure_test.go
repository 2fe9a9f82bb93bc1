//go:build faulttest

package faulttest

import (
	"context"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestKill9MidErasure (issue 14): 150 users request their erasure with a
// 2-second cool-off; the service is killed with SIGKILL while the worker runs
// them, restarted, and every erasure must finish exactly once: state done,
// caches cleaned, the personal values gone, and one user.erased per user among
// the committed events (outbox and event log).
func TestKill9MidErasure(t *testing.T) {
	sum := newSummary(t)
	st := needStack(t)
	svc := newService(t, st, "ERASURE_COOL_OFF=2s")
	svc.start(t)
	c := newClient(svc.base, true)
	w := createUsers(t, c, 150)

	start := time.Now()
	for _, u := range w.users {
		if r := c.do(http.MethodPost, "/api/v1/users/"+u.id+"/erasure", u.token, nil, nil); r.status != http.StatusAccepted {
			t.Fatalf("erasure request of %s: %s", u.id, r)
		}
	}
	ctx := context.Background()
	db, err := pgx.Connect(ctx, st.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	table := func(name string) string { return pgx.Identifier{svc.name, name}.Sanitize() }
	count := func(q string) int {
		t.Helper()
		var n int
		if err := db.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Kill once the first erasures are due, at a random moment of the worker's run.
	for time.Since(start) < 2*time.Second || count(`SELECT count(*) FROM `+table("erasures")+` WHERE state = 'done'`) == 0 {
		if time.Since(start) > 30*time.Second {
			t.Fatal("no erasure ran within 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
	svc.kill(t)
	doneAtKill := count(`SELECT count(*) FROM ` + table("erasures") + ` WHERE state = 'done'`)
	cleanedAtKill := count(`SELECT count(*) FROM ` + table("erasures") + ` WHERE cleaned_at IS NOT NULL`)

	svc.start(t)
	deadline := time.Now().Add(60 * time.Second)
	for count(`SELECT count(*) FROM `+table("erasures")+` WHERE state = 'done' AND cleaned_at IS NOT NULL`) != len(w.users) {
		if time.Now().After(deadline) {
			t.Fatalf("erasures not all done and cleaned 60 s after the restart: %d", count(`SELECT count(*) FROM `+table("erasures")+` WHERE state = 'done'`))
		}
		time.Sleep(100 * time.Millisecond)
	}
	erasedEvents := `SELECT count(*) FROM (SELECT user_id FROM ` + table("outbox") + ` WHERE routing_key = 'user.erased'
		UNION ALL SELECT user_id FROM ` + table("event_log") + ` WHERE routing_key = 'user.erased') e`
	if n := count(erasedEvents); n != len(w.users) {
		t.Errorf("%d user.erased events committed for %d users", n, len(w.users))
	}
	if n := count(`SELECT count(*) FROM (SELECT user_id FROM (SELECT user_id FROM ` + table("outbox") + ` WHERE routing_key = 'user.erased'
		UNION ALL SELECT user_id FROM ` + table("event_log") + ` WHERE routing_key = 'user.erased') e GROUP BY user_id HAVING count(*) > 1) d`); n != 0 {
		t.Errorf("users with more than one user.erased")
	}
	if n := count(`SELECT count(*) FROM ` + table("users") + ` WHERE email NOT LIKE 'erased+%@invalid' OR first_name <> 'Erased'`); n != 0 {
		t.Errorf("%d users not erased", n)
	}
	if n := count(`SELECT count(*) FROM ` + table("audit_log") + ` WHERE action = 'erasure_done'`); n != len(w.users) {
		t.Errorf("%d erasure_done audit records, want %d", n, len(w.users))
	}
	for _, u := range w.users[:5] {
		if r := c.do(http.MethodGet, "/api/v1/users/"+u.id, adminToken(t), nil, nil); r.status != http.StatusNotFound {
			t.Errorf("GET an erased user: %s", r)
		}
	}
	sum.add("kill with %d of %d erased (%d cleaned); after the restart all %d done once", doneAtKill, len(w.users), cleanedAtKill, len(w.users))
	if doneAtKill == len(w.users) {
		t.Log("note: every erasure had run before the kill (the kill came after the worker's run)")
	}
}
