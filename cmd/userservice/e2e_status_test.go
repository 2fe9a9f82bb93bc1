package main

import (
	"net/http"
	"reflect"
	"sort"
	"testing"

	"github.com/lms-platform/userservice"
)

// TestStatusDeletedAndRestore: PUT /{id}/status with "deleted" is DELETE /{id}
// (user.deleted, audit user.deleted, no user.status_changed, the user's own
// token refused), and leaving "deleted" is a restore: user.restored and its
// audit record.
func TestStatusDeletedAndRestore(t *testing.T) {
	st := newStack(t)
	tp := st.tap(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	viaStatus := svc.createUser(t, admin, newUserBody(t))
	viaDelete := svc.createUser(t, admin, newUserBody(t))
	tp.expect(t, "user.created", "user.created")
	status := func(u apiUser, s string) apiUser {
		t.Helper()
		var out apiUser
		svc.do(t, "PUT", "/api/v1/users/"+u.ID+"/status", admin, map[string]any{"status": s}).data(t, http.StatusOK, &out)
		return out
	}
	type auditRec struct {
		Action string         `json:"action"`
		Before map[string]any `json:"before"`
		After  map[string]any `json:"after"`
	}
	audit := func(u apiUser) []auditRec {
		t.Helper()
		var recs []auditRec
		svc.do(t, "GET", "/api/v1/users/"+u.ID+"/audit", admin, nil).data(t, http.StatusOK, &recs)
		return recs
	}
	keys := func(m map[string]any) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}

	// Both ways of deleting publish and record the same.
	if u := status(viaStatus, "deleted"); u.Status != "deleted" || u.ID != viaStatus.ID {
		t.Errorf("PUT status deleted answered %+v", u)
	}
	byStatus := tp.expect(t, "user.deleted")[0]
	svc.do(t, "DELETE", "/api/v1/users/"+viaDelete.ID, admin, nil).data(t, http.StatusOK, nil)
	byDelete := tp.expect(t, "user.deleted")[0]
	if byStatus.userID() != viaStatus.ID || !reflect.DeepEqual(keys(byStatus.Data), keys(byDelete.Data)) {
		t.Errorf("user.deleted by status %v, by DELETE %v", byStatus.Data, byDelete.Data)
	}
	if a, b := audit(viaStatus), audit(viaDelete); len(a) != 1 || len(b) != 1 || !reflect.DeepEqual(a, b) || a[0].Action != userservice.AuditUserDeleted {
		t.Errorf("audit by status %+v, by DELETE %+v", a, b)
	}
	own := st.tokenFor(t, viaStatus)
	svc.do(t, "GET", "/api/v1/users/me", own, nil).fail(t, http.StatusForbidden, "")
	var page []apiUser
	svc.do(t, "GET", "/api/v1/users?search="+viaStatus.Email, admin, nil).data(t, http.StatusOK, &page)
	if len(page) != 0 {
		t.Errorf("a deleted user is found by the default search: %+v", page)
	}

	// Deleting a deleted user, either way: 200, nothing published.
	status(viaStatus, "deleted")
	svc.do(t, "DELETE", "/api/v1/users/"+viaStatus.ID, admin, nil).data(t, http.StatusOK, nil)
	tp.expectNone(t)

	// Restore.
	if u := status(viaStatus, "active"); u.Status != "active" {
		t.Errorf("restore answered %+v", u)
	}
	e := tp.expect(t, "user.restored")[0]
	if e.userID() != viaStatus.ID || e.Data["authId"] != viaStatus.AuthID || e.Data["newStatus"] != "active" {
		t.Errorf("user.restored %v", e.Data)
	}
	recs := audit(viaStatus)
	if len(recs) != 2 || recs[0].Action != userservice.AuditUserRestored || recs[0].Before["status"] != "deleted" || recs[0].After["status"] != "active" {
		t.Errorf("audit after the restore %+v", recs)
	}
	svc.do(t, "GET", "/api/v1/users/me", own, nil).data(t, http.StatusOK, nil)
	svc.do(t, "GET", "/api/v1/users?search="+viaStatus.Email, admin, nil).data(t, http.StatusOK, &page)
	if len(page) != 1 {
		t.Errorf("a restored user is not found by the default search: %+v", page)
	}
	// A later status change is an ordinary one again.
	status(viaStatus, "suspended")
	tp.expect(t, "user.status_changed")
}
