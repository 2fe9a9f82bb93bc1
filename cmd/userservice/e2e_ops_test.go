package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/lms-platform/userservice"
)

// Issue 13: what an operator reads. One service on the real stack gets a
// request on every documented route and a consumed event of each outcome; its
// /metrics must then pass promtool's lint on every user_service_* family, and
// every metric named by the Grafana dashboard and the alert rules must be in
// that scrape (a renamed metric breaks this test, not a dashboard in
// production).

const promtoolBin = "/usr/bin/promtool"

func TestE2EOperatorMetrics(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	st.waitConsumer(t)
	admin := st.adminToken(t)
	routes := trafficOnEveryRoute(t, svc, admin)

	// One event consumed, one dead-lettered: events_consumed_total by result.
	u := svc.createUser(t, admin, newUserBody(t))
	idL, bodyL := authEvent("auth.user.login", map[string]any{"authId": u.AuthID, "sessionId": "ops-1"})
	st.publish(t, "auth.user.login", idL, bodyL)
	idR, bodyR := authEvent("auth.user.registered", map[string]any{"authId": userservice.NewID(), "email": "not-an-email"})
	st.publish(t, "auth.user.registered", idR, bodyR)
	eventually(t, "both events counted", func() error {
		text := string(svc.do(t, "GET", "/metrics", "", nil).Body)
		for _, want := range []string{`type="auth.user.login",result="processed"`, `type="auth.user.registered",result="invalid"`} {
			if !strings.Contains(text, want) {
				return fmt.Errorf("/metrics lacks user_service_events_consumed_total{%s}", want)
			}
		}
		return nil
	})

	r := svc.do(t, "GET", "/metrics", "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("%s", r)
	}
	scrape := r.Body
	series := seriesNames(scrape)
	t.Logf("%d routes exercised; the scrape has %d series names", routes, len(series))

	t.Run("promtool finds no lint problem on any user_service_ metric", func(t *testing.T) {
		code, out := runPromtool(t, scrape, "check", "metrics")
		if code != 0 && code != 3 {
			t.Fatalf("promtool check metrics exited %d (the exposition does not parse):\n%s", code, out)
		}
		ours := 0
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "user_service_") {
				t.Errorf("promtool: %s", strings.TrimSpace(line))
				ours++
			}
		}
		t.Logf("promtool exit %d, %d problems on user_service_* (others are the library's Go/process metrics)", code, ours)
	})
	t.Run("every user_service_ family has a HELP text", func(t *testing.T) {
		families := 0
		sc := bufio.NewScanner(bytes.NewReader(scrape))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			rest, ok := strings.CutPrefix(sc.Text(), "# HELP user_service_")
			if !ok {
				continue
			}
			families++
			if name, text, _ := strings.Cut(rest, " "); strings.TrimSpace(text) == "" {
				t.Errorf("user_service_%s has an empty HELP", name)
			}
		}
		if families < 40 {
			t.Errorf("only %d user_service_ families with HELP lines: is metadata exposed?", families)
		}
	})
	t.Run("the dashboard names only exported metrics", func(t *testing.T) {
		exprs := dashboardExprs(t, "../../deploy/grafana/dashboards/userservice.json")
		checkExprs(t, exprs, series)
	})
	t.Run("the alert rules name only exported metrics", func(t *testing.T) {
		exprs := ruleExprs(t, "../../deploy/prometheus/userservice-rules.yml")
		checkExprs(t, exprs, series)
	})
}

