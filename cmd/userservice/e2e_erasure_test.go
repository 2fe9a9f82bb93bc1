package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice"
)

// apiErasure is an erasure request as GET …/erasure shows it.
type apiErasure struct {
	State       string  `json:"state"`
	ScheduledAt string  `json:"scheduledAt"`
	RequestedAt string  `json:"requestedAt"`
	CancelledAt *string `json:"cancelledAt"`
	DoneAt      *string `json:"doneAt"`
}

// piiUser creates a user with every personal field set to a value found
// nowhere else, and returns the user and those values.
func piiUser(t *testing.T, st *stack, svc *service, admin string, headers ...string) (apiUser, []string) {
	t.Helper()
	tag := randomHex(t, 6)
	body := map[string]any{
		"authId": userservice.NewID(), "email": "pii." + tag + "@example.com", "username": "piiuser_" + tag,
		"firstName": "Firstpii" + tag, "lastName": "Lastpii" + tag, "displayName": "Displaypii " + tag,
		"bio": "Biopii " + tag, "phone": "+1415" + fmt.Sprint(1000000+int(tag[0])*1000+int(tag[1])), "avatarUrl": "https://example.com/avatar-" + tag + ".png",
	}
	var u apiUser
	svc.do(t, "POST", "/api/v1/users", admin, body, headers...).data(t, http.StatusCreated, &u)
	pii := []string{body["email"].(string), body["username"].(string), body["firstName"].(string), body["lastName"].(string),
		body["displayName"].(string), body["bio"].(string), body["phone"].(string), body["avatarUrl"].(string),
		"203.0.113." + fmt.Sprint(int(tag[2])), "PiiAgent/" + tag}
	id, b := authEvent("auth.user.login", map[string]any{"authId": u.AuthID, "sessionId": "pii-" + tag, "ipAddress": pii[8], "userAgent": pii[9]})
	st.publish(t, "auth.user.login", id, b)
	eventually(t, "the login", func() error {
		if c := st.count(t, `SELECT count(*) FROM sessions WHERE user_id = $1`, u.ID); c != 1 {
			return fmt.Errorf("%d sessions", c)
		}
		return nil
	})
	return u, pii
}

