package messaging

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lms-platform/userservice"
)

// Results of a consumed message, the result label of
// user_service_events_consumed_total.
const (
	resultProcessed    = "processed"     // the effect was committed
	resultDuplicate    = "duplicate"     // already processed, or nothing to do (profile exists)
	resultInvalid      = "invalid"       // unparsable or invalid: dead-lettered at once
	resultRetried      = "retried"       // a transient failure, retried after a back-off
	resultWaiting      = "waiting"       // a dependency is down: held, retried without counting an attempt
	resultDeadLettered = "dead_lettered" // still failing after MaxAttempts: dead-lettered
	resultFailed       = "failed"        // refused by the domain (e.g. email taken): dead-lettered
	resultSkipped      = "skipped"       // switched off by a feature flag: acknowledged, no effect
)

// consumedTypes are the routing keys the queue is bound to and the event types
// the consumer applies (CONTRACT.md, Events).
func consumedTypes() []string {
	return []string{
		userservice.AuthUserRegistered, userservice.AuthUserLogin,
		userservice.AuthUserLogout, userservice.AuthUserPasswordChanged,
		userservice.AuthUserEmailVerified,
	}
}

func consumedType(typ string) bool {
	switch typ {
	case userservice.AuthUserRegistered, userservice.AuthUserLogin,
		userservice.AuthUserLogout, userservice.AuthUserPasswordChanged,
		userservice.AuthUserEmailVerified:
		return true
	}
	return false
}

// countConsumed counts a handled message; the type label is bounded to the
// consumed types and "unknown".
func countConsumed(typ, result string) {
	if !consumedType(typ) {
		typ = "unknown"
	}
	metrics.GetOrCreateCounter(`user_service_events_consumed_total{type="` + typ + `",result="` + result + `"}`).Inc()
}

// Defaults of ConsumerConfig.
const (
	DefaultQueue               = "user-service.events"
	DefaultConsumerPrefetch    = 64
	DefaultConsumerWorkers     = 8
	DefaultConsumerMaxAttempts = 5
	DefaultRetryBackoff        = 200 * time.Millisecond
	DefaultRetryBackoffMax     = 30 * time.Second
	DefaultOutageBackoffMax    = 5 * time.Second
	DefaultProcessTimeout      = 10 * time.Second
)

// ProcessedChecker says whether a consumed message id was already processed
// (processed_messages). A cheap early skip; the writer's check in the effect's
// transaction is the one that makes processing exactly-once.
type ProcessedChecker interface {
	IsProcessed(ctx context.Context, messageID string) (bool, error)
}

// ConsumerConfig holds the consumer's knobs. Zero values take the defaults above.
type ConsumerConfig struct {
	// URL is the AMQP URL of the broker (RABBITMQ_URL). Required.
	URL string
	// Exchange is the topic exchange the Auth Service publishes to.
	Exchange string
	// Queue is the durable queue to consume (RABBITMQ_QUEUE); dead letters go to
	// Queue+".dlq".
	Queue string
	// Prefetch bounds the unacknowledged messages held at once, retries included.
	Prefetch int
	// Workers is the number of messages applied in parallel (by authId).
	Workers int
	// MaxAttempts is how many times a transiently failing message is tried
	// before it is dead-lettered.
	MaxAttempts int
	// RetryBackoff is the wait after the first failed attempt; it doubles with
	// each further one, up to RetryBackoffMax.
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	// OutageBackoffMax caps the back-off of a message held while a dependency
	// is down (PostgreSQL unreachable, a timeout). Such a failure is not the
	// message's: it counts no attempt, the message stays unacknowledged and is
	// tried again until the dependency is back (issue 11), so an outage of any
	// length dead-letters nothing. Default 5s: the wait after recovery.
	OutageBackoffMax time.Duration
	// ProcessTimeout bounds one attempt (lookups and the actor's commit) and one
	// dead-letter publish.
	ProcessTimeout time.Duration
	// ReconnectMax caps the back-off between reconnections.
	ReconnectMax time.Duration
	// DialTimeout bounds connecting and declaring the topology.
	DialTimeout time.Duration

	// Feature flags of the spec, all off by default (the spec's defaults):
	// IgnoreRegistrations acknowledges auth.user.registered without creating a
	// profile (ENABLE_USER_REGISTRATION=false); NoSessions counts logins without
	// keeping sessions and ignores logouts (ENABLE_SESSION_TRACKING=false); NoAudit
	// keeps no audit records, so password_changed has no effect (AUDIT_ENABLED=false).
	IgnoreRegistrations bool
	NoSessions          bool
	NoAudit             bool
}

