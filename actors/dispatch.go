package actors

import (
	"runtime"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// mailboxThroughput is how many messages a mailbox handles in a row before it
// yields its goroutine: protoactor's default.
const mailboxThroughput = 300

// workerDispatcher runs actor mailboxes on goroutines it keeps, where protoactor's
// default dispatcher starts a new goroutine each time an idle mailbox gets a
// message. Every request wakes two or three mailboxes (owner, user actor, the
// commit's reply), so with the default each paid a goroutine's creation and exit
// and, because a new goroutine starts on a 2 KiB stack, copying that stack as it
// grew through Apply (5% of the service's CPU under PUT preference). A kept worker
// has its stack grown already.
//
// Schedule hands the mailbox's run to a worker parked on an unbuffered channel, so
// it never queues behind a busy one; with none parked it starts a worker, up to
// max of them, and past that a plain goroutine as the default does. Workers live
// as long as the process: one dispatcher serves every actor system of the process
// (mailboxWorkers), so their number is bounded once, not per Registry.
type workerDispatcher struct {
	handoff chan func()
	workers atomic.Int32
	max     int32
}

var _ actor.Dispatcher = (*workerDispatcher)(nil)

// mailboxWorkers is the process's dispatcher for user and owner actors: enough
// workers for every mailbox that can be runnable at once on this machine's
// processors without starting goroutines, few enough that their stacks stay small
// (a worker's stack is a few KiB).
var mailboxWorkers = newWorkerDispatcher(int32(max(64, 16*runtime.GOMAXPROCS(0))))

func newWorkerDispatcher(workers int32) *workerDispatcher {
	return &workerDispatcher{handoff: make(chan func()), max: workers}
}

// Schedule implements [actor.Dispatcher].
func (d *workerDispatcher) Schedule(fn func()) {
	select {
	case d.handoff <- fn:
		return
	default:
	}
	if d.workers.Add(1) <= d.max {
		go d.work(fn)
		return
	}
	d.workers.Add(-1)
	go fn()
}

// Throughput implements [actor.Dispatcher].
func (d *workerDispatcher) Throughput() int { return mailboxThroughput }

// work runs fn, then whatever Schedule hands it, for the life of the process. A
// mailbox's run recovers its actor's panics itself (protoactor escalates them to
// the supervisor), so fn returns.
func (d *workerDispatcher) work(fn func()) {
	for {
		fn()
		fn = <-d.handoff
	}
}
