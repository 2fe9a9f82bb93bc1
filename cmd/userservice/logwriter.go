package main

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// bufferedWriter batches log lines: Write copies into a buffer that a ticker flushes
// every interval (and whenever it fills). It is safe for concurrent use. Lines still
// buffered when the process is killed with -9 are lost, at most one interval's worth.
type bufferedWriter struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

func newBufferedWriter(w io.Writer, every time.Duration) *bufferedWriter {
	b := &bufferedWriter{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				b.Flush()
			case <-b.stop:
				b.Flush()
				return
			}
		}
	}()
	return b
}

// Write implements io.Writer.
func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Write(p)
}

// Flush writes out what is buffered.
func (b *bufferedWriter) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.w.Flush()
}

// Close flushes and stops the ticker. Writes after Close still reach the buffer but
// are only written by an explicit Flush.
func (b *bufferedWriter) Close() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
}