func (c *ConsumerConfig) withDefaults() (ConsumerConfig, error) {
	out := *c
	if out.URL == "" {
		return out, errors.New("cannot create consumer: no RabbitMQ URL")
	}
	if out.Exchange == "" {
		out.Exchange = DefaultExchange
	}
	if out.Queue == "" {
		out.Queue = DefaultQueue
	}
	if out.Prefetch <= 0 {
		out.Prefetch = DefaultConsumerPrefetch
	}
	if out.Prefetch > 65535 {
		return out, fmt.Errorf("cannot create consumer: prefetch %d is above 65535", out.Prefetch)
	}
	if out.Workers <= 0 {
		out.Workers = DefaultConsumerWorkers
	}
	if out.MaxAttempts <= 0 {
		out.MaxAttempts = DefaultConsumerMaxAttempts
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&out.RetryBackoff, DefaultRetryBackoff)
	def(&out.RetryBackoffMax, DefaultRetryBackoffMax)
	def(&out.OutageBackoffMax, DefaultOutageBackoffMax)
	def(&out.ProcessTimeout, DefaultProcessTimeout)
	def(&out.ReconnectMax, DefaultReconnectMax)
	def(&out.DialTimeout, DefaultDialTimeout)
	return out, nil
}

// Consumer applies Auth Service events to user actors (see the package doc for
// the retry and dead-letter policy). Run must be called once; Connected and Ping
// are safe for concurrent use.
type Consumer struct {
	cfg       ConsumerConfig
	users     userservice.Users
	dir       userservice.Directory
	processed ProcessedChecker
	log       *slog.Logger

	busy     atomic.Bool
	linkSlot // current broker connection: Connected and Ping
}

// NewConsumer returns a consumer. It does no I/O until Run.
func NewConsumer(cfg ConsumerConfig, users userservice.Users, dir userservice.Directory, processed ProcessedChecker, logger *slog.Logger) (*Consumer, error) {
	switch {
	case users == nil:
		return nil, errors.New("cannot create consumer: nil users")
	case dir == nil:
		return nil, errors.New("cannot create consumer: nil directory")
	case processed == nil:
		return nil, errors.New("cannot create consumer: nil processed checker")
	case logger == nil:
		return nil, errors.New("cannot create consumer: nil logger")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Consumer{cfg: c, users: users, dir: dir, processed: processed, log: logger.With("component", "event-consumer")}, nil
}

// Run consumes until ctx ends, then returns nil. It reconnects with back-off
// whenever the broker goes away.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.busy.CompareAndSwap(false, true) {
		return errors.New("cannot run consumer: already running")
	}
	defer c.busy.Store(false)
	bo := backoff{base: reconnectBase, max: c.cfg.ReconnectMax}
	for ctx.Err() == nil {
		err := c.session(ctx, bo.reset)
		if ctx.Err() != nil {
			break
		}
		d := bo.next()
		c.log.Warn("event consumer lost RabbitMQ, reconnecting", "error", err, "retry_in", d)
		sleep(ctx, d)
	}
	c.log.Info("event consumer stopped")
	return nil
}

// session is one connection's life: declare, consume, dispatch to workers.
type session struct {
	c      *Consumer
	ctx    context.Context // ends with the session; jobs in progress finish on their own deadline
	link   *link
	pub    *amqp.Channel // confirm mode, for dead letters
	shards []chan *job
	wg     sync.WaitGroup
}

