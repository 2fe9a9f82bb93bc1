package http

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// promtoolPath is Debian's promtool (package prometheus), which `make test` installs.
const promtoolPath = "/usr/bin/promtool"

// httpDo sends one request to the live server and returns status and body.
func httpDo(tb testing.TB, client *http.Client, method, url, token, body string) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	return res.StatusCode, b
}

// promtoolCheck runs `promtool check metrics` on text and returns its exit
// code and output.
func promtoolCheck(tb testing.TB, text []byte) (int, string) {
	tb.Helper()
	if _, err := os.Stat(promtoolPath); err != nil {
		tb.Fatalf("%s is missing (%v): run `make test`, or apt-get install -y prometheus", promtoolPath, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtoolPath, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	tb.Fatalf("cannot run promtool: %v", err)
	return 0, ""
}

// lintProblems splits promtool's lint report ("<metric> <problem>" lines).
func lintProblems(out string) (ours, others []string) {
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		if strings.HasPrefix(line, "user_service_") {
			ours = append(ours, line)
		} else {
			others = append(others, line)
		}
	}
	return ours, others
}

// checkWithPromtool fails unless promtool accepts text. Lint of metrics other
// than user_service_* (the Go runtime and process metrics that
// VictoriaMetrics/metrics writes) is logged, not failed; of ours, "no help text"
// is tolerated only when withHelp is false (an exposition without metadata has
// no HELP lines at all; with metadata, metricshelp fills every one).
func checkWithPromtool(t *testing.T, text []byte, withHelp bool) {
	t.Helper()
	code, out := promtoolCheck(t, text)
	switch code {
	case 0:
		return
	case 3: // lint problems only; the text parsed
	default:
		t.Fatalf("promtool check metrics exited %d (the exposition does not parse):\n%s", code, out)
	}
	ours, others := lintProblems(out)
	for _, p := range ours {
		if withHelp || !strings.HasSuffix(p, noHelp) {
			t.Errorf("promtool lint of our metric: %s", p)
		}
	}
	var notable []string
	for _, p := range others {
		if !strings.HasSuffix(p, noHelp) {
			notable = append(notable, p)
		}
	}
	t.Logf("promtool exit 3 (lint only): %d notes on user_service_* (all %q); %d on other metrics, of which not %q:\n%s",
		len(ours), noHelp, len(others), noHelp, strings.Join(notable, "\n"))
}

// noHelp is promtool's lint for a metric without help text.
const noHelp = " no help text"

func TestPromtoolCatchesBadExpositions(t *testing.T) {
	t.Run("a malformed exposition fails to parse", func(t *testing.T) {
		if code, out := promtoolCheck(t, []byte("user_service_x{route=\"a} 1\n")); code != 1 {
			t.Errorf("exit %d, want 1: %s", code, out)
		}
	})
	t.Run("a counter without _total is our lint problem", func(t *testing.T) {
		code, out := promtoolCheck(t, []byte("# HELP user_service_bad Bad.\n# TYPE user_service_bad counter\nuser_service_bad 1\n"))
		ours, _ := lintProblems(out)
		if code != 3 || len(ours) != 1 || strings.HasSuffix(ours[0], noHelp) {
			t.Errorf("exit %d, problems %q: want one lint problem other than help text", code, ours)
		}
	})
	t.Run("a clean exposition passes", func(t *testing.T) {
		if code, out := promtoolCheck(t, []byte("# HELP user_service_ok_total Fine.\n# TYPE user_service_ok_total counter\nuser_service_ok_total 1\n")); code != 0 {
			t.Errorf("exit %d, want 0: %s", code, out)
		}
	})
}

func TestPromtoolAcceptsMetrics(t *testing.T) {
	h := newHarness(t)
	base := serveOnLoopback(t, h)
	client := &http.Client{Timeout: 10 * time.Second}
	a, admin := h.alice, h.admin.token

	// Traffic over several routes, with real ids (and junk) in the paths.
	for _, r := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", userPath(a.id), a.token, "", 200},
		{"GET", userPath("me"), a.token, "", 200},
		{"GET", userPath(h.bob.id, "enrollments"), admin, "", 200},
		{"POST", userPath(a.id, "enrollments"), a.token, `{"courseId":"` + h.teacher.id + `"}`, 201},
		{"PUT", userPath(a.id, "enrollments", h.teacher.id, "progress"), a.token, `{"progress":10}`, 200},
		{"PUT", userPath(a.id, "preferences", "ui"), a.token, `{"preferences":[{"key":"theme","value":"dark"}]}`, 200},
		{"DELETE", userPath(a.id, "preferences", "ui", "theme"), a.token, "", 200},
		{"GET", userPath("not-a-uuid"), a.token, "", 400},
		{"GET", userPath(h.bob.id), a.token, "", 403},
		{"GET", userPath(a.id, "no-such-thing"), a.token, "", 404},
		{"GET", "/" + a.id, "", "", 404},
		{"PATCH", userPath(a.id), a.token, "", 405},
		{"GET", "/health", "", "", 200},
		{"GET", "/docs/openapi.json", "", "", 200},
	} {
		if status, body := httpDo(t, client, r.method, base+r.path, r.token, r.body); status != r.want {
			t.Fatalf("%s %s = %d, want %d: %s", r.method, r.path, status, r.want, body)
		}
	}
	scrape := func() []byte {
		t.Helper()
		status, body := httpDo(t, client, "GET", base+"/metrics", "", "")
		if status != 200 {
			t.Fatalf("/metrics = %d", status)
		}
		return body
	}
	text := scrape()

	t.Run("the request metrics are there, by route template", func(t *testing.T) {
		for _, want := range []string{
			`user_service_requests_total{method="GET",route="/api/v1/users/{id}",status="200"}`,
			`user_service_requests_total{method="PUT",route="/api/v1/users/{id}/enrollments/{courseId}/progress",status="200"}`,
			`user_service_requests_total{method="GET",route="unmatched",status="404"}`,
			`user_service_request_duration_seconds_bucket{method="GET",route="/api/v1/users/{id}",le="`,
			`user_service_request_duration_seconds_bucket{method="DELETE",route="/api/v1/users/{id}/preferences/{category}/{key}",le="+Inf"} `,
			`user_service_request_duration_seconds_count{method="POST",route="/api/v1/users/{id}/enrollments"} `,
		} {
			if !bytes.Contains(text, []byte(want)) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
	t.Run("no label carries an id or a raw path", func(t *testing.T) {
		uuidRE := regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
		routeRE := regexp.MustCompile(`route="([^"]*)"`)
		if m := uuidRE.Find(text); m != nil {
			t.Errorf("/metrics carries a UUID (%s): labels must use route templates", m)
		}
		known := map[string]bool{routeUnmatched: true, routePreflight: true}
		for _, r := range h.srv.routeList() {
			known[r.path] = true
		}
		for _, m := range routeRE.FindAllSubmatch(text, -1) {
			if !known[string(m[1])] {
				t.Errorf("route label %q is not a route template", m[1])
			}
		}
	})
	t.Run("promtool accepts the exposition as served", func(t *testing.T) {
		checkWithPromtool(t, text, false)
	})
	t.Run("promtool finds no lint problem in our metrics with metadata, as the service serves them", func(t *testing.T) {
		// With TYPE lines promtool also lints our counters and histograms as
		// such (suffixes, le buckets), and every HELP must have a text. The
		// switch is global (cmd/userservice turns it on): restore it.
		metrics.ExposeMetadata(true)
		t.Cleanup(func() { metrics.ExposeMetadata(false) })
		typed := scrape()
		for _, want := range []string{"# TYPE user_service_requests_total counter", "# TYPE user_service_request_duration_seconds histogram"} {
			if !bytes.Contains(typed, []byte(want)) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		checkWithPromtool(t, typed, true)
	})
}
