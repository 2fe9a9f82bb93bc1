//go:build !race

package actors

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	coreclient "k8s.io/client-go/kubernetes/typed/core/v1"
	rbacclient "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/client-go/rest"
)

// The CLUSTER_PROVIDER=k8s tests run a real kube-apiserver (built once by
// scripts/kube-apiserver.sh; KUBE_APISERVER names a binary to use instead) over
// its own etcd on loopback, shared by the package's tests (TestMain stops it).
// Authentication is a static token file: an admin token (system:masters) for the
// test, which plays the kubelet (it creates each node's Pod and sets its status),
// and a token for the service's identity, system:serviceaccount:lms:userservice,
// which the RBAC authorizer limits to the Role that docs/cluster.md documents. No
// kubelet, scheduler or controller runs.

const kubeNamespaceName = "lms"

type kubeAPI struct {
	admin *rest.Config
	node  *rest.Config // the service's identity
	core  *coreclient.CoreV1Client
	coord *coordclient.CoordinationV1Client
	log   string // the API server's log file
}

var (
	kubeOnce  sync.Once
	kubeShare *kubeAPI
	kubeErr   error
	kubeStops []func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(kubeStops) - 1; i >= 0; i-- {
		kubeStops[i]()
	}
	os.Exit(code)
}

// sharedKubeAPI starts the API server on first use.
func sharedKubeAPI(tb testing.TB) *kubeAPI {
	tb.Helper()
	kubeOnce.Do(func() {
		start := time.Now()
		kubeShare, kubeErr = startKubeAPI()
		if kubeErr == nil && testing.Verbose() {
			fmt.Fprintf(os.Stderr, "kube-apiserver ready in %s\n", time.Since(start).Round(time.Millisecond))
		}
	})
	if kubeErr != nil {
		tb.Fatalf("cannot start kube-apiserver: %v", kubeErr)
	}
	return kubeShare
}

// kubeAPIServerBin finds the binary: KUBE_APISERVER, else the build script's cache
// (building it if missing: several minutes the first time).
func kubeAPIServerBin() (string, error) {
	if b := os.Getenv("KUBE_APISERVER"); b != "" {
		return b, nil
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "scripts", "kube-apiserver.sh")
	var out, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("scripts/kube-apiserver.sh: %v: %s", err, tail(stderr.String(), 2000))
	}
	return strings.TrimSpace(out.String()), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startProc starts a process with its output in logFile and registers its stop.
func startProc(logFile string, bin string, args ...string) error {
	f, err := os.Create(logFile)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	kubeStops = append(kubeStops, func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); f.Close() })
	return nil
}

