package http

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// The per-user change feed (issue 15; CONTRACT.md, second round): GET
// /users/{id}/events?after=N answers the user's retained events after sequence N
// as NDJSON, one envelope a line, or, with Accept: text/event-stream, as
// Server-Sent Events that stay open and carry new events as they commit.

const (
	defaultFeedLimit = 100
	maxFeedLimit     = 1000
	// feedPoll is how often an open stream looks for new events; feedKeepAlive
	// how often an idle one sends a comment, so proxies and clients see it alive.
	feedPoll      = 200 * time.Millisecond
	feedKeepAlive = 15 * time.Second
)

// feedQuery parses after (or, for a stream, Last-Event-ID) and limit.
func (r *request) feedQuery(sse bool) (after int64, limit int, err error) {
	q := r.query()
	var details []userservice.FieldError
	raw, field := q.Get("after"), "after"
	if !q.Has("after") && sse {
		raw, field = strings.TrimSpace(string(r.fc.Request.Header.Peek("Last-Event-ID"))), "Last-Event-ID"
	}
	if raw != "" || q.Has("after") {
		n, perr := strconv.ParseInt(raw, 10, 64)
		if perr != nil || n < 0 {
			details = append(details, userservice.FieldError{Field: field, Message: "must be a sequence: an integer of at least 0"})
		}
		after = n
	}
	limit = defaultFeedLimit
	if q.Has("limit") {
		n, perr := strconv.Atoi(q.Get("limit"))
		if perr != nil || n < 1 || n > maxFeedLimit {
			details = append(details, userservice.FieldError{Field: "limit", Message: "must be an integer from 1 to " + strconv.Itoa(maxFeedLimit)})
		}
		limit = n
	}
	if details != nil {
		return 0, 0, userservice.ValidationError(details)
	}
	return after, limit, nil
}

// userEvents answers GET /users/{id}/events (self, admin).
func (s *Server) userEvents(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	sse := strings.Contains(string(r.fc.Request.Header.Peek("Accept")), "text/event-stream")
	after, limit, err := r.feedQuery(sse)
	if err != nil {
		return err
	}
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	if _, err := r.state(target); err != nil {
		return err
	}
	if s.deps.Events == nil {
		return userservice.ErrUnavailable
	}
	if sse {
		s.streamEvents(r, target, after)
		return nil
	}
	events, err := s.deps.Events.UserEvents(r.ctx, target, after, limit)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range events {
		n += len(e.Envelope) + 1
	}
	b := make([]byte, 0, n)
	for _, e := range events {
		b = append(b, e.Envelope...)
		b = append(b, '\n')
	}
	r.fc.SetStatusCode(fasthttp.StatusOK)
	r.fc.SetContentType("application/x-ndjson")
	r.fc.SetBody(b)
	return nil
}

// streamEvents answers with an event stream that lasts until the client goes
// away or the server shuts down. Each event's `id:` is its sequence, sent only
// on the last event of a change (SSE keeps the last id seen), so that
// Last-Event-ID resumes after a whole change and never inside one.
func (s *Server) streamEvents(r *request, userID string, after int64) {
	r.fc.SetStatusCode(fasthttp.StatusOK)
	r.fc.SetContentType("text/event-stream")
	r.fc.Response.Header.Set("Cache-Control", "no-cache")
	r.fc.Response.Header.Set("X-Accel-Buffering", "no")
	conn := r.fc.Conn()
	events, base, timeout, logger := s.deps.Events, s.streams, s.cfg.RequestTimeout, s.logger
	writeTimeout := s.cfg.ReadTimeout // the server's WriteTimeout, renewed before each write
	r.fc.SetBodyStreamWriter(func(w *bufio.Writer) {
		last, idle := after, time.Now()
		write := func(b []byte) bool {
			_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := w.Write(b); err != nil {
				return false
			}
			return w.Flush() == nil
		}
		if !write([]byte("retry: 1000\n\n")) {
			return
		}
		for {
			ctx, cancel := context.WithTimeout(base, timeout)
			batch, err := events.UserEvents(ctx, userID, last, maxFeedLimit)
			cancel()
			if err != nil {
				if base.Err() == nil {
					logger.Warn("event stream cannot read events", "userId", userID, "error", err.Error())
				}
				return // the client reconnects with Last-Event-ID
			}
			if len(batch) > 0 {
				var b []byte
				for i, e := range batch {
					if i == len(batch)-1 || batch[i+1].Sequence != e.Sequence {
						b = append(b, "id: "...)
						b = strconv.AppendInt(b, e.Sequence, 10)
						b = append(b, '\n')
					}
					b = append(b, "event: "...)
					b = append(b, e.Type...)
					b = append(b, "\ndata: "...)
					b = append(b, e.Envelope...) // compact JSON: no newline inside
					b = append(b, "\n\n"...)
				}
				if !write(b) {
					return
				}
				last, idle = batch[len(batch)-1].Sequence, time.Now()
				continue
			}
			if time.Since(idle) >= feedKeepAlive {
				if !write([]byte(": keep-alive\n\n")) {
					return
				}
				idle = time.Now()
			}
			select {
			case <-base.Done():
				return
			case <-time.After(feedPoll):
			}
		}
	})
}
