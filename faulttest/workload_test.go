//go:build faulttest

package faulttest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/golang-jwt/jwt/v5"
	amqp "github.com/rabbitmq/amqp091-go"
)

// The load: profile updates, enrollments and progress updates by many writers, each
// owning a few users and sending one request at a time, so that one user's writes are
// sequential and the outcome of each is known: acknowledged (2xx), rejected (a 4xx, or
// a connection never made) or unknown (5xx, reset, timeout: it may have committed).
// verify then reads every user back through the API and checks the result against
// the acknowledged writes; checkEvents checks the events.

type opKind string

const (
	opProfile  opKind = "profile"
	opEnroll   opKind = "enroll"
	opProgress opKind = "progress"
)

type outcome int

const (
	acked outcome = iota
	rejected
	unknown
)

// op is one write and what became of it.
type op struct {
	kind     opKind
	bio      string
	course   string
	progress float64
	out      outcome
	version  int64 // the ETag of an acknowledged write
	reply    string
}

// wuser is one user of the workload and what the last verification saw of it.
type wuser struct {
	id, token string
	version   int64
	bio       string
	progress  map[string]float64 // course id -> progress
	ops       []op               // since the last verification, in order
	courses   []string           // courses that take progress updates
}

// call is one request of the load, for checks over time windows.
type call struct {
	at      time.Time
	dur     time.Duration
	write   bool
	status  int
	err     error
	outcome outcome
}

type workload struct {
	c     *client
	users []*wuser
	seq   atomic.Int64
	// writersPaused holds the writers (not the readers) between two requests;
	// writersSlow makes them wait 200 ms between two.
	writersPaused, writersSlow atomic.Bool

	mu    sync.Mutex
	calls []call
}

// createUsers creates n users through POST /users as an admin and returns a workload
// over them.
func createUsers(t *testing.T, c *client, n int) *workload {
	t.Helper()
	admin := adminToken(t)
	w := &workload{c: c, users: make([]*wuser, n)}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			authID := newUUID()
			email := fmt.Sprintf("ft.%s@example.com", authID[:8])
			r := c.doJSON(http.MethodPost, "/api/v1/users", admin, map[string]any{
				"authId": authID, "email": email, "firstName": "Fault", "lastName": fmt.Sprintf("Test%d", i)})
			var u struct {
				ID      string `json:"id"`
				Version int64  `json:"version"`
			}
			if err := r.data(&u); err != nil || r.status != http.StatusCreated {
				errs <- fmt.Errorf("create user %d: %v (%s)", i, err, r)
				return
			}
			w.users[i] = &wuser{id: u.ID, version: u.Version, progress: map[string]float64{},
				token: sign(t, claims{AuthID: authID, Email: email, Role: "student",
					RegisteredClaims: jwt.RegisteredClaims{Subject: u.ID}})}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return w
}

// loadConfig says how many goroutines send what.
type loadConfig struct {
	writers int
	readers int // GET /me loops
	// readUsers are the users the readers read (default: the writers' users).
	readUsers []*wuser
	// pause between two requests of one goroutine (0: none)
	pause time.Duration
}

// run starts the load; it stops when ctx is done. The returned function waits for
// every goroutine: requests in flight are not cancelled, they finish or fail.
func (w *workload) run(ctx context.Context, cfg loadConfig) (wait func()) {
	var wg sync.WaitGroup
	for i := range cfg.writers {
		var mine []*wuser
		for j, u := range w.users {
			if j%cfg.writers == i {
				mine = append(mine, u)
			}
		}
		if len(mine) == 0 {
			continue
		}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
			for ctx.Err() == nil {
				if w.writersPaused.Load() {
					sleep(ctx, 10*time.Millisecond)
					continue
				}
				u := mine[rng.IntN(len(mine))]
				w.write(u, w.next(u, rng))
				if w.writersSlow.Load() {
					sleep(ctx, 200*time.Millisecond)
				}
				sleep(ctx, cfg.pause)
			}
		})
	}
	readUsers := cfg.readUsers
	if len(readUsers) == 0 {
		readUsers = w.users
	}
	for i := range cfg.readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(1000+i)))
			for ctx.Err() == nil {
				u := readUsers[rng.IntN(len(readUsers))]
				r := w.c.do(http.MethodGet, "/api/v1/users/me", u.token, nil, nil)
				w.record(call{at: time.Now().Add(-r.dur), dur: r.dur, status: r.status, err: r.err, outcome: classify(r)})
				sleep(ctx, cfg.pause)
			}
		})
	}
	return wg.Wait
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// next chooses the user's next write.
func (w *workload) next(u *wuser, rng *rand.Rand) op {
	r := rng.Float64()
	switch {
	case len(u.courses) == 0 || (r < 0.25 && len(u.courses) < 40):
		return op{kind: opEnroll, course: newUUID()}
	case r < 0.6:
		return op{kind: opProfile, bio: "bio " + strconv.FormatInt(w.seq.Add(1), 10)}
	default:
		return op{kind: opProgress, course: u.courses[rng.IntN(len(u.courses))], progress: float64(1+rng.IntN(989)) / 10}
	}
}

