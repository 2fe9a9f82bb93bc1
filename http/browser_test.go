package http

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveOnLoopback serves h's server on a real 127.0.0.1 port until the test
// ends and returns its base URL.
func serveOnLoopback(tb testing.TB, h *harness) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("cannot listen on loopback: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// chromiumPath is Debian's Chromium, which `make test` installs.
const chromiumPath = "/usr/bin/chromium"

// headlessChromium runs Chromium on url with --dump-dom and returns the DOM
// after the page settled. The whole browser (its process group) is killed
// when the run ends or times out.
func headlessChromium(tb testing.TB, url string, timeout time.Duration) string {
	tb.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		tb.Fatalf("%s is missing (%v): run `make test`, or apt-get install -y chromium chromium-driver", chromiumPath, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromiumPath,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+tb.TempDir(),
		"--virtual-time-budget=15000", "--dump-dom", url)
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
	// Renderer and zygote processes outlive a browser that was killed: end
	// them all. ESRCH means the group is already gone.
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

func TestBrowserRendersSwaggerUI(t *testing.T) {
	doc := loadOpenAPI(t)
	operations := len(documentedRoutes(doc))
	h := newHarness(t) // security headers on: the page must work under the CSP
	base := serveOnLoopback(t, h)

	start := time.Now()
	dom := headlessChromium(t, base+"/docs", 60*time.Second)
	t.Logf("headless Chromium rendered /docs in %s", time.Since(start).Round(time.Millisecond))

	if strings.Contains(dom, "Failed to load API definition") || strings.Contains(dom, "Fetch error") {
		t.Fatalf("Swagger UI could not load /docs/openapi.json:\n%s", dom)
	}
	if !strings.Contains(dom, `class="swagger-ui`) {
		t.Fatalf("Swagger UI did not start:\n%s", dom)
	}
	if !strings.Contains(dom, doc.Info.Title) {
		t.Errorf("the page does not show the API title %q", doc.Info.Title)
	}
	blocks := regexp.MustCompile(`class="opblock opblock-(get|put|post|patch|delete)[ "]`).FindAllString(dom, -1)
	if len(blocks) < operations {
		t.Errorf("the page shows %d operations, want at least %d (every documented one)", len(blocks), operations)
	}
	for _, p := range []string{"/api/v1/users/{id}/enrollments", "/api/v1/users/bulk/role", "/health/detailed"} {
		if !strings.Contains(dom, `data-path="`+p+`"`) {
			t.Errorf("the page does not show %s", p)
		}
	}
	if !strings.Contains(dom, "bearerAuth") && !strings.Contains(dom, "authorize") {
		t.Errorf("the page offers no way to authorize with the bearer scheme")
	}
}