// job is one delivery on its way through a worker.
type job struct {
	d        amqp.Delivery
	ev       *authEvent // nil when invalid
	bad      error      // why the message is invalid
	typ      string     // for metrics
	key      string     // authId whose later events wait behind this one's retries; "" for none
	attempts int        // failed attempts so far (the message's own failures)
	outages  int        // attempts in a row that met a dependency outage
	retry    bool       // coming back from a retry timer
}

func (c *Consumer) session(ctx context.Context, connected func()) error {
	l, err := dial(ctx, c.cfg.URL, "user-service event consumer", c.cfg.DialTimeout)
	if err != nil {
		return err
	}
	defer l.close()

	tag := "user-service-" + userservice.NewID()
	stop := l.guard(ctx, c.cfg.DialTimeout)
	ch, pub, deliveries, err := c.declare(l, tag)
	if !stop() && err == nil {
		err = errors.New("timed out")
	}
	if err != nil {
		return fmt.Errorf("cannot set up consuming: %w", err)
	}
	c.swap(l)
	defer c.swap(nil)
	connected()
	c.log.Info("event consumer connected", "queue", c.cfg.Queue, "prefetch", c.cfg.Prefetch)

	sctx, cancel := context.WithCancel(ctx)
	s := &session{c: c, ctx: sctx, link: l, pub: pub, shards: make([]chan *job, c.cfg.Workers)}
	for i := range s.shards {
		// At most Prefetch messages are unacked, so no shard can hold more.
		s.shards[i] = make(chan *job, c.cfg.Prefetch)
		s.wg.Add(1)
		go s.work(s.shards[i])
	}
	defer func() {
		cancel()
		s.wg.Wait() // workers finish the job in hand (bounded by ProcessTimeout)
	}()

	closed := l.conn.NotifyClose(make(chan *amqp.Error, 1))
	for {
		select {
		case <-ctx.Done():
			stop := l.guard(context.Background(), time.Second)
			_ = ch.Cancel(tag, false) // no new deliveries; the unacked ones return to the queue on close
			stop()
			return nil
		case e := <-closed:
			return fmt.Errorf("connection closed: %v", e)
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("delivery channel closed")
			}
			j := c.newJob(d)
			s.shards[s.shard(j)] <- j
		}
	}
}

// declare opens the consuming and publishing channels, declares the queues and
// starts consuming.
func (c *Consumer) declare(l *link, tag string) (ch, pub *amqp.Channel, deliveries <-chan amqp.Delivery, err error) {
	if ch, err = l.conn.Channel(); err != nil {
		return nil, nil, nil, err
	}
	if err = declareExchange(ch, c.cfg.Exchange); err != nil {
		return nil, nil, nil, err
	}
	for _, q := range []string{c.cfg.Queue, c.cfg.Queue + ".dlq"} {
		if _, err = ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			return nil, nil, nil, fmt.Errorf("cannot declare queue %q: %w", q, err)
		}
	}
	for _, k := range consumedTypes() {
		if err = ch.QueueBind(c.cfg.Queue, k, c.cfg.Exchange, false, nil); err != nil {
			return nil, nil, nil, fmt.Errorf("cannot bind queue %q to %q: %w", c.cfg.Queue, k, err)
		}
	}
	if err = ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return nil, nil, nil, fmt.Errorf("cannot set prefetch: %w", err)
	}
	if pub, err = l.conn.Channel(); err != nil {
		return nil, nil, nil, err
	}
	if err = pub.Confirm(false); err != nil {
		return nil, nil, nil, fmt.Errorf("cannot enable publisher confirms: %w", err)
	}
	deliveries, err = ch.Consume(c.cfg.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cannot consume %q: %w", c.cfg.Queue, err)
	}
	return ch, pub, deliveries, nil
}

