package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
)

// TestEventsOfEachMutation checks that every kind of change publishes exactly
// its event (routing key = type) with the envelope and AMQP properties of
// CONTRACT.md, that a refused request (400, 409, 412) publishes nothing, and
// that correlationId is the request's X-Correlation-ID.
func TestEventsOfEachMutation(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	tp := st.tap(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)

	r := svc.do(t, "POST", "/api/v1/users", admin, newUserBody(t), "X-Correlation-ID", "corr-create")
	var u apiUser
	r.data(t, http.StatusCreated, &u)
	ev := tp.expect(t, "user.created")[0]
	if ev.CorrelationID != "corr-create" || ev.userID() != u.ID || ev.Data["authId"] != u.AuthID || ev.Data["email"] != u.Email ||
		ev.Data["role"] != "student" || ev.userVersion() != 1 || ev.Timestamp != u.CreatedAt {
		t.Errorf("user.created: %s (user %+v)", ev, u)
	}
	if _, ok := ev.Data["profile"].(map[string]any); !ok {
		t.Errorf("user.created without data.profile: %s", ev)
	}
	tok := st.tokenFor(t, u)
	me := "/api/v1/users/" + u.ID
	courseA, courseB := userservice.NewID(), userservice.NewID()

	steps := []struct {
		name         string
		token        string
		method, path string
		body         any
		headers      []string
		status       int
		events       []string
		check        func(t *testing.T, evs []*event)
	}{
		{name: "profile update", token: tok, method: "PUT", path: "/api/v1/users/me", body: map[string]any{"bio": "Hi", "phone": "+14155550100"},
			status: 200, events: []string{"user.updated"}, check: func(t *testing.T, evs []*event) {
				changes, _ := evs[0].Data["changes"].(map[string]any)
				if changes["bio"] != "Hi" || changes["phone"] != "+14155550100" || len(changes) != 2 {
					t.Errorf("changes %v", changes)
				}
				if evs[0].Metadata["actorId"] != u.ID {
					t.Errorf("metadata.actorId %v, want the caller %s", evs[0].Metadata["actorId"], u.ID)
				}
			}},
		{name: "invalid update (400)", token: tok, method: "PUT", path: me, body: map[string]any{"bio": 5}, status: 400},
		{name: "stale If-Match (412)", token: tok, method: "PUT", path: me, body: map[string]any{"bio": "x"}, headers: []string{"If-Match", `"1"`}, status: 412},
		{name: "role change", token: admin, method: "PUT", path: me + "/role", body: map[string]any{"role": "instructor"},
			status: 200, events: []string{"user.role_changed"}, check: func(t *testing.T, evs []*event) {
				if evs[0].Data["oldRole"] != "student" || evs[0].Data["newRole"] != "instructor" {
					t.Errorf("data %v", evs[0].Data)
				}
			}},
		{name: "same role again publishes nothing", token: admin, method: "PUT", path: me + "/role", body: map[string]any{"role": "instructor"}, status: 200},
		{name: "status change", token: admin, method: "PUT", path: me + "/status", body: map[string]any{"status": "inactive"},
			status: 200, events: []string{"user.status_changed"}, check: func(t *testing.T, evs []*event) {
				if evs[0].Data["oldStatus"] != "active" || evs[0].Data["newStatus"] != "inactive" {
					t.Errorf("data %v", evs[0].Data)
				}
			}},
		{name: "enroll", token: tok, method: "POST", path: me + "/enrollments", body: map[string]any{"courseId": courseA},
			status: 201, events: []string{"user.enrolled"}, check: func(t *testing.T, evs []*event) {
				if evs[0].Data["courseId"] != courseA || evs[0].Data["enrollmentStatus"] != "active" || evs[0].Data["reactivated"] != false {
					t.Errorf("data %v", evs[0].Data)
				}
			}},
		{name: "duplicate enroll (409)", token: tok, method: "POST", path: me + "/enrollments", body: map[string]any{"courseId": courseA}, status: 409},
		{name: "progress", token: tok, method: "PUT", path: me + "/enrollments/" + courseA + "/progress", body: map[string]any{"progress": 50},
			status: 200, events: []string{"user.progress_updated"}, check: func(t *testing.T, evs []*event) {
				if evs[0].Data["progress"] != 50.0 || evs[0].Data["previousProgress"] != 0.0 || evs[0].Data["courseId"] != courseA {
					t.Errorf("data %v", evs[0].Data)
				}
			}},
		{name: "progress to 100 completes", token: tok, method: "PUT", path: me + "/enrollments/" + courseA + "/progress", body: map[string]any{"progress": 100},
			status: 200, events: []string{"user.progress_updated", "user.course_completed"}, check: func(t *testing.T, evs []*event) {
				if evs[0].userVersion() != evs[1].userVersion() || evs[1].Data["courseId"] != courseA || evs[1].Data["completedAt"] == nil {
					t.Errorf("completion events %s / %s", evs[0], evs[1])
				}
			}},
		{name: "progress after completion does not complete again", token: tok, method: "PUT", path: me + "/enrollments/" + courseA + "/progress",
			body: map[string]any{"progress": 100}, status: 200, events: []string{"user.progress_updated"}},
		{name: "enroll another course", token: tok, method: "POST", path: me + "/enrollments", body: map[string]any{"courseId": courseB},
			status: 201, events: []string{"user.enrolled"}},
		{name: "drop", token: tok, method: "PUT", path: me + "/enrollments/" + courseB, body: map[string]any{"enrollmentStatus": "dropped"},
			status: 200, events: []string{"user.unenrolled"}, check: func(t *testing.T, evs []*event) {
				if evs[0].Data["enrollmentStatus"] != "dropped" {
					t.Errorf("data %v", evs[0].Data)
				}
			}},
		{name: "re-enroll", token: tok, method: "POST", path: me + "/enrollments", body: map[string]any{"courseId": courseB},
			status: 200, events: []string{"user.enrolled"}, check: func(t *testing.T, evs []*event) {
				if evs[0].Data["reactivated"] != true {
					t.Errorf("data %v", evs[0].Data)
				}
			}},
		{name: "delete enrollment", token: tok, method: "DELETE", path: me + "/enrollments/" + courseB,
			status: 200, events: []string{"user.unenrolled"}, check: func(t *testing.T, evs []*event) {
				if evs[0].Data["deleted"] != true {
					t.Errorf("data %v", evs[0].Data)
				}
			}},
		{name: "preferences publish nothing", token: tok, method: "PUT", path: me + "/preferences/ui", body: map[string]any{"preferences": []any{map[string]any{"key": "theme", "value": "dark"}}},
			status: 200},
		{name: "soft delete", token: admin, method: "DELETE", path: me,
			status: 200, events: []string{"user.deleted"}, check: func(t *testing.T, evs []*event) {
				if evs[0].Data["authId"] != u.AuthID {
					t.Errorf("data %v", evs[0].Data)
				}
			}},
		{name: "deleting again publishes nothing", token: admin, method: "DELETE", path: me, status: 200},
	}
	for i, s := range steps {
		corr := fmt.Sprintf("corr-%02d-%s", i, randomHex(t, 3))
		headers := append([]string{"X-Correlation-ID", corr}, s.headers...)
		if i == 0 {
			headers = s.headers // no header: the service makes one and says so
		}
		r := svc.do(t, s.method, s.path, s.token, s.body, headers...)
		if r.Status != s.status {
			t.Fatalf("%s: %s, want %d", s.name, r, s.status)
		}
		if i == 0 {
			corr = r.Header.Get("X-Correlation-ID")
			if _, ok := userservice.ParseID(corr); !ok {
				t.Errorf("%s: X-Correlation-ID %q made by the service is not a UUID", s.name, corr)
			}
		}
		if len(s.events) == 0 {
			continue // a later step's expect, and the final expectNone, see that nothing came
		}
		evs := tp.expect(t, s.events...)
		version := r.version(t)
		for _, e := range evs {
			if e.userID() != u.ID || e.userVersion() != version || e.CorrelationID != corr || e.d.CorrelationId != corr {
				t.Errorf("%s: event %s (correlation_id %q): want user %s, version %d, correlation %s",
					s.name, e, e.d.CorrelationId, u.ID, version, corr)
			}
		}
		if s.check != nil {
			t.Run(s.name, func(t *testing.T) { s.check(t, evs) })
		}
	}
	tp.expectNone(t)
	if n := st.count(t, `SELECT count(*) FROM outbox WHERE user_id = $1 AND published_at IS NULL`, u.ID); n != 0 {
		t.Errorf("%d outbox rows still unpublished", n)
	}
}

