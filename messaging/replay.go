package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ReplayResult says what ReplayDLQ did.
type ReplayResult struct {
	Moved     int // messages now back on the queue
	Remaining int // messages left in the dead-letter queue
}

// ReplayDLQ moves the messages of <queue>.dlq back to <queue>, after the cause
// of their dead-lettering is fixed (docs/operations.md, "Replay the DLQ").
//
// Each message is published to the queue through the default exchange (so it
// reaches this service only, not the other consumers of the original exchange),
// with the broker's confirm awaited before the dead-lettered copy is acked: a
// crash in between leaves a duplicate, which the consumer's message-id
// deduplication absorbs, never a loss. The x-dlq-* headers are dropped (the
// consumer counts attempts afresh) and x-replayed-at / x-replay-count added.
// At most max messages are moved (0: as many as the DLQ held when the replay
// started), so a message that fails again and returns to the DLQ is not
// replayed in a loop. Both queues must exist (the service declares them).
func ReplayDLQ(ctx context.Context, amqpURL, queue string, max int, logger *slog.Logger) (ReplayResult, error) {
	var res ReplayResult
	if queue == "" {
		return res, errors.New("cannot replay the DLQ: no queue name")
	}
	if logger == nil {
		return res, errors.New("cannot replay the DLQ: nil logger")
	}
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		return res, fmt.Errorf("cannot connect to RabbitMQ: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return res, fmt.Errorf("cannot open a channel: %w", err)
	}
	defer ch.Close()
	dlq := queue + ".dlq"
	if _, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil); err != nil {
		return res, fmt.Errorf("cannot replay into queue %q: %w", queue, err)
	}
	// A failed passive declare closes the channel: open another for the DLQ.
	if ch, err = conn.Channel(); err != nil {
		return res, fmt.Errorf("cannot open a channel: %w", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(dlq, true, false, false, false, nil)
	if err != nil {
		return res, fmt.Errorf("cannot read dead-letter queue %q: %w", dlq, err)
	}
	if max <= 0 || max > q.Messages {
		max = q.Messages
	}
	if err := ch.Confirm(false); err != nil {
		return res, fmt.Errorf("cannot enable publisher confirms: %w", err)
	}
	for res.Moved < max {
		if err := ctx.Err(); err != nil {
			return res.withRemaining(ch, dlq), fmt.Errorf("replay stopped after %d messages: %w", res.Moved, err)
		}
		d, ok, err := ch.Get(dlq, false)
		if err != nil {
			return res.withRemaining(ch, dlq), fmt.Errorf("cannot get from %q: %w", dlq, err)
		}
		if !ok {
			break
		}
		if err := republish(ctx, ch, queue, d); err != nil {
			_ = d.Nack(false, true) // back to the DLQ, untouched
			return res.withRemaining(ch, dlq), fmt.Errorf("cannot replay message %q: %w", d.MessageId, err)
		}
		if err := d.Ack(false); err != nil {
			return res.withRemaining(ch, dlq), fmt.Errorf("message %q replayed but not removed from %q (it will be replayed again; the consumer deduplicates): %w", d.MessageId, dlq, err)
		}
		res.Moved++
		logger.Info("replayed a dead-lettered event", "message_id", d.MessageId,
			"reason", d.Headers["x-dlq-reason"], "queue", queue)
	}
	return res.withRemaining(ch, dlq), nil
}

// republish publishes a dead-lettered delivery to queue and waits for the confirm.
func republish(ctx context.Context, ch *amqp.Channel, queue string, d amqp.Delivery) error {
	h := amqp.Table{}
	for k, v := range d.Headers {
		if !strings.HasPrefix(k, "x-dlq-") {
			h[k] = v
		}
	}
	n, _ := h["x-replay-count"].(int32)
	h["x-replay-count"] = n + 1
	h["x-replayed-at"] = time.Now().UTC().Format(time.RFC3339Nano)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{
		Headers: h, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: amqp.Persistent, CorrelationId: d.CorrelationId, MessageId: d.MessageId,
		Timestamp: d.Timestamp, Type: d.Type, AppId: d.AppId, Body: d.Body,
	})
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("the broker refused it (nack)")
	}
	return nil
}

func (r ReplayResult) withRemaining(ch *amqp.Channel, dlq string) ReplayResult {
	if q, err := ch.QueueDeclarePassive(dlq, true, false, false, false, nil); err == nil {
		r.Remaining = q.Messages
	}
	return r
}