func startKubeAPI() (*kubeAPI, error) {
	bin, err := kubeAPIServerBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "userservice-kube-")
	if err != nil {
		return nil, err
	}
	kubeStops = append(kubeStops, func() { _ = os.RemoveAll(dir) })

	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, fmt.Errorf("etcd not installed (apt-get install etcd-server; scripts/devstack.sh does it): %w", err)
	}
	cp, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	pp, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	cu, pu := "http://127.0.0.1:"+strconv.Itoa(cp), "http://127.0.0.1:"+strconv.Itoa(pp)
	if err := startProc(filepath.Join(dir, "etcd.log"), etcdBin, "--name", "k", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu, "--initial-cluster", "k="+pu); err != nil {
		return nil, fmt.Errorf("cannot start etcd: %w", err)
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(dir, "sa.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return nil, err
	}
	const adminToken, nodeToken = "admin-token", "userservice-token"
	nodeUser := "system:serviceaccount:" + kubeNamespaceName + ":userservice"
	tokens := adminToken + ",admin,admin,system:masters\n" + nodeToken + "," + nodeUser + ",userservice-uid\n"
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(tokens), 0o600); err != nil {
		return nil, err
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "certs")
	logFile := filepath.Join(dir, "kube-apiserver.log")
	if err := startProc(logFile, bin,
		"--etcd-servers="+cu,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--cert-dir="+certDir,
		"--token-auth-file="+tokenFile, "--authorization-mode=RBAC", "--anonymous-auth=false",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+keyFile, "--service-account-signing-key-file="+keyFile,
		"--service-cluster-ip-range=10.0.0.0/24",
		// No controller manager creates the namespace's default ServiceAccount.
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none", "--enable-priority-and-fairness=false", "--profiling=false",
	); err != nil {
		return nil, fmt.Errorf("cannot start kube-apiserver: %w", err)
	}
	host := "https://127.0.0.1:" + strconv.Itoa(port)
	// Ready: /readyz answers 200 (etcd reached, RBAC's bootstrap roles in place).
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		req, _ := http.NewRequest(http.MethodGet, host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("not ready after 3 minutes; log:\n%s", tail(string(b), 4000))
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The serving certificate is self-signed into cert-dir: trust it (and only it).
	tlsCfg := rest.TLSClientConfig{CAFile: filepath.Join(certDir, "apiserver.crt")}
	k := &kubeAPI{
		admin: &rest.Config{Host: host, BearerToken: adminToken, TLSClientConfig: tlsCfg, QPS: 200, Burst: 400},
		node:  &rest.Config{Host: host, BearerToken: nodeToken, TLSClientConfig: tlsCfg},
		log:   logFile,
	}
	if k.core, err = coreclient.NewForConfig(k.admin); err != nil {
		return nil, err
	}
	if k.coord, err = coordclient.NewForConfig(k.admin); err != nil {
		return nil, err
	}
	rbac, err := rbacclient.NewForConfig(k.admin)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := k.core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kubeNamespaceName}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("cannot create namespace: %w", err)
	}
	// The service's Role, as docs/cluster.md gives it.
	if _, err := rbac.Roles(kubeNamespaceName).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "userservice-cluster"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "patch"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "create", "update", "delete"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("cannot create role: %w", err)
	}
	if _, err := rbac.RoleBindings(kubeNamespaceName).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "userservice-cluster"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "userservice-cluster"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "userservice", Namespace: kubeNamespaceName}},
	}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("cannot create role binding: %w", err)
	}
	return k, nil
}

// createPod creates the Pod of a node as the API server would hold it once a
// kubelet ran it: Running, with the loopback IP, its container not ready yet.
func (k *kubeAPI) createPod(tb testing.TB, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods := k.core.Pods(kubeNamespaceName)
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "userservice"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "userservice", Image: "userservice:test"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("cannot create pod %s: %v", name, err)
	}
	tb.Cleanup(func() {
		_ = pods.Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "userservice", Image: "userservice:test", Ready: false}},
	}
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		tb.Fatalf("cannot set pod %s running: %v", name, err)
	}
}

// setReady sets the Pod's container readiness, as the kubelet does from the
// readiness probe (/health/ready, i.e. Cluster.Ready) or when the process died.
func (k *kubeAPI) setReady(name string, ready bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pods := k.core.Pods(kubeNamespaceName)
	for {
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range pod.Status.ContainerStatuses {
			pod.Status.ContainerStatuses[i].Ready = ready
		}
		_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			return err
		}
	}
}

// kubelet plays the kubelet's part for the test cluster's Pods: every 100 ms it
// sets each Pod's readiness from its node's Ready (the readiness probe), and not
// ready once the node was killed. It stops with the test.
func (tc *testCluster) kubelet() {
	stop := make(chan struct{})
	done := make(chan struct{})
	tc.tb.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		state := map[string]bool{}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			tc.mu.Lock()
			nodes := append([]*Cluster(nil), tc.nodes...)
			pods := append([]string(nil), tc.pods...)
			killed := append([]bool(nil), tc.killed...)
			tc.mu.Unlock()
			for i, c := range nodes {
				ready := !killed[i] && c.Ready() == nil
				if cur, ok := state[pods[i]]; ok && cur == ready {
					continue
				}
				if err := tc.kube.setReady(pods[i], ready); err == nil {
					state[pods[i]] = ready
				}
			}
		}
	}()
}