func classify(r reply) outcome {
	switch {
	case r.err == nil && r.status >= 200 && r.status < 300:
		return acked
	case r.err == nil && r.status >= 400 && r.status < 500, r.err != nil && refused(r.err):
		return rejected
	default:
		return unknown
	}
}

// write sends o for u and records it. Only u's writer calls it.
func (w *workload) write(u *wuser, o op) {
	var r reply
	switch o.kind {
	case opProfile:
		r = w.c.doJSON(http.MethodPut, "/api/v1/users/me", u.token, map[string]any{"bio": o.bio})
	case opEnroll:
		r = w.c.doJSON(http.MethodPost, "/api/v1/users/me/enrollments", u.token, map[string]any{"courseId": o.course})
	case opProgress:
		r = w.c.doJSON(http.MethodPut, "/api/v1/users/me/enrollments/"+o.course+"/progress", u.token, map[string]any{"progress": o.progress})
	}
	o.out = classify(r)
	o.reply = r.String()
	if o.out == acked {
		o.version = r.version()
		if o.kind == opEnroll {
			u.courses = append(u.courses, o.course)
		}
	}
	u.ops = append(u.ops, o)
	w.record(call{at: time.Now().Add(-r.dur), dur: r.dur, write: true, status: r.status, err: r.err, outcome: o.out})
}

func (w *workload) record(c call) {
	w.mu.Lock()
	w.calls = append(w.calls, c)
	w.mu.Unlock()
}

// takeCalls returns the calls recorded so far and forgets them.
func (w *workload) takeCalls() []call {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.calls
	w.calls = nil
	return c
}

// counts sums the writes of every user since the last verification.
func (w *workload) counts() (ack, rej, unk int) {
	for _, u := range w.users {
		for _, o := range u.ops {
			switch o.out {
			case acked:
				ack++
			case rejected:
				rej++
			default:
				unk++
			}
		}
	}
	return
}

// ackedWrite is an acknowledged write whose event checkEvents looks for.
type ackedWrite struct {
	user string
	op   op
}

// verification is what verify found: per user, the version now committed.
type verification struct {
	finals          map[string]int64
	acked           []ackedWrite
	unknown         int
	unknownCommited int
}

// verify reads every user back as an admin and checks that every acknowledged write
// is there and that nothing else is, allowing for the writes of unknown outcome. It
// then takes what it read as the users' new starting point.
func (w *workload) verify(t *testing.T) verification {
	t.Helper()
	admin := adminToken(t)
	v := verification{finals: map[string]int64{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, u := range w.users {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			final, problems := w.verifyUser(admin, u)
			mu.Lock()
			defer mu.Unlock()
			for i, p := range problems {
				if i == 5 {
					t.Errorf("user %s: … %d more problems", u.id, len(problems)-5)
					break
				}
				t.Errorf("user %s: %s", u.id, p)
			}
			v.finals[u.id] = final.version
			for _, o := range u.ops {
				switch o.out {
				case acked:
					v.acked = append(v.acked, ackedWrite{u.id, o})
				case unknown:
					v.unknown++
				}
			}
			v.unknownCommited += final.unknownCommitted
			// Start over from what is committed now.
			u.version, u.bio, u.progress, u.ops = final.version, final.bio, final.progress, nil
			u.courses = u.courses[:0]
			for c, p := range final.progress {
				if p < 100 {
					u.courses = append(u.courses, c)
				}
			}
			sort.Strings(u.courses)
		})
	}
	wg.Wait()
	return v
}

type finalState struct {
	version          int64
	bio              string
	progress         map[string]float64
	unknownCommitted int
}

