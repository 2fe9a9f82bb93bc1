package deploy

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"
)

// promtoolPath is Debian's promtool (package prometheus), which `make test` installs.
const promtoolPath = "/usr/bin/promtool"

func promtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if _, err := os.Stat(promtoolPath); err != nil {
		t.Fatalf("%s is missing (%v): run `make test`, or apt-get install -y prometheus", promtoolPath, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtoolPath, args...).CombinedOutput()
	return string(out), err
}

func TestAlertRulesAreValid(t *testing.T) {
	if out, err := promtool(t, "check", "rules", "prometheus/userservice-rules.yml"); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestAlertRulesUnitTests(t *testing.T) {
	if out, err := promtool(t, "test", "rules", "prometheus/userservice-rules.test.yml"); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// TestAlertRulesUnitTestsCanFail breaks one threshold in a copy of the rules
// and expects promtool's unit tests to notice: the tests above are not vacuous.
func TestAlertRulesUnitTestsCanFail(t *testing.T) {
	dir := t.TempDir()
	rules, err := os.ReadFile("prometheus/userservice-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(rules), "> 0.01", "> 0.5", 1)
	if broken == string(rules) {
		t.Fatal("the error ratio threshold is no longer `> 0.01`: update this test")
	}
	tests, err := os.ReadFile("prometheus/userservice-rules.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"userservice-rules.yml": []byte(broken), "userservice-rules.test.yml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := promtool(t, "test", "rules", filepath.Join(dir, "userservice-rules.test.yml")); err == nil {
		t.Fatalf("promtool test rules passed with a broken threshold:\n%s", out)
	}
}

// Dashboard is the part of a Grafana dashboard JSON that the tests read.
type Dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []Panel `json:"panels"`
}

// Panel is one Grafana panel (rows carry their panels when collapsed).
type Panel struct {
	ID      int      `json:"id"`
	Title   string   `json:"title"`
	Type    string   `json:"type"`
	Targets []Target `json:"targets"`
	Panels  []Panel  `json:"panels"`
}

// Target is one query of a panel.
type Target struct {
	Expr  string `json:"expr"`
	RefID string `json:"refId"`
}

func TestDashboardShape(t *testing.T) {
	b, err := os.ReadFile("grafana/dashboards/userservice.json")
	if err != nil {
		t.Fatal(err)
	}
	var d Dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard needs a uid and a title (got %q, %q)", d.UID, d.Title)
	}
	ids := map[int]bool{}
	queries := 0
	var walk func(ps []Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, q := range p.Targets {
				if strings.TrimSpace(q.Expr) == "" {
					t.Errorf("panel %q: query %s is empty", p.Title, q.RefID)
				}
				queries++
			}
		}
	}
	walk(d.Panels)
	if queries < 20 {
		t.Errorf("only %d queries: the dashboard lost panels", queries)
	}
}

func TestPrometheusConfigIsValid(t *testing.T) {
	if out, err := promtool(t, "check", "config", "prometheus/prometheus.yml"); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// TestObservabilityProfileMountsExistingFiles reads docker-compose.yml's
// observability profile: each bind mount of ./deploy must name a file or
// directory of this checkout (a rename here would leave Grafana empty).
func TestObservabilityProfileMountsExistingFiles(t *testing.T) {
	var f struct {
		Services map[string]struct {
			Profiles    []string `yaml:"profiles"`
			Volumes     []string `yaml:"volumes"`
			Healthcheck *struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	mounts := 0
	for _, name := range []string{"prometheus", "grafana"} {
		s, ok := f.Services[name]
		if !ok {
			t.Fatalf("docker-compose.yml has no %s service", name)
		}
		if len(s.Profiles) != 1 || s.Profiles[0] != "observability" {
			t.Errorf("%s: profiles %v, want [observability]", name, s.Profiles)
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("%s has no healthcheck", name)
		}
		for _, v := range s.Volumes {
			host, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(host, "./deploy/") {
				continue
			}
			mounts++
			if _, err := os.Stat(filepath.Join("..", host)); err != nil {
				t.Errorf("%s mounts %s: %v", name, host, err)
			}
		}
	}
	if mounts < 4 {
		t.Errorf("only %d mounts of ./deploy in the observability profile", mounts)
	}
}