// trafficOnEveryRoute sends one request to every method and path of
// /docs/openapi.json (parameters filled with a real user and course), and
// fails on a 5xx. It returns how many it sent.
func trafficOnEveryRoute(t *testing.T, svc *service, admin string) int {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	r := svc.do(t, "GET", "/docs/openapi.json", "", nil)
	if err := json.Unmarshal(r.Body, &doc); err != nil || r.Status != http.StatusOK {
		t.Fatalf("/docs/openapi.json: %v %s", err, r)
	}
	u := svc.createUser(t, admin, newUserBody(t))
	course := userservice.NewID()
	svc.do(t, "POST", "/api/v1/users/"+u.ID+"/enrollments", admin, map[string]any{"courseId": course}).data(t, http.StatusCreated, nil)
	fill := strings.NewReplacer("{id}", u.ID, "{courseId}", course, "{category}", "ui", "{key}", "theme")
	bodies := map[string]any{
		"PUT /api/v1/users/{id}":                                 map[string]any{"bio": "ops"},
		"PUT /api/v1/users/{id}/enrollments/{courseId}/progress": map[string]any{"progress": 40},
		"PUT /api/v1/users/{id}/preferences/{category}":          map[string]any{"preferences": []any{map[string]any{"key": "theme", "value": "dark"}}},
		"POST /api/v1/users/{id}/enrollments":                    map[string]any{"courseId": userservice.NewID()},
		"POST /api/v1/users":                                     newUserBody(t),
		"PUT /api/v1/users/bulk/role":                            map[string]any{"userIds": []string{u.ID}, "role": "instructor"},
		"PUT /api/v1/users/{id}/role":                            map[string]any{"role": "student"},
		"PUT /api/v1/users/{id}/enrollments/{courseId}":          map[string]any{"enrollmentStatus": "active"},
		"PUT /api/v1/users/{id}/preferences":                     map[string]any{"preferences": []any{map[string]any{"category": "ui", "key": "language", "value": "en"}}},
		"PUT /api/v1/users/{id}/status":                          map[string]any{"status": "active"},
		"DELETE /api/v1/users/{id}/preferences/{category}/{key}": nil,
		"DELETE /api/v1/users/{id}/enrollments/{courseId}":       nil,
		"DELETE /api/v1/users/{id}/preferences/{category}":       nil,
		"DELETE /api/v1/users/{id}":                              nil,
		"GET /api/v1/users/{id}/events":                          nil,
		"GET /api/v1/events":                                     nil,
		"GET /api/v1/users/{id}/preferences/{category}":          nil,
		"GET /api/v1/courses/{courseId}/enrollments":             nil,
	}
	type call struct{ method, path string }
	var calls []call
	for path, ops := range doc.Paths {
		for m := range ops {
			switch m = strings.ToUpper(m); m {
			case "GET", "POST", "PUT", "DELETE", "PATCH":
				calls = append(calls, call{m, path})
			}
		}
	}
	// Deletes last, the user's own deletion last of all.
	sort.Slice(calls, func(i, j int) bool {
		di, dj := calls[i].method == "DELETE", calls[j].method == "DELETE"
		if di != dj {
			return dj
		}
		if len(calls[i].path) != len(calls[j].path) {
			return len(calls[i].path) > len(calls[j].path)
		}
		return calls[i].method+calls[i].path < calls[j].method+calls[j].path
	})
	if len(calls) < 25 {
		t.Fatalf("only %d operations in /docs/openapi.json", len(calls))
	}
	for _, c := range calls {
		path := fill.Replace(c.path)
		if strings.Contains(path, "{") { // a parameter this test does not know: any UUID
			path = regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(path, userservice.NewID())
		}
		body, ok := bodies[c.method+" "+c.path]
		if !ok && (c.method == "POST" || c.method == "PUT") {
			body = map[string]any{}
		}
		res := svc.do(t, c.method, path, admin, body)
		if res.Status >= 500 {
			t.Errorf("%s %s = %d: %s", c.method, c.path, res.Status, res)
		}
	}
	return len(calls)
}

// runPromtool feeds stdin to promtool and returns its exit code and output.
func runPromtool(t *testing.T, stdin []byte, args ...string) (int, string) {
	t.Helper()
	if _, err := os.Stat(promtoolBin); err != nil {
		t.Fatalf("%s is missing (%v): run `make test`, or apt-get install -y prometheus", promtoolBin, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtoolBin, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("cannot run promtool: %v", err)
	return 0, ""
}

// seriesNames are the sample names of an exposition (a histogram's _bucket,
// _sum and _count each count).
func seriesNames(text []byte) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			out[line[:i]] = true
		}
	}
	return out
}

var (
	promStringRE   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promBracesRE   = regexp.MustCompile(`\{[^{}]*\}|\[[^\[\]]*\]`)
	promGroupingRE = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promVarRE      = regexp.MustCompile(`\$\{?\w+\}?|\boffset\s+-?\w+`)
	promIdentRE    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promNumberRE   = regexp.MustCompile(`\b\d+(\.\d+)?([eE][+-]?\d+)?\b`)
	promKeywords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true, "Inf": true, "NaN": true}
)

