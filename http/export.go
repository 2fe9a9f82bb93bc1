package http

import (
	"bufio"
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// exportPage is how many sessions, audit records or events an export reads
// from PostgreSQL at a time: an export holds one page in memory, whatever the
// user's size.
const exportPage = 500

// exportUser answers GET /users/{id}/export (self, admin; issue 14): one JSON
// document, `{formatVersion, exportedAt, user, enrollments, preferences,
// attributes, sessions, audit, events}`, sent as an attachment. The data_exported audit
// record commits first (through the user's actor), so no export goes
// unrecorded; the profile, enrollments and preferences are the state that
// commit left, and sessions, audit records and retained events are streamed
// from PostgreSQL in keyset pages, oldest first.
func (s *Server) exportUser(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	if s.deps.PersonalData == nil || s.deps.Events == nil {
		return userservice.ErrUnavailable
	}
	out, err := s.deps.Users.Execute(r.ctx, target, userservice.RecordExport{}, r.meta(nil))
	if err != nil {
		return err
	}
	st := out.State
	head, err := exportHead(st)
	if err != nil {
		return userservice.Wrap(userservice.ECodeInternal, "cannot encode the export", err)
	}
	r.etag(st.User.Version)
	r.fc.SetStatusCode(fasthttp.StatusOK)
	r.fc.SetContentType("application/json; charset=utf-8")
	r.fc.Response.Header.Set("Content-Disposition", `attachment; filename="user-`+st.User.ID+`-export.json"`)
	r.fc.Response.Header.Set("Cache-Control", "no-store")

	ex := &exporter{
		userID: st.User.ID, data: s.deps.PersonalData, events: s.deps.Events,
		base: s.base, timeout: s.cfg.RequestTimeout,
	}
	conn, writeTimeout, logger, reqID := r.fc.Conn(), s.cfg.ReadTimeout, s.logger, r.requestID
	r.fc.SetBodyStreamWriter(func(w *bufio.Writer) {
		ex.w = w
		ex.deadline = func() { renewWriteDeadline(conn, writeTimeout) }
		if err := ex.run(head); err != nil {
			// The status is sent: all that is left is to cut the document short,
			// which no JSON parser takes for a whole export.
			logger.Warn("export cut short", "userId", ex.userID, "requestId", reqID, "error", err.Error())
		}
	})
	return nil
}

// exportHead is the document up to the sessions: what the user's actor holds.
func exportHead(st *userservice.State) ([]byte, error) {
	head, err := json.Marshal(struct {
		FormatVersion int                           `json:"formatVersion"`
		ExportedAt    userservice.Time              `json:"exportedAt"`
		User          userservice.User              `json:"user"`
		Enrollments   []userservice.Enrollment      `json:"enrollments"`
		Preferences   []userservice.Preference      `json:"preferences"`
		Attributes    map[string]stdjson.RawMessage `json:"attributes"`
	}{userservice.ExportFormatVersion, userservice.Now(), st.User, st.SortedEnrollments(""), st.SortedPreferences(""), attributesOf(st)})
	if err != nil {
		return nil, err
	}
	return head[:len(head)-1], nil // the object stays open for the streamed parts
}

// exporter streams the parts of an export that PostgreSQL holds.
type exporter struct {
	userID   string
	data     userservice.PersonalData
	events   userservice.EventHistory
	base     context.Context
	timeout  time.Duration
	w        *bufio.Writer
	deadline func()
}

var errExportCancelled = errors.New("export cancelled: the server is shutting down")

func (e *exporter) run(head []byte) error {
	if err := e.write(head); err != nil {
		return err
	}
	if err := e.sessions(); err != nil {
		return err
	}
	if err := e.audit(); err != nil {
		return err
	}
	if err := e.eventLog(); err != nil {
		return err
	}
	if err := e.write([]byte("]}")); err != nil {
		return err
	}
	e.deadline()
	return e.w.Flush()
}

func (e *exporter) write(b []byte) error {
	e.deadline()
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("cannot write the export: %w", err)
	}
	return nil
}

// ctx is the context of one page read: it ends with the server.
func (e *exporter) ctx() (context.Context, context.CancelFunc, error) {
	if e.base.Err() != nil {
		return nil, nil, errExportCancelled
	}
	ctx, cancel := context.WithTimeout(e.base, e.timeout)
	return ctx, cancel, nil
}

// array writes `,"name":[` then every element that the pages yield, then `]`.
// next returns the next page's elements, already encoded, or none at the end.
func (e *exporter) array(name string, next func(ctx context.Context) ([][]byte, error)) error {
	if err := e.write([]byte(`,"` + name + `":[`)); err != nil {
		return err
	}
	first := true
	for {
		ctx, cancel, err := e.ctx()
		if err != nil {
			return err
		}
		items, err := next(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("cannot read the %s: %w", name, err)
		}
		if len(items) == 0 {
			return e.write([]byte("]"))
		}
		for _, b := range items {
			if !first {
				b = append([]byte{','}, b...)
			}
			first = false
			if err := e.write(b); err != nil {
				return err
			}
		}
	}
}

func encodeAll[T any](items []T) ([][]byte, error) {
	out := make([][]byte, len(items))
	for i := range items {
		b, err := json.Marshal(&items[i])
		if err != nil {
			return nil, fmt.Errorf("cannot encode: %w", err)
		}
		out[i] = b
	}
	return out, nil
}

func (e *exporter) sessions() error {
	var after *userservice.RowKey
	return e.array("sessions", func(ctx context.Context) ([][]byte, error) {
		page, err := e.data.SessionsAfter(ctx, e.userID, after, exportPage)
		if err != nil || len(page) == 0 {
			return nil, err
		}
		last := page[len(page)-1]
		after = &userservice.RowKey{At: last.StartedAt, ID: last.ID}
		return encodeAll(page)
	})
}

func (e *exporter) audit() error {
	var after *userservice.RowKey
	return e.array("audit", func(ctx context.Context) ([][]byte, error) {
		page, err := e.data.AuditAfter(ctx, e.userID, after, exportPage)
		if err != nil || len(page) == 0 {
			return nil, err
		}
		last := page[len(page)-1]
		after = &userservice.RowKey{At: last.CreatedAt, ID: last.ID}
		return encodeAll(page)
	})
}

// eventLog writes the retained events (and those not yet published) as their
// envelopes, in the user's order. The last array stays open: run closes it
// with the document.
func (e *exporter) eventLog() error {
	if err := e.write([]byte(`,"events":[`)); err != nil {
		return err
	}
	var after int64
	first := true
	for {
		ctx, cancel, err := e.ctx()
		if err != nil {
			return err
		}
		page, err := e.events.UserEvents(ctx, e.userID, after, exportPage)
		cancel()
		if err != nil {
			return fmt.Errorf("cannot read the events: %w", err)
		}
		if len(page) == 0 {
			return nil
		}
		for _, ev := range page {
			if !first {
				if err := e.write([]byte{','}); err != nil {
					return err
				}
			}
			first = false
			if err := e.write(ev.Envelope); err != nil {
				return err
			}
		}
		after = page[len(page)-1].Sequence
	}
}

// renewWriteDeadline moves the connection's write deadline (fasthttp's
// WriteTimeout, set once per answer) writeTimeout ahead, so that a long export
// to a reader that keeps reading is not cut. A RequestCtx made without a
// connection (fasthttp's fake one, as tests that call Handler directly use)
// panics on it: there is no deadline to renew then.
func renewWriteDeadline(conn net.Conn, writeTimeout time.Duration) {
	defer func() { _ = recover() }()
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
}
