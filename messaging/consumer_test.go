package messaging

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/goccy/go-json"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lms-platform/userservice"
)

// consumerHarness runs a Consumer on its own exchange and queues against the
// test broker, with memUsers behind it.
type consumerHarness struct {
	t        *testing.T
	users    *memUsers
	consumer *Consumer
	exchange string
	queue    string
	pub      *amqp.Channel
}

// newConsumerHarness starts a consumer with one worker (so that messages are
// applied in publish order unless retried), MaxAttempts 3 and short back-offs.
func newConsumerHarness(t *testing.T, tweak func(*ConsumerConfig), setup func(*memUsers)) *consumerHarness {
	t.Helper()
	suffix := randomSuffix(t)
	h := &consumerHarness{t: t, users: newMemUsers(), exchange: "test.auth." + suffix, queue: "test.user-service." + suffix}
	deleteOnCleanup(t, h.exchange, h.queue, h.queue+".dlq")
	if setup != nil {
		setup(h.users)
	}
	cfg := ConsumerConfig{
		URL: mustEnv(t, "TEST_RABBITMQ_URL"), Exchange: h.exchange, Queue: h.queue,
		Prefetch: 16, Workers: 1, MaxAttempts: 3,
		RetryBackoff: 20 * time.Millisecond, RetryBackoffMax: 200 * time.Millisecond, OutageBackoffMax: 200 * time.Millisecond,
		ReconnectMax: 500 * time.Millisecond, ProcessTimeout: 5 * time.Second,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := NewConsumer(cfg, h.users, h.users, h.users, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	h.consumer = c
	runInBackground(t, c.Run)
	eventually(t, 10*time.Second, "the consumer to connect", c.Connected)
	h.pub = rabbitChannel(t)
	return h
}

// publishRaw publishes body with the routing key and AMQP message id.
func (h *consumerHarness) publishRaw(routingKey, messageID string, body []byte) {
	h.t.Helper()
	err := h.pub.Publish(h.exchange, routingKey, false, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: messageID, Body: body,
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

// publishWithID publishes an Auth Service envelope with the given id.
func (h *consumerHarness) publishWithID(id, typ string, data any) {
	h.t.Helper()
	body, err := json.Marshal(map[string]any{
		"id": id, "type": typ, "source": "auth-service", "data": data,
		"timestamp": userservice.Now(), "correlationId": userservice.NewID(), "metadata": map[string]any{},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.publishRaw(typ, id, body)
}

// publish publishes an envelope with a new id and returns the id.
func (h *consumerHarness) publish(typ string, data any) string {
	h.t.Helper()
	id := userservice.NewID()
	h.publishWithID(id, typ, data)
	return id
}

func registration(authID, first string) map[string]any {
	return map[string]any{"authId": authID, "email": first + "." + authID + "@example.com", "firstName": first, "lastName": "Tester"}
}

// register publishes auth.user.registered and waits for the profile.
func (h *consumerHarness) register(authID string) *userservice.State {
	h.t.Helper()
	h.publish(userservice.AuthUserRegistered, registration(authID, "Ada"))
	var s *userservice.State
	eventually(h.t, 10*time.Second, "the profile of "+authID, func() bool { s = h.users.byAuthID(authID); return s != nil })
	return s
}

// sync waits until every message published before it that was not retried has
// been handled: with one worker they are applied in order.
func (h *consumerHarness) sync() {
	h.t.Helper()
	h.register(userservice.NewID())
}

// state returns the current state of the profile with authID.
func (h *consumerHarness) state(authID string) *userservice.State {
	h.t.Helper()
	s := h.users.byAuthID(authID)
	if s == nil {
		h.t.Fatalf("no profile with authId %s", authID)
	}
	return s
}

// deadLetters waits for n messages on <queue>.dlq.
func (h *consumerHarness) deadLetters(n int) []amqp.Delivery {
	h.t.Helper()
	ch := rabbitChannel(h.t)
	var out []amqp.Delivery
	eventually(h.t, 15*time.Second, "dead letters", func() bool {
		d, ok, err := ch.Get(h.queue+".dlq", true)
		if err != nil {
			h.t.Fatal(err)
		}
		if ok {
			out = append(out, d)
		}
		return len(out) >= n
	})
	return out
}

// noDeadLetters fails if <queue>.dlq holds a message.
func (h *consumerHarness) noDeadLetters() {
	h.t.Helper()
	q, err := rabbitChannel(h.t).QueueDeclarePassive(h.queue+".dlq", true, false, false, false, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	if q.Messages != 0 {
		h.t.Fatalf("%d unexpected dead letters", q.Messages)
	}
}

func TestNewConsumerRefusesMissingDependencies(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	u := newMemUsers()
	cfg := ConsumerConfig{URL: "amqp://x"}
	for name, f := range map[string]func() (*Consumer, error){
		"nil users":     func() (*Consumer, error) { return NewConsumer(cfg, nil, u, u, log) },
		"nil directory": func() (*Consumer, error) { return NewConsumer(cfg, u, nil, u, log) },
		"nil processed": func() (*Consumer, error) { return NewConsumer(cfg, u, u, nil, log) },
		"nil logger":    func() (*Consumer, error) { return NewConsumer(cfg, u, u, u, nil) },
		"no url":        func() (*Consumer, error) { return NewConsumer(ConsumerConfig{}, u, u, u, log) },
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := f(); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestConsumerRegistered(t *testing.T) {
	t.Parallel()
	h := newConsumerHarness(t, nil, nil)

	t.Run("creates the profile with default preferences, ignoring unknown fields", func(t *testing.T) {
		authID := userservice.NewID()
		data := map[string]any{
			"authId": authID, "email": "Grace.Hopper@Example.com", "firstName": "Grace", "lastName": "Hopper",
			"username": "grace_h", "role": "instructor", "favouriteLanguage": "COBOL",
		}
		body, _ := json.Marshal(map[string]any{
			"id": userservice.NewID(), "type": userservice.AuthUserRegistered, "source": "auth-service",
			"data": data, "timestamp": userservice.Now(), "correlationId": "corr-1", "metadata": map[string]any{},
			"schemaVersion": 3,
		})
		h.publishRaw(userservice.AuthUserRegistered, "", body)
		eventually(t, 10*time.Second, "the profile", func() bool { return h.users.byAuthID(authID) != nil })
		u := h.state(authID).User
		if u.Email != "grace.hopper@example.com" || u.FirstName != "Grace" || u.LastName != "Hopper" ||
			u.Username == nil || *u.Username != "grace_h" || u.Role != userservice.RoleInstructor || u.Status != userservice.StatusActive {
			t.Errorf("profile %+v does not match the event", u)
		}
		if n := len(h.state(authID).Preferences); n != len(userservice.DefaultPreferences) {
			t.Errorf("%d preferences, want the %d defaults", n, len(userservice.DefaultPreferences))
		}
	})

	t.Run("is idempotent on authId", func(t *testing.T) {
		authID := userservice.NewID()
		first := h.register(authID).User.ID
		before := h.users.count()
		h.publish(userservice.AuthUserRegistered, registration(authID, "Again"))
		h.sync()
		if got := h.state(authID).User; got.ID != first || got.FirstName != "Ada" {
			t.Errorf("profile replaced: %+v", got)
		}
		if n := h.users.count(); n != before+1 { // +1: the sync profile
			t.Errorf("%d profiles, want %d", n, before+1)
		}
	})
	h.noDeadLetters()
}

func TestConsumerDuplicateDeliveryHasOneEffect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		skipCheck bool
	}{
		{"skipped by the processed check", false},
		{"refused by the writer", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newConsumerHarness(t, nil, func(m *memUsers) { m.skipProcessedCheck = tc.skipCheck })
			authID := userservice.NewID()
			h.register(authID)
			id := userservice.NewID()
			data := map[string]any{"authId": authID, "sessionId": "s1"}
			h.publishWithID(id, userservice.AuthUserLogin, data)
			h.publishWithID(id, userservice.AuthUserLogin, data)
			h.sync()
			if n := h.state(authID).User.LoginCount; n != 1 {
				t.Fatalf("login count %d after a duplicate delivery, want 1", n)
			}
			h.noDeadLetters()
		})
	}
}

func TestConsumerLogin(t *testing.T) {
	t.Parallel()
	h := newConsumerHarness(t, nil, nil)
	authID := userservice.NewID()
	h.register(authID)

	loginAt := userservice.NewTime(time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC))
	h.publish(userservice.AuthUserLogin, map[string]any{
		"authId": authID, "sessionId": "sess-1", "ipAddress": "203.0.113.7", "userAgent": "curl/8", "loginAt": loginAt,
	})
	second := h.publish(userservice.AuthUserLogin, map[string]any{"authId": authID})
	h.sync()

	s := h.state(authID)
	if s.User.LoginCount != 2 {
		t.Errorf("login count %d, want 2", s.User.LoginCount)
	}
	if s.User.LastActiveAt == nil || s.User.LastLoginAt == nil {
		t.Fatal("lastActiveAt or last login not set")
	}
	if len(s.Sessions) != 2 {
		t.Fatalf("%d sessions, want 2", len(s.Sessions))
	}
	first := s.Sessions[0]
	if first.SessionID != "sess-1" || !first.Active || !first.StartedAt.Equal(loginAt.Time) ||
		first.IPAddress == nil || *first.IPAddress != "203.0.113.7" || first.UserAgent == nil || *first.UserAgent != "curl/8" {
		t.Errorf("first session %+v does not match its event", first)
	}
	if s.Sessions[1].SessionID != second {
		t.Errorf("a login without sessionId got session %q, want the message id %q", s.Sessions[1].SessionID, second)
	}
}

func TestConsumerLogout(t *testing.T) {
	t.Parallel()
	h := newConsumerHarness(t, nil, nil)
	authID := userservice.NewID()
	h.register(authID)
	for _, sid := range []string{"a", "b", "c"} {
		h.publish(userservice.AuthUserLogin, map[string]any{"authId": authID, "sessionId": sid})
	}
	active := func() map[string]bool {
		out := map[string]bool{}
		for _, s := range h.state(authID).Sessions {
			out[s.SessionID] = s.Active
			if s.Active != (s.EndedAt == nil) {
				t.Errorf("session %s: active %v but endedAt %v", s.SessionID, s.Active, s.EndedAt)
			}
		}
		return out
	}

	t.Run("with sessionId ends that session", func(t *testing.T) {
		h.publish(userservice.AuthUserLogout, map[string]any{"authId": authID, "sessionId": "b"})
		h.sync()
		if got := active(); !got["a"] || got["b"] || !got["c"] {
			t.Fatalf("active sessions %v, want a and c", got)
		}
	})
	t.Run("without sessionId ends every session", func(t *testing.T) {
		h.publish(userservice.AuthUserLogout, map[string]any{"authId": authID})
		h.sync()
		if got := active(); got["a"] || got["b"] || got["c"] || len(got) != 3 {
			t.Fatalf("sessions %v, want all three ended", got)
		}
	})
}

func TestConsumerPasswordChanged(t *testing.T) {
	t.Parallel()
	h := newConsumerHarness(t, nil, nil)
	authID := userservice.NewID()
	userID := h.register(authID).User.ID
	h.publish(userservice.AuthUserPasswordChanged, map[string]any{"authId": authID, "changedAt": userservice.Now()})
	h.sync()
	if got := h.users.audits(userID); len(got) != 1 || got[0] != userservice.AuditPasswordChanged {
		t.Fatalf("audit records %v, want one %s", got, userservice.AuditPasswordChanged)
	}
}

func TestConsumerDeadLettersInvalidMessagesAtOnce(t *testing.T) {
	t.Parallel()
	h := newConsumerHarness(t, nil, nil)
	authID := userservice.NewID()
	for _, tc := range []struct {
		name       string
		routingKey string
		body       string
	}{
		{"malformed JSON", userservice.AuthUserLogin, `{"id":"m1","type":"auth.user.login","data":{`},
		{"registered without firstName", userservice.AuthUserRegistered,
			`{"id":"m2","type":"auth.user.registered","data":{"authId":"` + authID + `","email":"a@example.com","lastName":"L"}}`},
		{"registered with a bad email", userservice.AuthUserRegistered,
			`{"id":"m3","type":"auth.user.registered","data":{"authId":"` + authID + `","email":"nope","firstName":"F","lastName":"L"}}`},
		{"authId not a UUID", userservice.AuthUserLogin, `{"id":"m4","type":"auth.user.login","data":{"authId":"42"}}`},
		{"data not an object", userservice.AuthUserLogout, `{"id":"m5","type":"auth.user.logout","data":"x"}`},
		{"unsupported type", userservice.AuthUserLogin, `{"id":"m6","type":"auth.user.deleted","data":{"authId":"` + authID + `"}}`},
		{"no message id", userservice.AuthUserLogout, `{"type":"auth.user.logout","data":{"authId":"` + authID + `"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.publishRaw(tc.routingKey, "", []byte(tc.body))
			d := h.deadLetters(1)[0]
			if string(d.Body) != tc.body {
				t.Errorf("dead letter body %q, want the original", d.Body)
			}
			if d.Headers["x-dlq-reason"] != resultInvalid || d.Headers["x-dlq-error"] == "" ||
				d.Headers["x-dlq-routing-key"] != tc.routingKey || d.Headers["x-dlq-queue"] != h.queue {
				t.Errorf("dead letter headers %v", d.Headers)
			}
			// The consumer goes on with the next message.
			h.sync()
		})
	}
	if h.users.byAuthID(authID) != nil {
		t.Error("an invalid registration created a profile")
	}
}

func TestConsumerDeadLettersRefusedEvents(t *testing.T) {
	t.Parallel()
	h := newConsumerHarness(t, nil, nil)
	taken := registration(userservice.NewID(), "Ada")
	h.publish(userservice.AuthUserRegistered, taken)
	h.sync()
	other := registration(userservice.NewID(), "Bob")
	other["email"] = taken["email"]
	h.publish(userservice.AuthUserRegistered, other)
	d := h.deadLetters(1)[0]
	if d.Headers["x-dlq-reason"] != resultFailed {
		t.Fatalf("reason %v, want %s (headers %v)", d.Headers["x-dlq-reason"], resultFailed, d.Headers)
	}
}

func TestConsumerRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	flaky, broken, outage := userservice.NewID(), userservice.NewID(), userservice.NewID()
	h := newConsumerHarness(t, nil, func(m *memUsers) {
		failures, outages := 0, 0
		m.fail = func(authID string, cmd userservice.Command) error {
			if _, ok := cmd.(userservice.RecordLogin); !ok {
				return nil
			}
			switch authID {
			case flaky:
				if failures < 2 {
					failures++
					return userservice.ErrUnavailable
				}
			case broken: // fails on its own: an unexpected error, every time
				return errors.New("unexpected")
			case outage: // a dependency down for far more tries than MaxAttempts
				if outages < 10 {
					outages++
					if outages%2 == 0 {
						return userservice.Wrap(userservice.ECodeTimeout, "commit timed out", context.DeadlineExceeded)
					}
					return userservice.ErrUnavailable
				}
			}
			return nil
		}
	})
	h.register(flaky)
	h.register(broken)
	h.register(outage)

	t.Run("succeeds once the failure passes", func(t *testing.T) {
		h.publish(userservice.AuthUserLogin, map[string]any{"authId": flaky})
		eventually(t, 10*time.Second, "the login", func() bool { return h.state(flaky).User.LoginCount == 1 })
		if n := h.users.callsFor(flaky); n != 1+3 {
			t.Errorf("%d Execute calls, want 1 registration and 3 login attempts", n)
		}
	})
	t.Run("is dead-lettered after MaxAttempts", func(t *testing.T) {
		id := h.publish(userservice.AuthUserLogin, map[string]any{"authId": broken})
		d := h.deadLetters(1)[0]
		if d.MessageId != id || d.Headers["x-dlq-reason"] != resultDeadLettered || d.Headers["x-dlq-attempts"] != int32(3) {
			t.Fatalf("dead letter %s with headers %v", d.MessageId, d.Headers)
		}
		if n := h.users.callsFor(broken); n != 1+3 {
			t.Errorf("%d Execute calls, want 1 registration and 3 login attempts", n)
		}
		if h.state(broken).User.LoginCount != 0 {
			t.Error("a failed login was recorded")
		}
	})
	t.Run("a dependency outage counts no attempt and dead-letters nothing", func(t *testing.T) {
		h.publish(userservice.AuthUserLogin, map[string]any{"authId": outage})
		eventually(t, 20*time.Second, "the login", func() bool { return h.state(outage).User.LoginCount == 1 })
		if n := h.users.callsFor(outage); n != 1+11 {
			t.Errorf("%d Execute calls, want 1 registration and 11 login attempts", n)
		}
		h.noDeadLetters() // the earlier subtest took its one
	})
}

func TestConsumerUnknownAuthID(t *testing.T) {
	t.Parallel()
	h := newConsumerHarness(t, func(c *ConsumerConfig) { c.MaxAttempts = 5 }, nil)

	t.Run("waits for a registration in flight", func(t *testing.T) {
		authID := userservice.NewID()
		h.publish(userservice.AuthUserLogin, map[string]any{"authId": authID, "sessionId": "s"})
		time.Sleep(30 * time.Millisecond)
		h.register(authID)
		eventually(t, 10*time.Second, "the login", func() bool { return h.state(authID).User.LoginCount == 1 })
	})
	t.Run("is dead-lettered when no registration comes", func(t *testing.T) {
		h.publish(userservice.AuthUserPasswordChanged, map[string]any{"authId": userservice.NewID()})
		d := h.deadLetters(1)[0]
		if d.Headers["x-dlq-reason"] != resultDeadLettered || d.Headers["x-dlq-attempts"] != int32(5) {
			t.Fatalf("headers %v", d.Headers)
		}
	})
}

func TestConsumerKeepsOneUsersOrderWhileRetrying(t *testing.T) {
	t.Parallel()
	authID := userservice.NewID()
	h := newConsumerHarness(t, nil, func(m *memUsers) {
		failed := false
		m.fail = func(a string, cmd userservice.Command) error {
			if _, ok := cmd.(userservice.RecordLogin); ok && a == authID && !failed {
				failed = true
				return userservice.ErrUnavailable
			}
			return nil
		}
	})
	h.register(authID)
	// The login fails once; the logout behind it must wait, or it would end
	// nothing and leave the session open for good.
	h.publish(userservice.AuthUserLogin, map[string]any{"authId": authID, "sessionId": "s1"})
	h.publish(userservice.AuthUserLogout, map[string]any{"authId": authID, "sessionId": "s1"})
	eventually(t, 10*time.Second, "the session to end", func() bool {
		ss := h.state(authID).Sessions
		return len(ss) == 1 && !ss[0].Active
	})
}

func TestConsumerReconnects(t *testing.T) {
	t.Parallel()
	h := newConsumerHarness(t, nil, nil)
	h.register(userservice.NewID())
	h.consumer.mu.Lock()
	h.consumer.link.abort() // as if the network dropped
	h.consumer.mu.Unlock()
	eventually(t, 10*time.Second, "the consumer to reconnect", h.consumer.Connected)
	h.register(userservice.NewID())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.consumer.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
}