// metricNames returns the metric names a PromQL expression selects: label
// matchers, ranges, strings, groupings, Grafana variables and function calls
// removed, what remains of the identifiers are metric names.
func metricNames(expr string) []string {
	e := promStringRE.ReplaceAllString(expr, `""`)
	e = promBracesRE.ReplaceAllString(e, " ")
	e = promGroupingRE.ReplaceAllString(e, " ")
	e = promVarRE.ReplaceAllString(e, " ")
	e = promNumberRE.ReplaceAllString(e, " ")
	var out []string
	for _, m := range promIdentRE.FindAllStringSubmatch(e, -1) {
		if m[1] != "" || promKeywords[m[0]] { // a function call or an operator keyword
			continue
		}
		out = append(out, m[0])
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want string
	}{
		{`sum by (route) (rate(user_service_requests_total{instance=~"$instance",status=~"5.."}[$__rate_interval]))`, "user_service_requests_total"},
		{`histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="{y}"}[5m]))) > 0.2`, "a_bucket"},
		{`max(a) / max by (job, instance) (b) > 0.9 or c == 0`, "a b c"},
		{`sum(rate(x_total[5m])) and on(job) y unless z offset 5m`, "x_total y z"},
		{`increase(d{l="a and b"}[15m]) > 1e3`, "d"},
	} {
		if got := strings.Join(metricNames(c.expr), " "); got != c.want {
			t.Errorf("metricNames(%s) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// checkExprs fails for each metric name in exprs that the scrape lacks.
func checkExprs(t *testing.T, exprs map[string]string, series map[string]bool) {
	t.Helper()
	if len(exprs) == 0 {
		t.Fatal("no expression found")
	}
	names := 0
	for where, e := range exprs {
		ns := metricNames(e)
		if len(ns) == 0 {
			t.Errorf("%s: no metric in %q", where, e)
		}
		for _, n := range ns {
			names++
			if !series[n] {
				t.Errorf("%s: %s is not in the service's /metrics (expression %q)", where, n, e)
			}
		}
	}
	t.Logf("%d expressions, %d metric references, all exported", len(exprs), names)
}

// dashboardExprs returns every query of a Grafana dashboard by "panel/refId".
func dashboardExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string]string{}
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, raw := range ps {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			for _, q := range p.Targets {
				out[p.Title+"/"+q.RefID] = q.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	for _, v := range d.Templating.List {
		q, _ := json.Marshal(v.Query)
		if m := labelValues.FindSubmatch(q); m != nil {
			out["variable "+v.Name] = string(m[1])
		}
	}
	return out
}

// ruleExprs returns every rule expression of a Prometheus rules file by name.
func ruleExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out[r.Alert+r.Record] = r.Expr
		}
	}
	return out
}

// TestE2EDLQReplay: a registration refused because its email is taken lands in
// the DLQ; after the operator's fix (here: the conflicting profile's email
// changed in PostgreSQL), `userservice dlq-replay` moves it back and the
// service creates the profile.
func TestE2EDLQReplay(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	st.waitConsumer(t)
	admin := st.adminToken(t)
	body := newUserBody(t)
	taken := svc.createUser(t, admin, body)

	authID := userservice.NewID()
	id, ev := authEvent("auth.user.registered", map[string]any{"authId": authID, "email": taken.Email, "firstName": "Grace", "lastName": "Hopper"})
	st.publish(t, "auth.user.registered", id, ev)
	dlqDepth := func() int {
		ch, err := st.amqpConn(t).Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		q, err := ch.QueueDeclarePassive(st.queue+".dlq", true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return q.Messages
	}
	eventually(t, "the registration dead-lettered", func() error {
		if n := dlqDepth(); n != 1 {
			return fmt.Errorf("%d messages in the DLQ", n)
		}
		return nil
	})
	if n := st.count(t, `SELECT count(*) FROM users WHERE auth_id = $1`, authID); n != 0 {
		t.Fatalf("a profile was created for a taken email")
	}

	replay := func(args ...string) (string, error) {
		var out syncBuffer
		env := svc.env
		err := run(context.Background(), append([]string{"userservice"}, args...), func(k string) string { return env[k] }, &out)
		return out.String(), err
	}
	if out, err := replay("dlq-replay", "-max", "x"); err == nil {
		t.Errorf("dlq-replay -max x: no error\n%s", out)
	}
	if out, err := replay("no-such-command"); err == nil {
		t.Errorf("an unknown command: no error\n%s", out)
	}
	if dlqDepth() != 1 {
		t.Fatal("a refused command touched the DLQ")
	}

	// The fix: the older profile moves to another address.
	if _, err := st.db(t).Exec(context.Background(), `UPDATE users SET email = 'moved.'||email WHERE id = $1`, taken.ID); err != nil {
		t.Fatal(err)
	}
	out, err := replay("dlq-replay")
	if err != nil {
		t.Fatalf("dlq-replay: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"moved":1`) || !strings.Contains(out, `"remaining":0`) {
		t.Errorf("dlq-replay printed %s, want moved 1, remaining 0", out)
	}
	eventually(t, "the replayed registration created the profile", func() error {
		if n := st.count(t, `SELECT count(*) FROM users WHERE auth_id = $1 AND email = $2`, authID, taken.Email); n != 1 {
			return fmt.Errorf("%d profiles for the replayed registration", n)
		}
		return nil
	})
	if n := dlqDepth(); n != 0 {
		t.Errorf("%d messages in the DLQ after the replay", n)
	}
}
