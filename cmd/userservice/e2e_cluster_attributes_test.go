//go:build !race

// Built without the race detector, like e2e_cluster_test.go (protoactor-go's
// cluster packages race on their own state).

package main

import (
	"net/http"
	"strconv"
	"testing"
)

// TestE2EClusterAttributes: in cluster mode a schema defined on one node is
// usable at once on the others, a value written through any node (the command
// crosses the cluster wire to the owner) is read back from every node, and an
// attr search on another node finds it.
func TestE2EClusterAttributes(t *testing.T) {
	s := newStack(t)
	nodes, _, _ := startCluster(t, s, 3)
	admin := s.adminToken(t)
	u := nodes[0].createUser(t, admin, newUserBody(t))
	tok := s.tokenFor(t, u)
	nodes[0].do(t, "PUT", "/api/v1/attributes/hr", admin, hrSchema).data(t, http.StatusOK, nil)
	for i, grade := range []int{3, 4, 5} {
		body := `{"department": "Math", "grade": ` + strconv.Itoa(grade) + `}`
		nodes[(i+1)%3].do(t, "PUT", "/api/v1/users/me/attributes/hr", tok, body).data(t, http.StatusOK, nil)
		for j, n := range nodes {
			var got struct{ Attributes map[string]any }
			n.do(t, "GET", "/api/v1/users/me/attributes/hr", tok, nil).data(t, http.StatusOK, &got)
			if got.Attributes["grade"] != float64(grade) {
				t.Fatalf("node %d reads grade %v after writing %d", j, got.Attributes["grade"], grade)
			}
		}
	}
	var found []apiUser
	nodes[2].do(t, "GET", "/api/v1/users?attr.hr.grade=5", admin, nil).data(t, http.StatusOK, &found)
	if len(found) != 1 || found[0].ID != u.ID {
		t.Fatalf("search on another node found %v", found)
	}
}