// TestEventOrderPerUser sends about 300 mixed concurrent writes to three users
// and checks each user's events: exactly one per acknowledged change that
// publishes, in the order of the versions the answers carried (userVersion),
// each with the content of the answer of that version.
func TestEventOrderPerUser(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	tp := st.tap(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)

	const users, perUser = 3, 100
	type target struct {
		u      apiUser
		tok    string
		course string // enrolled before the storm, for progress updates
	}
	targets := make([]target, users)
	for i := range targets {
		u := svc.createUser(t, admin, newUserBody(t))
		tok := st.tokenFor(t, u)
		course := userservice.NewID()
		svc.do(t, "POST", "/api/v1/users/me/enrollments", tok, map[string]any{"courseId": course}).data(t, http.StatusCreated, nil)
		targets[i] = target{u, tok, course}
		tp.expect(t, "user.created", "user.enrolled")
	}

	// want[user][version] is what the event of that version must say.
	type expected struct{ typ, value string }
	type answer struct {
		user    int
		version int64
		want    *expected // nil: the change publishes nothing
		err     error
	}
	answers := make([]answer, users*perUser)
	parallel(len(answers), 48, func(k int) {
		ui, i := k%users, k/users
		tg := targets[ui]
		var (
			method, path string
			body         any
			status       = http.StatusOK
			want         *expected
		)
		switch i % 4 {
		case 0:
			bio := fmt.Sprintf("bio-%d", i)
			method, path, body, want = "PUT", "/api/v1/users/me", map[string]any{"bio": bio}, &expected{"user.updated", bio}
		case 1:
			course := userservice.NewID()
			method, path, body, status, want = "POST", "/api/v1/users/me/enrollments", map[string]any{"courseId": course}, http.StatusCreated, &expected{"user.enrolled", course}
		case 2:
			p := float64(i%99) + 0.5
			method, path, body, want = "PUT", "/api/v1/users/me/enrollments/"+tg.course+"/progress", map[string]any{"progress": p}, &expected{"user.progress_updated", fmt.Sprint(p)}
		case 3:
			method, path, body = "PUT", "/api/v1/users/me/preferences/ui", map[string]any{"preferences": []any{map[string]any{"key": fmt.Sprintf("k_%d", i), "value": i}}}
		}
		a := answer{user: ui, want: want}
		r, err := svc.send(method, path, tg.tok, body)
		switch {
		case err != nil:
			a.err = err
		case r.Status != status:
			a.err = fmt.Errorf("%s, want %d", r, status)
		default:
			a.version, a.err = etagVersion(r.Header.Get("ETag"))
		}
		answers[k] = a
	})

	want := make([]map[int64]expected, users)
	for i := range want {
		want[i] = map[int64]expected{}
	}
	versions := make([]map[int64]bool, users)
	total := 0
	for i := range versions {
		versions[i] = map[int64]bool{}
	}
	for _, a := range answers {
		if a.err != nil {
			t.Fatalf("write: %v", a.err)
		}
		if versions[a.user][a.version] {
			t.Errorf("user %d: version %d answered twice", a.user, a.version)
		}
		versions[a.user][a.version] = true
		if a.want != nil {
			want[a.user][a.version] = *a.want
			total++
		}
	}

	byUser := map[string]int{}
	for i, tg := range targets {
		byUser[tg.u.ID] = i
	}
	got := make([][]*event, users)
	for _, e := range tp.take(t, total) {
		checkEnvelope(t, e)
		i, ok := byUser[e.userID()]
		if !ok {
			t.Fatalf("event of an unknown user: %s", e)
		}
		got[i] = append(got[i], e)
	}
	for i := range targets {
		var vs []int64
		for v := range want[i] {
			vs = append(vs, v)
		}
		sort.Slice(vs, func(a, b int) bool { return vs[a] < vs[b] })
		if len(got[i]) != len(vs) {
			t.Errorf("user %d: %d events, want %d", i, len(got[i]), len(vs))
			continue
		}
		for k, e := range got[i] {
			w := want[i][vs[k]]
			var value string
			switch e.Type {
			case "user.updated":
				changes, _ := e.Data["changes"].(map[string]any)
				value = fmt.Sprint(changes["bio"])
			case "user.enrolled":
				value = fmt.Sprint(e.Data["courseId"])
			case "user.progress_updated":
				value = fmt.Sprint(e.Data["progress"])
			}
			if e.userVersion() != vs[k] || e.Type != w.typ || value != w.value {
				t.Errorf("user %d event %d: %s (version %d, value %s); want version %d %s %s",
					i, k, e.Type, e.userVersion(), value, vs[k], w.typ, w.value)
			}
		}
	}
	tp.expectNone(t)
}

