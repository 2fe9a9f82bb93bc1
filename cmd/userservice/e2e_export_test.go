package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lms-platform/userservice"
)

// TestExportMatchesTheAPI (issue 14): the export of a seeded user (profile,
// enrollments with progress and time, preferences, sessions, audit records,
// events) holds exactly what the API shows of each, is an attachment, and is
// audited as data_exported with who asked.
func TestExportMatchesTheAPI(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	st.waitConsumer(t)
	admin := st.adminToken(t)
	body := newUserBody(t)
	body["displayName"], body["bio"], body["phone"] = "Ada L", "Counts things", "+14155550123"
	u := svc.createUser(t, admin, body)
	own := st.tokenFor(t, u)
	base := "/api/v1/users/" + u.ID
	c1, c2 := userservice.NewID(), userservice.NewID()

	// Seed through every kind of write.
	svc.do(t, "POST", base+"/enrollments", own, map[string]any{"courseId": c1}).data(t, http.StatusCreated, nil)
	svc.do(t, "POST", base+"/enrollments", own, map[string]any{"courseId": c2}).data(t, http.StatusCreated, nil)
	svc.do(t, "PUT", base+"/enrollments/"+c1+"/progress", own, map[string]any{"progress": 40, "timeSpentSeconds": 600}).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", base+"/enrollments/"+c2+"/progress", own, map[string]any{"progress": 100, "timeSpentSeconds": 60}).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", base+"/preferences/ui", own, map[string]any{"preferences": []map[string]any{{"key": "theme", "value": "dark"}, {"key": "font", "value": map[string]any{"size": 14}}}}).data(t, http.StatusOK, nil)
	for _, sid := range []string{"e1", "e2"} {
		id, b := authEvent("auth.user.login", map[string]any{"authId": u.AuthID, "sessionId": sid, "ipAddress": "192.0.2.9", "userAgent": "Firefox/1"})
		st.publish(t, "auth.user.login", id, b)
	}
	id, b := authEvent("auth.user.password_changed", map[string]any{"authId": u.AuthID})
	st.publish(t, "auth.user.password_changed", id, b)
	eventually(t, "the auth events", func() error {
		if c := st.count(t, `SELECT count(*) FROM sessions WHERE user_id = $1`, u.ID); c != 2 {
			return fmt.Errorf("%d sessions", c)
		}
		if c := st.count(t, `SELECT count(*) FROM audit_log WHERE user_id = $1`, u.ID); c != 1 {
			return fmt.Errorf("%d audit records", c)
		}
		return nil
	})
	svc.do(t, "DELETE", base+"/sessions/e1", own, nil).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", base+"/role", admin, map[string]any{"role": "instructor"}).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", "/api/v1/attributes/hr", admin, map[string]any{"properties": map[string]any{"department": map[string]any{"type": "string"}}}).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", base+"/attributes/hr", admin, map[string]any{"department": "Math"}).data(t, http.StatusOK, nil)

	// Refusals come first and record nothing.
	other := svc.createUser(t, admin, newUserBody(t))
	svc.do(t, "GET", "/api/v1/users/"+other.ID+"/export", own, nil).fail(t, http.StatusForbidden, "FORBIDDEN")
	svc.do(t, "GET", "/api/v1/users/"+userservice.NewID()+"/export", admin, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
	svc.do(t, "GET", "/api/v1/users/nope/export", admin, nil).fail(t, http.StatusBadRequest, "INVALID_PARAMETER")
	if c := st.count(t, `SELECT count(*) FROM audit_log WHERE action = $1`, userservice.AuditDataExported); c != 0 {
		t.Fatalf("%d data_exported records after refused exports", c)
	}

	// The user's own export, then an admin's: the second shows both records.
	if r := svc.do(t, "GET", base+"/export", own, nil); r.Status != http.StatusOK {
		t.Fatalf("own export: %s", r)
	}
	r := svc.do(t, "GET", base+"/export", admin, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("export: %s", r)
	}
	if cd := r.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, u.ID) {
		t.Errorf("Content-Disposition %q", cd)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatalf("the export is not JSON: %v: %s", err, r.Body)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"attributes", "audit", "enrollments", "events", "exportedAt", "formatVersion", "preferences", "sessions", "user"}; !slices.Equal(keys, want) {
		t.Fatalf("export keys %v, want %v", keys, want)
	}
	if string(doc["formatVersion"]) != "1" {
		t.Errorf("formatVersion %s", doc["formatVersion"])
	}

	// What the API shows, read as an admin (whose reads touch no one).
	apiData := func(path string) any {
		t.Helper()
		var v any
		svc.do(t, "GET", path, admin, nil).data(t, http.StatusOK, &v)
		return v
	}
	reversed := func(v any) any {
		l := v.([]any)
		out := slices.Clone(l)
		slices.Reverse(out)
		return out
	}
	decode := func(raw json.RawMessage) any {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	compare := func(part string, want any) {
		t.Helper()
		if got := decode(doc[part]); !reflect.DeepEqual(got, want) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			t.Errorf("export %s:\n got %s\nwant %s", part, g, w)
		}
	}
	compare("user", apiData(base))
	compare("enrollments", apiData(base+"/enrollments?limit=100"))
	compare("preferences", apiData(base+"/preferences"))
	compare("attributes", apiData(base+"/attributes"))
	compare("sessions", reversed(apiData(base+"/sessions?limit=100")))
	compare("audit", reversed(apiData(base+"/audit?limit=100")))
	var feed []any
	for _, line := range bytes.Split(bytes.TrimSpace(svc.do(t, "GET", base+"/events?after=0&limit=1000", admin, nil).Body), []byte("\n")) {
		feed = append(feed, decode(line))
	}
	compare("events", feed)

	// Seeded content is really there (the comparisons above are not of empties).
	var ex struct {
		Enrollments []userservice.Enrollment  `json:"enrollments"`
		Preferences []userservice.Preference  `json:"preferences"`
		Sessions    []userservice.Session     `json:"sessions"`
		Audit       []userservice.AuditRecord `json:"audit"`
		Events      []userservice.Event       `json:"events"`
	}
	if err := json.Unmarshal(r.Body, &ex); err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range ex.Audit {
		actions = append(actions, a.Action)
	}
	wantActions := []string{userservice.AuditPasswordChanged, userservice.AuditSessionsRevoked, userservice.AuditRoleChanged,
		userservice.AuditSessionsRevoked, "attributes.set", userservice.AuditDataExported, userservice.AuditDataExported}
	if !slices.Equal(actions, wantActions) {
		t.Errorf("audit actions %v, want %v", actions, wantActions)
	}
	if n := len(ex.Audit); n >= 2 && (ex.Audit[n-2].ActorID == nil || *ex.Audit[n-2].ActorID != u.ID || ex.Audit[n-1].ActorID != nil) {
		t.Errorf("data_exported actors: %+v, %+v; want the user, then the admin without a profile (null)", ex.Audit[n-2], ex.Audit[n-1])
	}
	if len(ex.Enrollments) != 2 || len(ex.Sessions) != 2 || len(ex.Preferences) != len(userservice.DefaultPreferences)+1 || len(ex.Events) < 6 {
		t.Errorf("export holds %d enrollments, %d sessions, %d preferences, %d events",
			len(ex.Enrollments), len(ex.Sessions), len(ex.Preferences), len(ex.Events))
	}
	var spent int64
	for _, e := range ex.Enrollments {
		spent += e.TimeSpentSeconds
	}
	if spent != 660 {
		t.Errorf("time spent %d, want 660", spent)
	}
}