func (w *workload) verifyUser(admin string, u *wuser) (finalState, []string) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	r := w.c.do(http.MethodGet, "/api/v1/users/"+u.id, admin, nil, nil)
	var user struct {
		Version int64   `json:"version"`
		Bio     *string `json:"bio"`
	}
	if err := r.data(&user); err != nil {
		return finalState{version: u.version, bio: u.bio, progress: u.progress}, []string{"cannot read the user: " + err.Error()}
	}
	f := finalState{version: user.Version, progress: map[string]float64{}}
	if user.Bio != nil {
		f.bio = *user.Bio
	}
	for page := 1; ; page++ {
		r := w.c.do(http.MethodGet, fmt.Sprintf("/api/v1/users/%s/enrollments?limit=100&page=%d", u.id, page), admin, nil, nil)
		var list []struct {
			CourseID string  `json:"courseId"`
			Progress float64 `json:"progress"`
		}
		if err := r.data(&list); err != nil {
			return f, append(problems, "cannot list enrollments: "+err.Error())
		}
		for _, e := range list {
			f.progress[e.CourseID] = e.Progress
		}
		if len(list) < 100 {
			break
		}
	}

	// Versions: one per committed write.
	nAcked, nUnknown := 0, 0
	last := u.version
	for _, o := range u.ops {
		switch o.out {
		case acked:
			nAcked++
			if o.version <= last {
				bad("acknowledged %s has version %d, not above %d (%s)", o.kind, o.version, last, o.reply)
			}
			last = o.version
		case unknown:
			nUnknown++
		}
	}
	f.unknownCommitted = int(f.version-u.version) - nAcked
	if f.version < last || f.unknownCommitted < 0 || f.unknownCommitted > nUnknown {
		bad("version %d; from %d with %d acknowledged and %d unknown writes it must be between %d and %d",
			f.version, u.version, nAcked, nUnknown, max(last, u.version+int64(nAcked)), u.version+int64(nAcked+nUnknown))
	}

	// The bio: the last acknowledged one, or a later one of unknown outcome.
	allowed := allowedValues(u.ops, func(o op) (string, bool) { return o.bio, o.kind == opProfile }, u.bio, true)
	if !allowed[f.bio] {
		bad("bio is %q; allowed: %v", f.bio, keys(allowed))
	}

	// Enrollments and their progress.
	courses := map[string]bool{}
	for c := range u.progress {
		courses[c] = true
	}
	for _, o := range u.ops {
		if o.course != "" {
			courses[o.course] = true
		}
	}
	for c := range courses {
		base, existed := u.progress[c]
		mustExist := existed
		mayExist := existed
		for _, o := range u.ops {
			if o.kind == opEnroll && o.course == c {
				mayExist = true
				mustExist = mustExist || o.out == acked
			}
		}
		got, present := f.progress[c]
		switch {
		case mustExist && !present:
			bad("acknowledged enrollment in %s is missing", c)
			continue
		case present && !mayExist:
			bad("enrollment in %s that nobody made", c)
			continue
		case !present:
			continue
		}
		allowed := allowedValues(u.ops, func(o op) (string, bool) {
			if o.course != c {
				return "", false
			}
			if o.kind == opEnroll {
				return fmtProgress(0), true
			}
			return fmtProgress(o.progress), o.kind == opProgress
		}, fmtProgress(base), existed)
		if !allowed[fmtProgress(got)] {
			bad("progress in %s is %s; allowed: %v", c, fmtProgress(got), keys(allowed))
		}
	}
	for c := range f.progress {
		if !courses[c] {
			bad("enrollment in %s that nobody made", c)
		}
	}
	return f, problems
}

// allowedValues walks the ops that set a value backwards: the newest non-rejected
// one is allowed, and while those are of unknown outcome, so is the one before; the
// starting value is allowed if no acknowledged op came after it.
func allowedValues(ops []op, value func(op) (string, bool), start string, startValid bool) map[string]bool {
	allowed := map[string]bool{}
	for i := len(ops) - 1; i >= 0; i-- {
		v, ok := value(ops[i])
		if !ok || ops[i].out == rejected {
			continue
		}
		allowed[v] = true
		if ops[i].out == acked {
			return allowed
		}
	}
	if startValid {
		allowed[start] = true
	}
	return allowed
}

func fmtProgress(p float64) string { return strconv.FormatFloat(math.Round(p*100)/100, 'f', -1, 64) }

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------------------------------
// Events

// tap is a durable queue bound with "#" to the service's exchange, declared before
// the service starts, so it holds every event the service ever publishes there.
type tap struct {
	url, exchange, queue string

	mu       sync.Mutex
	byID     map[string]event
	byUser   map[string]map[int64][]event // user id -> userVersion -> distinct events
	received int
}

type event struct {
	ID       string         `json:"id"`
	Type     string         `json:"type"`
	Data     map[string]any `json:"data"`
	Metadata map[string]any `json:"metadata"`
}