// newKubeTestCluster is newTestCluster with CLUSTER_PROVIDER=k8s: each node has a
// Pod in the shared API server and talks to it as the service's identity.
func newKubeTestCluster(tb testing.TB, n int, h ...clusterHooks) *testCluster {
	tb.Helper()
	tc := &testCluster{tb: tb, kube: sharedKubeAPI(tb), store: newMemStore(), name: "k" + strconv.Itoa(int(time.Now().UnixNano()%1e9))}
	if len(h) > 0 {
		tc.hooks = h[0]
	}
	tc.kubelet()
	for range n {
		tc.add()
	}
	tc.waitMembers(n)
	return tc
}

// leases lists the cluster's fence Leases.
func (tc *testCluster) leases(tb testing.TB) map[string]string {
	tb.Helper()
	list, err := tc.kube.coord.Leases(kubeNamespaceName).List(ctxTimeout(tb, 5*time.Second), metav1.ListOptions{LabelSelector: leaseLabelCluster + "=" + tc.name})
	if err != nil {
		tb.Fatalf("cannot list leases: %v", err)
	}
	out := map[string]string{} // holder → name
	for _, l := range list.Items {
		if l.Spec.HolderIdentity == nil || l.Spec.LeaseDurationSeconds == nil || *l.Spec.LeaseDurationSeconds != 2 || l.Spec.RenewTime == nil {
			tb.Fatalf("lease %s is incomplete: %+v", l.Name, l.Spec)
		}
		out[*l.Spec.HolderIdentity] = l.Name
	}
	return out
}

// TestClusterK8sMembersAndOneOwner: three nodes on the API server find each other
// through their Pods, each holds one Lease, and 100 concurrent writes to one user
// over the three nodes commit once each, in one order.
func TestClusterK8sMembersAndOneOwner(t *testing.T) {
	tc := newKubeTestCluster(t, 3)
	leases := tc.leases(t)
	for i, c := range tc.nodes {
		if leases[c.Address()] == "" {
			t.Fatalf("node %d (%s) holds no Lease: %v", i, c.Address(), leases)
		}
		pod, err := tc.kube.core.Pods(kubeNamespaceName).Get(ctxTimeout(t, 5*time.Second), tc.pods[i], metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Labels[podLabelCluster] != tc.name || pod.Labels[podLabelPort] != strconv.Itoa(c.cfg.Port) ||
			pod.Labels[podLabelMemberID] != c.system.ID || pod.Labels[podLabelKind+userKind] != "true" || pod.Labels["app"] != "userservice" {
			t.Fatalf("pod %s labels = %v", tc.pods[i], pod.Labels)
		}
	}
	if len(leases) != 3 {
		t.Fatalf("%d leases, want 3: %v", len(leases), leases)
	}
	testConcurrentWritesOneUser(t, tc)
}

// TestClusterK8sServiceIdentityIsLimited: the service's identity gets exactly the
// documented rights: it may not touch Pods or Leases outside its namespace or read
// Secrets, so the tests above ran on the Role alone.
func TestClusterK8sServiceIdentityIsLimited(t *testing.T) {
	k := sharedKubeAPI(t)
	core, err := coreclient.NewForConfig(k.node)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 5*time.Second)
	if _, err := core.Pods(kubeNamespaceName).List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list pods in %s: %v", kubeNamespaceName, err)
	}
	if _, err := core.Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list pods in default: %v, want forbidden", err)
	}
	if _, err := core.Secrets(kubeNamespaceName).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list secrets: %v, want forbidden", err)
	}
}

// TestClusterK8sPartitionedNodeStopsFirst: one node's API server connections are
// cut (its remoting stays up): its renewals fail, it fences itself, its readiness
// fails so the kubelet takes it out of the membership, and the others take its
// users only after they saw its Lease unchanged for TTL + margin and deleted it;
// the cut-off node's last answer comes before any takeover.
func TestClusterK8sPartitionedNodeStopsFirst(t *testing.T) {
	log := newServeLog()
	tc := newKubeTestCluster(t, 3, log.hooks())
	testPartitionedNodeStopsFirst(t, tc, log, false, nil)
}

