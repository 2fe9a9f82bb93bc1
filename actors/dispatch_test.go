package actors

import (
	"bytes"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestWorkerDispatcherRunsEachOnce schedules from many goroutines at once, with
// runs that block so that the workers run out: every run happens exactly once, and
// no more workers start than the dispatcher's max.
func TestWorkerDispatcherRunsEachOnce(t *testing.T) {
	d := newWorkerDispatcher(4)
	const senders, each = 8, 250
	var ran [senders * each]atomic.Int32
	release := make(chan struct{})
	var done sync.WaitGroup
	done.Add(senders * each)
	var scheduled sync.WaitGroup
	for s := range senders {
		scheduled.Add(1)
		go func() {
			defer scheduled.Done()
			for i := range each {
				n := s*each + i
				d.Schedule(func() {
					if n%50 == 0 {
						<-release // some runs hold their worker until every run is scheduled
					}
					ran[n].Add(1)
					done.Done()
				})
			}
		}()
	}
	scheduled.Wait()
	close(release)
	done.Wait()
	for n := range ran {
		if c := ran[n].Load(); c != 1 {
			t.Fatalf("run %d ran %d times, want 1", n, c)
		}
	}
	if w := d.workers.Load(); w > d.max {
		t.Fatalf("%d workers started, want at most %d", w, d.max)
	}
}

// TestWorkerDispatcherReusesItsWorker runs one mailbox run after another: they
// run on the dispatcher's one worker, not each on a new goroutine (the default
// dispatcher's behaviour, whose goroutines start on a small stack).
func TestWorkerDispatcherReusesItsWorker(t *testing.T) {
	d := newWorkerDispatcher(1)
	const runs = 200
	seen := map[string]int{}
	for range runs {
		id := make(chan string, 1)
		d.Schedule(func() { id <- goroutineID() })
		seen[<-id]++
		runtime.Gosched() // let the worker park on the handoff again
	}
	if len(seen) > runs/2 {
		t.Fatalf("%d runs ran on %d goroutines, want most on the one worker", runs, len(seen))
	}
}

// goroutineID is the number runtime.Stack prints for the calling goroutine.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	buf = bytes.TrimPrefix(buf, []byte("goroutine "))
	return string(buf[:bytes.IndexByte(buf, ' ')])
}
