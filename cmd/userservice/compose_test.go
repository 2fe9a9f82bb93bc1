package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// composeFile is the part of docker-compose.yml these tests read.
type composeFile struct {
	Services map[string]struct {
		Environment map[string]string `yaml:"environment"`
		Deploy      struct {
			Resources struct {
				Limits       map[string]string `yaml:"limits"`
				Reservations map[string]string `yaml:"reservations"`
			} `yaml:"resources"`
		} `yaml:"deploy"`
	} `yaml:"services"`
}

// composeEnv is the user-service container's environment under `docker compose
// up` with the shell's variables in shell: the Dockerfile's ENV, overridden by
// the compose file's environment with ${VAR:-default} resolved as compose does.
func composeEnv(t *testing.T, shell map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{}
	docker, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(docker), "\n") {
		if rest, ok := strings.CutPrefix(line, "ENV "); ok {
			for _, kv := range strings.Fields(rest) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env[k] = v
				}
			}
		}
	}
	var c composeFile
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	svc, ok := c.Services["user-service"]
	if !ok {
		t.Fatal("docker-compose.yml has no user-service")
	}
	subst := regexp.MustCompile(`\$\{([A-Z_]+)(?::-([^}]*))?\}`)
	for k, v := range svc.Environment {
		env[k] = subst.ReplaceAllStringFunc(v, func(m string) string {
			p := subst.FindStringSubmatch(m)
			if s := shell[p[1]]; s != "" {
				return s
			}
			return p[2]
		})
	}
	return env
}

// TestComposeStartsOnAFreshCheckout: `docker compose up --build` with nothing
// set yields a configuration the service accepts; production without a secret
// is refused naming JWT_SECRET; production with one is accepted.
func TestComposeStartsOnAFreshCheckout(t *testing.T) {
	if _, err := LoadConfig(envOf(composeEnv(t, nil))); err != nil {
		t.Fatalf("docker compose up on a fresh checkout would not start: %v", err)
	}
	_, err := LoadConfig(envOf(composeEnv(t, map[string]string{"NODE_ENV": "production"})))
	if ps := problemsOf(t, err); len(ps) != 1 || ps[0].Var != "JWT_SECRET" {
		t.Errorf("production without JWT_SECRET: problems %+v, want one naming JWT_SECRET", ps)
	}
	prod := composeEnv(t, map[string]string{"NODE_ENV": "production", "JWT_SECRET": strings.Repeat("k", 64)})
	if _, err := LoadConfig(envOf(prod)); err != nil {
		t.Errorf("production with a secret: %v", err)
	}
}

// TestComposeResources: the service and its three dependencies have CPU and
// memory limits and reservations.
func TestComposeResources(t *testing.T) {
	var c composeFile
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"postgres", "redis", "rabbitmq", "user-service"} {
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("docker-compose.yml has no %s", name)
		}
		r := s.Deploy.Resources
		for _, k := range []string{"cpus", "memory"} {
			if r.Limits[k] == "" || r.Reservations[k] == "" {
				t.Errorf("%s: deploy.resources lacks a %s limit or reservation: %+v", name, k, r)
			}
		}
	}
}
