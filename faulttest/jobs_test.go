//go:build faulttest

package faulttest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestImportJobSurvivesKill9: a 3,000-row import is killed with SIGKILL twice
// while it runs (issue 15, bulk jobs). After each restart the job resumes where
// it stopped, and in the end every row was applied exactly once: 3,000 users,
// one per authId, one user.created event each, and every item's result 201.
// A result of 200 ("authId exists") would mean an item's change committed
// without its result, and was applied again after the restart: the result is
// committed in the change's own transaction, so there is none.
func TestImportJobSurvivesKill9(t *testing.T) {
	sum := newSummary(t)
	st := needStack(t)
	svc := newService(t, st, "JOB_ITEMS_PER_SECOND=400", "JOB_CONCURRENCY=4")
	svc.start(t)
	c := newClient(svc.base, true)
	admin := adminToken(t)

	const rows = 3000
	var csv strings.Builder
	csv.WriteString("authId,email,firstName,lastName\n")
	tag := newUUID()[:8]
	authIDs := make([]string, rows) // by item number - 1
	for i := 0; i < rows; i++ {
		authIDs[i] = newUUID()
		fmt.Fprintf(&csv, "%s,k%d.%s@example.com,Kay,Nine\n", authIDs[i], i, tag)
	}
	upload := []byte(csv.String())
	hdr := map[string]string{"Content-Type": "text/csv", "Idempotency-Key": "kill-import"}
	r := c.do("POST", "/api/v1/jobs", admin, upload, hdr)
	var job struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		Counts struct{ Total, Processed, Succeeded, Failed int }
	}
	if r.status != 202 {
		t.Fatalf("POST /jobs: %s", r)
	}
	if err := r.data(&job); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db, err := pgx.Connect(ctx, st.dbURL)
	if err != nil {
		t.Fatalf("cannot connect to PostgreSQL: %v", err)
	}
	defer db.Close(context.Background())
	schema := pgx.Identifier{svc.name}.Sanitize()
	count := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRow(ctx, strings.ReplaceAll(sql, "$schema", schema), args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}
	done := func() int {
		return count(`SELECT count(*) FROM $schema.job_items WHERE job_id = $1 AND status IS NOT NULL`, job.ID)
	}

	for round, at := range []int{300, 1500} {
		deadline := time.Now().Add(2 * time.Minute)
		for done() < at {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: only %d items done after 2m", round+1, done())
			}
			time.Sleep(20 * time.Millisecond)
		}
		svc.kill(t)
		// Both counts in one statement, one snapshot: a batch the killed process
		// had already sent may still commit in PostgreSQL after the kill, and two
		// statements could see it between them.
		var before, users int
		if err := db.QueryRow(ctx, strings.ReplaceAll(`SELECT
			(SELECT count(*) FROM $schema.job_items WHERE job_id = $1 AND status IS NOT NULL),
			(SELECT count(*) FROM $schema.users)`, "$schema", schema), job.ID).Scan(&before, &users); err != nil {
			t.Fatalf("cannot count items and users: %v", err)
		}
		if users != before {
			t.Errorf("round %d: %d users but %d item results at the kill: a change committed without its result", round+1, users, before)
		}
		svc.start(t)
		sum.add("round %d: SIGKILL with %d of %d items done (%d users)", round+1, before, rows, users)
	}

	// A retry of the upload after the restarts answers the same job.
	if r := c.do("POST", "/api/v1/jobs", admin, upload, hdr); r.status != 202 || !strings.Contains(string(r.body), job.ID) {
		t.Errorf("retried upload: %s", r)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r := c.do("GET", "/api/v1/jobs/"+job.ID, admin, nil, nil)
		if err := r.data(&job); err != nil {
			t.Fatal(err)
		}
		if job.State == "done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s after 3m: %+v", job.State, job.Counts)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if job.Counts.Total != rows || job.Counts.Processed != rows || job.Counts.Succeeded != rows {
		t.Errorf("counts %+v, want %d succeeded", job.Counts, rows)
	}
	if n := count(`SELECT count(*) FROM $schema.job_items WHERE job_id = $1 AND status = 201`, job.ID); n != rows {
		t.Errorf("%d items answered 201, want %d (the others were applied twice or not at all)", n, rows)
	}
	if n := count(`SELECT count(*) FROM $schema.users`); n != rows {
		t.Errorf("%d users, want %d", n, rows)
	}
	if n := count(`SELECT count(DISTINCT auth_id) FROM $schema.users`); n != rows {
		t.Errorf("%d distinct authIds, want %d", n, rows)
	}
	// Each item names the user it created, the one with its row's authId (the
	// row itself is dropped with the item's result).
	if n := count(`SELECT count(*) FROM $schema.job_items i JOIN $schema.users u ON u.id = i.user_id
		JOIN unnest($2::uuid[]) WITH ORDINALITY AS a(auth_id, item) ON a.item = i.item
		WHERE i.job_id = $1 AND u.auth_id = a.auth_id`, job.ID, authIDs); n != rows {
		t.Errorf("%d items name the user of their authId, want %d", n, rows)
	}
	if n := count(`SELECT count(*) FROM $schema.job_items WHERE job_id = $1 AND payload IS NOT NULL`, job.ID); n != 0 {
		t.Errorf("%d finished items still hold their uploaded row", n)
	}
	events := `SELECT count(*) FROM (SELECT user_id FROM $schema.outbox WHERE routing_key = 'user.created'
		UNION ALL SELECT user_id FROM $schema.event_log WHERE routing_key = 'user.created') e`
	if n := count(events); n != rows {
		t.Errorf("%d user.created events, want %d (one per user)", n, rows)
	}
	sum.add("after the restarts: job done, %d users, %d items answered 201, %d user.created events", count(`SELECT count(*) FROM $schema.users`),
		count(`SELECT count(*) FROM $schema.job_items WHERE job_id = $1 AND status = 201`, job.ID), count(events))
}

