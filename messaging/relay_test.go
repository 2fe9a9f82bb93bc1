package messaging

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/goccy/go-json"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lms-platform/userservice"
)

func newTestRelay(tb testing.TB, pool *pgxpool.Pool, exchange string, tweak func(*RelayConfig)) *Relay {
	tb.Helper()
	cfg := RelayConfig{
		URL: mustEnv(tb, "TEST_RABBITMQ_URL"), Exchange: exchange,
		PollInterval: 10 * time.Millisecond, LeaderRetry: 50 * time.Millisecond,
		GaugeInterval: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	r, err := NewRelay(pool, cfg, testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func unpublished(tb testing.TB, pool *pgxpool.Pool) int {
	tb.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func outboxRows(tb testing.TB, pool *pgxpool.Pool) int {
	tb.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestNewRelayRefusesMissingDependencies(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	pool := &pgxpool.Pool{}
	for name, f := range map[string]func() (*Relay, error){
		"nil pool":   func() (*Relay, error) { return NewRelay(nil, RelayConfig{URL: "amqp://x"}, log) },
		"nil logger": func() (*Relay, error) { return NewRelay(pool, RelayConfig{URL: "amqp://x"}, nil) },
		"no url":     func() (*Relay, error) { return NewRelay(pool, RelayConfig{}, log) },
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := f(); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestRelayPublishesRowsAsStored(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	exchange, _, in := tapNewExchange(t)

	alice, bob := userservice.NewID(), userservice.NewID()
	events := []testEvent{
		{alice, userservice.EventUserCreated, 0}, {bob, userservice.EventUserCreated, 0},
		{alice, userservice.EventEnrolled, 1}, {alice, userservice.EventProgressUpdated, 2},
		{alice, userservice.EventCourseCompleted, 3}, {bob, userservice.EventRoleChanged, 1},
	}
	ids, payloads := insertOutbox(t, pool, events)
	r := newTestRelay(t, pool, exchange, nil)
	published := outboxPublished.Get()
	runInBackground(t, r.Run)

	got := receive(t, in, len(events), 20*time.Second)
	for i, d := range got {
		t.Run(fmt.Sprintf("message %d", i), func(t *testing.T) {
			want := events[i]
			if d.RoutingKey != want.Type || d.Type != want.Type {
				t.Errorf("routing key %q, type %q; want %q", d.RoutingKey, d.Type, want.Type)
			}
			if d.MessageId != ids[i] {
				t.Errorf("message id %q, want %q", d.MessageId, ids[i])
			}
			if d.DeliveryMode != amqp.Persistent {
				t.Errorf("delivery mode %d, want persistent", d.DeliveryMode)
			}
			if d.ContentType != "application/json" {
				t.Errorf("content type %q", d.ContentType)
			}
			if !bytes.Equal(d.Body, payloads[i]) {
				t.Errorf("body differs from the stored payload:\n got %s\nwant %s", d.Body, payloads[i])
			}
			var env userservice.Event
			if err := json.Unmarshal(d.Body, &env); err != nil {
				t.Fatal(err)
			}
			if d.CorrelationId != env.CorrelationID || d.CorrelationId == "" {
				t.Errorf("correlation id %q, want the envelope's %q", d.CorrelationId, env.CorrelationID)
			}
			if d.Timestamp.Unix() != env.Timestamp.Unix() {
				t.Errorf("timestamp %v, want the envelope's %v", d.Timestamp, env.Timestamp)
			}
		})
	}
	eventually(t, 10*time.Second, "rows marked published", func() bool { return unpublished(t, pool) == 0 })
	if n := outboxRows(t, pool); n != 0 {
		t.Errorf("%d outbox rows left after their confirms, want them deleted", n)
	}
	if d := outboxPublished.Get() - published; d < uint64(len(events)) {
		t.Errorf("published_total grew by %d, want at least %d", d, len(events))
	}
	eventually(t, 5*time.Second, "backlog gauge at zero", func() bool { return outboxBacklog.Get() == 0 })
	if !r.Connected() || !r.Leader() {
		t.Errorf("connected %v, leader %v; want both", r.Connected(), r.Leader())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Ping(ctx); err != nil {
		t.Errorf("ping: %v", err)
	}
}

// mixedEvents returns n events of users users in a random interleaving, each
// user's numbered from 0.
func mixedEvents(users, n int) []testEvent {
	ids := make([]string, users)
	for i := range ids {
		ids[i] = userservice.NewID()
	}
	seq := make([]int, users)
	out := make([]testEvent, n)
	for i := range out {
		u := rand.IntN(users)
		out[i] = testEvent{UserID: ids[u], Type: userservice.EventProgressUpdated, Seq: seq[u]}
		seq[u]++
	}
	return out
}

// checkPerUserOrder fails unless the first deliveries of each user's events
// come in that user's order and every event arrived.
func checkPerUserOrder(tb testing.TB, got []amqp.Delivery, want []testEvent) {
	tb.Helper()
	next := map[string]int{}
	seen := map[string]bool{}
	for _, d := range got {
		if seen[d.MessageId] {
			continue // at-least-once: a repeat carries the same id
		}
		seen[d.MessageId] = true
		var env struct {
			Data struct {
				UserID string `json:"userId"`
				Seq    int    `json:"seq"`
			} `json:"data"`
		}
		if err := json.Unmarshal(d.Body, &env); err != nil {
			tb.Fatal(err)
		}
		if env.Data.Seq != next[env.Data.UserID] {
			tb.Fatalf("user %s: event %d arrived when %d was due", env.Data.UserID, env.Data.Seq, next[env.Data.UserID])
		}
		next[env.Data.UserID]++
	}
	if len(seen) != len(want) {
		tb.Fatalf("%d distinct events arrived, want %d", len(seen), len(want))
	}
}

func TestRelayKeepsPerUserOrder(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	exchange, _, in := tapNewExchange(t)

	events := mixedEvents(25, 1000)
	ids, payloads := insertOutbox(t, pool, events[:400])
	// A small batch and window make the relay cross many batch boundaries.
	r := newTestRelay(t, pool, exchange, func(c *RelayConfig) { c.BatchSize, c.ConfirmWindow = 64, 16 })
	runInBackground(t, r.Run)
	moreIDs, morePayloads := insertOutbox(t, pool, events[400:])
	r.Notify()

	got := receive(t, in, len(events), 30*time.Second)
	checkPerUserOrder(t, got, events)
	// Each batch's payloads are read into the buffer the previous batch used.
	stored := map[string][]byte{}
	allPayloads := append(payloads, morePayloads...)
	for i, id := range append(ids, moreIDs...) {
		stored[id] = allPayloads[i]
	}
	for _, d := range got {
		if !bytes.Equal(d.Body, stored[d.MessageId]) {
			t.Fatalf("message %s: body differs from the stored payload:\n got %s\nwant %s", d.MessageId, d.Body, stored[d.MessageId])
		}
	}
	eventually(t, 10*time.Second, "rows marked published", func() bool { return unpublished(t, pool) == 0 })
}

// TestRelayBrokerNacksKeepOrder makes the broker refuse publishes (a full queue
// with reject-publish nacks them) while a slow consumer frees room: nacked rows
// are retried, nothing is lost and no user's event overtakes an earlier one.
func TestRelayBrokerNacksKeepOrder(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	exchange := "test.relay." + randomSuffix(t)
	ch := rabbitChannel(t)
	if err := declareExchange(ch, exchange); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("test.sink."+randomSuffix(t), false, false, false, false,
		amqp.Table{"x-max-length": int32(5), "x-overflow": "reject-publish"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "#", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	deleteOnCleanup(t, exchange, q.Name)

	events := mixedEvents(4, 120)
	insertOutbox(t, pool, events)
	failures := outboxFailures.Get()
	r := newTestRelay(t, pool, exchange, func(c *RelayConfig) { c.ReconnectMax = 50 * time.Millisecond })
	runInBackground(t, r.Run)

	// A refused row stays in the outbox, counting its attempts, until a later
	// publish is confirmed and deletes it: watch for such rows on the way.
	var got []amqp.Delivery
	retried := 0
	eventually(t, 60*time.Second, "every event", func() bool {
		d, ok, err := ch.Get(q.Name, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			got = append(got, d)
		}
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE attempts > 0`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		retried = max(retried, n)
		return len(got) >= len(events) && unpublished(t, pool) == 0
	})
	checkPerUserOrder(t, got, events)
	if outboxFailures.Get() == failures {
		t.Fatal("no publish was nacked: the test did not exercise refusals")
	}
	if retried == 0 {
		t.Error("no row counted a failed attempt")
	}
	if n := outboxRows(t, pool); n != 0 {
		t.Errorf("%d rows left once every event was confirmed, want none", n)
	}
}

func TestRelayTwoRelaysPublishEachRowOnce(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	exchange, _, in := tapNewExchange(t)

	a := newTestRelay(t, pool, exchange, nil)
	b := newTestRelay(t, pool, exchange, nil)
	stops := map[*Relay]func(){a: runInBackground(t, a.Run), b: runInBackground(t, b.Run)}
	eventually(t, 10*time.Second, "a leader", func() bool { return a.Leader() || b.Leader() })

	events := mixedEvents(10, 600)
	for i := 0; i < len(events); i += 100 {
		insertOutbox(t, pool, events[i:i+100])
		a.Notify()
		b.Notify()
		time.Sleep(5 * time.Millisecond)
	}
	got := receive(t, in, len(events), 30*time.Second)
	checkPerUserOrder(t, got, events)
	select {
	case d := <-in:
		t.Fatalf("an extra message arrived: %s", d.MessageId)
	case <-time.After(300 * time.Millisecond):
	}
	if a.Leader() == b.Leader() {
		t.Fatalf("leader a %v, leader b %v: want exactly one", a.Leader(), b.Leader())
	}
	if !a.Connected() || !b.Connected() {
		t.Errorf("connected a %v, b %v: the standby keeps its connection too", a.Connected(), b.Connected())
	}

	t.Run("the standby takes over when the leader stops", func(t *testing.T) {
		leader, standby := a, b
		if b.Leader() {
			leader, standby = b, a
		}
		stops[leader]()
		if leader.Leader() {
			t.Fatal("a stopped relay still reports leadership")
		}
		more := mixedEvents(3, 30)
		insertOutbox(t, pool, more)
		got := receive(t, in, len(more), 20*time.Second)
		checkPerUserOrder(t, got, more)
		if !standby.Leader() {
			t.Error("the standby did not become the leader")
		}
	})
}

func TestRelayPrunesOldPublishedRows(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	exchange := "test.relay." + randomSuffix(t)
	deleteOnCleanup(t, exchange)

	u := userservice.NewID()
	insertOutbox(t, pool, []testEvent{{u, userservice.EventUserUpdated, 0}, {u, userservice.EventUserUpdated, 1}, {u, userservice.EventUserUpdated, 2}})
	ctx := context.Background()
	// Row 1 published two hours ago, row 2 ten minutes ago, row 3 pending.
	if _, err := pool.Exec(ctx, `
		UPDATE outbox SET published_at = now() - CASE WHEN id = (SELECT min(id) FROM outbox)
			THEN interval '2 hours' ELSE interval '10 minutes' END
		WHERE id < (SELECT max(id) FROM outbox)`); err != nil {
		t.Fatal(err)
	}
	r := newTestRelay(t, pool, exchange, func(c *RelayConfig) { c.PruneAfter, c.PruneInterval = time.Hour, 20*time.Millisecond })
	runInBackground(t, r.Run)
	// The pending row is deleted once confirmed; of the two stamped by an earlier
	// version, only the recent one stays.
	eventually(t, 10*time.Second, "the old row pruned and the pending one published",
		func() bool { return outboxRows(t, pool) == 1 && unpublished(t, pool) == 0 })
	time.Sleep(100 * time.Millisecond) // several more prune rounds
	var recent int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE published_at > now() - interval '1 hour'`).Scan(&recent); err != nil {
		t.Fatal(err)
	}
	if n := outboxRows(t, pool); n != 1 || recent != 1 {
		t.Fatalf("%d rows left (%d published recently), want only the recent published one", n, recent)
	}
}

// TestRelayVacuumsTheOutbox: once the leader has deleted VacuumAfter rows it
// VACUUMs the outbox itself (the dead rows of a burst would otherwise be walked
// by every claim until autovacuum came), at most once per VacuumEvery; with
// VacuumAfter negative it never does.
func TestRelayVacuumsTheOutbox(t *testing.T) {
	t.Parallel()
	vacuums := func(t *testing.T, pool *pgxpool.Pool) int {
		t.Helper()
		var n int
		if err := pool.QueryRow(context.Background(),
			`SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'outbox'::regclass`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	burst := func(t *testing.T, after int) (*pgxpool.Pool, func()) {
		t.Helper()
		pool := newTestPool(t)
		exchange := "test.relay." + randomSuffix(t)
		deleteOnCleanup(t, exchange)
		insertOutbox(t, pool, mixedEvents(5, 60))
		r := newTestRelay(t, pool, exchange, func(c *RelayConfig) {
			c.BatchSize, c.VacuumAfter, c.VacuumEvery = 20, after, time.Hour
		})
		stop := runInBackground(t, r.Run)
		eventually(t, 20*time.Second, "every row published", func() bool { return outboxRows(t, pool) == 0 })
		return pool, stop
	}

	t.Run("after VacuumAfter deleted rows, once per VacuumEvery", func(t *testing.T) {
		t.Parallel()
		before := outboxVacuums.Get()
		pool, stop := burst(t, 25)
		// The counter too: PostgreSQL counts the VACUUM before the relay has its
		// answer, and a stop in between cancels the wait for it (the relay counts
		// only a VACUUM it saw succeed).
		eventually(t, 20*time.Second, "the outbox vacuumed and the VACUUM counted", func() bool {
			return vacuums(t, pool) >= 1 && outboxVacuums.Get() >= before+1
		})
		stop() // waits for the VACUUM in the background
		// 60 rows, 25 between two VACUUMs, but one VacuumEvery (an hour): one.
		if n := vacuums(t, pool); n != 1 {
			t.Fatalf("the outbox was vacuumed %d times, want once", n)
		}
	})
	t.Run("never with VacuumAfter negative", func(t *testing.T) {
		t.Parallel()
		pool, stop := burst(t, -1)
		stop()
		if n := vacuums(t, pool); n != 0 {
			t.Fatalf("the outbox was vacuumed %d times, want never", n)
		}
	})
}

func TestRelayDrainPublishesPendingRows(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	exchange, _, in := tapNewExchange(t)

	r := newTestRelay(t, pool, exchange, func(c *RelayConfig) { c.BatchSize = 50 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t.Run("empty outbox", func(t *testing.T) {
		if err := r.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("pending rows", func(t *testing.T) {
		events := mixedEvents(5, 220)
		insertOutbox(t, pool, events)
		if err := r.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if n := unpublished(t, pool); n != 0 {
			t.Fatalf("%d rows left unpublished after Drain", n)
		}
		checkPerUserOrder(t, receive(t, in, len(events), 10*time.Second), events)
		if r.Leader() || r.Connected() {
			t.Error("Drain left the relay leading or connected")
		}
	})
	t.Run("while Run is going", func(t *testing.T) {
		// A poll interval longer than the test: only Drain's wake-up publishes.
		running := newTestRelay(t, pool, exchange, func(c *RelayConfig) { c.PollInterval = time.Hour })
		stop := runInBackground(t, running.Run)
		defer stop()
		eventually(t, 10*time.Second, "the running relay to lead", running.Leader)
		time.Sleep(50 * time.Millisecond) // let it go idle
		events := mixedEvents(3, 40)
		insertOutbox(t, pool, events)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := running.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if n := unpublished(t, pool); n != 0 {
			t.Fatalf("%d rows left unpublished after Drain", n)
		}
		checkPerUserOrder(t, receive(t, in, len(events), 10*time.Second), events)
	})
	t.Run("expired context", func(t *testing.T) {
		insertOutbox(t, pool, mixedEvents(1, 1))
		done, cancel := context.WithCancel(context.Background())
		cancel()
		if err := r.Drain(done); err == nil {
			t.Fatal("want an error")
		}
	})
}

// TestOutageRelayBroker stops the test stack's RabbitMQ while rows are written.
// It disturbs every other test using that broker at the same time.
func TestOutageRelayBroker(t *testing.T) {
	devstack, profile := os.Getenv("DEVSTACK"), os.Getenv("DEVSTACK_PROFILE")
	if devstack == "" || profile == "" {
		t.Fatal("DEVSTACK and DEVSTACK_PROFILE are not set: run the tests with `make test`")
	}
	stack := func(action string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, devstack, action, profile).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s %s: %v\n%s", devstack, action, profile, err, out)
		}
	}
	pool := newTestPool(t)
	exchange, queue, in := tapNewExchange(t) // the queue is durable, so it outlives the restart

	r := newTestRelay(t, pool, exchange, nil)
	runInBackground(t, r.Run)
	before := mixedEvents(5, 50)
	insertOutbox(t, pool, before)
	receive(t, in, len(before), 20*time.Second)

	stack("stop-rabbitmq")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			stack("start-rabbitmq")
		}
	})
	eventually(t, 20*time.Second, "the relay to notice", func() bool { return !r.Connected() })
	during := mixedEvents(5, 100)
	insertOutbox(t, pool, during)
	time.Sleep(500 * time.Millisecond)
	if n := unpublished(t, pool); n != len(during) {
		t.Fatalf("%d rows unpublished while the broker is down, want %d", n, len(during))
	}
	stack("start-rabbitmq")
	restarted = true

	eventually(t, 30*time.Second, "the backlog drained", func() bool { return unpublished(t, pool) == 0 })
	conn, err := amqp.Dial(mustEnv(t, "TEST_RABBITMQ_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch2, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	checkPerUserOrder(t, receive(t, consume(t, ch2, queue), len(during), 20*time.Second), during)
}

// BenchmarkRelayThroughput measures rows published per second with the confirm
// window against waiting for each confirm (window=1):
//
//	go test -run '^$' -bench RelayThroughput -benchtime 3000x ./messaging/
func BenchmarkRelayThroughput(b *testing.B) {
	for _, window := range []int{1, DefaultRelayConfirmWindow} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			pool := newTestPool(b)
			exchange := "test.relay.bench." + randomSuffix(b)
			ch := rabbitChannel(b)
			queue := bindQueue(b, ch, exchange, "#")
			deleteOnCleanup(b, exchange, queue)
			r := newTestRelay(b, pool, exchange, func(c *RelayConfig) { c.ConfirmWindow = window })
			insertOutbox(b, pool, mixedEvents(1000, b.N))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.ResetTimer()
			start := time.Now()
			if err := r.Drain(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
			if n := unpublished(b, pool); n != 0 {
				b.Fatalf("%d rows left", n)
			}
		})
	}
}
