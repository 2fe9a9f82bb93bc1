// Package etcdtest runs a single-member etcd for a test of cluster mode:
//
//	func TestSomething(t *testing.T) {
//		addr := etcdtest.Start(t) // "127.0.0.1:port"; killed when the test ends
//		...
//	}
//
// etcd comes from Debian's etcd-server (scripts/devstack.sh installs it). When it
// is missing the test fails: integration tests never skip.
package etcdtest

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// attempts bounds the starts on fresh ports; listenWait bounds one start.
const (
	attempts   = 3
	listenWait = 30 * time.Second
)

// Start runs etcd on free loopback ports and returns its client address once it
// listens. A port is free when chosen, not necessarily when etcd binds it (another
// process may take it in between, and etcd then exits at once), so an etcd that
// exits before it listens is started again on other ports. On failure the test
// fails with what etcd wrote.
func Start(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		tb.Fatalf("etcd not installed (apt-get install etcd-server; scripts/devstack.sh installs it): %v", err)
	}
	for attempt := 1; ; attempt++ {
		addr, out, err := start(tb, bin)
		if err == nil {
			return addr
		}
		if attempt == attempts {
			tb.Fatalf("etcd did not listen after %d attempts: %v; its output:\n%s", attempt, err, out)
		}
		tb.Logf("etcd did not start (%v), again on other ports; its output:\n%s", err, out)
	}
}

// start starts one etcd and waits until it listens or exits. It returns the
// client address, or the error and the end of etcd's output.
func start(tb testing.TB, bin string) (addr, output string, err error) {
	client, peer := freePort(tb), freePort(tb)
	cu, pu := "http://127.0.0.1:"+strconv.Itoa(client), "http://127.0.0.1:"+strconv.Itoa(peer)
	cmd := exec.Command(bin, "--name", "t", "--data-dir", tb.TempDir(),
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu, "--initial-cluster", "t="+pu)
	// One writer for both: exec copies into it from one goroutine at a time, and
	// it is read only once etcd has exited (its copies are then done).
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("cannot start etcd: %v", err)
	}
	var werr error
	exited := make(chan struct{}) // closed once Wait returned (werr set)
	go func() { werr = cmd.Wait(); close(exited) }()
	stop := func() string { // kills etcd, waits for it, returns the end of its output
		_ = cmd.Process.Kill()
		<-exited
		b := out.Bytes()
		return string(b[max(0, len(b)-4096):])
	}
	tb.Cleanup(func() { stop() })
	addr = "127.0.0.1:" + strconv.Itoa(client)
	deadline := time.Now().Add(listenWait)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr, "", nil
		}
		select {
		case <-exited:
			return "", stop(), fmt.Errorf("etcd exited: %v", werr)
		default:
		}
		if time.Now().After(deadline) {
			return "", stop(), fmt.Errorf("not listening after %s: %w", listenWait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("cannot find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
