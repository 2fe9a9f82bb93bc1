package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Outbox metrics (CONTRACT.md, Observability). The gauges are refreshed by every
// running relay, leader or not, every RelayConfig.GaugeInterval.
var (
	outboxBacklog      = metrics.NewGauge("user_service_outbox_backlog", nil)
	outboxOldestAge    = metrics.NewGauge("user_service_outbox_oldest_age_seconds", nil)
	outboxPublished    = metrics.NewCounter("user_service_outbox_published_total")
	outboxFailures     = metrics.NewCounter("user_service_outbox_publish_failures_total")
	outboxBatchSeconds = metrics.NewPrometheusHistogram("user_service_outbox_publish_batch_seconds")
	outboxVacuums      = metrics.NewCounter("user_service_outbox_vacuums_total")
)

// Defaults of RelayConfig.
const (
	DefaultRelayBatchSize     = 500
	DefaultRelayConfirmWindow = 256
	DefaultRelayPollInterval  = 50 * time.Millisecond
	DefaultRelayConfirmWait   = 10 * time.Second
	DefaultRelayPruneAfter    = time.Hour
	DefaultRelayPruneInterval = time.Minute
	DefaultRelayGaugeInterval = 5 * time.Second
	DefaultRelayLeaderRetry   = time.Second
	DefaultRelayQueryTimeout  = 5 * time.Second
	DefaultRelayVacuumAfter   = 20000
	DefaultRelayVacuumEvery   = 5 * time.Second
)

// relayLockClass is the first key of the leader's advisory lock; the second is
// hashtext(current_schema()), so that schemas sharing a database (tests) elect
// their leaders independently.
const relayLockClass = 0x5553524c // "USRL"

// pruneChunk bounds one DELETE; pruneChunks bounds the chunks per prune round so
// that a large backlog of old rows never holds up publishing.
const (
	pruneChunk  = 5000
	pruneChunks = 20
)

// RelayConfig holds the relay's knobs. Zero values take the defaults above.
type RelayConfig struct {
	// URL is the AMQP URL of the broker (RABBITMQ_URL). Required.
	URL string
	// Exchange is the durable topic exchange to publish to (RABBITMQ_EXCHANGE).
	Exchange string
	// BatchSize is the number of rows read and marked per round.
	BatchSize int
	// ConfirmWindow is the number of publishes that may await their confirm at
	// once. 1 makes the relay wait for each confirm before the next publish.
	ConfirmWindow int
	// PollInterval is how often an idle relay looks for new rows.
	PollInterval time.Duration
	// ConfirmTimeout bounds one batch's publishes and confirms; past it the
	// connection is cut and the unconfirmed rows are published again later.
	ConfirmTimeout time.Duration
	// PruneAfter is how long rows stamped published (by a relay of an earlier
	// version: this one deletes rows once confirmed) are kept; PruneInterval is
	// how often the leader deletes older ones.
	PruneAfter    time.Duration
	PruneInterval time.Duration
	// EventRetention is how long published events stay in the event_log table
	// (EVENT_RETENTION), the change feed's history: the relay moves each
	// confirmed row there instead of deleting it, and the leader's prune deletes
	// older ones. 0 keeps none (rows are deleted once confirmed).
	EventRetention time.Duration
	// GaugeInterval is how often the backlog gauges are refreshed (one query).
	GaugeInterval time.Duration
	// LeaderRetry is how often a standby relay tries to become the leader.
	LeaderRetry time.Duration
	// ReconnectMax caps the exponential back-off after a failure.
	ReconnectMax time.Duration
	// DialTimeout bounds connecting to the broker.
	DialTimeout time.Duration
	// QueryTimeout bounds each outbox query.
	QueryTimeout time.Duration
	// VacuumAfter is how many rows the leader deletes from the outbox before it
	// VACUUMs the table itself, at most once per VacuumEvery; negative never.
	// Every published row leaves a dead tuple behind, and until a VACUUM
	// removes them each claim walks them: after a burst of writes, autovacuum
	// (which looks once a minute) came too late and the claims took up to half
	// a core of PostgreSQL while the burst's dead rows lasted.
	VacuumAfter int
	VacuumEvery time.Duration
}

