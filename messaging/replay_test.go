package messaging

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestReplayDLQ(t *testing.T) {
	url := mustEnv(t, "TEST_RABBITMQ_URL")
	queue := "replay-test." + randomSuffix(t)
	dlq := queue + ".dlq"
	ch := rabbitChannel(t)
	for _, q := range []string{queue, dlq} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	deleteOnCleanup(t, "", queue, dlq)
	for i := 0; i < 3; i++ {
		err := ch.PublishWithContext(context.Background(), "", dlq, false, false, amqp.Publishing{
			MessageId: fmt.Sprintf("m%d", i), ContentType: "application/json", Body: []byte(fmt.Sprintf(`{"n":%d}`, i)),
			Headers: amqp.Table{"x-dlq-reason": "failed", "x-dlq-attempts": int32(5), "trace": "keep"},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "3 messages in the DLQ", func() bool {
		q, err := ch.QueueDeclarePassive(dlq, true, false, false, false, nil)
		return err == nil && q.Messages == 3
	})

	t.Run("max moves only that many", func(t *testing.T) {
		res, err := ReplayDLQ(context.Background(), url, queue, 1, testLogger(t))
		if err != nil || res.Moved != 1 || res.Remaining != 2 {
			t.Fatalf("ReplayDLQ(max 1) = %+v, %v; want 1 moved, 2 remaining", res, err)
		}
	})
	t.Run("the rest moves, in order, without the x-dlq headers", func(t *testing.T) {
		res, err := ReplayDLQ(context.Background(), url, queue, 0, testLogger(t))
		if err != nil || res.Moved != 2 || res.Remaining != 0 {
			t.Fatalf("ReplayDLQ = %+v, %v; want 2 moved, 0 remaining", res, err)
		}
		for i := 0; i < 3; i++ {
			d, ok, err := ch.Get(queue, true)
			if err != nil || !ok {
				t.Fatalf("message %d not on %s: ok=%v err=%v", i, queue, ok, err)
			}
			if want := fmt.Sprintf("m%d", i); d.MessageId != want || string(d.Body) != fmt.Sprintf(`{"n":%d}`, i) {
				t.Errorf("message %d: id %q body %s", i, d.MessageId, d.Body)
			}
			if _, ok := d.Headers["x-dlq-reason"]; ok {
				t.Errorf("message %d still carries x-dlq-reason", i)
			}
			if d.Headers["trace"] != "keep" || d.Headers["x-replay-count"] != int32(1) || d.Headers["x-replayed-at"] == nil {
				t.Errorf("message %d headers %v", i, d.Headers)
			}
			if d.DeliveryMode != amqp.Persistent {
				t.Errorf("message %d is not persistent", i)
			}
		}
	})
	t.Run("an empty DLQ moves nothing", func(t *testing.T) {
		res, err := ReplayDLQ(context.Background(), url, queue, 0, testLogger(t))
		if err != nil || res.Moved != 0 {
			t.Fatalf("ReplayDLQ = %+v, %v", res, err)
		}
	})
	t.Run("a queue that does not exist is an error", func(t *testing.T) {
		if _, err := ReplayDLQ(context.Background(), url, queue+"-missing", 0, testLogger(t)); err == nil {
			t.Fatal("no error for a missing queue")
		}
	})
	t.Run("a cancelled context stops before moving", func(t *testing.T) {
		if err := ch.PublishWithContext(context.Background(), "", dlq, false, false, amqp.Publishing{MessageId: "late", Body: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "1 message in the DLQ", func() bool {
			q, err := ch.QueueDeclarePassive(dlq, true, false, false, false, nil)
			return err == nil && q.Messages == 1
		})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res, err := ReplayDLQ(ctx, url, queue, 0, testLogger(t))
		if err == nil || res.Moved != 0 || res.Remaining != 1 {
			t.Fatalf("ReplayDLQ(cancelled) = %+v, %v; want an error, nothing moved", res, err)
		}
	})
}
