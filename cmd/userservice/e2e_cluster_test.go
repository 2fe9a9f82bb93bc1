//go:build !race

// Cluster tests are built without the race detector: protoactor-go's cluster,
// remote and disthash packages race on their own state (BlockList, MemberList,
// disthash's rendezvous table, the etcd provider's shutdown flag, grpclog's global
// logger), which -race reports in every multi-node run. `make test` runs them in a
// pass of their own without -race (docs/cluster.md).

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/actors/etcdtest"
)

// Cluster mode end to end: three in-process nodes (each its own HTTP port and
// remoting port) on one stack and one etcd of their own.

// clusterEnv is the environment of one cluster node.
func clusterEnv(t testing.TB, etcd, name string) map[string]string {
	return map[string]string{
		"CLUSTER_PROVIDER": "etcd", "CLUSTER_NAME": name, "CLUSTER_ADVERTISE_HOST": "127.0.0.1",
		"CLUSTER_PORT": strconv.Itoa(freePort(t)), "ETCD_ENDPOINTS": etcd, "CLUSTER_LEASE_TTL": "2s",
	}
}

func startCluster(t *testing.T, s *stack, n int) (nodes []*service, etcd, name string) {
	t.Helper()
	etcd, name = etcdtest.Start(t), "e2e"+s.id
	for range n {
		nodes = append(nodes, s.start(t, clusterEnv(t, etcd, name)))
	}
	return nodes, etcd, name
}

// TestE2EClusterConcurrentPutMe: 100 concurrent PUT /me for one user spread over
// three nodes all answer 200, each with its own version, the stored version moves
// by 100, every node then reads it, and one event per change is published.
func TestE2EClusterConcurrentPutMe(t *testing.T) {
	s := newStack(t)
	nodes, _, _ := startCluster(t, s, 3)
	tp := s.tap(t)
	admin := s.adminToken(t)
	u := nodes[0].createUser(t, admin, newUserBody(t))
	tp.expect(t, "user.created")
	tok := s.tokenFor(t, u)
	base := u.Version
	var wg sync.WaitGroup
	versions := make([]int64, 100)
	errs := make([]error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bio := "bio " + strconv.Itoa(i)
			r, err := nodes[i%3].send("PUT", "/api/v1/users/me", tok, map[string]any{"bio": bio})
			if err != nil {
				errs[i] = err
				return
			}
			var got apiUser
			if r.Status != http.StatusOK || jsonData(r, &got) != nil || got.Bio == nil || *got.Bio != bio {
				errs[i] = fmt.Errorf("answer %s", r)
				return
			}
			versions[i], err = etagVersion(r.Header.Get("ETag"))
			if err != nil || versions[i] != got.Version {
				errs[i] = fmt.Errorf("ETag %q, body version %d", r.Header.Get("ETag"), got.Version)
			}
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("PUT %d: %v", i, err)
		}
		if v := versions[i]; seen[v] || v <= base || v > base+100 {
			t.Fatalf("PUT %d answered version %d (duplicate or outside %d..%d)", i, v, base+1, base+100)
		}
		seen[versions[i]] = true
	}
	if row := s.mustUserRow(t, u.ID); row.Version != base+100 {
		t.Fatalf("stored version %d, want %d", row.Version, base+100)
	}
	for i, n := range nodes {
		if v := n.do(t, "GET", "/api/v1/users/me", tok, nil).version(t); v != base+100 {
			t.Fatalf("node %d reads version %d, want %d", i, v, base+100)
		}
	}
	// One relay leads across the nodes: every change published once, in the user's
	// order.
	evs := tp.take(t, 100)
	last := base
	for _, e := range evs {
		if e.Type != "user.updated" || e.userID() != u.ID || e.userVersion() != last+1 {
			t.Fatalf("event %s after version %d (duplicate, out of order or unexpected)", e, last)
		}
		last = e.userVersion()
	}
	tp.expectNone(t)
}

