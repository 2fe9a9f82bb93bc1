package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	userservice "github.com/lms-platform/userservice"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/client-go/rest"
)

// Cluster mode. Every node runs a local Registry (the same user actors as single-node
// mode) behind a protoactor cluster kind "user": the grain of user X lives on X's
// owner, chosen by protoactor's distributed-hash identity lookup over the etcd
// membership (or the cluster's Pods, kube.go), and it passes requests to the local Registry. On top of the
// library's placement, which gives one activation only in steady state, a fence
// makes the owner unique at all times (docs/cluster.md has the argument):
//
//   - every node holds its own fence record (fence.go: an etcd lease and key
//     <prefix>/fence/<address>, or with k8s a coordination.k8s.io/v1 Lease); it
//     serves only while its last confirmed renewal is younger than the lease
//     TTL minus a drift margin, and once that lapses it drops every activation and
//     takes a new lease before serving again (self-fencing);
//   - a grain serves only after every other node holding a fence key has
//     released the user (stopped its activation after its requests in flight
//     finished) or its key has lapsed; then it reloads the state from storage;
//   - a release request aborts the local activation of that user, whatever its
//     phase, so two activations that ask each other cannot both start serving.
//
// Writes are still fenced by version in PostgreSQL; a stale write is answered
// "moved" and re-routed, never a 409.

const (
	userKind      = "user"
	fenceActorID  = "user-fence"
	releaseWait   = 500 * time.Millisecond // one release round trip
	acquirePause  = 50 * time.Millisecond  // between rounds of an activation
	callBackoffLo = 5 * time.Millisecond
	callBackoffHi = 200 * time.Millisecond
	leaveGrace    = time.Second // a leaving node answers "moved" this long after leaving
)

var (
	clusterMoved       = metrics.NewCounter("user_service_cluster_moved_total")
	clusterRetries     = metrics.NewCounter("user_service_cluster_call_retries_total")
	clusterFenced      = metrics.NewCounter("user_service_cluster_self_fenced_total")
	clusterAcquisition = metrics.NewPrometheusHistogramExt("user_service_cluster_activation_seconds", actorBuckets)
	// clusterMembers is the member count of this node's latest topology view.
	clusterMembers = metrics.NewGauge("user_service_cluster_members", nil)
	// clusterHandoffs counts users this node gave up to another node (a release
	// asked by the new owner, a lost lease, or leaving the cluster).
	clusterHandoffs = metrics.NewCounter("user_service_cluster_handoffs_total")
)

// Cluster providers (CLUSTER_PROVIDER): where membership and the fence live.
const (
	ProviderEtcd = "etcd" // protoactor's etcd provider and an etcd lease per node
	ProviderK8s  = "k8s"  // the cluster's Pods and a coordination.k8s.io/v1 Lease per node
)

// ClusterConfig configures cluster mode.
type ClusterConfig struct {
	// Provider is ProviderEtcd (the default) or ProviderK8s.
	Provider string
	// Name is the cluster's name (CLUSTER_NAME); nodes with the same name and etcd
	// (or Kubernetes namespace) form one cluster.
	Name string
	// Host is the address remoting binds to and advertises (CLUSTER_ADVERTISE_HOST).
	Host string
	// Port is the remoting port (CLUSTER_PORT).
	Port int
	// EtcdEndpoints lists the etcd servers (ETCD_ENDPOINTS; ProviderEtcd only).
	EtcdEndpoints []string
	// Namespace and PodName locate this node's Pod (ProviderK8s: POD_NAMESPACE and
	// POD_NAME from the downward API; defaults: the service account's namespace
	// file and the host name, as a Pod sees them).
	Namespace, PodName string
	// LeaseTTL is the fence lease's TTL (default 5s, at least 2s).
	LeaseTTL time.Duration
	// DriftMargin is subtracted from LeaseTTL when a node decides how long it may
	// serve after a confirmed keep-alive (default LeaseTTL/5, at most LeaseTTL/2).
	DriftMargin time.Duration
	// CallTimeout bounds a call whose context has no deadline (default 5s).
	CallTimeout time.Duration

	// dial, when set, opens the etcd or API server connections (tests cut them to
	// partition a node).
	dial func(ctx context.Context, addr string) (net.Conn, error)
	// kubeConfig, when set, replaces the in-cluster API server configuration (tests).
	kubeConfig *rest.Config
	// hooks let tests see activations start serving and replies leave.
	hooks clusterHooks
}

