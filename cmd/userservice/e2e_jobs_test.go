package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
)

// apiJob is a job as the API answers it.
type apiJob struct {
	ID     string                `json:"id"`
	Type   string                `json:"type"`
	State  string                `json:"state"`
	Params userservice.JobParams `json:"params"`
	Counts userservice.JobCounts `json:"counts"`
	// Progress is 0-100.
	Progress float64 `json:"progress"`
}

// jobResult is one line of GET /jobs/{id}/results.
type jobResult struct {
	Item   int64   `json:"item"`
	ID     *string `json:"id"`
	Status int     `json:"status"`
	Error  *string `json:"error"`
}

// startJob posts a job and returns it (202).
func (svc *service) startJob(tb testing.TB, admin, contentType string, body any, key string) apiJob {
	tb.Helper()
	r := svc.do(tb, "POST", "/api/v1/jobs", admin, body, "Content-Type", contentType, "Idempotency-Key", key)
	var j apiJob
	r.data(tb, http.StatusAccepted, &j)
	if loc := r.Header.Get("Location"); loc != "/api/v1/jobs/"+j.ID {
		tb.Errorf("Location %q, want /api/v1/jobs/%s", loc, j.ID)
	}
	if j.State != "queued" {
		tb.Errorf("new job in state %q", j.State)
	}
	return j
}

// waitJob polls the job until it is finished and returns it.
func (svc *service) waitJob(tb testing.TB, admin, id string) apiJob {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var j apiJob
		svc.do(tb, "GET", "/api/v1/jobs/"+id, admin, nil).data(tb, http.StatusOK, &j)
		if userservice.JobState(j.State).Finished() {
			return j
		}
		if time.Now().After(deadline) {
			tb.Fatalf("job %s still %s after 2m: %+v", id, j.State, j.Counts)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// jobResults reads every result line of the job.
func (svc *service) jobResults(tb testing.TB, admin, id string) []jobResult {
	tb.Helper()
	r := svc.do(tb, "GET", "/api/v1/jobs/"+id+"/results", admin, nil)
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-ndjson") {
		tb.Fatalf("%s: want 200 NDJSON", r)
	}
	var out []jobResult
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		var res jobResult
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			tb.Fatalf("result line %q: %v", sc.Text(), err)
		}
		if n := len(out); n > 0 && out[n-1].Item >= res.Item {
			tb.Fatalf("results out of order: item %d after %d", res.Item, out[n-1].Item)
		}
		out = append(out, res)
	}
	return out
}

