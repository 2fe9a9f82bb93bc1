//go:build faulttest

package faulttest

import (
	"context"
	"fmt"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestAuthEventsSurvivePostgresOutage stops PostgreSQL for 20 s while 1,000 Auth
// Service events (registered, login, password_changed and logout for 250
// users) are published (issue 11). A dependency outage is not the events'
// fault: once PostgreSQL is back every event has had its effect exactly once,
// nothing was dead-lettered and nothing is left in the queue.
func TestAuthEventsSurvivePostgresOutage(t *testing.T) {
	sum := newSummary(t)
	st := needStack(t)
	st.ensureUp(t)
	svc := newService(t, st)
	svc.start(t)

	conn, err := amqp.Dial(st.amqpURL)
	if err != nil {
		t.Fatalf("cannot connect to RabbitMQ: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	exchange, queue := svc.name+".events", svc.name+".in"
	publish := func(typ string, data map[string]any) {
		t.Helper()
		id := newUUID()
		body, err := json.Marshal(map[string]any{"id": id, "type": typ, "source": "auth-service", "data": data,
			"timestamp": time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), "correlationId": newUUID(), "metadata": map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, typ, true, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, Body: body})
		if err != nil {
			t.Fatalf("publish %s: %v", typ, err)
		}
		if ok, err := dc.WaitContext(ctx); err != nil || !ok {
			t.Fatalf("publish %s not confirmed: %v", typ, err)
		}
	}

	const users = 250
	authIDs := make([]string, users)
	for i := range authIDs {
		authIDs[i] = newUUID()
	}
	st.ctl(t, "stop-postgres")
	down := time.Now()
	// Each user's four events in order, the users interleaved, spread over ~15 s.
	steps := []func(i int){
		func(i int) {
			publish("auth.user.registered", map[string]any{"authId": authIDs[i], "email": fmt.Sprintf("outage-%d-%s@example.com", i, authIDs[i][:8]),
				"firstName": "Out", "lastName": "Age"})
		},
		func(i int) {
			publish("auth.user.login", map[string]any{"authId": authIDs[i], "sessionId": "s-" + authIDs[i], "ipAddress": "192.0.2.1"})
		},
		func(i int) { publish("auth.user.password_changed", map[string]any{"authId": authIDs[i]}) },
		func(i int) {
			publish("auth.user.logout", map[string]any{"authId": authIDs[i], "sessionId": "s-" + authIDs[i]})
		},
	}
	for s, step := range steps {
		for i := range authIDs {
			step(i)
		}
		time.Sleep(time.Duration(s+1) * time.Second)
	}
	published := time.Since(down)
	time.Sleep(20*time.Second - time.Since(down))
	st.ctl(t, "start-postgres")
	up := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db, err := pgx.Connect(ctx, st.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	schema := pgx.Identifier{svc.name}.Sanitize()
	type tally struct{ users, logins, sessions, open, audits, processed int }
	read := func() (tl tally) {
		q := fmt.Sprintf(`SELECT
			(SELECT count(*) FROM %[1]s.users WHERE auth_id = ANY($1::uuid[])),
			(SELECT coalesce(sum(login_count), 0) FROM %[1]s.users WHERE auth_id = ANY($1::uuid[])),
			(SELECT count(*) FROM %[1]s.sessions s JOIN %[1]s.users u ON u.id = s.user_id WHERE u.auth_id = ANY($1::uuid[])),
			(SELECT count(*) FROM %[1]s.sessions s JOIN %[1]s.users u ON u.id = s.user_id WHERE u.auth_id = ANY($1::uuid[]) AND s.ended_at IS NULL),
			(SELECT count(*) FROM %[1]s.audit_log a JOIN %[1]s.users u ON u.id = a.user_id WHERE u.auth_id = ANY($1::uuid[]) AND a.action = 'auth.password_changed'),
			(SELECT count(*) FROM %[1]s.processed_messages)`, schema)
		if err := db.QueryRow(ctx, q, authIDs).Scan(&tl.users, &tl.logins, &tl.sessions, &tl.open, &tl.audits, &tl.processed); err != nil {
			t.Fatalf("cannot read the effects: %v", err)
		}
		return tl
	}
	want := tally{users: users, logins: users, sessions: users, open: 0, audits: users, processed: 4 * users}
	var got tally
	for {
		got = read()
		if got == want || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	settled := time.Since(up)
	if got != want {
		t.Fatalf("3 minutes after PostgreSQL came back: %+v, want %+v", got, want)
	}
	// Exactly once: nothing more arrives later either.
	time.Sleep(3 * time.Second)
	if again := read(); again != want {
		t.Fatalf("effects changed after settling: %+v, want %+v", again, want)
	}
	for _, q := range []string{queue, queue + ".dlq"} {
		info, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			t.Fatalf("cannot inspect %s: %v", q, err)
		}
		if info.Messages != 0 {
			t.Errorf("%s holds %d messages, want 0", q, info.Messages)
		}
	}
	sum.add("1,000 events published in %s while PostgreSQL was down 20 s; all applied exactly once %s after it came back; DLQ empty",
		published.Round(time.Millisecond), settled.Round(time.Millisecond))
}