// TestClusterK8sIsolatedNodeStopsFirst: as above, but the cut-off node also ignores
// release requests (cut off from its peers as well), so the others may take its
// users only once they saw its Lease unchanged for TTL + margin and deleted it: the
// Lease fence alone must order the takeover after the node stopped serving.
func TestClusterK8sIsolatedNodeStopsFirst(t *testing.T) {
	log := newServeLog()
	var drop atomic.Pointer[string]
	h := log.hooks()
	h.dropRelease = func(addr string) bool {
		p := drop.Load()
		return p != nil && *p == addr
	}
	tc := newKubeTestCluster(t, 3, h)
	testPartitionedNodeStopsFirst(t, tc, log, true, &drop)
}

// TestClusterK8sJoinMovesAThird: a third Pod joining two moves about a third of the
// active users, none read stale.
func TestClusterK8sJoinMovesAThird(t *testing.T) {
	log := newServeLog()
	testJoinMovesAThird(t, newKubeTestCluster(t, 2, log.hooks()), log)
}

// TestClusterK8sKillUnderWriters: a node killed (no handoff; the kubelet reports
// its container not ready) under 32 writers: nothing acknowledged is lost, only
// 503s, failover window logged.
func TestClusterK8sKillUnderWriters(t *testing.T) {
	tc := newKubeTestCluster(t, 3)
	testKillUnderWriters(t, tc)
}