// TestJobsImport imports users from CSV and NDJSON uploads (issue 15, bulk jobs):
// each row is validated as POST /users, created through its actor with its
// user.created event, an authId that exists is left alone (twice in one file,
// or imported before), and the job's counts and per-item results say so. A
// retry with the same Idempotency-Key answers the first job; the same key with
// another upload answers 422.
func TestJobsImport(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, map[string]string{"JOB_ITEMS_PER_SECOND": "-1", "JOB_MAX_ITEMS": "40"})
	admin := st.adminToken(t)
	existing := svc.createUser(t, admin, newUserBody(t))

	tag := randomHex(t, 4)
	var csv strings.Builder
	csv.WriteString("authId,email,firstName,lastName,username,bio\n")
	var newAuthIDs []string
	for i := 0; i < 30; i++ {
		a := userservice.NewID()
		newAuthIDs = append(newAuthIDs, a)
		fmt.Fprintf(&csv, "%s,imp%d.%s@example.com,Ada %d,\"Lovelace, the %dth\",imp_%s_%d,\n", a, i, tag, i, i, tag, i)
	}
	fmt.Fprintf(&csv, "%s,other.%s@example.com,Al,Ready,,\n", existing.AuthID, tag)       // item 31: exists → 200
	fmt.Fprintf(&csv, "%s,bad-email,Bad,Row,,\n", userservice.NewID())                    // item 32: 400
	fmt.Fprintf(&csv, "%s,dup.%s@example.com,Dup,Licate,,\n", newAuthIDs[0], tag)         // item 33: same authId as item 1 → 200
	fmt.Fprintf(&csv, "%s,short.%s@example.com,Short\n", userservice.NewID(), tag)        // item 34: wrong field count → 400
	fmt.Fprintf(&csv, "%s,imp0.%s@example.com,Taken,Email,,\n", userservice.NewID(), tag) // item 35: email of item 1 → 409
	body := csv.String()

	// Refusals first: nothing is created by them.
	svc.do(t, "POST", "/api/v1/jobs", admin, body, "Content-Type", "text/csv").fail(t, http.StatusBadRequest, "INVALID_PARAMETER")
	student := st.token(t, userservice.NewID(), userservice.NewID(), "s@example.com", userservice.RoleStudent)
	svc.do(t, "POST", "/api/v1/jobs", student, body, "Content-Type", "text/csv", "Idempotency-Key", "k0").fail(t, http.StatusForbidden, "")
	svc.do(t, "POST", "/api/v1/jobs", admin, body, "Content-Type", "text/plain", "Idempotency-Key", "k0").fail(t, http.StatusUnsupportedMediaType, "")
	svc.do(t, "POST", "/api/v1/jobs", admin, "authId,email,nickname\n", "Content-Type", "text/csv", "Idempotency-Key", "k0").fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
	tooMany := "authId,email,firstName,lastName\n" + strings.Repeat(userservice.NewID()+",x@example.com,A,B\n", 41)
	svc.do(t, "POST", "/api/v1/jobs", admin, tooMany, "Content-Type", "text/csv", "Idempotency-Key", "k0").fail(t, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	if n := st.count(t, `SELECT count(*) FROM jobs`); n != 0 {
		t.Fatalf("%d jobs after refused uploads", n)
	}

	j := svc.startJob(t, admin, "text/csv", body, "import-1")
	if j.Type != "import" || j.Params.Format != "csv" || j.Counts.Total != 35 {
		t.Errorf("job %+v, want an import of 35 csv items", j)
	}
	replay := svc.do(t, "POST", "/api/v1/jobs", admin, body, "Content-Type", "text/csv", "Idempotency-Key", "import-1")
	var again apiJob
	replay.data(t, http.StatusAccepted, &again)
	if again.ID != j.ID || replay.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry answered job %s (replayed %q), want %s", again.ID, replay.Header.Get("Idempotent-Replayed"), j.ID)
	}
	svc.do(t, "POST", "/api/v1/jobs", admin, body+"\n"+userservice.NewID()+",z@example.com,Z,Z,,\n", "Content-Type", "text/csv",
		"Idempotency-Key", "import-1").fail(t, http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED")

	done := svc.waitJob(t, admin, j.ID)
	want := userservice.JobCounts{Total: 35, Processed: 35, Succeeded: 32, Failed: 3}
	if done.State != "done" || done.Counts != want || done.Progress != 100 {
		t.Fatalf("finished job %+v, want done with %+v", done, want)
	}
	// An uploaded row is kept only until its item has a result: the users' data
	// lives in their rows alone (an erasure need not look in job_items).
	if n := st.count(t, `SELECT count(*) FROM job_items WHERE job_id = $1 AND payload IS NOT NULL`, j.ID); n != 0 {
		t.Errorf("%d finished items still hold their uploaded row", n)
	}
	results := svc.jobResults(t, admin, j.ID)
	if len(results) != 35 {
		t.Fatalf("%d results, want 35", len(results))
	}
	statuses := map[int64]int{31: 200, 32: 400, 33: 200, 34: 400, 35: 409}
	for _, r := range results {
		want, ok := statuses[r.Item]
		if !ok {
			want = 201
		}
		if r.Status != want {
			t.Errorf("item %d: status %d (%v), want %d", r.Item, r.Status, r.Error, want)
		}
		if (r.Status >= 400) != (r.Error != nil) {
			t.Errorf("item %d: status %d with error %v", r.Item, r.Status, r.Error)
		}
		if r.Status < 400 && r.ID == nil {
			t.Errorf("item %d: no user id", r.Item)
		}
	}
	if r := results[30]; r.ID == nil || *r.ID != existing.ID {
		t.Errorf("item 31 (existing authId) names user %v, want %s", r.ID, existing.ID)
	}
	if r := results[31]; r.Error == nil || !strings.Contains(*r.Error, "email") {
		t.Errorf("item 32 error %v does not name the email", r.Error)
	}
	for _, a := range append(newAuthIDs, existing.AuthID) {
		if n := st.count(t, `SELECT count(*) FROM users WHERE auth_id = $1`, a); n != 1 {
			t.Errorf("authId %s: %d users", a, n)
		}
	}
	// One user.created per created user, committed with it (outbox or published).
	created := `SELECT (SELECT count(*) FROM outbox WHERE routing_key = 'user.created') + (SELECT count(*) FROM event_log WHERE routing_key = 'user.created')`
	if n := st.count(t, created); n != 31 { // 30 imported + the one created beforehand
		t.Errorf("%d user.created events, want 31", n)
	}
	var u apiUser
	svc.do(t, "GET", "/api/v1/users/"+*results[0].ID, admin, nil).data(t, http.StatusOK, &u)
	if u.AuthID != newAuthIDs[0] || u.LastName != "Lovelace, the 0th" || u.Bio != nil || u.Status != "active" {
		t.Errorf("imported user %+v", u)
	}

	// The same users again as NDJSON: every row exists, nothing changes.
	var nd strings.Builder
	for i, a := range newAuthIDs[:10] {
		fmt.Fprintf(&nd, `{"authId":%q,"email":"imp%d.%s@example.com","firstName":"X","lastName":"Y"}`+"\n\n", a, i, tag)
	}
	nd.WriteString(`{"authId":"` + userservice.NewID() + `","email":"n@example.com","firstName":"N","lastName":"D","extra":1}` + "\n")
	j2 := svc.startJob(t, admin, "application/x-ndjson", nd.String(), "import-2")
	done2 := svc.waitJob(t, admin, j2.ID)
	if want := (userservice.JobCounts{Total: 11, Processed: 11, Succeeded: 10, Failed: 1}); done2.Counts != want {
		t.Errorf("second import counts %+v, want %+v", done2.Counts, want)
	}
	if n := st.count(t, created); n != 31 {
		t.Errorf("%d user.created events after importing existing users again, want 31", n)
	}
	res2 := svc.jobResults(t, admin, j2.ID)
	if r := res2[10]; r.Status != 400 || r.Error == nil || !strings.Contains(*r.Error, "extra") {
		t.Errorf("row with an unknown field: %+v", r)
	}
	svc.do(t, "GET", "/api/v1/jobs/"+userservice.NewID(), admin, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
	svc.do(t, "GET", "/api/v1/jobs/nope", admin, nil).fail(t, http.StatusBadRequest, "INVALID_PARAMETER")
	svc.do(t, "GET", "/api/v1/jobs/"+j.ID, student, nil).fail(t, http.StatusForbidden, "")
	svc.do(t, "DELETE", "/api/v1/jobs/"+j.ID, admin, nil).fail(t, http.StatusConflict, "CONFLICT")
}

// TestJobsBulkChanges runs status, enroll, unenroll-by-course and delete jobs:
// each user changes through its actor with the events and audit records of the
// single requests, bad and unknown ids get their own results, and a job can be
// cancelled while it runs.
func TestJobsBulkChanges(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, map[string]string{"JOB_ITEMS_PER_SECOND": "-1"})
	admin := st.adminToken(t)
	var ids []string
	for i := 0; i < 12; i++ {
		ids = append(ids, svc.createUser(t, admin, newUserBody(t)).ID)
	}
	unknown := userservice.NewID()

	// Validation of the JSON body.
	svc.do(t, "POST", "/api/v1/jobs", admin, map[string]any{"type": "status", "userIds": ids}, "Idempotency-Key", "v1").
		fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
	svc.do(t, "POST", "/api/v1/jobs", admin, map[string]any{"type": "enroll", "courseId": "x", "userIds": ids}, "Idempotency-Key", "v2").
		fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
	svc.do(t, "POST", "/api/v1/jobs", admin, map[string]any{"type": "import", "userIds": ids}, "Idempotency-Key", "v3").
		fail(t, http.StatusBadRequest, "VALIDATION_ERROR")

	list := append(append([]string{}, ids...), "not-a-uuid", unknown, ids[0])
	j := svc.startJob(t, admin, "application/json", map[string]any{"type": "status", "status": "suspended", "userIds": list}, "status-1")
	done := svc.waitJob(t, admin, j.ID)
	if want := (userservice.JobCounts{Total: 14, Processed: 14, Succeeded: 12, Failed: 2}); done.Counts != want {
		t.Errorf("status job counts %+v, want %+v (a repeated id counts once)", done.Counts, want)
	}
	res := svc.jobResults(t, admin, j.ID)
	if res[12].Status != 400 || res[13].Status != 404 || res[13].ID == nil || *res[13].ID != unknown {
		t.Errorf("bad and unknown ids: %+v %+v", res[12], res[13])
	}
	for _, id := range ids {
		if u := st.mustUserRow(t, id); u.Status != "suspended" {
			t.Errorf("user %s is %s after the status job", id, u.Status)
		}
	}
	if n := st.count(t, `SELECT count(*) FROM audit_log WHERE action = 'user.status_changed'`); n != 12 {
		t.Errorf("%d status audit records, want 12", n)
	}
	events := func(typ string) int {
		return st.count(t, `SELECT (SELECT count(*) FROM outbox WHERE routing_key = $1) + (SELECT count(*) FROM event_log WHERE routing_key = $1)`, typ)
	}
	if n := events("user.status_changed"); n != 12 {
		t.Errorf("%d user.status_changed events, want 12", n)
	}
	// The same change again changes nothing: 200 each, no event.
	j = svc.startJob(t, admin, "application/json", map[string]any{"type": "status", "status": "suspended", "userIds": ids}, "status-2")
	if done := svc.waitJob(t, admin, j.ID); done.Counts.Succeeded != 12 || events("user.status_changed") != 12 {
		t.Errorf("repeated status job: %+v, %d events", done.Counts, events("user.status_changed"))
	}
	svc.waitJob(t, admin, svc.startJob(t, admin, "application/json", map[string]any{"type": "status", "status": "active", "userIds": ids}, "status-3").ID)

	course := userservice.NewID()
	j = svc.startJob(t, admin, "application/json", map[string]any{"type": "enroll", "courseId": course, "userIds": ids[:8]}, "enroll-1")
	if done := svc.waitJob(t, admin, j.ID); done.Counts.Succeeded != 8 {
		t.Errorf("enroll job %+v", done.Counts)
	}
	for _, r := range svc.jobResults(t, admin, j.ID) {
		if r.Status != 201 {
			t.Errorf("enroll item %d: %d", r.Item, r.Status)
		}
	}
	if n := st.count(t, `SELECT count(*) FROM enrollments WHERE course_id = $1`, course); n != 8 {
		t.Errorf("%d enrollments, want 8", n)
	}
	// Unenroll by course: every user enrolled in it.
	j = svc.startJob(t, admin, "application/json", map[string]any{"type": "unenroll", "courseId": course}, "unenroll-1")
	if j.Counts.Total != 8 {
		t.Errorf("unenroll by course has %d items, want 8", j.Counts.Total)
	}
	if done := svc.waitJob(t, admin, j.ID); done.Counts.Succeeded != 8 {
		t.Errorf("unenroll job %+v", done.Counts)
	}
	if n := st.count(t, `SELECT count(*) FROM enrollments WHERE course_id = $1`, course); n != 0 {
		t.Errorf("%d enrollments left, want 0", n)
	}
	if n := events("user.unenrolled"); n != 8 {
		t.Errorf("%d user.unenrolled events, want 8", n)
	}

	j = svc.startJob(t, admin, "application/json", map[string]any{"type": "delete", "userIds": ids[:3]}, "delete-1")
	svc.waitJob(t, admin, j.ID)
	for _, id := range ids[:3] {
		if u := st.mustUserRow(t, id); u.Status != "deleted" {
			t.Errorf("user %s is %s after the delete job", id, u.Status)
		}
	}
	if n := events("user.deleted"); n != 3 {
		t.Errorf("%d user.deleted events, want 3", n)
	}
}

