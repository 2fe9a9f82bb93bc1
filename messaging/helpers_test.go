package messaging

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/migrations"
)

// mustEnv returns an environment variable that `make test` sets, failing the
// test when it is missing: these tests need the real servers.
func mustEnv(tb testing.TB, name string) string {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		tb.Fatalf("%s is not set: run the tests with `make test`, which starts the test stack and exports it", name)
	}
	return v
}

// testLogger logs to stderr with -v and nowhere otherwise: relay and consumer
// goroutines may log after a test's t.Log has closed.
func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func randomSuffix(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newTestPool returns a pool on a fresh schema of the test database with the
// migrations applied; the schema is dropped on cleanup.
func newTestPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	url := mustEnv(tb, "TEST_DATABASE_URL")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	schema := "messaging_" + randomSuffix(tb)

	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("cannot connect to TEST_DATABASE_URL: %v", err)
	}
	defer admin.Close(ctx)
	// Packages testing in parallel may race to create the extension.
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public`)
		if err == nil || attempt == 4 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("cannot create pg_trgm: %v", err)
	}
	if _, err := admin.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		tb.Fatalf("cannot create schema: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			tb.Errorf("cannot drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			tb.Errorf("cannot drop schema %s: %v", schema, err)
		}
	})

	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema + ",public"
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)

	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := p.Up(ctx); err != nil {
		tb.Fatalf("cannot migrate: %v", err)
	}
	return pool
}

// testEvent is what insertOutbox writes: one event of a user.
type testEvent struct {
	UserID string
	Type   string
	Seq    int // the event's rank among its user's events
}

// insertOutbox inserts rows as the writer would, in the given order, and returns
// their event ids and payloads.
func insertOutbox(tb testing.TB, pool *pgxpool.Pool, events []testEvent) (ids []string, payloads [][]byte) {
	tb.Helper()
	var users, keys []string
	for _, e := range events {
		ev := userservice.Event{
			ID: userservice.NewID(), Type: e.Type, Source: userservice.EventSourceUserService,
			Version: userservice.EnvelopeVersion, Sequence: int64(e.Seq) + 1,
			Data:      map[string]any{"userId": e.UserID, "seq": e.Seq},
			Timestamp: userservice.Now(), CorrelationID: userservice.NewID(),
		}
		b, err := json.Marshal(ev)
		if err != nil {
			tb.Fatal(err)
		}
		ids, payloads = append(ids, ev.ID), append(payloads, b)
		users, keys = append(users, e.UserID), append(keys, e.Type)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := pool.Exec(ctx, `
		INSERT INTO outbox (event_id, user_id, routing_key, payload)
		SELECT e::uuid, u::uuid, k, p
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) WITH ORDINALITY AS t(e, u, k, p, n)
		ORDER BY n`, ids, users, keys, payloads)
	if err != nil {
		tb.Fatalf("cannot insert outbox rows: %v", err)
	}
	return ids, payloads
}

// rabbitChannel opens a connection and channel to the test broker, closed on
// cleanup.
func rabbitChannel(tb testing.TB) *amqp.Channel {
	tb.Helper()
	conn, err := amqp.Dial(mustEnv(tb, "TEST_RABBITMQ_URL"))
	if err != nil {
		tb.Fatalf("cannot connect to TEST_RABBITMQ_URL: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatal(err)
	}
	return ch
}

// deleteOnCleanup deletes the exchange and queues when the test ends.
func deleteOnCleanup(tb testing.TB, exchange string, queues ...string) {
	tb.Helper()
	url := mustEnv(tb, "TEST_RABBITMQ_URL")
	tb.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			tb.Errorf("cannot clean up RabbitMQ: %v", err)
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			tb.Errorf("cannot clean up RabbitMQ: %v", err)
			return
		}
		for _, q := range queues {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				tb.Errorf("cannot delete queue %s: %v", q, err)
			}
		}
		if exchange != "" {
			if err := ch.ExchangeDelete(exchange, false, false); err != nil {
				tb.Errorf("cannot delete exchange %s: %v", exchange, err)
			}
		}
	})
}

// bindQueue declares the exchange and a durable queue bound to it with key, and
// returns the queue's name.
func bindQueue(tb testing.TB, ch *amqp.Channel, exchange, key string) string {
	tb.Helper()
	if err := declareExchange(ch, exchange); err != nil {
		tb.Fatal(err)
	}
	q, err := ch.QueueDeclare("test.sink."+randomSuffix(tb), true, false, false, false, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, key, exchange, false, nil); err != nil {
		tb.Fatal(err)
	}
	return q.Name
}

// tapNewExchange names a fresh exchange, binds a durable queue to every key of it
// and consumes the queue; both are deleted when the test ends.
func tapNewExchange(tb testing.TB) (exchange, queue string, in <-chan amqp.Delivery) {
	tb.Helper()
	exchange = "test.relay." + randomSuffix(tb)
	ch := rabbitChannel(tb)
	queue = bindQueue(tb, ch, exchange, "#")
	deleteOnCleanup(tb, exchange, queue)
	return exchange, queue, consume(tb, ch, queue)
}

// consume starts an auto-ack consumer of queue.
func consume(tb testing.TB, ch *amqp.Channel, queue string) <-chan amqp.Delivery {
	tb.Helper()
	d, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// receive reads n deliveries, failing after timeout.
func receive(tb testing.TB, in <-chan amqp.Delivery, n int, timeout time.Duration) []amqp.Delivery {
	tb.Helper()
	out := make([]amqp.Delivery, 0, n)
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case d, ok := <-in:
			if !ok {
				tb.Fatalf("delivery channel closed after %d of %d messages", len(out), n)
			}
			out = append(out, d)
		case <-deadline:
			tb.Fatalf("received %d of %d messages in %s", len(out), n, timeout)
		}
	}
	return out
}

// eventually polls cond until it holds, failing after timeout.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runInBackground runs run until the test ends, then cancels it and waits.
func runInBackground(tb testing.TB, run func(context.Context) error) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("run returned %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Errorf("run did not return within 30s of its context ending")
		}
	}
	tb.Cleanup(stop)
	return stop
}
