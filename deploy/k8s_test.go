package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
)

// TestK8sManifests decodes every document of deploy/k8s strictly with the
// Kubernetes API types (client-go's scheme, no cluster: an unknown field or a
// wrong type fails), then checks them against the code: probe paths are routes
// of http/routes.go, probe ports are named container ports, every environment
// name is a variable of cmd/userservice/config.go, and the termination grace
// period covers the preStop sleep plus SHUTDOWN_TIMEOUT.
func TestK8sManifests(t *testing.T) {
	codecs := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)
	decode := codecs.UniversalDeserializer().Decode
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s (%v)", err)
	}
	var objs []runtime.Object
	kinds := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			obj, gvk, err := decode([]byte(doc), nil, nil)
			if err != nil {
				t.Errorf("%s document %d: %v", f, i, err)
				continue
			}
			kinds[gvk.Kind]++
			objs = append(objs, obj)
		}
	}
	for _, k := range []string{"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Secret", "PodDisruptionBudget", "HorizontalPodAutoscaler"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in deploy/k8s (kinds: %v)", k, kinds)
		}
	}

	routes := readFile(t, "../http/routes.go")
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile(`env:"([A-Z0-9_]+)"`).FindAllStringSubmatch(readFile(t, "../cmd/userservice/config.go"), -1) {
		vars[m[1]] = true
	}
	if len(vars) < 50 {
		t.Fatalf("only %d variables found in config.go: did its tags change?", len(vars))
	}
	config := map[string]string{}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			for k, v := range o.Data {
				config[k] = v
				if !vars[k] {
					t.Errorf("ConfigMap %s: %s is not a variable of cmd/userservice/config.go", o.Name, k)
				}
			}
		case *corev1.Secret:
			for k := range o.StringData {
				if !vars[k] {
					t.Errorf("Secret %s: %s is not a variable of cmd/userservice/config.go", o.Name, k)
				}
			}
			for k := range o.Data {
				if !vars[k] {
					t.Errorf("Secret %s: %s is not a variable of cmd/userservice/config.go", o.Name, k)
				}
			}
		}
	}
	deployments := 0
	for _, o := range objs {
		d, ok := o.(*appsv1.Deployment)
		if !ok {
			continue
		}
		deployments++
		pod := d.Spec.Template.Spec
		if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: the pod must run as non-root", d.Name)
		}
		for _, c := range pod.Containers {
			ports := map[string]int32{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			if want := config["PORT"]; want == "" || strconv.Itoa(int(ports["http"])) != want {
				t.Errorf("%s: container port http %d, ConfigMap PORT %q", c.Name, ports["http"], want)
			}
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
				t.Errorf("%s: the root filesystem must be read-only", c.Name)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s: cpu request and memory limit are required", c.Name)
			}
			for _, e := range c.Env {
				if !vars[e.Name] {
					t.Errorf("%s: env %s is not a variable of cmd/userservice/config.go", c.Name, e.Name)
				}
			}
			for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil {
					t.Errorf("%s: no HTTP %s probe", c.Name, name)
					continue
				}
				if !strings.Contains(routes, `"`+p.HTTPGet.Path+`"`) {
					t.Errorf("%s: %s probe path %s is not a route of http/routes.go", c.Name, name, p.HTTPGet.Path)
				}
				if _, ok := ports[p.HTTPGet.Port.String()]; !ok {
					t.Errorf("%s: %s probe port %s is not a named container port", c.Name, name, p.HTTPGet.Port.String())
				}
			}
			if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/health/live" {
				t.Errorf("%s: liveness must probe /health/live (not a dependency check)", c.Name)
			}
			var sleep time.Duration
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil {
				if cmd := c.Lifecycle.PreStop.Exec.Command; len(cmd) == 2 && cmd[0] == "sleep" {
					n, _ := strconv.Atoi(cmd[1])
					sleep = time.Duration(n) * time.Second
				}
			}
			shutdown, err := time.ParseDuration(config["SHUTDOWN_TIMEOUT"])
			if err != nil {
				t.Errorf("ConfigMap SHUTDOWN_TIMEOUT %q: %v", config["SHUTDOWN_TIMEOUT"], err)
			}
			if pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= sleep+shutdown {
				t.Errorf("terminationGracePeriodSeconds %v must exceed preStop %v + SHUTDOWN_TIMEOUT %v", pod.TerminationGracePeriodSeconds, sleep, shutdown)
			}
		}
	}
	if deployments != 1 {
		t.Errorf("%d Deployments, want 1", deployments)
	}
}

func TestK8sStrictDecodingRefusesUnknownFields(t *testing.T) {
	decode := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer().Decode
	bad := []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndatta:\n  A: b\n")
	if _, _, err := decode(bad, nil, nil); err == nil {
		t.Fatal("a misspelt field decoded without error: the manifest test would miss typos")
	}
}

func stripComments(doc string) string {
	var b bytes.Buffer
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