type clusterHooks struct {
	ready func(addr, userID string) // an activation starts serving
	reply func(addr, userID string) // a grain answered a read
	// dropRelease, when it reports true, makes the node at addr ignore release
	// requests (tests: a node cut off from its peers too, so only a lapse helps).
	dropRelease func(addr string) bool
	// stopping is called by a quiet, aborted grain just before it unregisters
	// (tests: a call posted meanwhile must still be answered).
	stopping func(addr, userID string)
}

func (c ClusterConfig) etcdConfig() clientv3.Config {
	cfg := clientv3.Config{Endpoints: c.EtcdEndpoints, DialTimeout: 5 * time.Second}
	if c.dial != nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(c.dial)}
	}
	return cfg
}

func (c ClusterConfig) withDefaults() (ClusterConfig, error) {
	if c.Name == "" {
		c.Name = "userservice"
	}
	if c.Provider == "" {
		c.Provider = ProviderEtcd
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 5 * time.Second
	}
	if c.DriftMargin == 0 {
		c.DriftMargin = c.LeaseTTL / 5
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 5 * time.Second
	}
	switch {
	case c.Host == "":
		return c, errors.New("cannot configure cluster: no advertise host")
	case c.Port <= 0 || c.Port > 65535:
		return c, fmt.Errorf("cannot configure cluster: bad port %d", c.Port)
	case c.Provider != ProviderEtcd && c.Provider != ProviderK8s:
		return c, fmt.Errorf("cannot configure cluster: unknown provider %q", c.Provider)
	case c.Provider == ProviderEtcd && len(c.EtcdEndpoints) == 0:
		return c, errors.New("cannot configure cluster: no etcd endpoints")
	case c.LeaseTTL < 2*time.Second || c.LeaseTTL%time.Second != 0:
		return c, fmt.Errorf("cannot configure cluster: LeaseTTL must be whole seconds, at least 2s, got %s", c.LeaseTTL)
	case c.DriftMargin < 0 || c.DriftMargin > c.LeaseTTL/2:
		return c, fmt.Errorf("cannot configure cluster: DriftMargin must be within [0, LeaseTTL/2], got %s", c.DriftMargin)
	}
	if c.Provider == ProviderK8s {
		var err error
		if c.Namespace, err = kubeNamespace(c.Namespace); err != nil {
			return c, err
		}
		if c.PodName, err = kubePodName(c.PodName); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Cluster is the cluster-mode [userservice.Users]: a request for user X on any node
// reaches X's one owner. It is safe for concurrent use.
type Cluster struct {
	cfg    ClusterConfig
	local  *Registry
	log    *slog.Logger
	system *actor.ActorSystem
	cl     *cluster.Cluster
	// provider is the membership; Shutdown leaves it before the node stops.
	provider cluster.ClusterProvider
	fence    fence  // the self-fencing record (etcd lease or Kubernetes Lease)
	addr     string // host:port, the remoting address

	base       time.Time    // monotonic reference for validUntil
	validUntil atomic.Int64 // nanos since base; serving is allowed before it

	mu     sync.Mutex
	grains map[string]*handle // the local activations, by user id

	down       sync.Map     // remoting addresses whose connection was lost
	members    atomic.Int32 // members in the last topology this node saw
	fencedAt   atomic.Int64 // unix nanos of the last self-fencing (tests)
	closing    atomic.Bool
	stopLease  context.CancelFunc
	leaseDone  chan struct{}
	shutdownMu sync.Mutex
	shut       bool
}

var _ userservice.Users = (*Cluster)(nil)

// handle is one local activation as the node sees it: the release handler and the
// grain share it. inflight counts requests handed to the local Registry; a
// released handle takes no more and its release is confirmed once inflight is 0.
type handle struct {
	userID   string
	mu       sync.Mutex
	cond     *sync.Cond
	aborted  bool
	inflight int
	pid      *actor.PID
	// prev is the node's previous activation of the same user, replaced (and
	// aborted) by this one while it may still have requests in flight; aborting this
	// one waits for those too.
	prev *handle
}

func newHandle(userID string) *handle {
	h := &handle{userID: userID}
	h.cond = sync.NewCond(&h.mu)
	return h
}

// enter admits one request unless the activation was aborted.
func (h *handle) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.aborted {
		return false
	}
	h.inflight++
	return true
}

func (h *handle) leave() {
	h.mu.Lock()
	h.inflight--
	if h.inflight == 0 {
		h.cond.Broadcast()
	}
	h.mu.Unlock()
}

// abort stops admitting requests and waits until those admitted are answered,
// its predecessor's included.
func (h *handle) abort() {
	h.mu.Lock()
	h.aborted = true
	for h.inflight > 0 {
		h.cond.Wait()
	}
	prev := h.prev
	h.mu.Unlock()
	if prev != nil {
		prev.abort()
		h.mu.Lock()
		h.prev = nil
		h.mu.Unlock()
	}
}

func (h *handle) isAborted() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.aborted
}