func (c *Consumer) newJob(d amqp.Delivery) *job {
	j := &job{d: d, typ: d.RoutingKey}
	ev, err := parseAuthEvent(d.Body, d.RoutingKey, d.MessageId, d.CorrelationId)
	if err != nil {
		j.bad = err
		return j
	}
	j.ev, j.typ = ev, ev.Type
	if ev.Type != userservice.AuthUserRegistered {
		// auth.user.registered never waits: it is what the others may wait for.
		j.key = ev.AuthID
	}
	return j
}

// shard keeps one authId's events on one worker, in queue order.
func (s *session) shard(j *job) int {
	h := fnv.New32a()
	if j.ev != nil {
		_, _ = h.Write([]byte(j.ev.AuthID))
	} else {
		_, _ = h.Write([]byte(strconv.FormatUint(j.d.DeliveryTag, 10)))
	}
	return int(h.Sum32() % uint32(len(s.shards)))
}

// work applies the jobs of one shard. While a job of an authId waits for a retry,
// that authId's later jobs are parked behind it, so one user's events keep their
// order; other authIds go on.
func (s *session) work(in chan *job) {
	defer s.wg.Done()
	parked := map[string][]*job{} // authId → jobs waiting behind one on a retry timer
	for {
		var j *job
		select {
		case <-s.ctx.Done():
			return // parked and queued jobs are unacked: the broker redelivers them
		case j = <-in:
		}
		if j.key != "" && !j.retry {
			if q, ok := parked[j.key]; ok {
				parked[j.key] = append(q, j)
				continue
			}
		}
		head := j.retry
		for j != nil && s.ctx.Err() == nil {
			j.retry = false
			if s.process(j) {
				if j.key != "" {
					if _, ok := parked[j.key]; !ok {
						parked[j.key] = nil
					}
				}
				s.later(j, in)
				break
			}
			// j is done; if it held up its authId, the next parked job goes on.
			var next *job
			if q, ok := parked[j.key]; ok && j.key != "" && head {
				if len(q) == 0 {
					delete(parked, j.key)
				} else {
					next, parked[j.key] = q[0], q[1:]
				}
			}
			j = next
		}
	}
}

// later sends j back to its worker after its back-off.
func (s *session) later(j *job, in chan *job) {
	j.retry = true
	n, limit := j.attempts, s.c.cfg.RetryBackoffMax
	if j.outages > 0 {
		n, limit = j.outages, s.c.cfg.OutageBackoffMax
	}
	d := s.c.cfg.RetryBackoff << min(n-1, 30)
	if d <= 0 || d > limit {
		d = limit
	}
	time.AfterFunc(d, func() {
		select {
		case in <- j:
		case <-s.ctx.Done():
		}
	})
}

// process applies one job and acks or dead-letters it; it reports whether the
// job must be retried later.
func (s *session) process(j *job) (retry bool) {
	c := s.c
	// A job in hand finishes even when the session ends, so its ack is not lost.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), c.cfg.ProcessTimeout)
	defer cancel()
	if j.bad != nil {
		log := c.log.With("message_id", j.d.MessageId, "routing_key", j.d.RoutingKey)
		log.Warn("dead-lettering an invalid event", "error", j.bad)
		s.deadLetter(ctx, j, resultInvalid, j.bad)
		return false
	}
	log := c.log.With("message_id", j.ev.ID, "type", j.ev.Type, "correlation_id", j.ev.CorrelationID)
	result, err := c.apply(ctx, j.ev)
	switch {
	case err == nil:
		countConsumed(j.typ, result)
		if aerr := j.d.Ack(false); aerr != nil {
			log.Debug("cannot ack a processed event; it will be redelivered and skipped", "error", aerr)
		}
		return false
	case !transient(err):
		log.Warn("dead-lettering an event the service refused", "error", err)
		s.deadLetter(ctx, j, resultFailed, err)
		return false
	case outage(err):
		j.outages++
		countConsumed(j.typ, resultWaiting)
		if j.outages == 1 {
			log.Warn("a dependency is down; holding the event until it is back", "error", err)
		} else {
			log.Debug("a dependency is still down; holding the event", "tries", j.outages, "error", err)
		}
		return true
	}
	j.outages = 0
	j.attempts++
	if j.attempts >= c.cfg.MaxAttempts {
		log.Error("dead-lettering an event after its last attempt", "attempts", j.attempts, "error", err)
		s.deadLetter(ctx, j, resultDeadLettered, err)
		return false
	}
	countConsumed(j.typ, resultRetried)
	log.Info("event failed, retrying", "attempt", j.attempts, "error", err)
	return true
}