func (c *RelayConfig) withDefaults() (RelayConfig, error) {
	out := *c
	if out.URL == "" {
		return out, errors.New("cannot create relay: no RabbitMQ URL")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if out.Exchange == "" {
		out.Exchange = DefaultExchange
	}
	if out.BatchSize <= 0 {
		out.BatchSize = DefaultRelayBatchSize
	}
	if out.ConfirmWindow <= 0 {
		out.ConfirmWindow = DefaultRelayConfirmWindow
	}
	if out.VacuumAfter == 0 {
		out.VacuumAfter = DefaultRelayVacuumAfter
	}
	def(&out.VacuumEvery, DefaultRelayVacuumEvery)
	def(&out.PollInterval, DefaultRelayPollInterval)
	def(&out.ConfirmTimeout, DefaultRelayConfirmWait)
	def(&out.PruneAfter, DefaultRelayPruneAfter)
	def(&out.PruneInterval, DefaultRelayPruneInterval)
	def(&out.GaugeInterval, DefaultRelayGaugeInterval)
	def(&out.LeaderRetry, DefaultRelayLeaderRetry)
	def(&out.ReconnectMax, DefaultReconnectMax)
	def(&out.DialTimeout, DefaultDialTimeout)
	def(&out.QueryTimeout, DefaultRelayQueryTimeout)
	return out, nil
}

// Relay publishes outbox rows to RabbitMQ with publisher confirms (see the
// package doc). Run must not be called twice at once; Drain, Notify, Leader,
// Connected and Ping are safe for concurrent use.
type Relay struct {
	pool *pgxpool.Pool
	cfg  RelayConfig
	log  *slog.Logger

	wake   chan struct{}
	busy   atomic.Bool // Run or Drain is going
	leader atomic.Bool

	linkSlot // current broker connection: Connected and Ping

	// Owned by the goroutine in Run or Drain.
	ch         *amqp.Channel
	db         *pgxpool.Conn // the session holding the leader lock
	lastPrune  time.Time
	deleted    int // rows deleted from the outbox since the last VACUUM
	lastVacuum time.Time
	// The last claim's rows and their payloads (one after the other), reused by
	// the next claim: a batch's rows are done with once it is published.
	claimed  []outboxRow
	payloads []byte
	keys     map[string]string // routing keys seen, see routingKey

	vacuuming sync.WaitGroup // the VACUUM in the background, if any
	vacuumOn  atomic.Bool
}

// NewRelay returns a relay over the outbox table reachable through pool. It does
// no I/O until Run.
func NewRelay(pool *pgxpool.Pool, cfg RelayConfig, logger *slog.Logger) (*Relay, error) {
	if pool == nil {
		return nil, errors.New("cannot create relay: nil pool")
	}
	if logger == nil {
		return nil, errors.New("cannot create relay: nil logger")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Relay{pool: pool, cfg: c, log: logger.With("component", "outbox-relay"), wake: make(chan struct{}, 1)}, nil
}

// Notify wakes the relay at once instead of at its next poll. It never blocks;
// the writer may call it after each commit that inserted outbox rows.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Leader reports whether this relay currently owns the outbox.
func (r *Relay) Leader() bool { return r.leader.Load() }

// Run relays until ctx ends, then returns nil. Failures of PostgreSQL or
// RabbitMQ are logged and retried with back-off; Run never gives up.
func (r *Relay) Run(ctx context.Context) error {
	if !r.busy.CompareAndSwap(false, true) {
		return errors.New("cannot run relay: already running")
	}
	defer r.busy.Store(false)
	defer r.shutdown()
	defer r.vacuuming.Wait()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.watchBacklog(ctx)
	}()
	defer wg.Wait()

	r.log.Info("outbox relay started", "exchange", r.cfg.Exchange, "batch", r.cfg.BatchSize, "window", r.cfg.ConfirmWindow)
	bo := backoff{base: reconnectBase, max: r.cfg.ReconnectMax}
	for ctx.Err() == nil {
		wait, wakeable, err := r.step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			d := bo.next()
			r.log.Warn("outbox relay failed, retrying", "error", err, "retry_in", d)
			sleep(ctx, d)
			continue
		}
		bo.reset()
		if wait > 0 {
			r.idle(ctx, wait, wakeable)
		}
	}
	r.log.Info("outbox relay stopped")
	return nil
}