// TestE2EClusterAuthEventsReachTheOwner: auth events consumed by any node are
// applied by the user's owner: 30 logins of one user, all counted once.
func TestE2EClusterAuthEventsReachTheOwner(t *testing.T) {
	s := newStack(t)
	nodes, _, _ := startCluster(t, s, 3)
	s.waitConsumer(t)
	admin := s.adminToken(t)
	u := nodes[0].createUser(t, admin, newUserBody(t))
	for i := range 30 {
		id, body := authEvent("auth.user.login", map[string]any{"authId": u.AuthID, "sessionId": "s" + strconv.Itoa(i)})
		s.publish(t, "auth.user.login", id, body)
	}
	tok := s.tokenFor(t, u)
	eventually(t, "30 logins", func() error {
		if row := s.mustUserRow(t, u.ID); row.LoginCount != 30 {
			return fmt.Errorf("loginCount %d", row.LoginCount)
		}
		return nil
	})
	for i, n := range nodes {
		if v := n.do(t, "GET", "/api/v1/users/me", tok, nil).version(t); v != s.mustUserRow(t, u.ID).Version {
			t.Fatalf("node %d reads version %d, stored %d", i, v, s.mustUserRow(t, u.ID).Version)
		}
	}
}

// TestE2EClusterDemotedAdmin: an admin demoted through one node is refused at once
// through another (the caller's role comes from the caller's owner).
func TestE2EClusterDemotedAdmin(t *testing.T) {
	s := newStack(t)
	nodes, _, _ := startCluster(t, s, 3)
	admin := s.adminToken(t)
	x := nodes[0].createUser(t, admin, newUserBody(t))
	nodes[0].do(t, "PUT", "/api/v1/users/"+x.ID+"/role", admin, map[string]any{"role": "admin"}).data(t, http.StatusOK, nil)
	x.Role = "admin"
	xTok := s.tokenFor(t, x) // the token still says admin throughout
	for round := range 3 {
		nodes[1].do(t, "GET", "/api/v1/users?limit=1", xTok, nil).data(t, http.StatusOK, nil)
		nodes[2].do(t, "GET", "/api/v1/users?limit=1", xTok, nil).data(t, http.StatusOK, nil)
		nodes[round%3].do(t, "PUT", "/api/v1/users/"+x.ID+"/role", admin, map[string]any{"role": "student"}).data(t, http.StatusOK, nil)
		for i := range nodes {
			nodes[(round+i+1)%3].do(t, "GET", "/api/v1/users?limit=1", xTok, nil).fail(t, http.StatusForbidden, "FORBIDDEN")
		}
		nodes[round%3].do(t, "PUT", "/api/v1/users/"+x.ID+"/role", admin, map[string]any{"role": "admin"}).data(t, http.StatusOK, nil)
	}
}

// TestE2EClusterRollingRestart restarts every node in turn (SIGTERM: hand off,
// leave; then a new process) under writers on all nodes: every answer is 2xx or a
// 503 with Retry-After that the client retries, and no acknowledged write is lost.
func TestE2EClusterRollingRestart(t *testing.T) {
	s := newStack(t)
	nodes, etcd, name := startCluster(t, s, 3)
	admin := s.adminToken(t)
	type user struct {
		tok     string
		id      string
		mu      sync.Mutex
		last    int64 // highest acknowledged version
		lastBio string
	}
	users := make([]*user, 6)
	for i := range users {
		u := nodes[i%3].createUser(t, admin, newUserBody(t))
		users[i] = &user{tok: s.tokenFor(t, u), id: u.ID}
	}
	var (
		mu       sync.Mutex
		live     = append([]*service(nil), nodes...)
		bad      []string
		retried  atomic.Int64
		unknown  atomic.Int64
		acked    atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		sequence atomic.Int64
	)
	pick := func() *service {
		mu.Lock()
		defer mu.Unlock()
		return live[rand.IntN(len(live))]
	}
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := users[w%len(users)]
			for {
				select {
				case <-stop:
					return
				default:
				}
				bio := "r" + strconv.FormatInt(sequence.Add(1), 10)
				for {
					r, err := pick().send("PUT", "/api/v1/users/me", u.tok, map[string]any{"bio": bio})
					if err != nil { // a node going away between pick and send: not sent or refused
						retried.Add(1)
						continue
					}
					if r.Status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") != "" || r.Status == http.StatusTooManyRequests {
						retried.Add(1)
						var e envelope
						if json.Unmarshal(r.Body, &e) == nil && e.Code == userservice.ECodeTimeout {
							unknown.Add(1) // its owner's connection dropped: the outcome is unknown
						}
						time.Sleep(20 * time.Millisecond)
						continue
					}
					if r.Status != http.StatusOK {
						mu.Lock()
						bad = append(bad, r.String())
						mu.Unlock()
						break
					}
					v, _ := etagVersion(r.Header.Get("ETag"))
					u.mu.Lock()
					if v > u.last {
						u.last, u.lastBio = v, bio
					}
					u.mu.Unlock()
					acked.Add(1)
					break
				}
			}
		}()
	}
	for i := range nodes {
		time.Sleep(time.Second)
		mu.Lock()
		old := live[i]
		live = append(append([]*service(nil), live[:i]...), live[i+1:]...)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond) // writers stop picking it
		if err := old.stop(); err != nil {
			t.Fatalf("node %d did not stop cleanly: %v", i, err)
		}
		fresh := s.start(t, clusterEnv(t, etcd, name))
		mu.Lock()
		live = append(live[:i], append([]*service{fresh}, live[i:]...)...)
		mu.Unlock()
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("rolling restart: %d writes acknowledged, %d retried after 503+Retry-After or a closed connection (%d of them TIMEOUT: outcome unknown)",
		acked.Load(), retried.Load(), unknown.Load())
	if len(bad) > 0 {
		t.Fatalf("%d answers other than 2xx or 503+Retry-After, first: %s", len(bad), bad[0])
	}
	for _, u := range users {
		row := s.mustUserRow(t, u.id)
		if row.Version < u.last {
			t.Fatalf("user %s stored version %d, an acknowledged write had %d", u.id, row.Version, u.last)
		}
	}
}

