package messaging

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lms-platform/userservice"
)

// Defaults shared by the relay and the consumer.
const (
	DefaultExchange     = "lms.events"
	DefaultDialTimeout  = 5 * time.Second
	DefaultReconnectMax = 5 * time.Second
	reconnectBase       = 100 * time.Millisecond
)

// errNotConnected is what Ping answers while there is no broker connection.
var errNotConnected = userservice.Wrap(userservice.ECodeUnavailable, "RabbitMQ is not connected", nil)

// link is one AMQP connection whose socket can be cut. amqp091-go puts no
// deadline on writes or RPCs after the handshake (a broker under a resource alarm
// simply stops reading), so every blocking call runs under guard, which closes
// the socket when the call outlives its deadline.
type link struct {
	conn *amqp.Connection

	mu  sync.Mutex
	raw net.Conn
}

// dial opens a connection named name (shown in the management UI). ctx and
// timeout bound the TCP dial and the AMQP handshake.
func dial(ctx context.Context, url, name string, timeout time.Duration) (*link, error) {
	l := &link{}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	cfg := amqp.Config{
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds the handshake; the library clears it once the connection is open.
			if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
				_ = c.Close()
				return nil, err
			}
			l.mu.Lock()
			l.raw = c // abort cuts the socket itself, under the coalescing writer too
			l.mu.Unlock()
			return newCoalescingConn(c), nil
		},
	}
	conn, err := amqp.DialConfig(url, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to RabbitMQ: %w", err)
	}
	l.conn = conn
	return l, nil
}

// abort cuts the socket: every blocked write, RPC and confirm wait on the
// connection returns at once, and unconfirmed publishes count as not acked.
func (l *link) abort() {
	l.mu.Lock()
	raw := l.raw
	l.mu.Unlock()
	if raw != nil {
		_ = raw.Close()
	}
}

// close closes the connection politely, cutting it if the broker does not answer
// within a second.
func (l *link) close() {
	if l.conn.IsClosed() {
		l.abort()
		return
	}
	stop := l.guard(context.Background(), time.Second)
	_ = l.conn.CloseDeadline(time.Now().Add(time.Second))
	stop()
	l.abort()
}

// alive reports whether the connection is open.
func (l *link) alive() bool { return l != nil && !l.conn.IsClosed() }

// guard cuts the connection when ctx ends or d passes before stop is called.
// stop reports whether it was called in time (false: the link was cut).
func (l *link) guard(ctx context.Context, d time.Duration) (stop func() bool) {
	ctx, cancel := context.WithTimeout(ctx, d)
	stopAfter := context.AfterFunc(ctx, l.abort)
	return func() bool {
		ok := stopAfter()
		cancel()
		return ok
	}
}

// ping opens and closes a channel: one round trip to the broker.
func (l *link) ping(ctx context.Context) error {
	if !l.alive() {
		return errNotConnected
	}
	done := make(chan error, 1)
	go func() { // bounded by the connection's heartbeat even if ctx is not
		ch, err := l.conn.Channel()
		if err == nil {
			err = ch.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return userservice.Wrap(userservice.ECodeUnavailable, "RabbitMQ is not answering", err)
		}
		return nil
	case <-ctx.Done():
		return userservice.Wrap(userservice.ECodeUnavailable, "RabbitMQ is not answering", ctx.Err())
	}
}

// declareExchange declares the durable topic exchange both sides use.
func declareExchange(ch *amqp.Channel, name string) error {
	if err := ch.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("cannot declare exchange %q: %w", name, err)
	}
	return nil
}

// waitConfirm waits for a publisher confirm until ctx ends.
func waitConfirm(ctx context.Context, dc *amqp.DeferredConfirmation) error {
	acked, err := dc.WaitContext(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("cannot get a publisher confirm: %w", err)
	case !acked:
		return errors.New("cannot publish: the broker did not ack the message")
	}
	return nil
}

// backoff is capped exponential back-off with jitter. Not safe for concurrent use.
type backoff struct {
	base, max time.Duration
	n         int
}

// next returns the next delay: base·2^n, capped at max, of which the upper half
// is random so that processes restarted together spread out.
func (b *backoff) next() time.Duration {
	d := b.max
	if b.n < 30 && b.base<<b.n < b.max {
		d = b.base << b.n
	}
	b.n++
	half := d / 2
	return half + rand.N(half+1)
}

func (b *backoff) reset() { b.n = 0 }

// sleep waits d or until ctx ends, and reports whether the full time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// linkSlot holds the current broker connection of a relay or a consumer, for the
// health checks that read it from other goroutines. Safe for concurrent use.
type linkSlot struct {
	mu   sync.Mutex
	link *link
}

// Connected reports whether there is an open broker connection.
func (s *linkSlot) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.link.alive()
}

// Ping checks the broker connection with one round trip. It returns an
// ECodeUnavailable *userservice.Error when there is none or it does not answer.
func (s *linkSlot) Ping(ctx context.Context) error {
	l := s.current()
	if l == nil {
		return errNotConnected
	}
	return l.ping(ctx)
}

func (s *linkSlot) current() *link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.link
}

// swap installs l as the current connection and returns the previous one.
func (s *linkSlot) swap(l *link) *link {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.link
	s.link = l
	return old
}