// Drain publishes the rows pending now, then returns nil; it is meant for
// SIGTERM, with a short deadline in ctx. While Run is going, Drain wakes it and
// waits until the rows pending at the call are published; otherwise it publishes
// them itself. When another process leads, Drain returns nil at once: the
// leader publishes.
func (r *Relay) Drain(ctx context.Context) error {
	if !r.busy.CompareAndSwap(false, true) {
		if err := r.awaitDrained(ctx); err != nil {
			return fmt.Errorf("cannot drain the outbox: %w", err)
		}
		return nil
	}
	defer r.busy.Store(false)
	defer r.shutdown()
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cannot drain the outbox: %w", err)
		}
		if err := r.ensureLink(ctx); err != nil {
			return fmt.Errorf("cannot drain the outbox: %w", err)
		}
		if !r.leader.Load() {
			ok, err := r.tryLead(ctx)
			if err != nil {
				return fmt.Errorf("cannot drain the outbox: %w", err)
			}
			if !ok {
				return nil
			}
		}
		n, err := r.publishBatch(ctx)
		if err != nil {
			return fmt.Errorf("cannot drain the outbox: %w", err)
		}
		if n == 0 {
			return nil
		}
	}
}

// awaitDrained waits until the running relay has published every row pending
// now, or returns at once when it does not lead.
func (r *Relay) awaitDrained(ctx context.Context) error {
	query := func(sql string, args ...any) (int64, error) {
		qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
		defer cancel()
		var n int64
		err := r.pool.QueryRow(qctx, sql, args...).Scan(&n)
		return n, err
	}
	upTo, err := query(`SELECT coalesce(max(id), 0) FROM outbox WHERE published_at IS NULL`)
	if err != nil {
		return err
	}
	for r.leader.Load() {
		r.Notify()
		left, err := query(`SELECT count(*) FROM outbox WHERE published_at IS NULL AND id <= $1`, upTo)
		if err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
		if !sleep(ctx, min(r.cfg.PollInterval, 20*time.Millisecond)) {
			return ctx.Err()
		}
	}
	return nil
}

// step does one unit of work and says how long to wait before the next, and
// whether Notify may cut that wait short.
func (r *Relay) step(ctx context.Context) (wait time.Duration, wakeable bool, err error) {
	if err := r.ensureLink(ctx); err != nil {
		return 0, false, err
	}
	if !r.leader.Load() {
		ok, err := r.tryLead(ctx)
		if err != nil {
			return 0, false, err
		}
		if !ok {
			return r.cfg.LeaderRetry, false, nil
		}
	}
	if time.Since(r.lastPrune) >= r.cfg.PruneInterval {
		if _, err := r.prune(ctx); err != nil {
			return 0, false, err
		}
	}
	n, err := r.publishBatch(ctx)
	if err != nil {
		return 0, false, err
	}
	r.vacuumIfDue(ctx)
	if n >= r.cfg.BatchSize {
		return 0, false, nil // more is waiting
	}
	return r.cfg.PollInterval, true, nil
}

func (r *Relay) idle(ctx context.Context, d time.Duration, wakeable bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	var wake <-chan struct{}
	if wakeable {
		wake = r.wake
	}
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
	}
}