// proc is the service as a separate process (so it can be killed with SIGKILL).
type proc struct {
	cmd  *exec.Cmd
	svc  *service // for send/do; its run fields are unused
	done chan struct{}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// serviceBinary builds the program once per test binary.
func serviceBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "userservice-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "userservice")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// startProc runs the program as a process on the stack with the overrides, waits
// until it is ready, and kills it when the test ends.
func (s *stack) startProc(t *testing.T, overrides map[string]string) *proc {
	t.Helper()
	env := s.baseEnv()
	for k, v := range overrides {
		env[k] = v
	}
	port := freePort(t)
	env["PORT"] = strconv.Itoa(port)
	logs := &syncBuffer{}
	cmd := exec.Command(serviceBinary(t))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start the service: %v", err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), svc: &service{
		stack: s, env: env, base: "http://127.0.0.1:" + strconv.Itoa(port), logs: logs,
		client: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			l := logs.String()
			if len(l) > 16<<10 {
				l = "…" + l[len(l)-16<<10:]
			}
			t.Logf("process on %s logged:\n%s", p.svc.base, l)
		}
	})
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-p.done:
			t.Fatalf("the service exited during start:\n%s", logs.String())
		default:
		}
		if r, err := p.svc.send("GET", "/health/ready", "", nil); err == nil && r.Status == http.StatusOK {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within %s:\n%s", readyTimeout, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestE2EClusterKill9UnderWriters: three node processes, 32 writers over the nodes,
// one node killed with SIGKILL: no acknowledged write lost, every committed change's
// event published, nothing but 503 answered by the survivors (requests in flight to
// the killed node lose their connection: outcome unknown), and the failover window
// (kill → every user answers through the survivors) is reported.
func TestE2EClusterKill9UnderWriters(t *testing.T) {
	s := newStack(t)
	etcd, name := etcdtest.Start(t), "k9"+s.id
	var procs []*proc
	for range 3 {
		procs = append(procs, s.startProc(t, clusterEnv(t, etcd, name)))
	}
	tp := s.tap(t)
	admin := s.adminToken(t)
	type user struct {
		id, tok string
		base    int64
		acked   map[int64]string // version → bio
	}
	users := make([]*user, 32)
	for i := range users {
		u := procs[i%3].svc.createUser(t, admin, newUserBody(t))
		users[i] = &user{id: u.ID, tok: s.tokenFor(t, u), base: u.Version, acked: map[int64]string{}}
	}
	var (
		mu          sync.Mutex
		live        = []*service{procs[0].svc, procs[1].svc, procs[2].svc}
		killed      atomic.Bool
		bad         []string
		lost        atomic.Int64 // transport errors: in flight to the killed node
		unavail     atomic.Int64
		lastUnavail atomic.Int64
		seq         atomic.Int64
		stop        = make(chan struct{})
		wg          sync.WaitGroup
	)
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				node := live[rand.IntN(len(live))]
				mu.Unlock()
				bio := "k" + strconv.FormatInt(seq.Add(1), 10)
				sent := time.Now()
				r, err := node.send("PUT", "/api/v1/users/me", u.tok, map[string]any{"bio": bio})
				switch {
				case err != nil:
					lost.Add(1)
				case r.Status == http.StatusOK:
					v, _ := etagVersion(r.Header.Get("ETag"))
					mu.Lock()
					u.acked[v] = bio
					mu.Unlock()
				case r.Status == http.StatusServiceUnavailable:
					unavail.Add(1)
					lastUnavail.Store(sent.UnixNano())
					time.Sleep(20 * time.Millisecond)
				default:
					mu.Lock()
					bad = append(bad, r.String())
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	mu.Lock()
	live = []*service{procs[1].svc, procs[2].svc}
	mu.Unlock()
	killedAt := time.Now()
	killed.Store(true)
	if err := procs[0].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-procs[0].done
	var recovered time.Time
	for recovered.IsZero() {
		ok := true
		for _, u := range users {
			if r, err := procs[1].svc.send("GET", "/api/v1/users/me", u.tok, nil); err != nil || r.Status != http.StatusOK {
				ok = false
				break
			}
		}
		if ok {
			recovered = time.Now()
		} else if time.Since(killedAt) > 60*time.Second {
			t.Fatal("users did not answer again within 60s of the kill")
		}
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	acked := 0
	for _, u := range users {
		acked += len(u.acked)
	}
	t.Logf("kill -9: failover window %s (CLUSTER_LEASE_TTL 2s); %d writes acknowledged, %d answered 503, %d lost their connection to the killed node",
		recovered.Sub(killedAt).Round(time.Millisecond), acked, unavail.Load(), lost.Load())
	if len(bad) > 0 {
		t.Fatalf("%d answers other than 200 or 503, first: %s", len(bad), bad[0])
	}
	if lu := lastUnavail.Load(); lu != 0 && time.Unix(0, lu).After(recovered.Add(5*time.Second)) {
		t.Fatalf("a request sent at %s answered 503, long after the failover ended at %s", time.Unix(0, lu), recovered)
	}
	// Every acknowledged write is stored (the row is at least at its version), and
	// every committed version has its event.
	final := map[string]int64{}
	for _, u := range users {
		row := s.mustUserRow(t, u.id)
		final[u.id] = row.Version
		for v := range u.acked {
			if v > row.Version {
				t.Fatalf("user %s: acknowledged version %d, stored %d", u.id, v, row.Version)
			}
		}
	}
	seen := map[string]map[int64]bool{}
	missing := func() int {
		n := 0
		for _, u := range users {
			for v := u.base + 1; v <= final[u.id]; v++ {
				if !seen[u.id][v] {
					n++
				}
			}
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for missing() > 0 && time.Now().Before(deadline) {
		e := tp.next(t, time.Second)
		if e == nil || e.Type != "user.updated" {
			continue
		}
		if seen[e.userID()] == nil {
			seen[e.userID()] = map[int64]bool{}
		}
		seen[e.userID()][e.userVersion()] = true
	}
	if n := missing(); n > 0 {
		t.Fatalf("%d committed changes have no event", n)
	}
}

// TestE2EClusterIdempotencyKey: an Idempotency-Key answer is rendered on the node
// that got the request and stored by the owner with the change; the same key
// replays it through any node, another body is refused, and concurrent first
// requests over all nodes create one user with one answer.
func TestE2EClusterIdempotencyKey(t *testing.T) {
	s := newStack(t)
	nodes, _, _ := startCluster(t, s, 3)
	admin := s.adminToken(t)
	u := nodes[0].createUser(t, admin, newUserBody(t))
	tok := s.tokenFor(t, u)
	key := "enroll-" + randomHex(t, 8)
	course := map[string]any{"courseId": userservice.NewID()}
	first := nodes[1].do(t, "POST", "/api/v1/users/me/enrollments", tok, course, "Idempotency-Key", key)
	first.data(t, http.StatusCreated, nil)
	for i, n := range nodes {
		again := n.do(t, "POST", "/api/v1/users/me/enrollments", tok, course, "Idempotency-Key", key)
		if again.Status != first.Status || string(again.Body) != string(first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay through node %d differs:\nfirst %s\nagain %s", i, first, again)
		}
	}
	nodes[2].do(t, "POST", "/api/v1/users/me/enrollments", tok, map[string]any{"courseId": userservice.NewID()}, "Idempotency-Key", key).
		fail(t, http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED")
	if v := s.mustUserRow(t, u.ID).Version; v != u.Version+1 {
		t.Fatalf("version %d after one enrollment and replays, want %d", v, u.Version+1)
	}

	key2 := "create-" + randomHex(t, 8)
	b := newUserBody(t)
	rs := make([]*response, 15)
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs[i], errs[i] = nodes[i%3].send("POST", "/api/v1/users", admin, b, "Idempotency-Key", key2)
		}()
	}
	wg.Wait()
	for i, r := range rs {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if r.Status != http.StatusCreated || string(r.Body) != string(rs[0].Body) {
			t.Fatalf("concurrent request %d: %s\nfirst: %s", i, r, rs[0])
		}
	}
	if n := s.count(t, `SELECT count(*) FROM users WHERE email = $1`, b["email"]); n != 1 {
		t.Fatalf("%d users from concurrent requests with one key, want 1", n)
	}
}

// TestE2EClusterLinearizableOverHTTP: clients on every node's HTTP port read and
// write the bio of two users while one node is replaced (SIGTERM, a new node joins);
// porcupine checks the history against one register per user.
func TestE2EClusterLinearizableOverHTTP(t *testing.T) {
	s := newStack(t)
	nodes, etcd, name := startCluster(t, s, 3)
	admin := s.adminToken(t)
	type user struct{ id, tok string }
	users := make([]user, 2)
	for i := range users {
		u := nodes[i].createUser(t, admin, newUserBody(t))
		users[i] = user{u.ID, s.tokenFor(t, u)}
	}
	type in struct {
		user  string
		write bool
		value string
	}
	model := porcupine.Model{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			for _, op := range h {
				by[op.Input.(in).user] = append(by[op.Input.(in).user], op)
			}
			var out [][]porcupine.Operation
			for _, ops := range by {
				out = append(out, ops)
			}
			return out
		},
		Init: func() any { return "" },
		Step: func(state, input, output any) (bool, any) {
			if i := input.(in); i.write {
				return true, i.value
			}
			return output.(string) == state.(string), state
		},
	}
	var (
		mu    sync.Mutex
		live  = append([]*service(nil), nodes...)
		ops   []porcupine.Operation
		bad   []string
		seq   atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		start = time.Now()
	)
	now := func() int64 { return int64(time.Since(start)) }
	for c := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				node := live[rand.IntN(len(live))]
				mu.Unlock()
				u := users[rand.IntN(len(users))]
				call := now()
				if rand.IntN(2) == 0 {
					v := "h" + strconv.FormatInt(seq.Add(1), 10)
					r, err := node.send("PUT", "/api/v1/users/me", u.tok, map[string]any{"bio": v})
					ret := now()
					switch {
					case err == nil && r.Status == http.StatusOK:
					case err == nil && r.Status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") != "":
						continue // not executed
					default: // outcome unknown
						ret = math.MaxInt64
						mu.Lock()
						bad = append(bad, fmt.Sprintf("%v %v", r, err))
						mu.Unlock()
					}
					mu.Lock()
					ops = append(ops, porcupine.Operation{ClientId: c, Input: in{u.id, true, v}, Call: call, Return: ret, Output: ""})
					mu.Unlock()
				} else {
					r, err := node.send("GET", "/api/v1/users/me", u.tok, nil)
					ret := now()
					var got apiUser
					if err != nil || r.Status != http.StatusOK || jsonData(r, &got) != nil {
						if err != nil || r.Status != http.StatusServiceUnavailable {
							mu.Lock()
							bad = append(bad, fmt.Sprintf("%v %v", r, err))
							mu.Unlock()
						}
						continue
					}
					v := ""
					if got.Bio != nil {
						v = *got.Bio
					}
					mu.Lock()
					ops = append(ops, porcupine.Operation{ClientId: c, Input: in{u.id, false, ""}, Call: call, Return: ret, Output: v})
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	mu.Lock()
	live = []*service{nodes[1], nodes[2]}
	mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	if err := nodes[0].stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	fresh := s.start(t, clusterEnv(t, etcd, name))
	mu.Lock()
	live = []*service{nodes[1], nodes[2], fresh}
	mu.Unlock()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d answers other than 200 or 503+Retry-After, first: %s", len(bad), bad[0])
	}
	res := porcupine.CheckOperationsTimeout(model, ops, time.Minute)
	t.Logf("HTTP history of %d operations: %s", len(ops), res)
	if res != porcupine.Ok {
		t.Fatalf("history is not linearizable: %s", res)
	}
}
