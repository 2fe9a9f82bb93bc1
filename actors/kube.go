package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	coreclient "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
)

// CLUSTER_PROVIDER=k8s: membership from the Pods of the cluster (kubePods, a
// protoactor ClusterProvider) and the fence on coordination.k8s.io/v1 Lease
// objects (kubeFence). docs/cluster.md has the argument and the RBAC rules.

// Labels. The Pod labels are the ones protoactor-go's own k8s provider writes
// (cluster.proto.actor/...), so its tooling reads them the same way.
const (
	podLabelPrefix   = "cluster.proto.actor/"
	podLabelCluster  = podLabelPrefix + "cluster"
	podLabelPort     = podLabelPrefix + "port"
	podLabelMemberID = podLabelPrefix + "member-id"
	podLabelKind     = podLabelPrefix + "kind-" // + kind name, value "true"
	// leaseLabelCluster marks the fence Leases of one cluster.
	leaseLabelCluster = "userservice.lms-platform.io/cluster"
	// saNamespaceFile is where a Pod finds its namespace when POD_NAMESPACE is unset.
	saNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
)

// kube returns the API server configuration: the one a test set, else the Pod's
// service account (in-cluster). Calls go through cfg.dial when set.
func (c ClusterConfig) kube() (*rest.Config, error) {
	var rc *rest.Config
	if c.kubeConfig != nil {
		rc = rest.CopyConfig(c.kubeConfig)
	} else {
		var err error
		if rc, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("cannot configure the Kubernetes client (CLUSTER_PROVIDER=k8s runs in a Pod): %w", err)
		}
	}
	// The fence lists Leases once per acquisition round: client-go's default of 5
	// requests per second would throttle a handoff of many users.
	rc.QPS, rc.Burst = 500, 1000
	if c.dial != nil {
		dial := c.dial
		rc.Dial = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
	}
	return rc, nil
}

// kubeNamespace and kubePodName fill the Kubernetes defaults: the downward API's
// POD_NAMESPACE/POD_NAME when given, else what a Pod sees (its service account's
// namespace file, its host name).
func kubeNamespace(ns string) (string, error) {
	if ns != "" {
		return ns, nil
	}
	b, err := os.ReadFile(saNamespaceFile)
	if err != nil {
		return "", fmt.Errorf("cannot find the Pod's namespace (set POD_NAMESPACE): %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func kubePodName(name string) (string, error) {
	if name != "" {
		return name, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("cannot find the Pod's name (set POD_NAME): %w", err)
	}
	return h, nil
}

// kubeFence is the fence on Kubernetes: one coordination.k8s.io/v1 Lease per node
// incarnation (generated name, label leaseLabelCluster=<cluster>, holderIdentity =
// the node's remoting address, leaseDurationSeconds = TTL), renewed by an update
// that carries the Lease's resourceVersion. Unlike etcd, the API server expires
// nothing by itself, so the peers do, by their own clocks and never by the
// holder's: a peer counts a Lease as live until TTL + drift margin after the
// moment it first saw the Lease's current resourceVersion (which is after the
// renewal was written, hence after its send time), and only then deletes it with
// that resourceVersion as a precondition. A renewal that lands first makes the
// delete fail (the Lease stays live); a delete that lands first makes every later
// renewal fail (errFenceLost). Clock offsets between nodes do not matter; only the
// rate difference does, covered by the margins on both sides (docs/cluster.md).
// It is safe for concurrent use.
type kubeFence struct {
	leases  coordclient.LeaseInterface
	cluster string
	pod     string
	addr    string
	ttl     time.Duration
	margin  time.Duration
	base    time.Time // monotonic reference for observations

	mu   sync.Mutex
	cur  *coordinationv1.Lease     // this node's Lease, as last written
	seen map[types.UID]observation // the others' Leases as this node saw them
}

type observation struct {
	rv string        // resourceVersion
	at time.Duration // since base: when this node first saw rv
}

var _ fence = (*kubeFence)(nil)

func newKubeFence(cfg ClusterConfig, addr string, rc *rest.Config) (*kubeFence, error) {
	cli, err := coordclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cannot create the Kubernetes Lease client: %w", err)
	}
	return &kubeFence{
		leases: cli.Leases(cfg.Namespace), cluster: cfg.Name, pod: cfg.PodName, addr: addr,
		ttl: cfg.LeaseTTL, margin: cfg.DriftMargin, base: time.Now(), seen: map[types.UID]observation{},
	}, nil
}

func (f *kubeFence) grant(ctx context.Context) error {
	f.mu.Lock()
	prev := f.cur
	f.mu.Unlock()
	if prev != nil {
		// The previous incarnation serves nothing (grant runs only then): delete it
		// so no peer waits for it. If this fails, the peers expire it.
		_ = f.leases.Delete(ctx, prev.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &prev.UID}})
	}
	now := metav1.NewMicroTime(time.Now())
	secs := int32(f.ttl / time.Second)
	l, err := f.leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "userservice-fence-", // the cluster name may not be a valid name part
			Labels:       map[string]string{leaseLabelCluster: f.cluster},
			Annotations:  map[string]string{"userservice.lms-platform.io/pod": f.pod},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: &f.addr, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("cannot create fence Lease: %w", err)
	}
	f.mu.Lock()
	f.cur = l
	f.mu.Unlock()
	return nil
}

