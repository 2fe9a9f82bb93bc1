package messaging

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn is a socket end that counts its Write calls.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestCoalescingConnKeepsOrderInFewerWrites(t *testing.T) {
	client, server := tcpPair(t)
	counted := &countingConn{Conn: client}
	cc := newCoalescingConn(counted)

	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()
	var want bytes.Buffer
	const n = 2000
	for i := range n {
		msg := fmt.Appendf(nil, "message %05d|", i)
		want.Write(msg)
		if k, err := cc.Write(msg); err != nil || k != len(msg) {
			t.Fatalf("Write %d = %d, %v", i, k, err)
		}
	}
	if err := cc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	b := <-got
	if !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the peer read %d bytes, not the %d written in order", len(b), want.Len())
	}
	if w := counted.writes.Load(); w >= n {
		t.Fatalf("%d writes sent in %d system calls: nothing coalesced", n, w)
	} else {
		t.Logf("%d writes sent in %d system calls", n, w)
	}
	if _, err := cc.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
	}
}

func TestCoalescingConnBoundsWhatIsPending(t *testing.T) {
	client, server := tcpPair(t)
	cc := newCoalescingConn(client)
	defer cc.Close()

	// Nobody reads the server end: the socket buffers fill, then the pending
	// bytes, then Write must block rather than hold more.
	chunk := make([]byte, 32<<10)
	blocked := make(chan int, 1)
	go func() {
		for i := 0; ; i++ {
			if _, err := cc.Write(chunk); err != nil {
				blocked <- -1
				return
			}
			if i == 10_000 { // 320 MB: far past any socket buffer
				blocked <- i
				return
			}
		}
	}()
	select {
	case i := <-blocked:
		t.Fatalf("Write never blocked (returned after %d chunks)", i)
	case <-time.After(500 * time.Millisecond):
	}
	cc.mu.Lock()
	pending := len(cc.pending)
	cc.mu.Unlock()
	if pending > coalescePending {
		t.Fatalf("%d bytes pending, more than the bound %d", pending, coalescePending)
	}

	// Cutting the socket (what the link's guard does) fails the blocked Write and
	// every later one.
	client.Close()
	select {
	case i := <-blocked:
		if i != -1 {
			t.Fatalf("the blocked Write returned without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the blocked Write did not return after the socket was cut")
	}
	if _, err := cc.Write([]byte("x")); err == nil {
		t.Fatal("a Write after a failed send succeeded")
	}
	_ = server
}

func TestCoalescingConnCloseDoesNotHangOnAStalledPeer(t *testing.T) {
	client, _ := tcpPair(t)
	cc := newCoalescingConn(client)
	chunk := make([]byte, 64<<10)
	for range 64 { // several MB: more than the socket buffers take
		go func() { _, _ = cc.Write(chunk) }()
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	_ = cc.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %s against a peer that does not read", d)
	}
}
