package main

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/lms-platform/userservice"
)

// TestProfile walks the profile API of issue 2 ("Done when") against the real
// program: create, read, update, preconditions, uniqueness, validation, the
// 401/403/404 paths, Idempotency-Key replay, callers without a profile, and
// role and status changes taking effect on the very next request. After every
// 2xx write the row is read back from PostgreSQL: a 2xx means committed.
func TestProfile(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	tp := st.tap(t)
	// A long batch wait puts concurrent requests in one group commit.
	svc := st.start(t, map[string]string{"WRITE_BATCH_WAIT": "20ms"})
	admin := st.adminToken(t)

	tag := randomHex(t, 5)
	body := map[string]any{
		"authId": userservice.NewID(), "email": "Ada." + tag + "@Example.COM",
		"firstName": "Ada", "lastName": "Lovelace", "username": "ada_" + tag, "timezone": "Europe/London",
	}

	// Create: 201, exactly the User fields, ETag, committed, user.created.
	r := svc.do(t, "POST", "/api/v1/users", admin, body)
	var ada apiUser
	e := r.data(t, http.StatusCreated, &ada)
	checkUserShape(t, e.Data)
	if e.Message == "" {
		t.Errorf("%s: no message", r)
	}
	want := apiUser{
		ID: ada.ID, AuthID: body["authId"].(string), Email: "ada." + tag + "@example.com", FirstName: "Ada", LastName: "Lovelace",
		Timezone: "Europe/London", Language: "en", Role: userservice.RoleStudent, Status: "active", Version: 1,
		CreatedAt: ada.CreatedAt, UpdatedAt: ada.UpdatedAt,
	}
	if ada.Username == nil || *ada.Username != "ada_"+tag {
		t.Errorf("username = %v", ada.Username)
	}
	ada.Username, want.Username = nil, nil
	if ada != want {
		t.Errorf("created user\n got %+v\nwant %+v", ada, want)
	}
	if _, ok := userservice.ParseID(ada.ID); !ok {
		t.Fatalf("id %q is not a UUID", ada.ID)
	}
	if v := r.version(t); v != 1 {
		t.Errorf("ETag version %d, want 1", v)
	}
	if row := st.mustUserRow(t, ada.ID); row.Version != 1 || row.Email != want.Email {
		t.Errorf("row after create: %+v", row)
	}
	created := tp.expect(t, "user.created")[0]
	if created.userID() != ada.ID || created.Data["email"] != want.Email {
		t.Errorf("user.created data %v", created.Data)
	}
	adaTok := st.tokenFor(t, ada)

	t.Run("the user's own token reads /me and /{id}", func(t *testing.T) {
		for _, path := range []string{"/api/v1/users/me", "/api/v1/users/" + ada.ID} {
			r := svc.do(t, "GET", path, adaTok, nil)
			var got apiUser
			checkUserShape(t, r.data(t, http.StatusOK, &got).Data)
			if got.ID != ada.ID || got.Version != 1 || r.version(t) != 1 {
				t.Errorf("%s: got %+v", r, got)
			}
		}
	})

	t.Run("PUT /me answers the new version and commits it", func(t *testing.T) {
		r := svc.do(t, "PUT", "/api/v1/users/me", adaTok, map[string]any{"bio": "Analyst", "displayName": "Countess"}, "If-Match", `"1"`)
		var got apiUser
		checkUserShape(t, r.data(t, http.StatusOK, &got).Data)
		if got.Version != 2 || r.version(t) != 2 || got.Bio == nil || *got.Bio != "Analyst" || got.DisplayName == nil {
			t.Errorf("%s", r)
		}
		if got.UpdatedAt < got.CreatedAt {
			t.Errorf("updatedAt %s before createdAt %s", got.UpdatedAt, got.CreatedAt)
		}
		row := st.mustUserRow(t, ada.ID)
		if row.Version != 2 || row.Bio == nil || *row.Bio != "Analyst" {
			t.Errorf("row after PUT: %+v", row)
		}
		ev := tp.expect(t, "user.updated")[0]
		if ev.userID() != ada.ID || ev.userVersion() != 2 {
			t.Errorf("user.updated %s", ev)
		}
	})

	t.Run("a stale If-Match answers 412 and changes nothing", func(t *testing.T) {
		r := svc.do(t, "PUT", "/api/v1/users/me", adaTok, map[string]any{"bio": "stale"}, "If-Match", `"1"`)
		r.fail(t, http.StatusPreconditionFailed, "PRECONDITION_FAILED")
		if row := st.mustUserRow(t, ada.ID); row.Version != 2 || *row.Bio != "Analyst" {
			t.Errorf("row after 412: %+v", row)
		}
	})

	// A second user, for uniqueness and access checks.
	bob := svc.createUser(t, admin, newUserBody(t))
	tp.expect(t, "user.created")
	bobTok := st.tokenFor(t, bob)

	t.Run("duplicates answer 409", func(t *testing.T) {
		for name, mutate := range map[string]func(b map[string]any){
			"email in another case": func(b map[string]any) { b["email"] = strings.ToUpper("ada." + tag + "@example.com") },
			"username":              func(b map[string]any) { b["username"] = "ada_" + tag },
			"username in another case": func(b map[string]any) {
				b["username"] = strings.ToUpper("ada_" + tag)
			},
			"authId": func(b map[string]any) { b["authId"] = ada.AuthID },
		} {
			t.Run(name, func(t *testing.T) {
				b := newUserBody(t)
				mutate(b)
				svc.do(t, "POST", "/api/v1/users", admin, b).fail(t, http.StatusConflict, "CONFLICT")
			})
		}
		r := svc.do(t, "PUT", "/api/v1/users/me", bobTok, map[string]any{"username": "ada_" + tag})
		r.fail(t, http.StatusConflict, "CONFLICT")
		if n := st.count(t, `SELECT count(*) FROM users`); n != 2 {
			t.Errorf("%d users in PostgreSQL, want 2", n)
		}
		if row := st.mustUserRow(t, bob.ID); row.Version != 1 {
			t.Errorf("bob after a refused PUT: %+v", row)
		}
	})

	t.Run("bad input answers 400 with details", func(t *testing.T) {
		r := svc.do(t, "POST", "/api/v1/users", admin, map[string]any{
			"authId": "nope", "email": "not-an-email", "firstName": "", "lastName": "L", "username": "a", "phone": "12",
		})
		e := r.fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
		fields := map[string]bool{}
		for _, d := range e.Details {
			fields[d.Field] = d.Message != ""
		}
		for _, f := range []string{"authId", "email", "firstName", "username", "phone"} {
			if !fields[f] {
				t.Errorf("no detail for %s in %s", f, r)
			}
		}
		r = svc.do(t, "POST", "/api/v1/users", admin, map[string]any{"authId": userservice.NewID(), "email": "x@example.com",
			"firstName": "X", "lastName": "Y", "nickname": "z"})
		if e := r.fail(t, http.StatusBadRequest, "VALIDATION_ERROR"); len(e.Details) == 0 || e.Details[0].Field != "nickname" {
			t.Errorf("unknown field: %s", r)
		}
		svc.do(t, "PUT", "/api/v1/users/me", adaTok, `{"bio":`).fail(t, http.StatusBadRequest, "INVALID_JSON")
		svc.do(t, "PUT", "/api/v1/users/me", adaTok, map[string]any{}).fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
		svc.do(t, "PUT", "/api/v1/users/me", adaTok, map[string]any{"timezone": "Mars/Olympus"}).fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
		svc.do(t, "GET", "/api/v1/users/not-a-uuid", admin, nil).fail(t, http.StatusBadRequest, "INVALID_PARAMETER")
		r = svc.do(t, "PUT", "/api/v1/users/me", adaTok, "bio=x", "Content-Type", "text/plain")
		r.fail(t, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE")
		if n := st.count(t, `SELECT count(*) FROM users`); n != 2 {
			t.Errorf("%d users after refused requests, want 2", n)
		}
	})

	t.Run("bad tokens answer 401", func(t *testing.T) {
		now := time.Now()
		sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
			s, err := jwt.NewWithClaims(method, claims).SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		claims := func(exp time.Time) jwt.MapClaims {
			return jwt.MapClaims{"sub": ada.ID, "authId": ada.AuthID, "email": ada.Email, "role": "admin", "iat": now.Unix(), "exp": exp.Unix()}
		}
		noRole := claims(now.Add(time.Hour))
		delete(noRole, "role")
		for name, tok := range map[string]string{
			"missing":      "",
			"malformed":    "not.a.jwt",
			"wrong secret": sign(jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), claims(now.Add(time.Hour))),
			"expired":      sign(jwt.SigningMethodHS256, []byte(st.secret), claims(now.Add(-time.Minute))),
			"alg none":     sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(now.Add(time.Hour))),
			"HS512":        sign(jwt.SigningMethodHS512, []byte(st.secret), claims(now.Add(time.Hour))),
			"no role":      sign(jwt.SigningMethodHS256, []byte(st.secret), noRole),
		} {
			r := svc.do(t, "GET", "/api/v1/users/me", tok, nil)
			r.fail(t, http.StatusUnauthorized, "UNAUTHORIZED")
			if r.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: %s without WWW-Authenticate", name, r)
			}
		}
	})

	t.Run("403 for other users' resources and admin routes", func(t *testing.T) {
		svc.do(t, "GET", "/api/v1/users/"+bob.ID, adaTok, nil).fail(t, http.StatusForbidden, "FORBIDDEN")
		svc.do(t, "PUT", "/api/v1/users/"+bob.ID, adaTok, map[string]any{"bio": "x"}).fail(t, http.StatusForbidden, "FORBIDDEN")
		svc.do(t, "POST", "/api/v1/users", adaTok, newUserBody(t)).fail(t, http.StatusForbidden, "FORBIDDEN")
		svc.do(t, "GET", "/api/v1/users", adaTok, nil).fail(t, http.StatusForbidden, "FORBIDDEN")
		svc.do(t, "DELETE", "/api/v1/users/"+bob.ID, adaTok, nil).fail(t, http.StatusForbidden, "FORBIDDEN")
		svc.do(t, "PUT", "/api/v1/users/"+ada.ID+"/role", adaTok, map[string]any{"role": "admin"}).fail(t, http.StatusForbidden, "FORBIDDEN")
		// A token without a profile acts with its own role: a student's cannot create.
		student := st.token(t, userservice.NewID(), userservice.NewID(), "s@example.com", userservice.RoleStudent)
		svc.do(t, "POST", "/api/v1/users", student, newUserBody(t)).fail(t, http.StatusForbidden, "FORBIDDEN")
		if row := st.mustUserRow(t, bob.ID); row.Version != 1 {
			t.Errorf("bob after refused writes: %+v", row)
		}
	})

	t.Run("404 for unknown users and routes, 405 with Allow", func(t *testing.T) {
		svc.do(t, "GET", "/api/v1/users/"+userservice.NewID(), admin, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
		svc.do(t, "PUT", "/api/v1/users/"+userservice.NewID(), admin, map[string]any{"bio": "x"}).fail(t, http.StatusNotFound, "NOT_FOUND")
		nobody := st.token(t, userservice.NewID(), userservice.NewID(), "n@example.com", userservice.RoleStudent)
		svc.do(t, "GET", "/api/v1/users/me", nobody, nil).fail(t, http.StatusNotFound, "NOT_FOUND")
		svc.do(t, "GET", "/api/v1/nothing-here", admin, nil).fail(t, http.StatusNotFound, "ROUTE_NOT_FOUND")
		r := svc.do(t, "PATCH", "/api/v1/users/me", adaTok, map[string]any{"bio": "x"})
		r.fail(t, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
		if !strings.Contains(r.Header.Get("Allow"), "PUT") {
			t.Errorf("%s: Allow %q", r, r.Header.Get("Allow"))
		}
	})

	t.Run("a token whose sub is unknown finds the profile by authId", func(t *testing.T) {
		tok := st.token(t, userservice.NewID(), bob.AuthID, bob.Email, userservice.RoleStudent)
		var got apiUser
		svc.do(t, "GET", "/api/v1/users/me", tok, nil).data(t, http.StatusOK, &got)
		if got.ID != bob.ID {
			t.Errorf("GET /me by authId: got %s, want %s", got.ID, bob.ID)
		}
	})

	t.Run("Idempotency-Key replays the first answer from PostgreSQL", func(t *testing.T) {
		key := "create-" + randomHex(t, 8)
		b := newUserBody(t)
		first := svc.do(t, "POST", "/api/v1/users", admin, b, "Idempotency-Key", key)
		var u apiUser
		first.data(t, http.StatusCreated, &u)
		tp.expect(t, "user.created")
		st.mustUserRow(t, u.ID)

		again := svc.do(t, "POST", "/api/v1/users", admin, b, "Idempotency-Key", key)
		if again.Status != first.Status || !bytes.Equal(again.Body, first.Body) {
			t.Errorf("replay differs:\nfirst %s\nagain %s", first, again)
		}
		if again.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replay without Idempotent-Replayed: %v", again.Header)
		}
		if n := st.count(t, `SELECT count(*) FROM users WHERE email = $1`, b["email"]); n != 1 {
			t.Errorf("%d users with the email after a replay, want 1", n)
		}

		// The same key for another body is refused and creates nothing.
		other := newUserBody(t)
		svc.do(t, "POST", "/api/v1/users", admin, other, "Idempotency-Key", key).
			fail(t, http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED")
		if n := st.count(t, `SELECT count(*) FROM users WHERE email = $1`, other["email"]); n != 0 {
			t.Errorf("the refused body created %d users", n)
		}

		// Another instance on the same database replays it too: the answer lives in PostgreSQL.
		svc2 := st.start(t, nil)
		third := svc2.do(t, "POST", "/api/v1/users", admin, b, "Idempotency-Key", key)
		if third.Status != first.Status || !bytes.Equal(third.Body, first.Body) {
			t.Errorf("replay on a second instance differs:\nfirst %s\nthird %s", first, third)
		}

		// Concurrent first requests with one key (in one group commit): one user,
		// one answer for all.
		key2 := "create-" + randomHex(t, 8)
		b2 := newUserBody(t)
		rs := make([]*response, 16)
		errs := make([]error, len(rs))
		parallel(len(rs), len(rs), func(i int) {
			rs[i], errs[i] = svc.send("POST", "/api/v1/users", admin, b2, "Idempotency-Key", key2)
		})
		for i, r := range rs {
			if errs[i] != nil {
				t.Fatalf("request %d: %v", i, errs[i])
			}
			if r.Status != http.StatusCreated || !bytes.Equal(r.Body, rs[0].Body) {
				t.Errorf("concurrent request %d: %s\nfirst: %s", i, r, rs[0])
			}
		}
		if n := st.count(t, `SELECT count(*) FROM users WHERE email = $1`, b2["email"]); n != 1 {
			t.Errorf("%d users from concurrent requests with one key, want 1", n)
		}
		tp.expect(t, "user.created")
	})

	t.Run("role and status changes take effect on the next request", func(t *testing.T) {
		b := newUserBody(t)
		b["role"] = "admin"
		boss := svc.createUser(t, admin, b)
		tp.expect(t, "user.created")
		bossTok := st.tokenFor(t, boss) // claims admin throughout
		svc.do(t, "GET", "/api/v1/users?limit=1", bossTok, nil).data(t, http.StatusOK, nil)

		var u apiUser
		svc.do(t, "PUT", "/api/v1/users/"+boss.ID+"/role", admin, map[string]any{"role": "student"}).data(t, http.StatusOK, &u)
		if u.Role != userservice.RoleStudent || u.Version != 2 {
			t.Errorf("after demotion: %+v", u)
		}
		if row := st.mustUserRow(t, boss.ID); row.Role != "student" || row.Version != 2 {
			t.Errorf("row after demotion: %+v", row)
		}
		tp.expect(t, "user.role_changed")
		svc.do(t, "GET", "/api/v1/users?limit=1", bossTok, nil).fail(t, http.StatusForbidden, "FORBIDDEN")
		svc.do(t, "GET", "/api/v1/users/me", bossTok, nil).data(t, http.StatusOK, nil)

		svc.do(t, "PUT", "/api/v1/users/"+boss.ID+"/status", admin, map[string]any{"status": "suspended"}).data(t, http.StatusOK, &u)
		if row := st.mustUserRow(t, boss.ID); row.Status != "suspended" || row.Version != 3 {
			t.Errorf("row after suspension: %+v", row)
		}
		tp.expect(t, "user.status_changed")
		svc.do(t, "GET", "/api/v1/users/me", bossTok, nil).fail(t, http.StatusForbidden, "ACCOUNT_DISABLED")

		svc.do(t, "PUT", "/api/v1/users/"+boss.ID+"/status", admin, map[string]any{"status": "inactive"}).data(t, http.StatusOK, nil)
		tp.expect(t, "user.status_changed")
		svc.do(t, "GET", "/api/v1/users/me", bossTok, nil).data(t, http.StatusOK, nil) // inactive users may act

		// Soft delete: admins still see the user, the user's own token is refused.
		svc.do(t, "DELETE", "/api/v1/users/"+boss.ID, admin, nil).data(t, http.StatusOK, nil)
		if row := st.mustUserRow(t, boss.ID); row.Status != "deleted" || row.Version != 5 {
			t.Errorf("row after delete: %+v", row)
		}
		tp.expect(t, "user.deleted")
		svc.do(t, "GET", "/api/v1/users/me", bossTok, nil).fail(t, http.StatusForbidden, "ACCOUNT_DISABLED")
		svc.do(t, "GET", "/api/v1/users/"+boss.ID, admin, nil).data(t, http.StatusOK, &u)
		if u.Status != "deleted" {
			t.Errorf("admin GET of a deleted user: %+v", u)
		}
		svc.do(t, "DELETE", "/api/v1/users/"+boss.ID, admin, nil).data(t, http.StatusOK, nil) // again: 200, no event
	})

	tp.expectNone(t)
}

// TestConcurrentUpdatesToOneUser sends 100 PUTs to one user at once: every one
// is answered 2xx, none is lost (each set a distinct bio, and each version's
// event carries the bio of the answer with that version), and the version
// advances by exactly 100, in the API and in PostgreSQL.
func TestConcurrentUpdatesToOneUser(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	tp := st.tap(t)
	svc := st.start(t, nil)
	u := svc.createUser(t, st.adminToken(t), newUserBody(t))
	tok := st.tokenFor(t, u)
	tp.expect(t, "user.created")

	const n = 100
	type answer struct {
		status  int
		version int64
		bio     string
		err     error
	}
	answers := make([]answer, n)
	parallel(n, n, func(i int) {
		bio := fmt.Sprintf("bio-%03d", i)
		r, err := svc.send("PUT", "/api/v1/users/me", tok, map[string]any{"bio": bio})
		if err != nil {
			answers[i].err = err
			return
		}
		answers[i] = answer{status: r.Status, bio: bio}
		if v, err := etagVersion(r.Header.Get("ETag")); err == nil {
			answers[i].version = v
		} else {
			answers[i].err = fmt.Errorf("%s: %v", r, err)
		}
	})
	bioOf := map[int64]string{}
	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Fatalf("PUT %d: %v", i, a.err)
		case a.status != http.StatusOK:
			t.Fatalf("PUT %d answered %d", i, a.status)
		case bioOf[a.version] != "":
			t.Errorf("version %d answered twice (%s and %s)", a.version, bioOf[a.version], a.bio)
		}
		bioOf[a.version] = a.bio
	}
	for v := int64(2); v <= n+1; v++ {
		if bioOf[v] == "" {
			t.Errorf("no answer carries version %d", v)
		}
	}

	var got apiUser
	svc.do(t, "GET", "/api/v1/users/me", tok, nil).data(t, http.StatusOK, &got)
	if got.Version != n+1 || got.Bio == nil || *got.Bio != bioOf[n+1] {
		t.Errorf("GET /me: version %d bio %v, want %d %q", got.Version, got.Bio, n+1, bioOf[n+1])
	}
	if row := st.mustUserRow(t, u.ID); row.Version != n+1 || row.Bio == nil || *row.Bio != bioOf[n+1] {
		t.Errorf("row: %+v, want version %d bio %q", row, n+1, bioOf[n+1])
	}

	evs := tp.take(t, n)
	var seen []string
	for i, e := range evs {
		checkEnvelope(t, e)
		changes, _ := e.Data["changes"].(map[string]any)
		if e.Type != "user.updated" || e.userID() != u.ID || e.userVersion() != int64(i+2) {
			t.Errorf("event %d: %s, want user.updated of version %d", i, e, i+2)
			continue
		}
		if changes["bio"] != bioOf[int64(i+2)] {
			t.Errorf("event of version %d carries bio %v, the answer said %q", i+2, changes["bio"], bioOf[int64(i+2)])
		}
		seen = append(seen, fmt.Sprint(changes["bio"]))
	}
	sort.Strings(seen)
	for i := 1; i < len(seen); i++ {
		if seen[i] == seen[i-1] {
			t.Errorf("bio %s published twice", seen[i])
		}
	}
	tp.expectNone(t)
}