// TestJobsCancel cancels a running job: it stops within a page of items, the
// items applied stay applied and the others get no result.
func TestJobsCancel(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, map[string]string{"JOB_ITEMS_PER_SECOND": "20", "JOB_CONCURRENCY": "1"})
	admin := st.adminToken(t)
	var sb strings.Builder
	sb.WriteString("authId,email,firstName,lastName\n")
	for i := 0; i < 600; i++ {
		fmt.Fprintf(&sb, "%s,c%d.%s@example.com,C,D\n", userservice.NewID(), i, randomHex(t, 3))
	}
	j := svc.startJob(t, admin, "text/csv", sb.String(), "cancel-1")
	eventually(t, "the job runs", func() error {
		var cur apiJob
		if err := jsonData(svc.do(t, "GET", "/api/v1/jobs/"+j.ID, admin, nil), &cur); err != nil {
			return err
		}
		if cur.State != "running" || st.count(t, `SELECT count(*) FROM job_items WHERE status IS NOT NULL`) == 0 {
			return fmt.Errorf("state %s", cur.State)
		}
		return nil
	})
	var c apiJob
	svc.do(t, "DELETE", "/api/v1/jobs/"+j.ID, admin, nil).data(t, http.StatusOK, &c)
	if c.State != "cancelled" {
		t.Fatalf("cancelled job in state %s", c.State)
	}
	time.Sleep(2 * time.Second) // the worker finishes its page (a second's worth) and stops
	applied := st.count(t, `SELECT count(*) FROM job_items WHERE status IS NOT NULL`)
	time.Sleep(2 * time.Second)
	if again := st.count(t, `SELECT count(*) FROM job_items WHERE status IS NOT NULL`); again != applied || applied >= 600 {
		t.Errorf("items with a result: %d, then %d (of 600): the worker did not stop", applied, again)
	}
	if users := st.count(t, `SELECT count(*) FROM users`); users != applied {
		t.Errorf("%d users for %d applied items", users, applied)
	}
	svc.do(t, "DELETE", "/api/v1/jobs/"+j.ID, admin, nil).fail(t, http.StatusConflict, "CONFLICT")
	if got := len(svc.jobResults(t, admin, j.ID)); got != applied {
		t.Errorf("%d results, want %d", got, applied)
	}
}
