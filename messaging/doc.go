// Package messaging is the service's RabbitMQ edge (the only importer of
// amqp091-go): the outbox [Relay] that publishes the events of committed changes,
// and the [Consumer] that applies Auth Service events to user actors
// (CONTRACT.md, Events).
//
// # Outbox → relay → confirms
//
// The writer (persistence/postgres) inserts one outbox row per event in the same
// transaction as the change it reports: routing_key is the event type
// (user.created, never user.user.created) and payload the exact envelope bytes.
// The relay reads unpublished rows in id order, publishes each to the topic
// exchange (persistent, message_id = event id, correlation_id from the envelope,
// content type application/json, type = routing key) on a channel in confirm
// mode, and deletes a row only once its publisher confirm came back as an ack
// (deleting rather than stamping published_at writes each row once instead of
// twice; rows stamped by earlier versions are pruned after RelayConfig.PruneAfter).
// A row is therefore published at least once and never lost: while
// RabbitMQ is down or refusing, rows stay in the table (the backlog gauge grows)
// and the relay reconnects with capped exponential back-off, then drains them.
// Duplicates happen only after a failure between the broker's ack and the
// delete, and always carry the same message_id.
//
// Confirms are pipelined: up to RelayConfig.ConfirmWindow publishes wait for
// their confirms at once and a batch is marked in one statement, because waiting
// for each confirm serially tops out near a thousand messages a second.
//
// # Ordering
//
// Rows of one user are committed in id order by that user's actor, and the relay
// publishes in id order. A pipeline must not let a later event of a user overtake
// an earlier one that the broker nacks, so the relay keeps at most one
// unconfirmed message per user: before publishing a row it waits for the confirm
// of that user's previous row, if still outstanding. On the first nack, lost
// channel or confirm timeout it publishes nothing more, waits for the confirms
// already due, deletes every acked row (safe: no acked row has an earlier
// unconfirmed row of its user) and bumps attempts on the rest; the next round
// starts again from the lowest unpublished id. Messages sent before a connection
// loss reach a queue as a prefix of the channel's order, so a re-publish can only
// repeat events, never reorder a user's first deliveries.
//
// # Several relays on one database
//
// Every service process runs a relay, but only one publishes at a time: the
// leader holds a session-level advisory lock (pg_try_advisory_lock, keyed by the
// schema's name) on a pooled connection it keeps, and runs every outbox query on
// that same session, so a leader whose queries succeed still holds the lock. The
// others stand by, keep their broker connection up for health checks, and retry
// the lock every RelayConfig.LeaderRetry; when the leader's session ends (crash,
// network), PostgreSQL releases the lock and a standby takes over. Leader
// election rather than SELECT … FOR UPDATE SKIP LOCKED or partitions by
// hashtext(user_id): two relays skipping each other's locked rows would publish
// one user's events concurrently and out of order, partitions would need a
// membership protocol to rebalance, and the broker, not the relay, bounds
// throughput: on the two-core test machine one pipelined relay publishes several
// thousand persistent messages a second while using a small fraction of a core
// (BenchmarkRelayThroughput), so more publishers would not publish faster.
//
// The relay polls every RelayConfig.PollInterval when idle; Relay.Notify wakes it
// at once (the writer's process may call it after each commit). LISTEN/NOTIFY is
// not used: it would tie the writer's transactions to the relay, and the poll is
// one index probe. The leader also deletes rows published more than PruneAfter
// ago, in bounded chunks.
//
// # Consumer retry and dead-letter policy
//
// The consumer reads RABBITMQ_QUEUE (durable, bound to the four auth.user.*
// routing keys) with manual acks and a bounded prefetch. Messages are spread
// over workers by authId, so one user's events are applied in queue order while
// other users proceed in parallel. Each event becomes one command on the user's
// actor with Meta.MessageID set; the writer records that id in
// processed_messages in the same transaction, so a redelivered message fails
// with userservice.ErrDuplicateMessage and is acked as done.
//
//   - Unparsable or invalid messages are published at once to <queue>.dlq (a
//     durable queue, through the default exchange: no x-dead-letter-exchange
//     argument on the main queue, so it can be declared the same way by every
//     version) with x-dlq-* headers saying why, then acked.
//   - Permanent failures (a 4xx-coded domain error, such as an email that
//     another profile already uses) are dead-lettered the same way.
//   - Transient failures (unavailable or timeout codes, unknown errors, and an
//     authId with no profile yet, since its auth.user.registered may still be in
//     flight) are retried in process: the delivery stays unacked while a timer
//     waits RetryBackoff·2^(attempt-1) (capped), and later events of the same
//     authId wait behind it. After MaxAttempts attempts the message is
//     dead-lettered. Nothing is ever requeued in a loop; a crash simply lets the
//     broker redeliver the unacked messages.
//
// Both the relay and the consumer cut their TCP connection when a publish,
// confirm or setup call outlives its deadline: amqp091-go has no deadlines of its
// own, and a broker under a resource alarm stops reading.
package messaging