// NewCluster joins the cluster and serves the users this node owns from local.
// Shutdown leaves the cluster and shuts local down.
func NewCluster(cfg ClusterConfig, local *Registry, logger *slog.Logger) (c *Cluster, err error) {
	if local == nil || logger == nil {
		return nil, errors.New("cannot start cluster: nil registry or logger")
	}
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c = &Cluster{
		cfg: cfg, local: local, log: logger,
		addr:   net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		base:   time.Now(),
		grains: map[string]*handle{},
	}
	var provider cluster.ClusterProvider
	switch cfg.Provider {
	case ProviderEtcd:
		if c.fence, err = newEtcdFence(cfg, c.addr); err != nil {
			return nil, err
		}
	case ProviderK8s:
		kube, kerr := cfg.kube()
		if kerr != nil {
			return nil, kerr
		}
		if c.fence, err = newKubeFence(cfg, c.addr, kube); err != nil {
			return nil, err
		}
		if provider, err = newKubePods(cfg, kube, logger); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.takeLease(ctx); err != nil {
		_ = c.fence.close()
		return nil, err
	}
	lctx, stop := context.WithCancel(context.Background())
	c.stopLease, c.leaseDone = stop, make(chan struct{})
	go c.keepLease(lctx)

	libLog := slog.New(minLevel{logger.Handler(), slog.LevelError}).With("component", "protoactor-cluster")
	c.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return libLog }))
	if provider == nil {
		if provider, err = etcd.NewWithConfig("/userservice/"+cfg.Name+"/members", cfg.etcdConfig()); err != nil {
			c.closeLease()
			return nil, fmt.Errorf("cannot create etcd cluster provider: %w", err)
		}
	}
	kind := cluster.NewKind(userKind, actor.PropsFromProducer(func() actor.Actor { return &grain{c: c} },
		actor.WithReceiverMiddleware(interceptPoison), actor.WithDispatcher(mailboxWorkers)))
	c.provider = provider
	ccfg := cluster.Configure(cfg.Name, provider, disthash.New(), remote.Configure(cfg.Host, cfg.Port), cluster.WithKinds(kind))
	c.cl = cluster.New(c.system, ccfg)
	// The release endpoint: other nodes ask it to give up a user.
	if _, err := c.system.Root.SpawnNamed(actor.PropsFromFunc(c.receiveRelease), fenceActorID); err != nil {
		c.closeLease()
		return nil, fmt.Errorf("cannot start fence endpoint: %w", err)
	}
	c.system.EventStream.Subscribe(c.onEvent)
	if err := startMember(c.cl); err != nil {
		c.closeLease()
		return nil, err
	}
	logger.Info("joined cluster", slog.String("cluster", cfg.Name), slog.String("address", c.addr))
	return c, nil
}

// onEvent tracks remoting endpoints that dropped: a call is not sent to a node
// whose connection is known lost (it could not run there), it waits for the
// membership to change or the connection to come back.
func (c *Cluster) onEvent(ev any) {
	switch ev := ev.(type) {
	case *remote.EndpointTerminatedEvent:
		c.down.Store(ev.Address, true)
	case *remote.EndpointConnectedEvent:
		c.down.Delete(ev.Address)
	case *cluster.ClusterTopology:
		c.members.Store(int32(len(ev.Members)))
		clusterMembers.Set(float64(len(ev.Members)))
		for _, m := range ev.Joined {
			c.down.Delete(m.Address())
		}
	}
}