func newTap(t *testing.T, svc *service) *tap {
	t.Helper()
	tp := &tap{url: svc.stack.amqpURL, exchange: svc.name + ".events", queue: svc.name + ".tap",
		byID: map[string]event{}, byUser: map[string]map[int64][]event{}}
	conn, err := amqp.Dial(tp.url)
	if err != nil {
		t.Fatalf("cannot connect to RabbitMQ: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// The same declaration as the service's (topic, durable).
	if err := ch.ExchangeDeclare(tp.exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatalf("cannot declare %s: %v", tp.exchange, err)
	}
	if _, err := ch.QueueDeclare(tp.queue, true, false, false, false, nil); err != nil {
		t.Fatalf("cannot declare %s: %v", tp.queue, err)
	}
	if err := ch.QueueBind(tp.queue, "#", tp.exchange, false, nil); err != nil {
		t.Fatalf("cannot bind %s: %v", tp.queue, err)
	}
	return tp
}

// drain consumes the tap until done reports true or timeout passes.
func (tp *tap) drain(t *testing.T, timeout time.Duration, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !done() && time.Now().Before(deadline) {
		if err := tp.consume(deadline, done); err != nil {
			t.Logf("tap: %v; retrying", err)
			time.Sleep(time.Second)
		}
	}
}

func (tp *tap) consume(deadline time.Time, done func() bool) error {
	conn, err := amqp.Dial(tp.url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	deliveries, err := ch.Consume(tp.queue, "", true, false, false, false, nil)
	if err != nil {
		return err
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return fmt.Errorf("the delivery channel closed")
			}
			tp.add(d.Body)
		case <-tick.C:
			if done() || time.Now().After(deadline) {
				return nil
			}
		}
	}
}

func (tp *tap) add(body []byte) {
	var e event
	if json.Unmarshal(body, &e) != nil {
		return
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.received++
	if _, dup := tp.byID[e.ID]; dup {
		return
	}
	tp.byID[e.ID] = e
	user, _ := e.Data["userId"].(string)
	version, _ := e.Metadata["userVersion"].(float64)
	m := tp.byUser[user]
	if m == nil {
		m = map[int64][]event{}
		tp.byUser[user] = m
	}
	m[int64(version)] = append(m[int64(version)], e)
}

// missing returns, per user, the versions up to its final one that no event carries.
func (tp *tap) missing(finals map[string]int64) map[string][]int64 {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	out := map[string][]int64{}
	for user, final := range finals {
		for v := int64(1); v <= final; v++ {
			if len(tp.byUser[user][v]) == 0 {
				out[user] = append(out[user], v)
			}
		}
	}
	return out
}

// checkEvents waits for an event of every committed version of every user (each
// write of the workload publishes at least one), then checks that the event of each
// acknowledged write carries what was written, and that no change was published
// twice under different ids (a redelivery repeats the id).
func checkEvents(t *testing.T, tp *tap, v verification, timeout time.Duration) (events, duplicates int) {
	t.Helper()
	tp.drain(t, timeout, func() bool { return len(tp.missing(v.finals)) == 0 })
	missing := tp.missing(v.finals)
	n := 0
	for user, versions := range missing {
		n += len(versions)
		if len(missing) <= 5 {
			t.Errorf("user %s: no event for committed versions %v", user, versions)
		}
	}
	if n > 0 {
		t.Errorf("%d committed changes of %d users have no event after %s", n, len(missing), timeout)
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for _, a := range v.acked {
		evs := tp.byUser[a.user][a.op.version]
		if !matchesEvent(a.op, evs) {
			t.Errorf("user %s: no event matches the acknowledged %s at version %d (%+v); events of that version: %+v", a.user, a.op.kind, a.op.version, a.op, evs)
		}
	}
	for user, versions := range tp.byUser {
		for version, evs := range versions {
			seen := map[string]string{}
			for _, e := range evs {
				if id, ok := seen[e.Type]; ok {
					t.Errorf("user %s version %d: two %s events with different ids %s and %s", user, version, e.Type, id, e.ID)
				}
				seen[e.Type] = e.ID
			}
		}
	}
	return len(tp.byID), tp.received - len(tp.byID)
}

func matchesEvent(o op, evs []event) bool {
	for _, e := range evs {
		switch o.kind {
		case opProfile:
			changes, _ := e.Data["changes"].(map[string]any)
			if e.Type == "user.updated" && changes["bio"] == o.bio {
				return true
			}
		case opEnroll:
			if e.Type == "user.enrolled" && e.Data["courseId"] == o.course {
				return true
			}
		case opProgress:
			p, _ := e.Data["progress"].(float64)
			if e.Type == "user.progress_updated" && e.Data["courseId"] == o.course && fmtProgress(p) == fmtProgress(o.progress) {
				return true
			}
		}
	}
	return false
}

// statusCounts renders a histogram of statuses and transport errors.
func statusCounts(calls []call) string {
	m := map[string]int{}
	for _, c := range calls {
		switch {
		case c.err == nil:
			m[strconv.Itoa(c.status)]++
		case refused(c.err):
			m["refused"]++
		case timedOut(c.err):
			m["timeout"]++
		default:
			m["error"]++
		}
	}
	parts := make([]string, 0, len(m))
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s:%d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
