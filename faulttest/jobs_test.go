//go:build faulttest

package faulttest

import (
	"context"
	"fmt"
	"strings"
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
	for i := 0; i < rows; i++ {
		fmt.Fprintf(&csv, "%s,k%d.%s@example.com,Kay,Nine\n", newUUID(), i, tag)
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
		before := done()
		users := count(`SELECT count(*) FROM $schema.users`)
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
	// Each item names the user it created, the one with its authId.
	if n := count(`SELECT count(*) FROM $schema.job_items i JOIN $schema.users u ON u.id = i.user_id
		WHERE i.job_id = $1 AND u.auth_id = (convert_from(i.payload, 'UTF8')::jsonb->>'authId')::uuid`, job.ID); n != rows {
		t.Errorf("%d items name the user of their authId, want %d", n, rows)
	}
	events := `SELECT count(*) FROM (SELECT user_id FROM $schema.outbox WHERE routing_key = 'user.created'
		UNION ALL SELECT user_id FROM $schema.event_log WHERE routing_key = 'user.created') e`
	if n := count(events); n != rows {
		t.Errorf("%d user.created events, want %d (one per user)", n, rows)
	}
	sum.add("after the restarts: job done, %d users, %d items answered 201, %d user.created events", count(`SELECT count(*) FROM $schema.users`),
		count(`SELECT count(*) FROM $schema.job_items WHERE job_id = $1 AND status = 201`, job.ID), count(events))
}