// ensureLink (re)connects to the broker and opens a confirm-mode channel.
func (r *Relay) ensureLink(ctx context.Context) error {
	if r.ch != nil && !r.ch.IsClosed() {
		return nil
	}
	r.dropLink()
	l, err := dial(ctx, r.cfg.URL, "user-service outbox relay", r.cfg.DialTimeout)
	if err != nil {
		return err
	}
	stop := l.guard(ctx, r.cfg.DialTimeout)
	ch, err := l.conn.Channel()
	if err == nil {
		err = declareExchange(ch, r.cfg.Exchange)
	}
	if err == nil {
		err = ch.Confirm(false)
	}
	if !stop() && err == nil {
		err = errors.New("cannot set up the relay channel: timed out")
	}
	if err != nil {
		l.close()
		return fmt.Errorf("cannot set up the relay channel: %w", err)
	}
	r.swap(l)
	r.ch = ch
	r.log.Info("outbox relay connected to RabbitMQ")
	return nil
}

func (r *Relay) dropLink() {
	l := r.swap(nil)
	r.ch = nil
	if l != nil {
		l.close()
	}
}

// tryLead tries to take the leader lock on a connection of its own.
func (r *Relay) tryLead(ctx context.Context) (bool, error) {
	qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
	defer cancel()
	c, err := r.pool.Acquire(qctx)
	if err != nil {
		return false, fmt.Errorf("cannot acquire a connection: %w", err)
	}
	var ok bool
	err = c.QueryRow(qctx, `SELECT pg_try_advisory_lock($1, hashtext(current_schema()))`, relayLockClass).Scan(&ok)
	if err != nil {
		// The lock may have been granted before the error: never hand the session back.
		closeConn(c)
		return false, fmt.Errorf("cannot take the outbox leader lock: %w", err)
	}
	if !ok {
		c.Release()
		return false, nil
	}
	// See leaderSessionSQL. The session is never handed back to the pool (resign
	// closes it), so the setting stays with the leader.
	if _, err := c.Exec(qctx, leaderSessionSQL); err != nil {
		closeConn(c)
		return false, fmt.Errorf("cannot set up the outbox leader's session: %w", err)
	}
	r.db = c
	r.leader.Store(true)
	r.log.Info("outbox relay is the leader")
	return true, nil
}

// leaderSessionSQL sets up the leader's session. Every statement it runs
// reads the outbox (or event_log) through an index: the claim walks the primary
// key in id order, the move and the marks look rows up by id, the prunes walk
// their indexes. Left to itself the planner reads the claim's few pending rows
// with a sequential scan and a sort whenever its statistics say the table holds
// few live rows, which after every VACUUM they do; but the heap keeps the pages
// a burst of rows filled (a VACUUM truncates only empty pages at the end, and
// the pending rows are at the end), so that scan reads every page of them: a
// sequential scan of a few thousand empty or dead pages for 60 rows, where the
// primary key's walk skips the deleted entries a page of hundreds at a time.
// Under the write benchmarks half the claims took the sequential scan.
const leaderSessionSQL = `SET enable_seqscan = off`

// resign gives up leadership by closing the session, which releases the lock
// even when PostgreSQL cannot be reached to unlock it.
func (r *Relay) resign() {
	if r.db == nil {
		return
	}
	closeConn(r.db)
	r.db = nil
	r.leader.Store(false)
	r.log.Info("outbox relay resigned leadership")
}