// deadLetter publishes the message to <queue>.dlq with headers saying why, waits
// for the broker's confirm, then acks the original. If that fails, the
// connection is cut: every unacked message returns to the queue and is tried
// again after the reconnect.
func (s *session) deadLetter(ctx context.Context, j *job, result string, cause error) {
	c := s.c
	h := amqp.Table{}
	for k, v := range j.d.Headers {
		h[k] = v
	}
	h["x-dlq-reason"] = result
	h["x-dlq-error"] = truncate(cause.Error(), 1024)
	h["x-dlq-attempts"] = int32(j.attempts)
	h["x-dlq-queue"] = c.cfg.Queue
	h["x-dlq-exchange"] = j.d.Exchange
	h["x-dlq-routing-key"] = j.d.RoutingKey
	h["x-dlq-at"] = time.Now().UTC().Format(userservice.TimeFormat)
	msg := amqp.Publishing{
		Headers: h, ContentType: j.d.ContentType, ContentEncoding: j.d.ContentEncoding,
		DeliveryMode: amqp.Persistent, CorrelationId: j.d.CorrelationId, MessageId: j.d.MessageId,
		Timestamp: j.d.Timestamp, Type: j.d.Type, AppId: j.d.AppId, Body: j.d.Body,
	}
	stop := s.link.guard(ctx, c.cfg.ProcessTimeout)
	dc, err := s.pub.PublishWithDeferredConfirm("", c.cfg.Queue+".dlq", false, false, msg)
	if err == nil {
		err = waitConfirm(ctx, dc)
	}
	stop()
	if err != nil {
		c.log.Error("cannot dead-letter an event; reconnecting so that it is redelivered",
			"message_id", j.d.MessageId, "error", err)
		s.link.abort()
		return
	}
	countConsumed(j.typ, result)
	if aerr := j.d.Ack(false); aerr != nil {
		c.log.Debug("cannot ack a dead-lettered event; it will be redelivered", "error", aerr)
	}
}

// errUnknownAuthID is a transient failure: auth.user.registered may still be on
// its way.
var errUnknownAuthID = userservice.Wrap(userservice.ECodeUnavailable, "No profile with this authId yet", userservice.ErrUserNotFound)