func (f *kubeFence) renew(ctx context.Context) error {
	f.mu.Lock()
	l := f.cur.DeepCopy()
	f.mu.Unlock()
	now := metav1.NewMicroTime(time.Now())
	l.Spec.RenewTime = &now
	out, err := f.leases.Update(ctx, l, metav1.UpdateOptions{})
	switch {
	case err == nil:
		f.mu.Lock()
		f.cur = out
		f.mu.Unlock()
		return nil
	case apierrors.IsNotFound(err):
		return errFenceLost // a peer expired it
	case apierrors.IsConflict(err):
		// Only this node updates its Lease, so an unknown version is an update of
		// ours whose answer was lost; a peer deletes, never updates. Take the
		// current version for the next renewal (this one is not counted).
		got, gerr := f.leases.Get(ctx, l.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(gerr) || (gerr == nil && got.UID != l.UID) {
			return errFenceLost
		}
		if gerr == nil {
			f.mu.Lock()
			f.cur = got
			f.mu.Unlock()
		}
		return fmt.Errorf("cannot renew fence Lease: %w", err)
	default:
		return fmt.Errorf("cannot renew fence Lease: %w", err)
	}
}

// peers lists the cluster's Leases (a consistent read: the list is served at the
// API server's latest version), and expires those it saw unchanged for longer
// than their duration plus the margin.
func (f *kubeFence) peers(ctx context.Context) ([]fencePeer, error) {
	list, err := f.leases.List(ctx, metav1.ListOptions{LabelSelector: leaseLabelCluster + "=" + f.cluster})
	if err != nil {
		return nil, fmt.Errorf("cannot list fence Leases: %w", err)
	}
	now := time.Since(f.base)
	f.mu.Lock()
	var own types.UID
	if f.cur != nil {
		own = f.cur.UID
	}
	present := make(map[types.UID]bool, len(list.Items))
	type expired struct {
		name string
		uid  types.UID
		rv   string
	}
	var lapsed []expired
	var out []fencePeer
	for i := range list.Items {
		l := &list.Items[i]
		if l.UID == own {
			continue
		}
		present[l.UID] = true
		o, ok := f.seen[l.UID]
		if !ok || o.rv != l.ResourceVersion {
			o = observation{rv: l.ResourceVersion, at: now}
			f.seen[l.UID] = o
		}
		dur := f.ttl
		if d := l.Spec.LeaseDurationSeconds; d != nil && *d > 0 {
			dur = time.Duration(*d) * time.Second
		}
		holder := ""
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		if holder == "" {
			continue // not a fence record of this service
		}
		if now < o.at+dur+f.margin {
			out = append(out, fencePeer{addr: holder, tag: l.Name + "@" + string(l.UID)})
			continue
		}
		lapsed = append(lapsed, expired{l.Name, l.UID, l.ResourceVersion})
	}
	for uid := range f.seen {
		if !present[uid] {
			delete(f.seen, uid)
		}
	}
	f.mu.Unlock()
	for _, e := range lapsed {
		// Compare-and-delete: only the version that this node saw lapse.
		err := f.leases.Delete(ctx, e.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &e.uid, ResourceVersion: &e.rv}})
		if err != nil && !apierrors.IsNotFound(err) {
			// Renewed meanwhile (conflict) or not known: still live for this round.
			for i := range list.Items {
				if l := &list.Items[i]; l.UID == e.uid && l.Spec.HolderIdentity != nil {
					out = append(out, fencePeer{addr: *l.Spec.HolderIdentity, tag: l.Name + "@" + string(l.UID)})
				}
			}
		}
	}
	return out, nil
}

func (f *kubeFence) revoke(ctx context.Context) error {
	f.mu.Lock()
	l := f.cur
	f.mu.Unlock()
	if l == nil {
		return nil
	}
	err := f.leases.Delete(ctx, l.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &l.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("cannot delete fence Lease: %w", err)
	}
	return nil
}

func (f *kubeFence) close() error { return nil }

// kubePods is the membership on Kubernetes, a protoactor ClusterProvider that does
// what protoactor-go's own k8s provider does (label this node's Pod with the
// cluster, port, member id and kinds; watch the cluster's Pods; members are the
// Running Pods with an IP whose containers are all Ready) with three differences
// that make it usable here: the Pod and namespace come from the configuration
// (POD_NAME/POD_NAMESPACE from the downward API; protoactor's reads the host name
// and the service account file only, so nodes sharing a host, as in the tests,
// would share one Pod), the member id is the actor system's id (protoactor's
// writes a random one, so gossip does not recognise the node itself), and the
// new labels replace stale ones (protoactor's keeps the old port and member id of
// a restarted container). The readiness probe (/health/ready answers 503 while
// the fence lapsed or the node leaves) takes a node out of the membership.
type kubePods struct {
	pods        coreclient.PodInterface
	pod         string
	clusterName string
	log         *slog.Logger

	cl     *cluster.Cluster
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	closed bool
}