func closeConn(c *pgxpool.Conn) {
	conn := c.Hijack()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

func (r *Relay) shutdown() {
	r.resign()
	r.dropLink()
}

// outboxRow is one unpublished outbox row.
type outboxRow struct {
	id         int64
	eventID    string
	userID     string
	routingKey string
	payload    []byte
	createdAt  time.Time
}

// publishBatch publishes one batch of unpublished rows and deletes what the broker
// confirmed. It returns how many rows it read.
func (r *Relay) publishBatch(ctx context.Context) (int, error) {
	rows, err := r.claim(ctx)
	if err != nil {
		r.resign()
		return 0, err
	}
	if len(rows) == 0 {
		return 0, nil
	}
	start := time.Now()
	acked, failed, perr := r.publish(ctx, rows)
	// Marking must outlive a cancelled ctx: confirmed rows left unmarked would be
	// published again.
	if err := r.mark(context.WithoutCancel(ctx), acked, failed); err != nil {
		r.resign()
		return 0, err
	}
	outboxBatchSeconds.UpdateDuration(start)
	outboxPublished.Add(len(acked))
	outboxFailures.Add(len(failed))
	if perr != nil {
		return len(rows), perr
	}
	return len(rows), nil
}

func (r *Relay) claim(ctx context.Context) ([]outboxRow, error) {
	qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
	defer cancel()
	// Only the leader's session runs this, so no row lock is needed.
	rows, err := r.db.Query(qctx, `
		SELECT id, event_id::text, user_id::text, routing_key, payload, created_at
		FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1`, r.cfg.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("cannot read the outbox: %w", err)
	}
	defer rows.Close()
	// The payloads are copied from pgx's read buffer into one buffer the relay
	// keeps (a row's payload is a slice of it) instead of one allocation each,
	// and the routing keys (a few distinct values) are looked up rather than
	// allocated: the claim was a tenth of the bytes the service allocated under
	// the write benchmarks. The rows of the previous claim are published by now,
	// and amqp091-go copies a body as it is sent (coalescingConn.Write), so the
	// buffer is free to be written again; if it grows, rows already read keep the
	// old array. Both columns arrive as their bytes in the binary format pgx
	// asks for (a text routing key is the same bytes in either format); a payload
	// in the text format (hex) is scanned as before.
	out, buf := r.claimed[:0], r.payloads[:0]
	for rows.Next() {
		// The columns are described once a row is read.
		binary := rows.FieldDescriptions()[4].Format == pgtype.BinaryFormatCode
		var o outboxRow
		var payload any // nil: the column is skipped
		if !binary {
			payload = &o.payload
		}
		if err := rows.Scan(&o.id, &o.eventID, &o.userID, nil, payload, &o.createdAt); err != nil {
			return nil, fmt.Errorf("cannot read the outbox: %w", err)
		}
		raw := rows.RawValues()
		o.routingKey = r.routingKey(raw[3])
		if binary {
			start := len(buf)
			buf = append(buf, raw[4]...)
			o.payload = buf[start:len(buf):len(buf)]
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the outbox: %w", err)
	}
	if cap(buf) > maxKeptPayloads {
		buf = nil // a burst of large events: not worth keeping
	}
	r.claimed, r.payloads = out, buf
	return out, nil
}

// maxKeptPayloads bounds the payload buffer a relay keeps between claims: a
// batch of typical events (under 1 KB each) fits many times over.
const maxKeptPayloads = 1 << 20

// routingKey returns the routing key spelled b, allocated the first time only.
func (r *Relay) routingKey(b []byte) string {
	if k, ok := r.keys[string(b)]; ok {
		return k
	}
	if r.keys == nil || len(r.keys) >= maxRoutingKeys {
		r.keys = make(map[string]string)
	}
	k := string(b)
	r.keys[k] = k
	return k
}

// maxRoutingKeys bounds the relay's routing keys: the service has a few
// dozen; more means rows of something else, and the map starts over.
const maxRoutingKeys = 1024

// inflight is a published row awaiting its confirm.
type inflight struct {
	id int64
	dc *amqp.DeferredConfirmation
}

// publish sends rows in id order with at most ConfirmWindow unconfirmed and at
// most one unconfirmed per user, and returns the ids the broker acked and those
// sent but not acked. After the first failure it sends nothing more.
func (r *Relay) publish(ctx context.Context, rows []outboxRow) (acked, failed []int64, err error) {
	l := r.current()
	ch := r.ch
	stop := l.guard(context.WithoutCancel(ctx), r.cfg.ConfirmTimeout)

	window := make([]inflight, 0, min(r.cfg.ConfirmWindow, len(rows)))
	last := make(map[string]*amqp.DeferredConfirmation, len(rows))
	ok := true
	settle := func() { // pops the head once its confirm is in
		f := window[0]
		window = window[1:]
		if f.dc.Acked() {
			acked = append(acked, f.id)
			return
		}
		failed = append(failed, f.id)
		ok = false
	}
	reap := func() {
		for len(window) > 0 {
			select {
			case <-window[0].dc.Done():
				settle()
			default:
				return
			}
		}
	}
	waitHead := func() {
		<-window[0].dc.Done() // bounded: the guard cuts the link, which settles every confirm
		settle()
	}

	for i := range rows {
		row := &rows[i]
		if ctx.Err() != nil {
			break // shutting down: settle what was sent, leave the rest for Drain
		}
		if dc := last[row.userID]; dc != nil {
			// Never two unconfirmed events of one user: a nack of the first must
			// not let the second overtake it.
			<-dc.Done()
			if !dc.Acked() {
				ok = false
			}
			reap()
		}
		for ok && len(window) >= r.cfg.ConfirmWindow {
			waitHead()
		}
		if !ok {
			break
		}
		dc, perr := ch.PublishWithDeferredConfirm(r.cfg.Exchange, row.routingKey, false, false, publishing(row))
		if perr != nil {
			err = fmt.Errorf("cannot publish outbox row %d: %w", row.id, perr)
			break
		}
		window = append(window, inflight{id: row.id, dc: dc})
		last[row.userID] = dc
		reap()
	}
	for len(window) > 0 {
		waitHead()
	}
	if !stop() {
		err = errors.Join(err, fmt.Errorf("cannot publish the outbox: confirms took longer than %s", r.cfg.ConfirmTimeout))
	}
	if err != nil {
		r.dropLink() // cut, or a failed publish: the channel's state is unknown
	}
	if err == nil && len(failed) > 0 {
		err = fmt.Errorf("cannot publish the outbox: %d of %d messages not acked by the broker", len(failed), len(acked)+len(failed))
	}
	return acked, failed, err
}

// publishing builds the AMQP message of a row: the payload as stored, with the
// envelope's correlationId and timestamp copied into the properties.
func publishing(row *outboxRow) amqp.Publishing {
	var env struct {
		CorrelationID string `json:"correlationId"`
		Timestamp     string `json:"timestamp"`
	}
	// The payload was written by this service; if it does not parse, the
	// message only lacks these two optional properties.
	_ = json.Unmarshal(row.payload, &env)
	ts := row.createdAt
	if t, err := time.Parse(time.RFC3339Nano, env.Timestamp); err == nil {
		ts = t
	}
	return amqp.Publishing{
		ContentType:   "application/json",
		DeliveryMode:  amqp.Persistent,
		MessageId:     row.eventID,
		CorrelationId: env.CorrelationID,
		Timestamp:     ts.UTC(),
		Type:          row.routingKey,
		Body:          row.payload,
	}
}

// mark deletes acked rows (moving them to event_log when EventRetention is
// set) and counts an attempt on failed ones, in one round trip. The move runs on
// the session that holds the leader lock, like every statement of the leader. Deleting at once rather than stamping published_at and pruning later
// writes each row once instead of twice: the stamp was a non-HOT update (both
// partial indexes cover published_at) that cost 10 buffer accesses and 3.7 WAL
// records per row under the PUT /me benchmark, and the prune a second pass.
func (r *Relay) mark(ctx context.Context, acked, failed []int64) error {
	if len(acked) == 0 && len(failed) == 0 {
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
	defer cancel()
	err := r.db.SendBatch(qctx, r.markBatch(moveToEventLogSQL, acked, failed)).Close()
	if isMoveConflict(err) {
		// The batch is one implicit transaction: nothing of it happened.
		err = r.db.SendBatch(qctx, r.markBatch(moveToEventLogKeepSQL, acked, failed)).Close()
	}
	if err != nil {
		return fmt.Errorf("cannot mark %d outbox rows published: %w", len(acked), err)
	}
	r.deleted += len(acked)
	return nil
}

// markBatch is mark's statements, with move as the statement that moves rows to
// event_log.
func (r *Relay) markBatch(move string, acked, failed []int64) *pgx.Batch {
	b := &pgx.Batch{}
	switch {
	case len(acked) > 0 && r.cfg.EventRetention > 0:
		b.Queue(move, acked)
	case len(acked) > 0:
		b.Queue(`DELETE FROM outbox WHERE id = ANY($1)`, acked)
	}
	if len(failed) > 0 {
		b.Queue(`UPDATE outbox SET attempts = attempts + 1 WHERE id = ANY($1)`, failed)
	}
	return b
}

// isMoveConflict reports whether err is the move finding an event already in
// event_log under its key (see moveToEventLogSQL), not a position taken by a
// second mover: that one must fail.
func isMoveConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" /* unique_violation */ && pgErr.ConstraintName == eventLogKey
}

// vacuumIfDue starts a VACUUM of the outbox once VacuumAfter rows were deleted
// since the last one, at most once per VacuumEvery, on a pool connection in the
// background so that publishing goes on meanwhile. A VACUUM (not FULL) blocks no
// reader or writer; over a table whose live rows are a few batches it takes
// milliseconds, a tenth of a second after a burst of 200,000 rows: the work
// autovacuum would do up to a minute later. A failure is logged, not fatal. A
// role that does not own the table gets a warning from PostgreSQL and nothing
// is vacuumed.
func (r *Relay) vacuumIfDue(ctx context.Context) {
	if r.cfg.VacuumAfter < 0 || r.deleted < r.cfg.VacuumAfter || time.Since(r.lastVacuum) < r.cfg.VacuumEvery ||
		!r.vacuumOn.CompareAndSwap(false, true) {
		return
	}
	r.deleted, r.lastVacuum = 0, time.Now()
	r.vacuuming.Add(1)
	go func() {
		defer r.vacuuming.Done()
		defer r.vacuumOn.Store(false)
		qctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		// The simple protocol: VACUUM cannot run inside a transaction block.
		if _, err := r.pool.Exec(qctx, "VACUUM outbox", pgx.QueryExecModeSimpleProtocol); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("cannot vacuum the outbox", "error", err)
			}
			return
		}
		outboxVacuums.Inc()
	}()
}

