package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	userservice "github.com/lms-platform/userservice"
)

// The messages of both actor kinds. Owners route get and execute by userID and
// handle the passivation messages; user actors handle everything but
// passivateRequest and passivateCancel.

// request is what every call carries: the user it is for, when it was sent (for the
// mailbox-wait histogram), when its caller stops waiting, and where the answer goes.
type request struct {
	userID   string
	sent     time.Time
	deadline time.Time
	// reply is the caller's channel, buffered for the one answer. A protoactor
	// reply process as the envelope's sender cost a registration, a lookup and a
	// removal in the process registry per call (4% of the service's CPU under
	// PUT /me); a request that reaches the dead letter process is still answered
	// (Registry.deadLetter).
	reply chan any
}

// requester is every request message: get, execute and reload.
type requester interface{ req() *request }

func (r *request) req() *request { return r }

// expired reports whether the caller has given up on the request.
func (r *request) expired(now time.Time) bool { return now.After(r.deadline) }

// get asks for the committed state (*userservice.State or an error). A non-nil
// touch also records activity at that time (lastActiveAt, written behind).
type get struct {
	request
	touch *userservice.Time
}

// execute applies a command; the reply is *userservice.Outcome or an error.
type execute struct {
	request
	cmd  userservice.Command
	meta userservice.Meta
}

// reload makes the user actor load its state again before it answers anything
// queued after it (cluster mode: a node that takes a user over must not serve the
// copy it may still hold from an earlier ownership). The reply is *reloadDone once
// the load has started; requests after it wait for the load.
type reload struct {
	request
}

// reloadDone acknowledges a reload.
type reloadDone struct{}

// loaded is the result of an asynchronous LoadState, sent by the loading goroutine
// to the user actor.
type loaded struct {
	state *userservice.State
	err   error
}

// commitResult is the committer's verdict on the mutation in flight, sent by the
// done callback to the user actor.
type commitResult struct{ err error }

// idleCheck is sent to a user actor by its idle timer. The timer goroutine does
// nothing else: protoactor's own SetReceiveTimeout mutates the actor context from
// the timer goroutine, which the race detector reports.
type idleCheck struct{}

// IgnoreDeadLetterLogging implements actor.IgnoreDeadLetterLogging: a check that
// reaches an actor that just stopped is expected.
func (*idleCheck) IgnoreDeadLetterLogging() {}

// passivateRequest: an idle user actor asks its owner to be stopped.
type passivateRequest struct {
	userID string
	child  *actor.PID
}

// passivateConfirm: the owner has stopped forwarding to the child and buffers its
// messages; the child may stop now unless it got work meanwhile. It is a user
// message, so it arrives after everything the owner forwarded before it.
type passivateConfirm struct{}

// passivateCancel: the child got work after asking; the owner flushes its buffer to
// the child and treats it as active again.
type passivateCancel struct {
	userID string
	child  *actor.PID
}

// idleNotice: a child whose passivation it cancelled for being busy has finished
// that work. The owner skips a child that cancelled until this arrives, so an
// owner over its cap waits for work to end instead of asking busy children again
// and again.
type idleNotice struct {
	userID string
	child  *actor.PID
}
