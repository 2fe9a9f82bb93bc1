package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"
)

// clusterCompose is the part of docker-compose.yml the cluster-profile test reads.
type clusterCompose struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       string            `yaml:"build"`
		Profiles    []string          `yaml:"profiles"`
		Environment map[string]string `yaml:"environment"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		DependsOn map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Volumes []string `yaml:"volumes"`
	} `yaml:"services"`
}

// TestComposeClusterProfile: `docker compose --profile cluster up` runs etcd and
// three cluster-mode nodes behind nginx; each node's environment loads as a
// configuration, advertises its own service name, reaches the etcd service, and
// every container has a healthcheck (the nodes the image's HEALTHCHECK); nginx
// balances over exactly the three nodes on PORT.
func TestComposeClusterProfile(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f clusterCompose
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	imageHealthcheck := regexp.MustCompile(`(?m)^HEALTHCHECK .*\n?.*CMD `).Match(dockerfile)

	var inProfile []string
	for name, s := range f.Services {
		if slices.Contains(s.Profiles, "cluster") {
			inProfile = append(inProfile, name)
		}
		fromDockerfile := s.Build == "."
		if s.Healthcheck == nil && !(fromDockerfile && imageHealthcheck) {
			t.Errorf("service %s has no healthcheck", name)
		}
	}
	slices.Sort(inProfile)
	if want := []string{"etcd", "lb", "node1", "node2", "node3"}; !slices.Equal(inProfile, want) {
		t.Fatalf("cluster profile services %v, want %v", inProfile, want)
	}

	for _, name := range []string{"node1", "node2", "node3"} {
		s := f.Services[name]
		env := map[string]string{}
		for k, v := range s.Environment {
			env[k] = regexp.MustCompile(`\$\{[A-Z_]+:-([^}]*)\}`).ReplaceAllString(v, "$1")
		}
		if env["CLUSTER_PROVIDER"] != "etcd" || env["CLUSTER_ADVERTISE_HOST"] != name {
			t.Errorf("%s: CLUSTER_PROVIDER %q, CLUSTER_ADVERTISE_HOST %q; want etcd and %s", name, env["CLUSTER_PROVIDER"], env["CLUSTER_ADVERTISE_HOST"], name)
		}
		if host, _, _ := strings.Cut(env["ETCD_ENDPOINTS"], ":"); f.Services[host].Image == "" || s.DependsOn[host].Condition != "service_healthy" {
			t.Errorf("%s: ETCD_ENDPOINTS %q does not name a service it waits for", name, env["ETCD_ENDPOINTS"])
		}
		delete(env, "GOMEMLIMIT") // read by the Go runtime, not the service
		cfg, err := LoadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Errorf("%s: the environment does not load: %v", name, err)
			continue
		}
		if cfg.Port != 3002 {
			t.Errorf("%s: PORT %d, nginx expects 3002", name, cfg.Port)
		}
		if f.Services["lb"].DependsOn[name].Condition != "service_healthy" {
			t.Errorf("lb does not wait for %s to be healthy", name)
		}
	}

	var conf string
	for _, v := range f.Services["lb"].Volumes {
		if src, _, ok := strings.Cut(v, ":"); ok && strings.HasSuffix(src, ".conf") {
			conf = src
		}
	}
	nginx, err := os.ReadFile("../../" + conf)
	if conf == "" || err != nil {
		t.Fatalf("lb: no nginx configuration mounted (%q): %v", conf, err)
	}
	var upstreams []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server\s+([\w.-]+:\d+)`).FindAllStringSubmatch(string(nginx), -1) {
		upstreams = append(upstreams, m[1])
	}
	if want := []string{"node1:3002", "node2:3002", "node3:3002"}; !slices.Equal(upstreams, want) {
		t.Errorf("nginx upstream servers %v, want %v", upstreams, want)
	}
}

// TestDockerfileShape: multi-stage, static (CGO off) binary, non-root numeric
// user, HEALTHCHECK on /health/live.
func TestDockerfileShape(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	d := string(b)
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(d, -1)); n < 2 {
		t.Errorf("%d FROM lines, want a multi-stage build", n)
	}
	if !strings.Contains(d, "CGO_ENABLED=0") {
		t.Error("the binary is not built with CGO_ENABLED=0 (static)")
	}
	if m := regexp.MustCompile(`(?m)^USER (\d+)`).FindStringSubmatch(d); m == nil || m[1] == "0" {
		t.Errorf("no numeric non-root USER: %v", m)
	}
	if !regexp.MustCompile(`(?m)^HEALTHCHECK [\s\S]*?/health/live`).MatchString(d) {
		t.Error("no HEALTHCHECK on /health/live")
	}
}

// TestDockerImageBuild builds the image and checks its user and healthcheck,
// where a Docker daemon answers; elsewhere it is skipped, saying why.
func TestDockerImageBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the image build takes minutes")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed: the image build is not tested here")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker daemon answers (%v: %s): the image build is not tested here", err, strings.TrimSpace(string(out)))
	}
	tag := "userservice:test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	build := exec.CommandContext(ctx, "docker", "build", "-t", tag, "../..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Config.User}} {{json .Config.Healthcheck.Test}}", tag).CombinedOutput()
	if err != nil {
		t.Fatalf("docker image inspect: %v\n%s", err, out)
	}
	user, hc, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if user == "" || user == "0" || strings.HasPrefix(user, "0:") || user == "root" {
		t.Errorf("the image runs as %q, want a non-root user", user)
	}
	if !strings.Contains(hc, "/health/live") {
		t.Errorf("the image's healthcheck %s does not probe /health/live", hc)
	}
	var ee *exec.ExitError
	if out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--entrypoint", "/usr/local/bin/userservice", tag, "no-such-command").CombinedOutput(); !errors.As(err, &ee) || !strings.Contains(string(out), "unknown command") {
		t.Errorf("the image's binary does not run: %v\n%s", err, out)
	}
}