// traces returns where any of the values still appears: every column of every
// table of the test's schema (bytea read as text), and every Redis key under
// its prefix.
func traces(t *testing.T, st *stack, values []string) []string {
	t.Helper()
	ctx := context.Background()
	db := st.db(t)
	rows, err := db.Query(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns
	WHERE table_schema = $1 ORDER BY table_name, ordinal_position`, st.schema)
	if err != nil {
		t.Fatal(err)
	}
	cols := map[string][]string{}
	for rows.Next() {
		var table, col, typ string
		if err := rows.Scan(&table, &col, &typ); err != nil {
			t.Fatal(err)
		}
		expr := pgx.Identifier{col}.Sanitize() + "::text"
		if typ == "bytea" {
			expr = "encode(" + pgx.Identifier{col}.Sanitize() + ", 'escape')"
		}
		cols[table] = append(cols[table], "coalesce("+expr+", '')")
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(cols) < 8 {
		t.Fatalf("only %d tables in schema %s", len(cols), st.schema)
	}
	var found []string
	for table, exprs := range cols {
		q := `SELECT count(*) FROM ` + pgx.Identifier{table}.Sanitize() + ` WHERE position(lower($1) in lower(concat_ws(' ', ` + strings.Join(exprs, ", ") + `))) > 0`
		for _, v := range values {
			var n int
			if err := db.QueryRow(ctx, q, v).Scan(&n); err != nil {
				t.Fatalf("grep %s: %v", table, err)
			}
			if n > 0 {
				found = append(found, fmt.Sprintf("table %s: %d rows hold %q", table, n, v))
			}
		}
	}
	rdb := st.redis(t)
	var cursor uint64
	keys := 0
	for {
		e, err := rdb.Do(ctx, rdb.B().Scan().Cursor(cursor).Match(st.prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range e.Elements {
			keys++
			typ, err := rdb.Do(ctx, rdb.B().Type().Key(k).Build()).ToString()
			if err != nil {
				t.Fatal(err)
			}
			var content string
			switch typ {
			case "string":
				content, _ = rdb.Do(ctx, rdb.B().Get().Key(k).Build()).ToString()
			case "hash":
				m, _ := rdb.Do(ctx, rdb.B().Hgetall().Key(k).Build()).AsStrMap()
				content = fmt.Sprint(m)
			default:
				content, _ = rdb.Do(ctx, rdb.B().Dump().Key(k).Build()).ToString()
			}
			for _, v := range values {
				if strings.Contains(strings.ToLower(k+" "+content), strings.ToLower(v)) {
					found = append(found, fmt.Sprintf("redis key %s holds %q", k, v))
				}
			}
		}
		if e.Cursor == 0 {
			break
		}
		cursor = e.Cursor
	}
	t.Logf("grepped %d tables and %d Redis keys for %d values", len(cols), keys, len(values))
	return found
}

// TestErasureLeavesNoTrace (issue 14): with a 2-second cool-off, an erasure
// requested by the user suspends them at once, revokes their sessions, runs
// once, publishes one user.erased {userId, authId}, and leaves none of their
// personal values in any table, retained event or Redis key; the user is then
// 404 on every route, the request stays readable by admins, and the email and
// username are free again.
func TestErasureLeavesNoTrace(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, map[string]string{"ERASURE_COOL_OFF": "2s", "SNAPSHOT_WRITE_DELAY": "0s"})
	st.waitConsumer(t)
	admin := st.adminToken(t)
	tp := st.tap(t)
	u, pii := piiUser(t, st, svc, admin, "Idempotency-Key", "create-"+randomHex(t, 4))
	own := st.tokenFor(t, u)
	base := "/api/v1/users/" + u.ID
	course := userservice.NewID()
	svc.do(t, "POST", base+"/enrollments", own, map[string]any{"courseId": course}, "Idempotency-Key", "enroll-1").data(t, http.StatusCreated, nil)
	svc.do(t, "PUT", base+"/enrollments/"+course+"/progress", own, map[string]any{"progress": 50, "timeSpentSeconds": 30}).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", base+"/preferences/ui", own, map[string]any{"preferences": []map[string]any{{"key": "nickname", "value": pii[4]}}}).data(t, http.StatusOK, nil)
	// A custom attribute holding personal data of its own.
	pii = append(pii, "Attrpii"+randomHex(t, 6))
	svc.do(t, "PUT", "/api/v1/attributes/hr", admin, map[string]any{"properties": map[string]any{"badge": map[string]any{"type": "string"}}}).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", base+"/attributes/hr", admin, map[string]any{"badge": pii[len(pii)-1]}).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", base+"/role", admin, map[string]any{"role": "instructor"}).data(t, http.StatusOK, nil) // revokes the session
	own = st.token(t, u.ID, u.AuthID, u.Email, userservice.RoleInstructor)
	// An admin search caches the user in Redis.
	svc.do(t, "GET", "/api/v1/users?search="+pii[1], admin, nil).data(t, http.StatusOK, nil)
	tp.expect(t, userservice.EventUserCreated, userservice.EventEnrolled, userservice.EventProgressUpdated,
		userservice.EventUserUpdated, userservice.EventRoleChanged, userservice.EventSessionsRevoked)
	if len(traces(t, st, pii)) == 0 {
		t.Fatal("the grep finds nothing before the erasure: it cannot tell anything after it")
	}
	// Log in again so the erasure has a session to revoke.
	id, b := authEvent("auth.user.login", map[string]any{"authId": u.AuthID, "sessionId": "again", "ipAddress": pii[8], "userAgent": pii[9]})
	st.publish(t, "auth.user.login", id, b)
	eventually(t, "the second login", func() error {
		if c := st.count(t, `SELECT count(*) FROM sessions WHERE user_id = $1 AND ended_at IS NULL`, u.ID); c != 1 {
			return fmt.Errorf("%d open sessions", c)
		}
		return nil
	})

	var req apiErasure
	svc.do(t, "POST", base+"/erasure", own, nil).data(t, http.StatusAccepted, &req)
	if req.State != userservice.ErasureRequested || req.ScheduledAt == "" {
		t.Fatalf("erasure request answered %+v", req)
	}
	requested := tp.expect(t, userservice.EventErasureRequested, userservice.EventSessionsRevoked)
	if requested[1].Data["reason"] != userservice.RevokeReasonErasure {
		t.Errorf("revocation %s, want reason erasure", requested[1])
	}
	svc.do(t, "GET", base, own, nil).fail(t, http.StatusForbidden, "ACCOUNT_DISABLED")
	svc.do(t, "POST", base+"/erasure", admin, nil).fail(t, http.StatusConflict, "CONFLICT")

	eventually(t, "the erasure", func() error {
		var e apiErasure
		svc.do(t, "GET", base+"/erasure", admin, nil).data(t, http.StatusOK, &e)
		if e.State != userservice.ErasureDone || e.DoneAt == nil {
			return fmt.Errorf("erasure %+v", e)
		}
		return nil
	})
	erased := tp.expect(t, userservice.EventUserErased)[0]
	if len(erased.Data) != 2 || erased.Data["userId"] != u.ID || erased.Data["authId"] != u.AuthID {
		t.Errorf("user.erased data %v, want exactly userId and authId", erased.Data)
	}
	tp.expectNone(t) // once

	for _, p := range []string{base, base + "/enrollments", base + "/preferences", base + "/attributes", base + "/sessions", base + "/export", base + "/events?after=0"} {
		svc.do(t, "GET", p, admin, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
	}
	svc.do(t, "GET", "/api/v1/users/me", own, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
	svc.do(t, "PUT", base, admin, map[string]any{"bio": "back"}).fail(t, http.StatusNotFound, "NOT_FOUND")
	svc.do(t, "DELETE", base+"/erasure", admin, nil).fail(t, http.StatusNotFound, "NOT_FOUND")

	// The worker cleans Redis right after the commit; give it a tick.
	eventually(t, "no trace", func() error {
		if found := traces(t, st, pii); len(found) > 0 {
			return fmt.Errorf("%d traces left:\n%s", len(found), strings.Join(found, "\n"))
		}
		return nil
	})
	// Anonymous statistics stay: the enrollment and its progress.
	if c := st.count(t, `SELECT count(*) FROM enrollments WHERE user_id = $1 AND progress = 50`, u.ID); c != 1 {
		t.Errorf("%d enrollment rows kept, want 1", c)
	}
	// The email and username are free.
	svc.do(t, "POST", "/api/v1/users", admin, map[string]any{
		"authId": userservice.NewID(), "email": pii[0], "username": pii[1], "firstName": "New", "lastName": "Person",
	}).data(t, http.StatusCreated, nil)
}

// TestErasureCancel (issue 14): an admin's DELETE …/erasure before the
// cool-off ends stops it: state cancelled, the user's status back, nothing
// erased, no user.erased; a failed request publishes nothing.
func TestErasureCancel(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, map[string]string{"ERASURE_COOL_OFF": "3s"})
	st.waitConsumer(t)
	admin := st.adminToken(t)
	tp := st.tap(t)
	u := svc.createUser(t, admin, newUserBody(t))
	own := st.tokenFor(t, u)
	base := "/api/v1/users/" + u.ID
	tp.expect(t, userservice.EventUserCreated)

	svc.do(t, "GET", base+"/erasure", admin, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
	svc.do(t, "DELETE", base+"/erasure", admin, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
	other := svc.createUser(t, admin, newUserBody(t))
	tp.expect(t, userservice.EventUserCreated)
	svc.do(t, "POST", "/api/v1/users/"+other.ID+"/erasure", own, nil).fail(t, http.StatusForbidden, "FORBIDDEN")
	svc.do(t, "POST", "/api/v1/users/"+userservice.NewID()+"/erasure", admin, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
	tp.expectNone(t)

	start := time.Now()
	svc.do(t, "POST", base+"/erasure", admin, nil).data(t, http.StatusAccepted, nil)
	tp.expect(t, userservice.EventErasureRequested)
	var e apiErasure
	svc.do(t, "DELETE", base+"/erasure", admin, nil).data(t, http.StatusOK, &e)
	if time.Since(start) > 3*time.Second {
		t.Fatal("the cancel came after the cool-off: the test proves nothing")
	}
	if e.State != userservice.ErasureCancelled || e.CancelledAt == nil {
		t.Errorf("cancel answered %+v", e)
	}
	time.Sleep(4 * time.Second) // past the cool-off, worker ticks every second
	svc.do(t, "GET", base+"/erasure", admin, nil).data(t, http.StatusOK, &e)
	if e.State != userservice.ErasureCancelled {
		t.Errorf("erasure state %s after the cool-off, want cancelled", e.State)
	}
	var me apiUser
	svc.do(t, "GET", "/api/v1/users/me", own, nil).data(t, http.StatusOK, &me)
	if me.Email != u.Email || me.Status != string(userservice.StatusActive) {
		t.Errorf("after a cancelled erasure the user is %+v", me)
	}
	tp.expectNone(t)
	if c := st.count(t, `SELECT count(*) FROM audit_log WHERE user_id = $1 AND action IN ($2, $3)`, u.ID,
		userservice.AuditErasureRequested, userservice.AuditErasureCancelled); c != 2 {
		t.Errorf("%d erasure audit records, want 2", c)
	}
	// It may be requested again.
	svc.do(t, "POST", base+"/erasure", own, nil).data(t, http.StatusAccepted, nil)
	tp.expect(t, userservice.EventErasureRequested)
}

// TestDeletedUsersArePurged (issue 14): with DELETED_USER_RETENTION=2s, a
// user soft-deleted that long ago is erased (user.erasure_requested, then one
// user.erased); an active user and a user restored before the period ends are
// left alone.
func TestDeletedUsersArePurged(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, map[string]string{"DELETED_USER_RETENTION": "2s"})
	admin := st.adminToken(t)
	tp := st.tap(t)
	gone := svc.createUser(t, admin, newUserBody(t))
	kept := svc.createUser(t, admin, newUserBody(t))
	restored := svc.createUser(t, admin, newUserBody(t))
	tp.expect(t, userservice.EventUserCreated, userservice.EventUserCreated, userservice.EventUserCreated)
	svc.do(t, "DELETE", "/api/v1/users/"+gone.ID, admin, nil).data(t, http.StatusOK, nil)
	svc.do(t, "DELETE", "/api/v1/users/"+restored.ID, admin, nil).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", "/api/v1/users/"+restored.ID+"/status", admin, map[string]any{"status": "active"}).data(t, http.StatusOK, nil)
	tp.expect(t, userservice.EventUserDeleted, userservice.EventUserDeleted, userservice.EventUserRestored)

	evs := tp.expect(t, userservice.EventErasureRequested, userservice.EventUserErased)
	for _, e := range evs {
		if e.userID() != gone.ID {
			t.Errorf("%s is not about the deleted user %s", e, gone.ID)
		}
	}
	if by, ok := evs[0].Data["requestedBy"]; !ok || by != nil {
		t.Errorf("a purge's requestedBy is %v, want null (the service itself)", by)
	}
	tp.expectNone(t)
	svc.do(t, "GET", "/api/v1/users/"+gone.ID, admin, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
	for _, u := range []apiUser{kept, restored} {
		var got apiUser
		svc.do(t, "GET", "/api/v1/users/"+u.ID, admin, nil).data(t, http.StatusOK, &got)
		if got.Email != u.Email {
			t.Errorf("user %s changed: %+v", u.ID, got)
		}
	}
	if c := st.count(t, `SELECT count(*) FROM erasures`); c != 1 {
		t.Errorf("%d erasure rows, want the purged user's only", c)
	}
}