// TestClusterK8sGracefulLeave: a node that leaves hands its users off: the others
// serve them through the release handshake while its Lease still exists, or at
// once when it deletes the Lease (never after a lapse), and it answers nothing
// once a new owner began; then its Lease is gone and its Pod's cluster labels
// removed.
func TestClusterK8sGracefulLeave(t *testing.T) {
	log := newServeLog()
	tc := newKubeTestCluster(t, 3, log.hooks())
	leaving := tc.nodes[0]
	var owned []string
	for len(owned) < 4 {
		id := tc.store.seed(t)
		if _, err := tc.nodes[1].Execute(ctxTimeout(t, 10*time.Second), id, editBio("before"), meta()); err != nil {
			t.Fatal(err)
		}
		log.mu.Lock()
		if len(log.ready[id][leaving.Address()]) > 0 {
			owned = append(owned, id)
		}
		log.mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range tc.nodes[1:] {
		for _, id := range owned {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					_, _ = n.Get(ctx, id, nil)
					cancel()
				}
			}()
		}
	}
	leftAt := time.Now()
	shutdown := make(chan error, 1)
	go func() { shutdown <- leaving.Shutdown(context.Background()) }()
	var leaseGone time.Time
	for leaseGone.IsZero() {
		if time.Since(leftAt) > 20*time.Second {
			t.Fatal("the leaving node's Lease is still there 20s after the leave began")
		}
		if _, ok := tc.leases(t)[leaving.Address()]; !ok {
			leaseGone = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("leave: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	for _, id := range owned {
		at, ok := log.takenOver(id, leaving.Address(), leftAt)
		if !ok {
			t.Fatalf("user %s was not served by another node after the leave", id)
		}
		t.Logf("user %s: new owner serving %s after the leave began; the leaving node's Lease deleted at %s",
			id[:8], at.Sub(leftAt).Round(time.Millisecond), leaseGone.Sub(leftAt).Round(time.Millisecond))
		// The new owner takes over through the release handshake while the Lease
		// is there, or at once when the leaving node deletes it after leaveGrace
		// (when the Pods watch is slower than that, as under a loaded machine); it
		// never waits for the Lease to lapse (TTL + margin after the last renewal).
		if late := at.Sub(leaseGone); late > time.Second {
			t.Fatalf("user %s taken over %s after the leaving node's Lease went: it waited, no handoff", id, late.Round(time.Millisecond))
		}
		log.mu.Lock()
		last := log.reply[id][leaving.Address()]
		log.mu.Unlock()
		if last.After(at) {
			t.Fatalf("user %s: the leaving node answered at %s, after the new owner began at %s", id, last, at)
		}
	}
	pod, err := tc.kube.core.Pods(kubeNamespaceName).Get(ctxTimeout(t, 5*time.Second), tc.pods[0], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pod.Labels[podLabelCluster]; ok || pod.Labels["app"] != "userservice" {
		t.Fatalf("the leaving node's Pod labels = %v", pod.Labels)
	}
	for _, id := range owned {
		if _, err := tc.nodes[2].Execute(ctxTimeout(t, 10*time.Second), id, editBio("after"), meta()); err != nil {
			t.Fatalf("user %s after the leave: %v", id, err)
		}
	}
}

// TestClusterK8sFenceLeaseExpiry: the Lease fence on its own, two fences on the API
// server. A peer counts a Lease live from its own first sight of the current
// version; once it saw it unchanged for TTL + margin it deletes it (with that
// version as a precondition) and the holder's next renewal is refused; a renewal in
// between starts the peer's count again.
func TestClusterK8sFenceLeaseExpiry(t *testing.T) {
	k := sharedKubeAPI(t)
	name := "f" + strconv.Itoa(int(time.Now().UnixNano()%1e9))
	newFence := func(addr string) *kubeFence {
		cfg := ClusterConfig{Name: name, Namespace: kubeNamespaceName, PodName: addr, LeaseTTL: 2 * time.Second, DriftMargin: 400 * time.Millisecond}
		f, err := newKubeFence(cfg, addr, k.node)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a, b := newFence("127.0.0.1:1"), newFence("127.0.0.1:2")
	ctx := ctxTimeout(t, 30*time.Second)
	for _, f := range []*kubeFence{a, b} {
		if err := f.grant(ctx); err != nil {
			t.Fatalf("grant: %v", err)
		}
	}
	live := func(f *kubeFence, addr string) bool {
		t.Helper()
		ps, err := f.peers(ctx)
		if err != nil {
			t.Fatalf("peers: %v", err)
		}
		for _, p := range ps {
			if p.addr == addr {
				return true
			}
		}
		return false
	}
	// backdate makes b's observation of a's current version older than TTL + margin.
	backdate := func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for uid, o := range b.seen {
			o.at -= 3 * time.Second
			b.seen[uid] = o
		}
	}
	if !live(b, a.addr) || !live(a, b.addr) {
		t.Fatal("fresh Leases not live")
	}
	// A renewal between b's observation and its check: b sees a new version and
	// counts again from now.
	backdate()
	if err := a.renew(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if !live(b, a.addr) {
		t.Fatal("a renewed Lease was expired")
	}
	// Unchanged for longer than TTL + margin (by b's clock): b deletes it, and a's
	// renewal is refused from then on.
	backdate()
	if live(b, a.addr) {
		t.Fatal("a Lease unchanged past TTL + margin is still live")
	}
	if err := a.renew(ctx); !errors.Is(err, errFenceLost) {
		t.Fatalf("renew after expiry: %v, want errFenceLost", err)
	}
	// A real wait, without backdating: b first sees a's new incarnation, which
	// is then live until TTL + margin later, and not after.
	if err := a.grant(ctx); err != nil {
		t.Fatal(err)
	}
	seen := time.Now()
	if !live(b, a.addr) {
		t.Fatal("a's new Lease not live")
	}
	for live(b, a.addr) {
		time.Sleep(50 * time.Millisecond)
	}
	if d := time.Since(seen); d < 2400*time.Millisecond || d > 4*time.Second {
		t.Fatalf("a's Lease lapsed %s after b first saw it, want TTL + margin = 2.4s", d)
	}
	// Graceful leave deletes the Lease at once.
	if err := b.revoke(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.grant(ctx); err != nil {
		t.Fatal(err)
	}
	if live(a, b.addr) {
		t.Fatal("a revoked Lease is still listed")
	}
}
