//go:build !race

package main

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"

	"github.com/lms-platform/userservice/actors/etcdtest"
)

// BenchmarkE2EClusterHop measures GET /me and PUT /me over HTTP against real
// services on the test stack, three ways in one run: a single-node service, the
// user's owner node of a two-node cluster, and the other node (one remoting hop to
// the owner and back). The paths take turns inside every iteration, so noise on
// this shared machine hits all of them alike, and the ratios are what to read:
// get-owner/single, get-hop/owner, and the same for put. The owner is computed
// with protoactor's own rendezvous hash over the members' addresses, which is
// what its disthash identity lookup places by. `make bench` runs it.
func BenchmarkE2EClusterHop(b *testing.B) {
	st := newStack(b)
	etcd := etcdtest.Start(b)
	name := "bench" + st.id
	envs := []map[string]string{clusterEnv(b, etcd, name), clusterEnv(b, etcd, name)}
	nodes := []*service{st.start(b, envs[0]), st.start(b, envs[1])}
	single := st.start(b, nil)
	admin := st.adminToken(b)

	rdv := cluster.NewRendezvous()
	var members cluster.Members
	for i, env := range envs {
		port, _ := strconv.Atoi(env["CLUSTER_PORT"])
		members = append(members, &cluster.Member{Id: "n" + strconv.Itoa(i), Host: "127.0.0.1", Port: int32(port), Kinds: []string{"user"}})
	}
	rdv.UpdateMembers(members)
	ownerOf := func(userID string) int {
		addr := rdv.GetByClusterIdentity(&cluster.ClusterIdentity{Kind: "user", Identity: userID})
		for i, m := range members {
			if m.Address() == addr {
				return i
			}
		}
		b.Fatalf("no member owns %s (%q)", userID, addr)
		return -1
	}

	su := single.createUser(b, admin, newUserBody(b))
	cu := nodes[0].createUser(b, admin, newUserBody(b))
	owner := nodes[ownerOf(cu.ID)]
	other := nodes[1-ownerOf(cu.ID)]
	sTok, cTok := st.tokenFor(b, su), st.tokenFor(b, cu)
	// Let both nodes see both members, then warm every path.
	time.Sleep(2 * time.Second)
	paths := []struct {
		name string
		svc  *service
		tok  string
	}{{"single", single, sTok}, {"owner", owner, cTok}, {"hop", other, cTok}}
	for range 50 {
		for _, p := range paths {
			p.svc.do(b, "GET", "/api/v1/users/me", p.tok, nil).data(b, http.StatusOK, nil)
		}
	}

	var get, put [3]time.Duration
	bio := 0
	for b.Loop() {
		for i, p := range paths {
			t0 := time.Now()
			p.svc.do(b, "GET", "/api/v1/users/me", p.tok, nil).data(b, http.StatusOK, nil)
			get[i] += time.Since(t0)
			bio++
			t0 = time.Now()
			p.svc.do(b, "PUT", "/api/v1/users/me", p.tok, map[string]any{"bio": "b" + strconv.Itoa(bio)}).data(b, http.StatusOK, nil)
			put[i] += time.Since(t0)
		}
	}
	n := float64(b.N)
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
	for i, p := range paths {
		b.ReportMetric(us(get[i]), "get-"+p.name+"-µs")
		b.ReportMetric(us(put[i]), "put-"+p.name+"-µs")
	}
	b.ReportMetric(float64(get[1])/float64(get[0]), "get-owner/single")
	b.ReportMetric(float64(get[2])/float64(get[1]), "get-hop/owner")
	b.ReportMetric(float64(put[1])/float64(put[0]), "put-owner/single")
	b.ReportMetric(float64(put[2])/float64(put[1]), "put-hop/owner")
	b.ReportMetric(0, "ns/op") // one iteration is six requests; the figures above are per request
}
