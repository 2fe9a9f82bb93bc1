//go:build !race

package actors

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkClusterHop compares one Get and one Execute (a bio edit against the
// in-memory store) through the local Registry (single-node mode), through the
// user's owner node, and through a node that is not the owner (one remoting hop
// there and back), in one run so the ratios are meaningful. `make bench` runs it
// with the other micro-benchmarks (it starts its own etcd).
func BenchmarkClusterHop(b *testing.B) {
	log := newServeLog()
	tc := newTestCluster(b, 2, log.hooks())
	id := tc.store.seed(b)
	ctx := context.Background()
	if _, err := tc.nodes[0].Get(ctx, id, nil); err != nil {
		b.Fatal(err)
	}
	owner, other := tc.nodes[0], tc.nodes[1]
	log.mu.Lock()
	if len(log.ready[id][owner.Address()]) == 0 {
		owner, other = other, owner
	}
	log.mu.Unlock()
	single := newTestRegistry(b, Config{}, tc.store, hooks{})
	paths := []struct {
		name string
		get  func() error
		exec func(i int) error
	}{
		{"single-node", func() error { _, err := single.Get(ctx, id, nil); return err },
			func(i int) error { _, err := single.Execute(ctx, id, editBio("s"+strconv.Itoa(i)), meta()); return err }},
		{"owner", func() error { _, err := owner.Get(ctx, id, nil); return err },
			func(i int) error { _, err := owner.Execute(ctx, id, editBio("o"+strconv.Itoa(i)), meta()); return err }},
		{"non-owner", func() error { _, err := other.Get(ctx, id, nil); return err },
			func(i int) error { _, err := other.Execute(ctx, id, editBio("n"+strconv.Itoa(i)), meta()); return err }},
	}
	for _, p := range paths {
		b.Run("get/"+p.name, func(b *testing.B) {
			for b.Loop() {
				if err := p.get(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, p := range paths {
		// The single-node registry and the cluster share the store: each path's
		// first write after another's is refused by the version fence and reloads.
		_ = p.exec(-1)
		b.Run("execute/"+p.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				if err := p.exec(i); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