// TestGracefulShutdown cancels run's context (SIGTERM in main) while 32
// goroutines write: every write answered 2xx is in PostgreSQL, no write was
// applied without its answer reaching the client, and run returns nil.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)

	const writers = 32
	users := make([]apiUser, writers)
	bodies := make([]map[string]any, writers)
	for i := range bodies {
		bodies[i] = newUserBody(t)
	}
	parallel(writers, 8, func(i int) {
		r, err := svc.send("POST", "/api/v1/users", admin, bodies[i])
		if err != nil || r.Status != http.StatusCreated {
			return
		}
		_ = jsonData(r, &users[i])
	})
	tokens := make([]string, writers)
	for i, u := range users {
		if u.ID == "" {
			t.Fatalf("user %d was not created", i)
		}
		tokens[i] = st.tokenFor(t, u)
	}

	type result struct {
		acked    int      // the last n whose PUT answered 2xx (0: none)
		versions int64    // number of 2xx answers
		failed   []string // answers other than 2xx
		cut      string   // the transport error that ended the writer
	}
	results := make([]result, writers)
	var total sync.WaitGroup
	var mu sync.Mutex
	okCount := 0
	started := make(chan struct{})
	var startOnce sync.Once
	total.Add(writers)
	for i := range writers {
		go func() {
			defer total.Done()
			tok := tokens[i]
			res := &results[i]
			for n := 1; n <= 10000; n++ {
				r, err := svc.send("PUT", "/api/v1/users/me", tok, map[string]any{"bio": fmt.Sprintf("w%d-%d", i, n)})
				if err != nil {
					res.cut = err.Error()
					return // refused or cut: the listener is gone
				}
				if r.Status/100 != 2 {
					res.failed = append(res.failed, r.String())
					continue
				}
				res.acked, res.versions = n, res.versions+1
				mu.Lock()
				okCount++
				if okCount >= 300 {
					startOnce.Do(func() { close(started) })
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-started:
	case <-time.After(60 * time.Second):
		t.Fatal("the writers did not get 300 answers within a minute")
	}
	if err := svc.stop(); err != nil {
		t.Fatalf("run after cancellation: %v", err)
	}
	done := make(chan struct{})
	go func() { total.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("writers still running 30s after run returned")
	}

	var cuts []string
	for i, res := range results {
		row := st.mustUserRow(t, users[i].ID)
		if res.acked == 0 {
			t.Errorf("writer %d got no 2xx", i)
			continue
		}
		want := fmt.Sprintf("w%d-%d", i, res.acked)
		if row.Bio == nil || *row.Bio != want || row.Version != 1+res.versions {
			t.Errorf("writer %d: last 2xx set bio %q (version %d); PostgreSQL has bio %v version %d",
				i, want, 1+res.versions, strPtr(row.Bio), row.Version)
		}
		for _, f := range res.failed {
			t.Errorf("writer %d: a request during shutdown was answered %s", i, f)
		}
		if res.cut != "" {
			cuts = append(cuts, res.cut)
		}
	}
	// A reset or EOF hits a request sent on a keep-alive connection that the
	// server closed as idle: the server never read it, and the check above shows
	// that no such request was applied.
	kinds := map[string]int{}
	for _, c := range cuts {
		switch {
		case strings.Contains(c, "connection refused"):
			kinds["refused"]++
		case strings.Contains(c, "reset"), strings.Contains(c, "EOF"), strings.Contains(c, "closed idle connection"):
			kinds["reset or EOF"]++
		default:
			kinds["other"]++
			t.Errorf("a writer ended with an unexpected error: %s", c)
		}
	}
	t.Logf("%d writes acknowledged; writers ended by %v", okCount, kinds)
}

func strPtr(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