var _ cluster.ClusterProvider = (*kubePods)(nil)

func newKubePods(cfg ClusterConfig, rc *rest.Config, logger *slog.Logger) (*kubePods, error) {
	cli, err := coreclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cannot create the Kubernetes Pod client: %w", err)
	}
	return &kubePods{pods: cli.Pods(cfg.Namespace), pod: cfg.PodName, clusterName: cfg.Name, log: logger}, nil
}

// StartMember labels this node's Pod and starts watching the cluster's Pods.
func (p *kubePods) StartMember(c *cluster.Cluster) error {
	_, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return err
	}
	p.cl = c
	labels := map[string]any{
		podLabelCluster:  p.clusterName,
		podLabelPort:     strconv.Itoa(port),
		podLabelMemberID: c.ActorSystem.ID,
	}
	for _, k := range c.GetClusterKinds() {
		labels[podLabelKind+k] = "true"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.patchLabels(ctx, labels); err != nil {
		return fmt.Errorf("cannot label Pod %s as a cluster member: %w", p.pod, err)
	}
	wctx, stop := context.WithCancel(context.Background())
	p.cancel, p.done = stop, make(chan struct{})
	go p.watch(wctx)
	return nil
}

// StartClient is not used: every node is a member.
func (p *kubePods) StartClient(*cluster.Cluster) error {
	return errors.New("kubernetes membership: client mode is not supported")
}

// Shutdown stops watching; a graceful one also removes this node's labels, so the
// others see it leave at once.
func (p *kubePods) Shutdown(graceful bool) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	var err error
	if graceful && p.cl != nil {
		labels := map[string]any{podLabelCluster: nil, podLabelPort: nil, podLabelMemberID: nil}
		for _, k := range p.cl.GetClusterKinds() {
			labels[podLabelKind+k] = nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = p.patchLabels(ctx, labels)
		cancel()
	}
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	return err
}

// patchLabels merges labels into the Pod's (a nil value removes one).
func (p *kubePods) patchLabels(ctx context.Context, labels map[string]any) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if err != nil {
		return err
	}
	_, err = p.pods.Patch(ctx, p.pod, types.MergePatchType, body, metav1.PatchOptions{})
	return err
}

// watch lists the cluster's Pods and follows their changes, listing again after
// any error, and hands every change of the member set to protoactor.
func (p *kubePods) watch(ctx context.Context) {
	defer close(p.done)
	selector := podLabelCluster + "=" + p.clusterName
	for ctx.Err() == nil {
		list, err := p.pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			p.pause(ctx, err)
			continue
		}
		pods := make(map[types.UID]*corev1.Pod, len(list.Items))
		for i := range list.Items {
			pods[list.Items[i].UID] = &list.Items[i]
		}
		p.publish(pods)
		w, err := p.pods.Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
		if err != nil {
			p.pause(ctx, err)
			continue
		}
		p.follow(ctx, w, pods)
		w.Stop()
	}
}

func (p *kubePods) follow(ctx context.Context, w watch.Interface, pods map[types.UID]*corev1.Pod) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			pod, isPod := ev.Object.(*corev1.Pod)
			if !isPod {
				return // an error event (e.g. version too old): list again
			}
			if ev.Type == watch.Deleted || pod.Labels[podLabelCluster] != p.clusterName {
				delete(pods, pod.UID)
			} else {
				pods[pod.UID] = pod
			}
			p.publish(pods)
		}
	}
}

func (p *kubePods) pause(ctx context.Context, err error) {
	p.log.Warn("cannot watch the cluster's Pods; retrying", slog.Any("error", err))
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
}

func (p *kubePods) publish(pods map[types.UID]*corev1.Pod) {
	p.cl.MemberList.UpdateClusterTopology(podMembers(pods))
}

// podMembers maps the cluster's Pods to members, as protoactor's provider does.
func podMembers(pods map[types.UID]*corev1.Pod) []*cluster.Member {
	members := make([]*cluster.Member, 0, len(pods))
	for _, pod := range pods {
		if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
			continue
		}
		ready := true
		for _, s := range pod.Status.ContainerStatuses {
			ready = ready && s.Ready
		}
		port, err := strconv.Atoi(pod.Labels[podLabelPort])
		id := pod.Labels[podLabelMemberID]
		if !ready || err != nil || id == "" {
			continue
		}
		var kinds []string
		for k, v := range pod.Labels {
			if strings.HasPrefix(k, podLabelKind) && v == "true" {
				kinds = append(kinds, strings.TrimPrefix(k, podLabelKind))
			}
		}
		members = append(members, &cluster.Member{Id: id, Host: pod.Status.PodIP, Port: int32(port), Kinds: kinds})
	}
	return members
}