// TestAuthEventConsumer publishes Auth Service events to the exchange and
// checks their effects through the API: registration (idempotent on the message
// id and on authId), login and logout sessions, password changes, and that a
// malformed or invalid message goes to <queue>.dlq while the consumer goes on.
func TestAuthEventConsumer(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	tp := st.tap(t)
	svc := st.start(t, nil)
	st.waitConsumer(t)
	admin := st.adminToken(t)

	authID := userservice.NewID()
	tag := randomHex(t, 4)
	email := "reg." + tag + "@example.com"
	reg := map[string]any{"authId": authID, "email": "Reg." + tag + "@Example.com", "firstName": "Grace", "lastName": "Hopper",
		"username": "grace_" + tag, "role": "instructor", "plan": "ignored"}
	id1, body1 := authEvent("auth.user.registered", reg)
	st.publish(t, "auth.user.registered", id1, body1)
	st.publish(t, "auth.user.registered", id1, body1)    // delivered twice
	id2, body2 := authEvent("auth.user.registered", reg) // another message for the same authId
	st.publish(t, "auth.user.registered", id2, body2)

	// The profile is found by authId: the token's sub is not its id.
	tok := st.token(t, userservice.NewID(), authID, email, userservice.RoleStudent)
	var u apiUser
	eventually(t, "the registered profile", func() error {
		r, err := svc.send("GET", "/api/v1/users/me", tok, nil)
		if err != nil {
			return err
		}
		if r.Status != http.StatusOK {
			return fmt.Errorf("%s", r)
		}
		return jsonData(r, &u)
	})
	if u.AuthID != authID || u.Email != email || u.FirstName != "Grace" || u.Role != userservice.RoleInstructor || u.Username == nil {
		t.Errorf("registered profile %+v", u)
	}
	var prefs map[string]map[string]any
	svc.do(t, "GET", "/api/v1/users/me/preferences?format=object", tok, nil).data(t, http.StatusOK, &prefs)
	var defaults map[string]map[string]any
	if err := json.Unmarshal([]byte(defaultPreferences), &defaults); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(prefs, defaults) {
		t.Errorf("preferences of a registered user\n got %v\nwant %v", prefs, defaults)
	}
	if e := tp.expect(t, "user.created")[0]; e.userID() != u.ID {
		t.Errorf("user.created of %s, want %s", e.userID(), u.ID)
	}

	// Login: counts, lastLoginAt, an open session.
	loginAt := userservice.NewTime(time.Now().Add(-time.Minute)).String()
	idL, bodyL := authEvent("auth.user.login", map[string]any{"authId": authID, "sessionId": "sess-1",
		"ipAddress": "10.0.0.7", "userAgent": "e2e", "loginAt": loginAt})
	st.publish(t, "auth.user.login", idL, bodyL)
	userTok := st.tokenFor(t, u)
	stats := func() userservice.UserStats {
		var s userservice.UserStats
		svc.do(t, "GET", "/api/v1/users/"+u.ID+"/stats", userTok, nil).data(t, http.StatusOK, &s)
		return s
	}
	eventually(t, "the login", func() error {
		if s := stats(); s.TotalLoginCount != 1 || s.LastLoginAt == nil || s.LastLoginAt.String() != loginAt {
			return fmt.Errorf("stats %+v, want 1 login at %s", s, loginAt)
		}
		return nil
	})
	type apiSession struct {
		ID        string  `json:"id"`
		SessionID string  `json:"sessionId"`
		IPAddress *string `json:"ipAddress"`
		UserAgent *string `json:"userAgent"`
		StartedAt string  `json:"startedAt"`
		EndedAt   *string `json:"endedAt"`
		Active    bool    `json:"active"`
	}
	sessions := func() []apiSession {
		var ss []apiSession
		svc.do(t, "GET", "/api/v1/users/"+u.ID+"/sessions", userTok, nil).data(t, http.StatusOK, &ss)
		return ss
	}
	if ss := sessions(); len(ss) != 1 || ss[0].SessionID != "sess-1" || !ss[0].Active || ss[0].EndedAt != nil ||
		ss[0].StartedAt != loginAt || ss[0].IPAddress == nil || *ss[0].IPAddress != "10.0.0.7" {
		t.Errorf("sessions after login: %+v", ss)
	}
	// Every registration message was handled before the login (one authId, one
	// worker, queue order): there is one profile.
	if n := st.count(t, `SELECT count(*) FROM users WHERE auth_id = $1`, authID); n != 1 {
		t.Errorf("%d profiles for one authId, want 1", n)
	}

	idO, bodyO := authEvent("auth.user.logout", map[string]any{"authId": authID, "sessionId": "sess-1"})
	st.publish(t, "auth.user.logout", idO, bodyO)
	eventually(t, "the logout", func() error {
		if ss := sessions(); len(ss) != 1 || ss[0].Active || ss[0].EndedAt == nil {
			return fmt.Errorf("sessions %+v, want one ended", ss)
		}
		return nil
	})

	// A login without sessionId uses the message id; a logout without one ends
	// every open session.
	idL2, bodyL2 := authEvent("auth.user.login", map[string]any{"authId": authID})
	st.publish(t, "auth.user.login", idL2, bodyL2)
	st.publish(t, "auth.user.login", idL2, bodyL2) // redelivered: counted once
	idL3, bodyL3 := authEvent("auth.user.login", map[string]any{"authId": authID, "sessionId": "sess-3"})
	st.publish(t, "auth.user.login", idL3, bodyL3)
	eventually(t, "two more logins", func() error {
		ss := sessions()
		if s := stats(); s.TotalLoginCount != 3 || len(ss) != 3 || ss[0].SessionID != "sess-3" || ss[1].SessionID != idL2 || !ss[0].Active || !ss[1].Active {
			return fmt.Errorf("stats %+v, sessions %+v", s, ss)
		}
		return nil
	})
	idO2, bodyO2 := authEvent("auth.user.logout", map[string]any{"authId": authID})
	st.publish(t, "auth.user.logout", idO2, bodyO2)
	eventually(t, "the logout of every session", func() error {
		for _, s := range sessions() {
			if s.Active || s.EndedAt == nil {
				return fmt.Errorf("session %+v still open", s)
			}
		}
		return nil
	})

	idP, bodyP := authEvent("auth.user.password_changed", map[string]any{"authId": authID})
	st.publish(t, "auth.user.password_changed", idP, bodyP)
	eventually(t, "the password change audit record", func() error {
		var records []struct {
			Action string `json:"action"`
		}
		r, err := svc.send("GET", "/api/v1/users/"+u.ID+"/audit", admin, nil)
		if err != nil {
			return err
		}
		if err := jsonData(r, &records); err != nil {
			return err
		}
		for _, rec := range records {
			if rec.Action == userservice.AuditPasswordChanged {
				return nil
			}
		}
		return fmt.Errorf("audit records %+v", records)
	})

	// Malformed and invalid messages are dead-lettered at once; the consumer goes on.
	st.publish(t, "auth.user.registered", "garbage-1", []byte("this is not json"))
	m, ok := st.getDLQ(t, eventTimeout)
	if !ok {
		t.Fatalf("the malformed message did not reach %s.dlq", st.queue)
	}
	if string(m.Body) != "this is not json" || m.MessageId != "garbage-1" || m.Headers["x-dlq-reason"] != "invalid" {
		t.Errorf("dead letter: id %q reason %v body %q", m.MessageId, m.Headers["x-dlq-reason"], m.Body)
	}
	idBad, bodyBad := authEvent("auth.user.registered", map[string]any{"authId": userservice.NewID(), "email": "x@example.com", "lastName": "NoFirst"})
	st.publish(t, "auth.user.registered", idBad, bodyBad)
	if m, ok := st.getDLQ(t, eventTimeout); !ok || m.MessageId != idBad {
		t.Fatalf("the registration without firstName was not dead-lettered (got %q, %v)", m.MessageId, ok)
	}

	authID2 := userservice.NewID()
	idR, bodyR := authEvent("auth.user.registered", map[string]any{"authId": authID2, "email": "later." + tag + "@example.com", "firstName": "Later", "lastName": "One"})
	st.publish(t, "auth.user.registered", idR, bodyR)
	tok2 := st.token(t, userservice.NewID(), authID2, "later."+tag+"@example.com", userservice.RoleStudent)
	eventually(t, "a registration after the dead letters", func() error {
		r, err := svc.send("GET", "/api/v1/users/me", tok2, nil)
		if err != nil {
			return err
		}
		if r.Status != http.StatusOK {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	tp.expect(t, "user.created")
	tp.expectNone(t)
	if n := st.count(t, `SELECT count(*) FROM users`); n != 2 {
		t.Errorf("%d users, want 2", n)
	}
}

// TestFeatureFlagsOff: ENABLE_USER_REGISTRATION=false ignores auth.user.registered,
// ENABLE_SESSION_TRACKING=false counts logins without sessions, AUDIT_ENABLED=false
// stores no audit records; everything else works as usual.
func TestFeatureFlagsOff(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	svc := st.start(t, map[string]string{
		"ENABLE_USER_REGISTRATION": "false", "ENABLE_SESSION_TRACKING": "false", "AUDIT_ENABLED": "false"})
	st.waitConsumer(t)
	admin := st.adminToken(t)
	skipped := func(typ string) float64 {
		return svc.metric(t, `user_service_events_consumed_total{type="`+typ+`",result="skipped"}`)
	}

	authID := userservice.NewID()
	before := skipped("auth.user.registered")
	id, body := authEvent("auth.user.registered", map[string]any{"authId": authID, "email": "flag." + randomHex(t, 4) + "@example.com",
		"firstName": "Ada", "lastName": "Lovelace"})
	st.publish(t, "auth.user.registered", id, body)
	eventually(t, "the registration acknowledged and skipped", func() error {
		if got := skipped("auth.user.registered"); got < before+1 {
			return fmt.Errorf("skipped registrations %v, want %v", got, before+1)
		}
		return nil
	})
	if n := st.count(t, `SELECT count(*) FROM users WHERE auth_id = $1`, authID); n != 0 {
		t.Fatalf("%d profiles created from a registration with ENABLE_USER_REGISTRATION=false", n)
	}

	u := svc.createUser(t, admin, newUserBody(t)) // an admin still creates users
	idL, bodyL := authEvent("auth.user.login", map[string]any{"authId": u.AuthID, "sessionId": "sess-1"})
	st.publish(t, "auth.user.login", idL, bodyL)
	tok := st.tokenFor(t, u)
	eventually(t, "the login counted", func() error {
		var s userservice.UserStats
		svc.do(t, "GET", "/api/v1/users/me/stats", tok, nil).data(t, http.StatusOK, &s)
		if s.TotalLoginCount != 1 {
			return fmt.Errorf("stats %+v, want 1 login", s)
		}
		return nil
	})
	var sessions []json.RawMessage
	svc.do(t, "GET", "/api/v1/users/me/sessions", tok, nil).data(t, http.StatusOK, &sessions)
	if len(sessions) != 0 || st.count(t, `SELECT count(*) FROM sessions WHERE user_id = $1`, u.ID) != 0 {
		t.Errorf("sessions %s kept with ENABLE_SESSION_TRACKING=false", sessions)
	}

	svc.do(t, "PUT", "/api/v1/users/"+u.ID+"/role", admin, map[string]any{"role": "instructor"}).data(t, http.StatusOK, nil)
	svc.do(t, "PUT", "/api/v1/users/"+u.ID+"/status", admin, map[string]any{"status": "suspended"}).data(t, http.StatusOK, nil)
	svc.do(t, "DELETE", "/api/v1/users/"+u.ID, admin, nil).data(t, http.StatusOK, nil)
	if n := st.count(t, `SELECT count(*) FROM audit_log WHERE user_id = $1`, u.ID); n != 0 {
		t.Errorf("%d audit records with AUDIT_ENABLED=false", n)
	}
	if row := st.mustUserRow(t, u.ID); row.Role != "instructor" || row.Status != "deleted" {
		t.Errorf("row %+v: the changes themselves must land", row)
	}
}
