package actors

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// fence is the shared record behind self-fencing (docs/cluster.md, "Fence lease"):
// each node holds one record that lives only while the node renews it, and a new
// owner of a user asks every node whose record may still be live to release that
// user. The Cluster keeps the clock: a node serves only until the send time of its
// last confirmed grant or renew plus the TTL minus the drift margin, so every
// implementation promises that no peer treats a record as lapsed before the send
// time of its last confirmed renewal plus the TTL (by a clock that runs at about the
// same rate), and that a renewal is refused once a peer may have treated it as
// lapsed.
//
// Implementations: etcdFence (a lease and a key, CLUSTER_PROVIDER=etcd) and
// kubeFence (a coordination.k8s.io/v1 Lease, CLUSTER_PROVIDER=k8s). Calls come
// from one goroutine at a time for grant/renew/revoke; peers may run concurrently
// with them.
type fence interface {
	// grant takes a new record for this node: a new incarnation, which peers tell
	// apart from any earlier one (fencePeer.tag). Called only when the node serves
	// no user.
	grant(ctx context.Context) error
	// renew extends the current record; nil means the renewal is confirmed.
	renew(ctx context.Context) error
	// peers lists the other nodes whose record may still be live, as of a
	// linearizable read made during the call.
	peers(ctx context.Context) ([]fencePeer, error)
	// revoke deletes this node's record (graceful leave), so no one waits for it.
	revoke(ctx context.Context) error
	// close releases the connection.
	close() error
}

// fencePeer is one other node's fence record.
type fencePeer struct {
	addr string // the node's remoting address: its fence endpoint releases users
	tag  string // the record's incarnation: a release confirmation counts for it only
}

// errFenceLost is renew's answer when the record is gone (lapsed or removed by a
// peer): only a new grant, after every local activation is dropped, helps.
var errFenceLost = errors.New("fence record lost")

// etcdFence is the fence on etcd: one lease per node and the key
// <prefix><address> attached to it. etcd expires the lease by its own clock, no
// earlier than the arrival of the last keep-alive plus the TTL, and refuses a
// keep-alive of an expired lease.
type etcdFence struct {
	cli    *clientv3.Client
	prefix string
	addr   string
	ttl    time.Duration

	mu      sync.Mutex
	leaseID clientv3.LeaseID
}

var _ fence = (*etcdFence)(nil)

func newEtcdFence(cfg ClusterConfig, addr string) (*etcdFence, error) {
	cli, err := clientv3.New(cfg.etcdConfig())
	if err != nil {
		return nil, fmt.Errorf("cannot connect to etcd: %w", err)
	}
	return &etcdFence{cli: cli, prefix: "/userservice/" + cfg.Name + "/fence/", addr: addr, ttl: cfg.LeaseTTL}, nil
}

func (f *etcdFence) grant(ctx context.Context) error {
	lease, err := f.cli.Grant(ctx, int64(f.ttl/time.Second))
	if err != nil {
		return fmt.Errorf("cannot grant etcd lease: %w", err)
	}
	if _, err := f.cli.Put(ctx, f.prefix+f.addr, f.addr, clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("cannot write fence key: %w", err)
	}
	f.mu.Lock()
	f.leaseID = lease.ID
	f.mu.Unlock()
	return nil
}

func (f *etcdFence) renew(ctx context.Context) error {
	f.mu.Lock()
	id := f.leaseID
	f.mu.Unlock()
	resp, err := f.cli.KeepAliveOnce(ctx, id)
	if err != nil {
		return fmt.Errorf("cannot renew etcd lease: %w", err)
	}
	if resp.TTL <= 0 {
		return errFenceLost
	}
	return nil
}

func (f *etcdFence) peers(ctx context.Context) ([]fencePeer, error) {
	resp, err := f.cli.Get(ctx, f.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("cannot read fence keys: %w", err)
	}
	out := make([]fencePeer, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if peer := string(kv.Value); peer != f.addr {
			out = append(out, fencePeer{addr: peer, tag: string(kv.Key) + "@" + strconv.FormatInt(kv.Lease, 16)})
		}
	}
	return out, nil
}

func (f *etcdFence) revoke(ctx context.Context) error {
	f.mu.Lock()
	id := f.leaseID
	f.mu.Unlock()
	if _, err := f.cli.Revoke(ctx, id); err != nil {
		return fmt.Errorf("cannot revoke etcd lease: %w", err)
	}
	return nil
}

func (f *etcdFence) close() error { return f.cli.Close() }