// apply runs an event's effect through the user's actor and returns the result
// label, or an error to classify with transient.
func (c *Consumer) apply(ctx context.Context, ev *authEvent) (string, error) {
	if ev.Type == userservice.AuthUserRegistered && c.cfg.IgnoreRegistrations ||
		ev.Type == userservice.AuthUserLogout && c.cfg.NoSessions {
		return resultSkipped, nil // switched off: nothing to look up
	}
	if done, err := c.processed.IsProcessed(ctx, ev.ID); err != nil {
		c.log.Debug("cannot check processed messages; the writer will", "message_id", ev.ID, "error", err)
	} else if done {
		return resultDuplicate, nil
	}
	meta := userservice.Meta{MessageID: ev.ID, CorrelationID: ev.CorrelationID, Now: userservice.Now(), NoAudit: c.cfg.NoAudit}
	if meta.CorrelationID == "" {
		meta.CorrelationID = userservice.NewID()
	}
	if ev.Type == userservice.AuthUserRegistered {
		return c.register(ctx, ev, meta)
	}

	userID, err := c.dir.UserIDByAuthID(ctx, ev.AuthID)
	if errors.Is(err, userservice.ErrUserNotFound) {
		return "", errUnknownAuthID
	}
	if err != nil {
		return "", fmt.Errorf("cannot look up authId: %w", err)
	}
	at := func(t *userservice.Time) userservice.Time {
		switch {
		case t != nil:
			return *t
		case ev.Timestamp != nil:
			return *ev.Timestamp
		}
		return meta.Now
	}
	var cmd userservice.Command
	switch ev.Type {
	case userservice.AuthUserLogin:
		sid := ev.SessionID
		if sid == "" {
			sid = ev.ID // CONTRACT.md, Details: a login without sessionId uses the message id
		}
		cmd = userservice.RecordLogin{SessionID: sid, IPAddress: ev.IPAddress, UserAgent: ev.UserAgent, At: at(ev.At), NoSession: c.cfg.NoSessions}
	case userservice.AuthUserLogout:
		cmd = userservice.RecordLogout{SessionID: ev.SessionID, At: at(nil)}
	case userservice.AuthUserPasswordChanged:
		cmd = userservice.RecordPasswordChange{At: at(ev.At)}
	case userservice.AuthUserEmailVerified:
		cmd = userservice.VerifyEmail{At: at(ev.At)}
	default:
		return "", fmt.Errorf("cannot apply event type %q", ev.Type)
	}
	_, err = c.users.Execute(ctx, userID, cmd, meta)
	switch {
	case err == nil:
		return resultProcessed, nil
	case isDuplicate(err):
		return resultDuplicate, nil
	case errors.Is(err, userservice.ErrUserNotFound):
		return "", errUnknownAuthID
	}
	return "", err
}

// register creates the profile unless one with the authId exists.
func (c *Consumer) register(ctx context.Context, ev *authEvent, meta userservice.Meta) (string, error) {
	exists := func() (bool, error) {
		_, err := c.dir.UserIDByAuthID(ctx, ev.AuthID)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, userservice.ErrUserNotFound):
			return false, nil
		}
		return false, fmt.Errorf("cannot look up authId: %w", err)
	}
	if ok, err := exists(); err != nil || ok {
		return resultDuplicate, err
	}
	id := userservice.NewID()
	_, err := c.users.Execute(ctx, id, userservice.Register{ID: id, Input: ev.Register, EmailVerified: ev.EmailVerified}, meta)
	switch {
	case err == nil:
		return resultProcessed, nil
	case isDuplicate(err):
		return resultDuplicate, nil
	case userservice.ErrorCode(err) == userservice.ECodeConflict:
		// Lost a race with a concurrent copy of this registration (unique authId):
		// done. Any other conflict (email, username) is the domain's refusal.
		if ok, lerr := exists(); lerr == nil && ok {
			return resultDuplicate, nil
		}
	}
	return "", err
}

// isDuplicate reports whether err is the writer's "message already processed".
func isDuplicate(err error) bool {
	if errors.Is(err, userservice.ErrDuplicateMessage) {
		return true
	}
	var e *userservice.Error
	return errors.As(err, &e) && e.Code == userservice.ErrDuplicateMessage.Code && e.Message == userservice.ErrDuplicateMessage.Message
}

// outage reports whether a failed attempt met a dependency that is down or too
// slow (PostgreSQL unreachable, a deadline), as opposed to a failure of the
// event itself: a profile that does not exist yet, or an unexpected error.
func outage(err error) bool {
	if errors.Is(err, errUnknownAuthID) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch userservice.ErrorCode(err) {
	case userservice.ECodeUnavailable, userservice.ECodeTimeout:
		return true
	}
	return false
}

// transient reports whether a failed attempt may succeed later: dependencies
// down or slow, unknown errors, or a profile not created yet. 4xx-coded domain
// errors are final.
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	switch userservice.ErrorCode(err) {
	case userservice.ECodeUnavailable, userservice.ECodeTimeout, userservice.ECodeInternal:
		return true
	}
	return false
}
