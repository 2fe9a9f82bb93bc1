//go:build !race

// Cluster tests are built without the race detector: protoactor-go's cluster,
// remote and disthash packages race on their own state (BlockList, MemberList,
// disthash's rendezvous table, the etcd provider's shutdown flag, grpclog's global
// logger), which -race reports in every multi-node run. `make test` runs them in a
// pass of their own without -race (docs/cluster.md).

package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Cluster mode end to end: three in-process nodes (each its own HTTP port and
// remoting port) on one stack and one etcd of their own.

// startEtcd runs a single-member etcd (Debian's etcd-server) on free loopback
// ports and returns its client endpoint.
func startEtcd(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd not installed (apt-get install etcd-server; scripts/devstack.sh installs it): %v", err)
	}
	client, peer := freePort(t), freePort(t)
	cu, pu := "http://127.0.0.1:"+strconv.Itoa(client), "http://127.0.0.1:"+strconv.Itoa(peer)
	cmd := exec.Command(bin, "--name", "e2e", "--data-dir", t.TempDir(),
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu, "--initial-cluster", "e2e="+pu)
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start etcd: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(client))
		if err == nil {
			c.Close()
			return "127.0.0.1:" + strconv.Itoa(client)
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clusterEnv is the environment of one cluster node.
func clusterEnv(t *testing.T, etcd, name string) map[string]string {
	return map[string]string{
		"CLUSTER_PROVIDER": "etcd", "CLUSTER_NAME": name, "CLUSTER_ADVERTISE_HOST": "127.0.0.1",
		"CLUSTER_PORT": strconv.Itoa(freePort(t)), "ETCD_ENDPOINTS": etcd, "CLUSTER_LEASE_TTL": "2s",
	}
}

func startCluster(t *testing.T, s *stack, n int) (nodes []*service, etcd, name string) {
	t.Helper()
	etcd, name = startEtcd(t), "e2e"+s.id
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
	t.Logf("rolling restart: %d writes acknowledged, %d retried after 503+Retry-After or a closed connection", acked.Load(), retried.Load())
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