// TestImportDoesNotStarveReads measures what a running import costs interactive
// traffic (issue 15: "p95 of GET /me under a running 100k import stays within 2×
// of idle"). 100 users read their profile at a steady READ_RATE (default 200/s,
// open loop: a slow answer does not slow the senders), in ROUNDS (default 5)
// rounds of an idle window followed by a window during a fresh 100,000-row import
// at the worker's defaults, cancelled (and stopped) before the next idle window.
// The windows alternate so that both sides sample the same phases of a shared,
// noisy machine: with one idle and one busy window a minute apart, the ratio
// ranged from 1.16 to 2.03 over four runs of the same build; alternated, it
// ranged from 1.39 to 1.91 at 100 items a second, and from 1.22 to 1.24 at the
// default 50. The p95 of all busy samples must be within 2× of
// the p95 of all idle samples. IMPORT_ROWS and WINDOW (seconds, default 4)
// change the imports' size and the windows' length.
func TestImportDoesNotStarveReads(t *testing.T) {
	sum := newSummary(t)
	st := needStack(t)
	var knobs []string // the worker's knobs, when the run sets them (defaults otherwise)
	for _, k := range []string{"JOB_CONCURRENCY", "JOB_ITEMS_PER_SECOND"} {
		if v := os.Getenv(k); v != "" {
			knobs = append(knobs, k+"="+v)
		}
	}
	svc := newService(t, st, knobs...)
	svc.start(t)
	c := newClient(svc.base, true)
	w := createUsers(t, c, 100)
	admin := adminToken(t)
	rows := envInt(t, "IMPORT_ROWS", 100_000)
	window := time.Duration(envInt(t, "WINDOW", 4)) * time.Second
	rounds := envInt(t, "ROUNDS", 5)
	rate := envInt(t, "READ_RATE", 200)

	// Every reader's actor is active before the first idle window.
	for _, u := range w.users {
		if r := c.do("GET", "/api/v1/users/me", u.token, nil, nil); r.status != 200 {
			t.Fatalf("warm-up: %s", r)
		}
	}
	measure := func(d time.Duration) (lat []time.Duration, failed int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		end := time.Now().Add(d)
		for i := 0; time.Now().Before(end); i++ {
			<-tick.C
			u := w.users[i%len(w.users)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := c.do("GET", "/api/v1/users/me", u.token, nil, nil)
				mu.Lock()
				defer mu.Unlock()
				if r.err != nil || r.status != 200 {
					failed++
					return
				}
				lat = append(lat, r.dur)
			}()
		}
		wg.Wait()
		slices.Sort(lat)
		return lat, failed
	}
	q := func(lat []time.Duration, p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	type job struct {
		ID     string
		State  string
		Counts struct{ Total, Processed int }
	}
	getJob := func(j *job) {
		t.Helper()
		if err := c.do("GET", "/api/v1/jobs/"+j.ID, admin, nil, nil).data(j); err != nil {
			t.Fatal(err)
		}
	}
	// startImport uploads a fresh import (new authIds and emails) and returns
	// once the worker applied its first item.
	startImport := func(round int) (job, time.Duration) {
		var csv bytes.Buffer
		csv.WriteString("authId,email,firstName,lastName\n")
		tag := newUUID()[:8]
		for i := 0; i < rows; i++ {
			fmt.Fprintf(&csv, "%s,s%d.%s@example.com,Ess,Tee\n", newUUID(), i, tag)
		}
		start := time.Now()
		r := c.do("POST", "/api/v1/jobs", admin, csv.Bytes(), map[string]string{"Content-Type": "text/csv", "Idempotency-Key": fmt.Sprintf("starve-%d-%s", round, tag)})
		var j job
		if r.status != 202 || r.data(&j) != nil {
			t.Fatalf("POST /jobs: %s", r)
		}
		upload := time.Since(start)
		for getJob(&j); j.Counts.Processed == 0; getJob(&j) {
			time.Sleep(50 * time.Millisecond)
		}
		return j, upload
	}
	// stopImport cancels the job and waits until the worker stopped applying
	// its items (it notices a cancellation between pages, within about a second).
	stopImport := func(j *job) {
		if r := c.do("DELETE", "/api/v1/jobs/"+j.ID, admin, nil, nil); r.status >= 300 {
			t.Fatalf("DELETE /jobs/%s: %s", j.ID, r)
		}
		for last := -1; ; last = j.Counts.Processed {
			time.Sleep(time.Second)
			if getJob(j); j.Counts.Processed == last {
				return
			}
		}
	}

	var idle, busy []time.Duration
	var failed, applied int
	var rates []string
	for round := 1; round <= rounds; round++ {
		lat, f := measure(window)
		idle, failed = append(idle, lat...), failed+f
		j, upload := startImport(round)
		before := j.Counts.Processed
		lat2, f := measure(window)
		busy, failed = append(busy, lat2...), failed+f
		getJob(&j)
		if j.State != "running" {
			t.Errorf("round %d: the import was %s before the window ended: make IMPORT_ROWS larger", round, j.State)
		}
		applied += j.Counts.Processed - before
		rates = append(rates, fmt.Sprintf("round %d: idle p95 %s, busy p95 %s, upload %s", round,
			q(lat, .95).Round(time.Microsecond), q(lat2, .95).Round(time.Microsecond), upload.Round(time.Millisecond)))
		stopImport(&j)
	}
	slices.Sort(idle)
	slices.Sort(busy)
	ratio := float64(q(busy, 0.95)) / float64(q(idle, 0.95))
	total := window * time.Duration(rounds)
	sum.add("%v GET /me at %d/s, %d rounds of %s idle then %s during a %d-row import: idle p50 %s p95 %s p99 %s (%d); busy p50 %s p95 %s p99 %s (%d); %d failed; p95 ratio %.2f; the jobs applied %d items in %s (%.0f/s); %s",
		knobs, rate, rounds, window, window, rows, q(idle, .5), q(idle, .95), q(idle, .99), len(idle), q(busy, .5), q(busy, .95), q(busy, .99), len(busy),
		failed, ratio, applied, total, float64(applied)/total.Seconds(), strings.Join(rates, "; "))
	if failed > 0 {
		t.Errorf("%d reads failed", failed)
	}
	if ratio > 2 {
		t.Errorf("p95 of GET /me during the imports is %.2f× idle, want at most 2×", ratio)
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
