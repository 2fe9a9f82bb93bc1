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
	"sync"
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
	var out buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("cannot start etcd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	addr = "127.0.0.1:" + strconv.Itoa(client)
	deadline := time.Now().Add(listenWait)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr, "", nil
		}
		select {
		case werr := <-exited:
			exited <- werr // for the cleanup
			return "", out.tail(4096), fmt.Errorf("etcd exited: %v", werr)
		default:
		}
		if time.Now().After(deadline) {
			return "", out.tail(4096), fmt.Errorf("not listening after %s: %w", listenWait, err)
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

// buffer collects a process's output for a test's message.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// tail returns the last n bytes written.
func (b *buffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.b.Bytes()
	return string(s[max(0, len(s)-n):])
}