// isLocal reports whether pid lives in this node's actor system.
func (c *Cluster) isLocal(pid *actor.PID) bool { return pid.Address == c.system.Address() }

// send delivers m to a process: as is when it is local, gob-encoded otherwise.
func (c *Cluster) send(to *actor.PID, m *wireMsg) {
	if to == nil {
		return
	}
	if c.isLocal(to) {
		c.system.Root.Send(to, m)
		return
	}
	msg, err := encodeWire(m)
	if err != nil {
		c.log.Error("cannot encode cluster reply", slog.Any("error", err))
		if msg, err = encodeWire(&wireMsg{Kind: wireReply, Err: toWireError(err)}); err != nil {
			return
		}
	}
	c.system.Root.Send(to, msg)
}

func (c *Cluster) isDown(addr string) bool {
	_, ok := c.down.Load(addr)
	return ok
}

// startMember turns protoactor's panics on a failed start into an error.
func startMember(cl *cluster.Cluster) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cannot join cluster: %v", p)
		}
	}()
	cl.StartMember()
	return nil
}

// ErrNotServing is Ready's answer while this node may not serve users: its fence
// lease lapsed (partitioned from etcd) or it is leaving.
var ErrNotServing = errors.New("cluster node is not serving: fence lease lapsed or leaving")

// Ready reports whether this node serves its users now (for /health/ready, so a load
// balancer stops sending to a fenced node).
func (c *Cluster) Ready() error {
	if c.closing.Load() || !c.valid() {
		return ErrNotServing
	}
	return nil
}

// Address is this node's remoting address.
func (c *Cluster) Address() string { return c.addr }

// Local is the node's own Registry.
func (c *Cluster) Local() *Registry { return c.local }

// valid reports whether this node may serve: its lease is confirmed fresh enough.
func (c *Cluster) valid() bool { return int64(time.Since(c.base)) < c.validUntil.Load() }

// takeLease takes a new fence record (etcd: a lease and this node's key under
// it). Serving starts (validUntil moves) only once it succeeded.
func (c *Cluster) takeLease(ctx context.Context) error {
	sent := time.Since(c.base)
	if err := c.fence.grant(ctx); err != nil {
		return err
	}
	c.validUntil.Store(int64(sent + c.cfg.LeaseTTL - c.cfg.DriftMargin))
	return nil
}

// keepLease renews the lease every TTL/4. The node may serve until the send time
// of its last confirmed renewal plus TTL minus the margin; no peer treats the
// record as lapsed before the renewal's arrival plus TTL, which is later (etcd by
// its lease expiry, Kubernetes by kubeFence's observation clock). When the validity
// lapses every local activation is dropped before a new lease is taken.
func (c *Cluster) keepLease(ctx context.Context) {
	defer close(c.leaseDone)
	tick := time.NewTicker(c.cfg.LeaseTTL / 4)
	defer tick.Stop()
	lost := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !lost && !c.valid() {
			lost = true
			c.fencedAt.Store(time.Now().UnixNano())
			clusterFenced.Inc()
			c.log.Warn("cluster lease lapsed; dropping every local user until a new lease", slog.String("address", c.addr))
			c.abortAll()
		}
		rctx, cancel := context.WithTimeout(ctx, c.cfg.LeaseTTL/4)
		if lost {
			if err := c.takeLease(rctx); err == nil {
				lost = false
				c.log.Info("cluster lease taken again", slog.String("address", c.addr))
			}
			cancel()
			continue
		}
		sent := time.Since(c.base)
		err := c.fence.renew(rctx)
		cancel()
		if err == nil {
			c.validUntil.Store(int64(sent + c.cfg.LeaseTTL - c.cfg.DriftMargin))
		}
	}
}

// abortAll drops every local activation (lease lost, shutdown).
func (c *Cluster) abortAll() {
	c.mu.Lock()
	hs := make([]*handle, 0, len(c.grains))
	for id, h := range c.grains {
		hs = append(hs, h)
		delete(c.grains, id)
	}
	c.mu.Unlock()
	for _, h := range hs {
		if !h.isAborted() {
			clusterHandoffs.Inc()
		}
	}
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.abort()
			if h.pid != nil {
				c.system.Root.Poison(h.pid)
			}
		}()
	}
	wg.Wait()
}