// moveToEventLogSQL deletes confirmed outbox rows and keeps them in event_log
// (the change feed's history) in one statement. The sequence is the envelope's,
// stored beside it (migration 00090); rows written before that column are read
// from the payload, and rows written before envelopes carried it fall back to
// metadata.userVersion. coalesce evaluates its arguments only as far as it needs,
// so a row with the column parses nothing.
//
// position numbers the global feed. An outbox id is not commit order (two
// transactions take ids, the later id may commit first), but only the relay
// leader moves rows, one statement after the other, each numbering its rows
// after the largest position so far: positions grow in the order the moves
// commit, so a reader that saw position P has seen every position below it. A
// second mover (a lost leadership) collides on the unique position and its
// statement fails, leaving its rows in the outbox to be published and moved again.
//
// The INSERT has no ON CONFLICT: an outbox id is moved at most once (the move
// deletes the row it inserts, and a second mover's DELETE finds the rows gone),
// so event_log cannot hold the key, and without an arbiter PostgreSQL skips a
// probe of the primary key and the speculative insertion's confirmation record
// per event. Should the key be there all the same (a restored backup whose
// outbox sequence went back), the statement fails on the primary key and mark
// sends it again as moveToEventLogKeepSQL, which keeps the event already stored.
const moveToEventLogSQL = `WITH moved AS (
	DELETE FROM outbox WHERE id = ANY($1) RETURNING id, event_id, user_id, routing_key, payload, created_at, sequence)
INSERT INTO event_log (user_id, sequence, outbox_id, event_id, routing_key, payload, created_at, position)
SELECT user_id, coalesce(sequence, (SELECT coalesce((e->>'sequence')::bigint, (e->'metadata'->>'userVersion')::bigint, 0)
		FROM (SELECT convert_from(payload, 'UTF8')::jsonb AS e) AS env)),
	id, event_id, routing_key, payload, created_at,
	(SELECT coalesce(max(position), 0) FROM event_log) + row_number() OVER (ORDER BY id)
FROM moved`

