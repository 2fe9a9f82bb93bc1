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
	fetch := func(ctx context.Context, after int64, limit int) ([]userservice.FeedEvent, error) {
		return s.deps.Events.UserEvents(ctx, target, after, limit)
	}
	if sse {
		// id: only on the last event of a change (SSE keeps the last id seen), so
		// that Last-Event-ID resumes after a whole change, never inside one.
		s.streamEvents(r, after, fetch, func(b []userservice.FeedEvent, i int) (int64, bool) {
			return b[i].Sequence, i == len(b)-1 || b[i+1].Sequence != b[i].Sequence
		})
		return nil
	}
	events, err := fetch(r.ctx, after, limit)
	if err != nil {
		return err
	}
	return writeNDJSON(r, events)
}

// allEvents answers GET /events (admin): the global feed, every user's
// published events in the order their publication committed; `after` and
// Last-Event-ID are a position.
func (s *Server) allEvents(r *request) error {
	sse := strings.Contains(string(r.fc.Request.Header.Peek("Accept")), "text/event-stream")
	after, limit, err := r.feedQuery(sse)
	if err != nil {
		return err
	}
	if err := r.requireAdmin(); err != nil {
		return err
	}
	if s.deps.Events == nil {
		return userservice.ErrUnavailable
	}
	if sse {
		s.streamEvents(r, after, s.deps.Events.Events, func(b []userservice.FeedEvent, i int) (int64, bool) {
			return b[i].Position, true
		})
		return nil
	}
	events, err := s.deps.Events.Events(r.ctx, after, limit)
	if err != nil {
		return err
	}
	// Each line leads with its position, the cursor to resume after it.
	for i, e := range events {
		b := make([]byte, 0, len(e.Envelope)+24)
		b = append(b, `{"position":`...)
		b = strconv.AppendInt(b, e.Position, 10)
		if len(e.Envelope) > 2 {
			b = append(b, ',')
		}
		events[i].Envelope = append(b, e.Envelope[1:]...)
	}
	return writeNDJSON(r, events)
}

// writeNDJSON answers the envelopes, one a line.
func writeNDJSON(r *request, events []userservice.FeedEvent) error {
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
// away or the server shuts down: the events fetch returns after `after`, then
// new ones as they commit. cursor gives an event's cursor and whether to send it
// as `id:`; the stream continues after the last event's cursor.
func (s *Server) streamEvents(r *request, after int64, fetch func(ctx context.Context, after int64, limit int) ([]userservice.FeedEvent, error),
	cursor func(batch []userservice.FeedEvent, i int) (int64, bool)) {
	r.fc.SetStatusCode(fasthttp.StatusOK)
	r.fc.SetContentType("text/event-stream")
	r.fc.Response.Header.Set("Cache-Control", "no-cache")
	r.fc.Response.Header.Set("X-Accel-Buffering", "no")
	conn := r.fc.Conn()
	base, timeout, logger, path := s.streams, s.cfg.RequestTimeout, s.logger, string(r.fc.Path())
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
			batch, err := fetch(ctx, last, maxFeedLimit)
			cancel()
			if err != nil {
				if base.Err() == nil {
					logger.Warn("event stream cannot read events", "path", path, "error", err.Error())
				}
				return // the client reconnects with Last-Event-ID
			}
			if len(batch) > 0 {
				var b []byte
				for i, e := range batch {
					if id, send := cursor(batch, i); send {
						b = append(b, "id: "...)
						b = strconv.AppendInt(b, id, 10)
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
				last, _ = cursor(batch, len(batch)-1)
				idle = time.Now()
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