// release gives up the local activation of userID, if any, once its requests in
// flight are answered.
func (c *Cluster) release(userID string) {
	c.mu.Lock()
	h := c.grains[userID]
	delete(c.grains, userID)
	c.mu.Unlock()
	if h == nil {
		return
	}
	if !h.isAborted() { // not already counted as poisoned or dropped
		clusterHandoffs.Inc()
	}
	h.abort()
	c.system.Root.Poison(h.pid)
}

// receiveRelease is the fence endpoint: it releases the user asked for and
// confirms.
func (c *Cluster) receiveRelease(ctx actor.Context) {
	v, ok := ctx.Message().(*wrapperspb.BytesValue)
	if !ok {
		return
	}
	m, err := decodeWire(v)
	if err != nil || m.Kind != wireRelease {
		c.log.Warn("bad release request", slog.Any("error", err))
		return
	}
	if d := c.cfg.hooks.dropRelease; d != nil && d(c.addr) {
		return
	}
	sender := ctx.Sender()
	go func() {
		c.release(m.UserID)
		if msg, err := encodeWire(&wireMsg{Kind: wireReleased, UserID: m.UserID}); err == nil && sender != nil {
			c.system.Root.Send(sender, msg)
		}
	}()
}

// acquire runs before a new local activation serves: every other node with a
// fence key must confirm the release of userID, or its key must lapse. Then the
// local actor reloads. It fails when the activation was aborted meanwhile or the
// deadline passed.
func (c *Cluster) acquire(h *handle, deadline time.Time) error {
	start := time.Now()
	confirmed := map[string]bool{} // fencePeer.tag
	for {
		if h.isAborted() || !c.valid() {
			return userservice.ErrPlacementInFlux
		}
		if time.Now().After(deadline) {
			return userservice.ErrPlacementInFlux
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		peers, err := c.fence.peers(ctx)
		cancel()
		if err != nil {
			time.Sleep(acquirePause)
			continue
		}
		var todo []string
		tags := map[string]string{}
		for _, p := range peers {
			if p.addr == c.addr || confirmed[p.tag] {
				continue
			}
			todo = append(todo, p.addr)
			tags[p.addr] = p.tag
		}
		if len(todo) == 0 {
			break
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, peer := range todo {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if c.askRelease(peer, h.userID) {
					mu.Lock()
					confirmed[tags[peer]] = true
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(confirmed) < len(todo) {
			time.Sleep(acquirePause)
		}
	}
	if h.isAborted() {
		return userservice.ErrPlacementInFlux
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := c.local.Reload(ctx, h.userID); err != nil {
		return err
	}
	clusterAcquisition.UpdateDuration(start)
	return nil
}

// askRelease asks peer to release userID and reports whether it confirmed.
func (c *Cluster) askRelease(peer, userID string) bool {
	msg, err := encodeWire(&wireMsg{Kind: wireRelease, UserID: userID})
	if err != nil {
		return false
	}
	res, err := c.system.Root.RequestFuture(actor.NewPID(peer, fenceActorID), msg, releaseWait).Result()
	if err != nil {
		return false
	}
	v, ok := res.(*wrapperspb.BytesValue)
	if !ok {
		return false
	}
	m, err := decodeWire(v)
	return err == nil && m.Kind == wireReleased && m.UserID == userID
}

// Get implements [userservice.Users].
func (c *Cluster) Get(ctx context.Context, userID string, touch *userservice.Time) (*userservice.State, error) {
	m, err := c.call(ctx, &wireMsg{Kind: wireGet, UserID: userID, Touch: touch}, true)
	if err != nil {
		return nil, err
	}
	if m.Err != nil {
		return nil, m.Err.toError()
	}
	if m.State == nil {
		return nil, unexpectedReply(m)
	}
	return m.State, nil
}

// Execute implements [userservice.Users]. A command that stores an idempotent
// answer is rendered here, where the render function lives: the command is applied
// to the owner's current state, and sent with that state's version as a guard, so
// the owner's (deterministic) apply gives the same answer; if the version moved
// meanwhile it starts over.
func (c *Cluster) Execute(ctx context.Context, userID string, cmd userservice.Command, meta userservice.Meta) (*userservice.Outcome, error) {
	if meta.Idempotency == nil || meta.Idempotency.Render == nil {
		return c.execute(ctx, userID, cmd, meta)
	}
	for {
		st, err := c.Get(ctx, userID, nil)
		if err != nil && !errors.Is(err, userservice.ErrUserNotFound) {
			return nil, err
		}
		var base int64
		if st != nil {
			base = st.User.Version
		}
		var status int
		var body []byte
		local := meta
		idem := *meta.Idempotency
		idem.Render = func(o *userservice.Outcome) (int, []byte) {
			status, body = meta.Idempotency.Render(o)
			return status, body
		}
		local.Idempotency = &idem
		// The caller's own If-Match is evaluated here, in the domain's order (a 404
		// answers before a 412); the owner then checks only the guard below.
		if _, err := userservice.Apply(st, cmd, local); err != nil {
			return nil, err
		}
		remote := meta
		ridem := *meta.Idempotency
		ridem.Render = func(*userservice.Outcome) (int, []byte) { return status, body }
		remote.Idempotency = &ridem
		if st != nil {
			remote.IfMatch = &userservice.Precondition{Versions: []int64{base}}
		}
		out, err := c.execute(ctx, userID, cmd, remote)
		if errors.Is(err, userservice.ErrVersionMismatch) && st != nil {
			continue // the owner moved on since the read (the caller's If-Match matched base)
		}
		return out, err
	}
}

func (c *Cluster) execute(ctx context.Context, userID string, cmd userservice.Command, meta userservice.Meta) (*userservice.Outcome, error) {
	req := &wireMsg{Kind: wireExecute, UserID: userID, Cmd: cmd, Meta: meta}
	if r := meta.Idempotency; r != nil && r.Render != nil {
		// The render here returns the answer Execute precomputed; it crosses the
		// wire as data (gob drops function fields) and becomes a render there again.
		req.IdemStatus, req.IdemBody = r.Render(nil)
	}
	m, err := c.call(ctx, req, false)
	if err != nil {
		return nil, err
	}
	if m.Err != nil {
		return nil, m.Err.toError()
	}
	if m.Outcome == nil || m.Outcome.State == nil {
		return nil, unexpectedReply(m)
	}
	return m.Outcome.outcome(), nil
}

// call sends m to the grain of m.UserID and waits for its reply, with this
// service's own policy (not the library's grain retries): a request is repeated
// only when it provably did not run — the grain answered "moved", or it was a
// dead letter, or there was no owner to send it to. A read is also repeated after a
// timed-out attempt (it changes nothing); a write whose attempt timed out has an
// unknown outcome and fails with TIMEOUT, and one whose owner's connection dropped
// meanwhile with ErrOwnerLost (a TIMEOUT with Retry-After: the user is moving).
// When the deadline passes while the user is moving, the answer is
// ErrPlacementInFlux (503 with Retry-After).
func (c *Cluster) call(ctx context.Context, m *wireMsg, read bool) (*wireMsg, error) {
	deadline := time.Now().Add(c.cfg.CallTimeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	if c.closing.Load() {
		return nil, ErrShuttingDown
	}
	m.Deadline = deadline.UnixNano()
	var encoded *wrapperspb.BytesValue // for remote owners, encoded once
	backoff := callBackoffLo
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			clusterRetries.Inc()
			wait := min(backoff, time.Until(deadline))
			if wait <= 0 {
				return nil, userservice.ErrPlacementInFlux
			}
			select {
			case <-ctx.Done():
				return nil, userservice.ErrPlacementInFlux
			case <-time.After(wait):
			}
			backoff = min(2*backoff, callBackoffHi)
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return nil, userservice.ErrPlacementInFlux
		}
		pid := c.lookup(m.UserID, remaining)
		if pid == nil {
			continue // no owner yet (membership changing)
		}
		if pid.Address != c.addr && c.isDown(pid.Address) {
			c.cl.PidCache.RemoveByValue(m.UserID, userKind, pid)
			continue // its node is unreachable: not sent, so not run
		}
		var msg any = m // a local grain gets the message itself: no serialization
		if !c.isLocal(pid) {
			if encoded == nil {
				var err error
				if encoded, err = encodeWire(m); err != nil {
					return nil, userservice.Wrap(userservice.ECodeInternal, "Internal server error", err)
				}
			}
			msg = encoded
		}
		res, err := c.await(c.system.Root.RequestFuture(pid, msg, time.Until(deadline)), pid)
		if errors.Is(err, errNodeLost) {
			// Its node's connection dropped while we waited: a read is repeated, a
			// write's outcome is unknown (it may have committed before the node died).
			c.cl.PidCache.RemoveByValue(m.UserID, userKind, pid)
			if read {
				continue
			}
			return nil, fmt.Errorf("%w: %w", userservice.ErrOwnerLost, err)
		}
		if errors.Is(err, actor.ErrDeadLetter) {
			// No such grain (stopped): it did not run there.
			c.cl.PidCache.RemoveByValue(m.UserID, userKind, pid)
			continue
		}
		if err != nil {
			// Timed out: the grain may have run it.
			c.cl.PidCache.RemoveByValue(m.UserID, userKind, pid)
			if read {
				continue
			}
			return nil, timeoutError(err)
		}
		switch v := res.(type) {
		case *actor.DeadLetterResponse:
			c.cl.PidCache.RemoveByValue(m.UserID, userKind, pid)
			continue
		case *wrapperspb.BytesValue, *wireMsg:
			reply, ok := v.(*wireMsg)
			if !ok {
				var err error
				if reply, err = decodeWire(v.(*wrapperspb.BytesValue)); err != nil {
					return nil, userservice.Wrap(userservice.ECodeInternal, "Internal server error", err)
				}
			}
			if reply.Kind == wireMoved {
				clusterMoved.Inc()
				c.cl.PidCache.RemoveByValue(m.UserID, userKind, pid)
				continue
			}
			return reply, nil
		default:
			return nil, unexpectedReply(v)
		}
	}
}

// errNodeLost: the node a request was sent to lost its connection before answering.
var errNodeLost = errors.New("the owner node's connection was lost")

// await waits for the future, but gives up early with errNodeLost when the remote
// node's connection is reported lost (rather than waiting out the deadline).
func (c *Cluster) await(f *actor.Future, pid *actor.PID) (any, error) {
	if c.isLocal(pid) {
		return f.Result()
	}
	type result struct {
		v   any
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f.Result()
		ch <- result{v, err}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-ch:
			return r.v, r.err
		case <-tick.C:
			if c.isDown(pid.Address) {
				return nil, errNodeLost
			}
		}
	}
}

// lookup finds the grain's PID through the identity lookup, bounded by wait (the
// library's own activation request waits up to 5s).
func (c *Cluster) lookup(userID string, wait time.Duration) *actor.PID {
	if pid, ok := c.cl.PidCache.Get(userID, userKind); ok && pid != nil {
		return pid
	}
	ch := make(chan *actor.PID, 1)
	go func() {
		pid := c.cl.Get(userID, userKind)
		if pid != nil {
			c.cl.PidCache.Set(userID, userKind, pid)
		}
		ch <- pid
	}()
	select {
	case pid := <-ch:
		return pid
	case <-time.After(wait):
		return nil
	}
}

// Shutdown hands this node's users off and leaves: it stops taking calls, releases
// every local activation (requests in flight finish), leaves the membership,
// revokes its lease (so no one waits for it), then shuts the local Registry down.
func (c *Cluster) Shutdown(ctx context.Context) error {
	c.shutdownMu.Lock()
	defer c.shutdownMu.Unlock()
	if c.shut {
		return nil
	}
	c.shut = true
	c.closing.Store(true)
	c.abortAll()
	// Leave the membership first and keep answering "moved" while the other nodes
	// see it, so a request routed here meanwhile is re-routed, not lost.
	if err := c.provider.Shutdown(true); err != nil {
		c.log.Warn("cannot leave the cluster membership; it lapses by itself", slog.Any("error", err))
	}
	select {
	case <-time.After(leaveGrace):
	case <-ctx.Done():
	}
	c.closeLease()
	c.cl.Shutdown(true)
	return c.local.Shutdown(ctx)
}

func (c *Cluster) closeLease() {
	if c.stopLease != nil {
		c.stopLease()
		<-c.leaseDone
	}
	c.validUntil.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := c.fence.revoke(ctx); err != nil {
		c.log.Warn("cannot revoke cluster lease; it lapses by itself", slog.Any("error", err))
	}
	cancel()
	_ = c.fence.close()
}