// moveToEventLogKeepSQL is moveToEventLogSQL keeping the event already stored
// under a key; eventLogKey is the name of that key (migration 00020).
const (
	moveToEventLogKeepSQL = moveToEventLogSQL + `
ON CONFLICT (user_id, sequence, outbox_id) DO NOTHING`
	eventLogKey = "event_log_pkey"
)

// pruneEventLog deletes events older than the retention, in bounded chunks,
// oldest position first (event_log has no index on created_at: migration 00150).
// Each chunk looks at the pruneChunk lowest positions and deletes those older
// than the retention, so an event newer than the retention is never deleted; a
// chunk that deleted fewer ends the round. Positions follow the moves and
// created_at the writes' transactions, so the two orders differ by about the
// length of a transaction: an old event past a chunk that met newer ones waits
// for them, about that long.
func (r *Relay) pruneEventLog(ctx context.Context) (int64, error) {
	var total int64
	for range pruneChunks {
		qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
		tag, err := r.db.Exec(qctx, `
			DELETE FROM event_log WHERE ctid IN (
				SELECT ctid FROM (SELECT ctid, created_at FROM event_log ORDER BY position LIMIT $2) AS oldest
				WHERE created_at < now() - $1 * interval '1 second')`, r.cfg.EventRetention.Seconds(), pruneChunk)
		cancel()
		if err != nil {
			return total, fmt.Errorf("cannot prune the event log: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneChunk {
			break
		}
	}
	return total, nil
}

// prune deletes rows published more than PruneAfter ago, in bounded chunks:
// rows that a relay of an earlier version stamped published_at instead of
// deleting them (see mark).
func (r *Relay) prune(ctx context.Context) (int64, error) {
	r.lastPrune = time.Now()
	var total int64
	for range pruneChunks {
		qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
		tag, err := r.db.Exec(qctx, `
			DELETE FROM outbox WHERE id IN (
				SELECT id FROM outbox
				WHERE published_at IS NOT NULL AND published_at < now() - $1 * interval '1 second'
				ORDER BY published_at LIMIT $2)`, r.cfg.PruneAfter.Seconds(), pruneChunk)
		cancel()
		if err != nil {
			r.resign()
			return total, fmt.Errorf("cannot prune the outbox: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneChunk {
			break
		}
	}
	if total > 0 {
		r.log.Debug("outbox pruned", "rows", total)
	}
	if r.cfg.EventRetention > 0 {
		n, err := r.pruneEventLog(ctx)
		if err != nil {
			r.resign()
			return total, err
		}
		if n > 0 {
			r.log.Debug("event log pruned", "rows", n)
		}
	}
	return total, nil
}

// watchBacklog refreshes the backlog gauges until ctx ends.
func (r *Relay) watchBacklog(ctx context.Context) {
	t := time.NewTicker(r.cfg.GaugeInterval)
	defer t.Stop()
	for {
		r.refreshGauges(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Relay) refreshGauges(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
	defer cancel()
	var n int64
	var age float64
	err := r.pool.QueryRow(qctx, `
		SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
		FROM outbox WHERE published_at IS NULL`).Scan(&n, &age)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Debug("cannot refresh the outbox gauges", "error", err)
		}
		return
	}
	outboxBacklog.Set(float64(n))
	outboxOldestAge.Set(max(age, 0))
}
