package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
)

// k8sObjects decodes every document of deploy/k8s/*.yaml strictly (unknown or
// duplicate fields fail) with client-go's scheme: no cluster, no network.
func k8sObjects(t *testing.T) []runtime.Object {
	t.Helper()
	files, err := filepath.Glob("../../deploy/k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s: %v", err)
	}
	dec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	sep := regexp.MustCompile(`(?m)^---\s*$`)
	var out []runtime.Object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range sep.Split(string(b), -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
				continue
			}
			obj, _, err := dec.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("%s, document %d: %v", filepath.Base(f), i+1, err)
			}
			out = append(out, obj)
		}
	}
	return out
}

func only[T runtime.Object](t *testing.T, objs []runtime.Object) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T in deploy/k8s, want 1", len(found), zero)
	}
	return found[0]
}

// TestK8sManifestsWiring complements deploy.TestK8sManifests (strict decoding,
// probe routes, env names, grace period): the configuration the ConfigMap and
// Secret give passes LoadConfig (with the per-environment placeholders filled),
// the cluster port is CLUSTER_PORT, the rolling update keeps every replica
// serving, and the RBAC, Services, PDB and HPA point at what exists.
// TestE2EK8sProbes asks a running service for the probe paths.
func TestK8sManifestsWiring(t *testing.T) {
	objs := k8sObjects(t)
	dep := only[*appsv1.Deployment](t, objs)
	cm := only[*corev1.ConfigMap](t, objs)
	sec := only[*corev1.Secret](t, objs)
	sa := only[*corev1.ServiceAccount](t, objs)
	role := only[*rbacv1.Role](t, objs)
	rb := only[*rbacv1.RoleBinding](t, objs)
	pdb := only[*policyv1.PodDisruptionBudget](t, objs)
	hpa := only[*autoscalingv2.HorizontalPodAutoscaler](t, objs)

	known := map[string]bool{}
	for _, v := range configVars() {
		known[v.name] = true
	}
	env := map[string]string{}
	for k, v := range cm.Data {
		if !known[k] {
			t.Errorf("ConfigMap key %s is not a variable of Config", k)
		}
		env[k] = v
	}
	for k, v := range sec.StringData {
		if !known[k] {
			t.Errorf("Secret key %s is not a variable of Config", k)
		}
		env[k] = v
	}
	if env["CLUSTER_PROVIDER"] != "k8s" {
		t.Errorf("CLUSTER_PROVIDER = %q, want k8s", env["CLUSTER_PROVIDER"])
	}

	// The configuration is valid but for what must be filled per environment.
	env["JWT_SECRET"] = strings.Repeat("k", 40)
	env["CLUSTER_ADVERTISE_HOST"] = "10.0.0.7"
	env["POD_NAME"] = "userservice-0"
	env["POD_NAMESPACE"] = "lms"
	if _, err := LoadConfig(func(k string) string { return env[k] }); err != nil {
		t.Errorf("the ConfigMap and Secret do not load: %v", err)
	}

	pod := dep.Spec.Template.Spec
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("Deployment's service account %q, want %q", pod.ServiceAccountName, sa.Name)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	refs := map[string]bool{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			refs[ef.ConfigMapRef.Name] = true
		case ef.SecretRef != nil:
			refs[ef.SecretRef.Name] = true
		}
	}
	if !refs[cm.Name] || !refs[sec.Name] {
		t.Errorf("envFrom %v does not name ConfigMap %q and Secret %q", refs, cm.Name, sec.Name)
	}
	for _, e := range c.Env {
		if !known[e.Name] {
			t.Errorf("env %s is not a variable of Config", e.Name)
		}
	}

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if strconv.Itoa(int(ports["http"])) != env["PORT"] {
		t.Errorf("container port http = %d, PORT = %s", ports["http"], env["PORT"])
	}
	if strconv.Itoa(int(ports["cluster"])) != env["CLUSTER_PORT"] {
		t.Errorf("container port cluster = %d, CLUSTER_PORT = %s", ports["cluster"], env["CLUSTER_PORT"])
	}
	probePort := func(p intstr.IntOrString) int32 {
		if p.Type == intstr.String {
			return ports[p.StrVal]
		}
		return p.IntVal
	}
	if ru := dep.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update must keep every replica serving (maxUnavailable 0): %+v", ru)
	}

	// RBAC: what the k8s provider needs (the Role actors/kube_test.go grants
	// the service in TestClusterK8s*): pods for membership, leases for the fence.
	for _, need := range []struct{ group, resource string }{{"", "pods"}, {"coordination.k8s.io", "leases"}} {
		var verbs []string
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, need.group) && slices.Contains(r.Resources, need.resource) {
				verbs = append(verbs, r.Verbs...)
			}
		}
		want := []string{"get", "list", "watch", "patch"}
		if need.resource == "leases" {
			want = []string{"get", "list", "create", "update", "delete"}
		}
		for _, v := range want {
			if !slices.Contains(verbs, v) {
				t.Errorf("Role %s does not allow %s on %s", role.Name, v, need.resource)
			}
		}
	}
	if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != role.Name || len(rb.Subjects) != 1 ||
		rb.Subjects[0].Kind != "ServiceAccount" || rb.Subjects[0].Name != sa.Name {
		t.Errorf("RoleBinding does not bind Role %s to ServiceAccount %s: %+v", role.Name, sa.Name, rb)
	}

	// Services select the pods and name their ports; one is headless for remoting.
	labels := dep.Spec.Template.Labels
	selects := func(sel map[string]string) bool {
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	var headless, plain int
	for _, o := range objs {
		svc, ok := o.(*corev1.Service)
		if !ok {
			continue
		}
		if !selects(svc.Spec.Selector) {
			t.Errorf("Service %s selects %v, not the pods (%v)", svc.Name, svc.Spec.Selector, labels)
		}
		for _, p := range svc.Spec.Ports {
			if probePort(p.TargetPort) == 0 {
				t.Errorf("Service %s targets port %s, which the container does not have", svc.Name, p.TargetPort.String())
			}
		}
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			headless++
			if len(svc.Spec.Ports) != 1 || probePort(svc.Spec.Ports[0].TargetPort) != ports["cluster"] {
				t.Errorf("headless Service %s does not expose the cluster port", svc.Name)
			}
		} else {
			plain++
		}
	}
	if headless != 1 || plain != 1 {
		t.Errorf("%d headless and %d other Services, want 1 and 1", headless, plain)
	}
	if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels) {
		t.Errorf("PodDisruptionBudget does not select the pods")
	}
	if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != dep.Name ||
		hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
		t.Errorf("HPA: want Deployment %s with at least 2 replicas, got %+v", dep.Name, hpa.Spec)
	}
}

// TestE2EK8sProbes: the probe paths of deploy/k8s answer 200 on a running service.
func TestE2EK8sProbes(t *testing.T) {
	dep := only[*appsv1.Deployment](t, k8sObjects(t))
	c := dep.Spec.Template.Spec.Containers[0]
	st := newStack(t)
	svc := st.start(t, nil)
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		path := p.HTTPGet.Path
		eventually(t, "GET "+path+" answers 200", func() error {
			if r := svc.do(t, "GET", path, "", nil); r.Status != 200 {
				return &probeErr{path, r.String()}
			}
			return nil
		})
	}
}

type probeErr struct{ path, resp string }

func (e *probeErr) Error() string { return e.path + ": " + e.resp }
