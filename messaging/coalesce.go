package messaging

import (
	"net"
	"sync"
	"time"
)

// coalescePending bounds what a coalescingConn holds unsent: a Write waits once
// this much is pending, so a broker that stops reading stops the writer too
// (until the link's guard cuts the socket).
const coalescePending = 256 << 10

// coalescingConn sends what amqp091-go writes from a goroutine of its own, many
// writes in one system call. The library flushes its buffer after every message
// (a publish is one write(2), a basic.ack another): the relay's publishes were 9%
// of the service's CPU under PUT progress, nearly all of it that system call.
// Here a Write copies its bytes and returns; the sender writes everything pending
// at once, so a relay publishing a batch pays a system call per burst, not per
// message. Order is kept (one buffer, one sender), and nothing is reported sent
// that was not: the relay counts an event published only on the broker's confirm,
// and a consumer's lost ack makes the broker deliver the message again, which the
// consumer recognises by its id; so a write that fails after its Write returned
// is a lost connection like any other. The first write error is returned by
// every later Write, which makes the library shut the connection down. Reads and
// deadlines go to the socket as they are (docs/design.md, "Broker writes
// coalesced").
type coalescingConn struct {
	net.Conn

	mu      sync.Mutex
	cond    sync.Cond // signals the sender (pending data, closing) and waiting writers (drained, failed)
	pending []byte
	err     error // the first write error; after Close, Write answers net.ErrClosed
	closing bool
	done    chan struct{} // closed when the sender has returned
}

// newCoalescingConn wraps c and starts its sender.
func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c, done: make(chan struct{})}
	cc.cond.L = &cc.mu
	go cc.send()
	return cc
}

// Write queues p for the sender. It blocks only while coalescePending bytes are
// already waiting.
func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closing && len(c.pending) > 0 && len(c.pending)+len(p) > coalescePending {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closing:
		return 0, net.ErrClosed
	}
	c.pending = append(c.pending, p...)
	c.cond.Broadcast()
	return len(p), nil
}

// send writes what is pending until the connection fails or is closed; on
// Close it writes what is left first.
func (c *coalescingConn) send() {
	defer close(c.done)
	var out []byte
	for {
		c.mu.Lock()
		for len(c.pending) == 0 && !c.closing && c.err == nil {
			c.cond.Wait()
		}
		if c.err != nil || len(c.pending) == 0 { // failed, or closing with nothing left
			c.mu.Unlock()
			return
		}
		out, c.pending = c.pending, out[:0]
		c.cond.Broadcast() // room for waiting writers
		c.mu.Unlock()

		if _, err := c.Conn.Write(out); err != nil {
			c.mu.Lock()
			c.err = err
			c.pending = nil
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		if cap(out) > 4*coalescePending { // one burst's buffer is not kept for ever
			out = nil
		}
	}
}

// Close writes what is pending (for at most a second: the broker may have
// stopped reading) and closes the socket.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	already := c.closing
	c.closing = true
	c.cond.Broadcast()
	c.mu.Unlock()
	if !already {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	}
	<-c.done
	return c.Conn.Close()
}
