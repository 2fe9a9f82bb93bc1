package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chromium is Debian's Chromium, which `make test` installs (scripts/devstack.sh).
const chromium = "/usr/bin/chromium"

// dumpDOM runs headless Chromium on url and returns the DOM once the page's
// scripts settled; the browser's whole process group is killed afterwards.
func dumpDOM(tb testing.TB, url string, timeout time.Duration) string {
	tb.Helper()
	if _, err := os.Stat(chromium); err != nil {
		tb.Fatalf("%s is missing (%v): run `make test`, or apt-get install -y chromium", chromium, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+tb.TempDir(), "--virtual-time-budget=15000", "--dump-dom", url)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	killGroup := func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.Cancel = killGroup
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if kerr := killGroup(); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
		tb.Logf("cannot kill the browser's process group: %v", kerr)
	}
	if ctx.Err() != nil {
		tb.Fatalf("chromium did not finish within %s; stderr:\n%s", timeout, stderr.String())
	}
	if err != nil {
		tb.Fatalf("chromium failed: %v; stderr:\n%s", err, stderr.String())
	}
	return stdout.String()
}

// corsPage creates a user, edits it with If-Match, and tries a stale If-Match,
// all from another origin, and writes what the script could read into #out.
const corsPage = `<!doctype html><html><body><pre id="out">pending</pre><script>
(async () => {
  const out = {};
  const h = (r) => ({status: r.status, location: r.headers.get('Location'), etag: r.headers.get('ETag'),
    limit: r.headers.get('X-RateLimit-Limit'), remaining: r.headers.get('X-RateLimit-Remaining'),
    reset: r.headers.get('X-RateLimit-Reset'), requestId: r.headers.get('X-Request-ID'),
    correlationId: r.headers.get('X-Correlation-ID'), replayed: r.headers.get('Idempotent-Replayed')});
  try {
    const base = %q, auth = 'Bearer ' + %q, body = JSON.stringify(%s);
    const create = () => fetch(base + '/api/v1/users', {method: 'POST', body, headers: {'Authorization': auth,
      'Content-Type': 'application/json', 'Idempotency-Key': 'browser-create-1',
      'X-Correlation-ID': 'corr-browser-1', 'X-Request-ID': 'req-browser-1'}});
    let r = await create();
    out.create = h(r);
    out.replay = h(await create());
    r = await fetch(base + out.create.location, {method: 'PUT', body: JSON.stringify({bio: 'from the browser'}),
      headers: {'Authorization': auth, 'Content-Type': 'application/json', 'If-Match': out.create.etag}});
    out.update = h(r);
    r = await fetch(base + out.create.location, {method: 'PUT', body: JSON.stringify({bio: 'stale'}),
      headers: {'Authorization': auth, 'Content-Type': 'application/json', 'If-Match': '"999"'}});
    out.stale = h(r);
  } catch (e) { out.error = String(e); }
  document.getElementById('out').textContent = JSON.stringify(out);
})();
</script></body></html>`

// TestCORSFromABrowser: a page on another origin, in headless Chromium, makes
// preflighted writes with Idempotency-Key, If-Match and X-Correlation-ID and
// reads ETag, Location, X-RateLimit-*, X-Request-ID and X-Correlation-ID.
func TestCORSFromABrowser(t *testing.T) {
	st := newStack(t)
	var pageSrv *httptest.Server
	pageHTML := ""
	pageSrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, pageHTML)
	}))
	defer pageSrv.Close()
	svc := st.start(t, map[string]string{"CORS_ORIGIN": pageSrv.URL, "RATE_LIMIT_MAX": "1000"})
	body, err := json.Marshal(newUserBody(t))
	if err != nil {
		t.Fatal(err)
	}
	pageHTML = fmt.Sprintf(corsPage, svc.base, st.adminToken(t), body)

	t.Run("preflight", func(t *testing.T) {
		r := svc.do(t, "OPTIONS", "/api/v1/users/me", "", nil,
			"Origin", pageSrv.URL, "Access-Control-Request-Method", "PUT",
			"Access-Control-Request-Headers", "authorization,content-type,if-match,idempotency-key,x-correlation-id,x-request-id")
		if r.Status != http.StatusNoContent {
			t.Fatalf("%s: want 204", r)
		}
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != pageSrv.URL {
			t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, pageSrv.URL)
		}
		allowed := strings.ToLower(r.Header.Get("Access-Control-Allow-Headers"))
		for _, h := range []string{"content-type", "authorization", "if-match", "idempotency-key", "x-correlation-id", "x-request-id"} {
			if !strings.Contains(allowed, h) {
				t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowed, h)
			}
		}
		if !strings.Contains(r.Header.Get("Access-Control-Allow-Methods"), "PUT") {
			t.Errorf("Access-Control-Allow-Methods = %q", r.Header.Get("Access-Control-Allow-Methods"))
		}
		foreign := svc.do(t, "OPTIONS", "/api/v1/users/me", "", nil, "Origin", "http://evil.example", "Access-Control-Request-Method", "PUT")
		if got := foreign.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("a foreign origin got Access-Control-Allow-Origin %q", got)
		}
	})

	t.Run("cross-origin writes from headless Chromium", func(t *testing.T) {
		dom := dumpDOM(t, pageSrv.URL, 90*time.Second)
		m := regexp.MustCompile(`(?s)<pre id="out">(.*?)</pre>`).FindStringSubmatch(dom)
		if m == nil {
			t.Fatalf("no #out in the page:\n%s", dom)
		}
		type seen struct {
			Status                                  int
			Location, ETag, Limit, Remaining, Reset string
			RequestID, CorrelationID, Replayed      string
		}
		var out struct {
			Create, Replay, Update, Stale seen
			Error                         string
		}
		if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &out); err != nil {
			t.Fatalf("#out is not JSON: %v: %s", err, m[1])
		}
		if out.Error != "" {
			t.Fatalf("the page's script failed (a CORS refusal is a TypeError): %s", out.Error)
		}
		c := out.Create
		if c.Status != 201 || !strings.HasPrefix(c.Location, "/api/v1/users/") || c.ETag == "" || c.Limit != "1000" ||
			c.Remaining == "" || c.Reset == "" || c.RequestID != "req-browser-1" || c.CorrelationID != "corr-browser-1" {
			t.Errorf("create as the script saw it: %+v", c)
		}
		if r := out.Replay; r.Status != 201 || r.Location != c.Location || r.Replayed != "true" {
			t.Errorf("replayed create as the script saw it: %+v (first %+v)", r, c)
		}
		if u := out.Update; u.Status != 200 || u.ETag == "" || u.ETag == c.ETag {
			t.Errorf("If-Match update as the script saw it: %+v", u)
		}
		if s := out.Stale; s.Status != 412 {
			t.Errorf("stale If-Match as the script saw it: %+v", s)
		}
		id := strings.TrimPrefix(c.Location, "/api/v1/users/")
		if u := st.mustUserRow(t, id); u.Bio == nil || *u.Bio != "from the browser" {
			t.Errorf("the browser's write is not in PostgreSQL: bio %v", u.Bio)
		}
	})
}
