package http

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// Bulk jobs (issue 15; CONTRACT.md, second round: Jobs). POST /jobs takes an
// import as an upload (text/csv or application/x-ndjson, one user a row) or
// another job as JSON ({type, userIds, status?, courseId?}); the rows go to
// PostgreSQL as they arrive (the server streams this route's body), each
// decoded and validated as POST /users would, so the job starts with the rows
// that cannot be imported already answered 400. The worker (package jobs)
// applies the rest.

const (
	jobsPath = "/api/v1/jobs"
	// maxJobRowBytes bounds one row of an upload.
	maxJobRowBytes = 64 << 10
	// maxJobSpecBytes bounds the JSON body of a non-import job: 100,000 ids
	// take about 4 MB.
	maxJobSpecBytes = 8 << 20
	// jobUploadTimeout bounds reading and storing an upload (REQUEST_TIMEOUT is
	// for single requests; the connection's read timeout still applies).
	jobUploadTimeout = 10 * time.Minute
	// jobResultsPage is how many results are read from PostgreSQL at once.
	jobResultsPage = 1000
)

var errKeyRequired = invalidParam("Idempotency-Key", "is required: a job is started at most once per key")

// csvColumns are the columns an import may have: CreateUser's fields.
var csvColumns = map[string]bool{
	"authId": true, "email": true, "firstName": true, "lastName": true, "username": true, "displayName": true,
	"avatarUrl": true, "bio": true, "phone": true, "timezone": true, "language": true, "role": true,
}

// jobBody is the JSON body of POST /jobs for the jobs other than imports.
type jobBody struct {
	Type     *userservice.JobType `json:"type"`
	UserIDs  []string             `json:"userIds"`
	Status   *userservice.Status  `json:"status"`
	CourseID *string              `json:"courseId"`
}

// validate checks the body and returns the job's parameters.
func (b *jobBody) validate(maxItems int) (userservice.JobParams, error) {
	var p userservice.JobParams
	var details []userservice.FieldError
	add := func(f, m string) { details = append(details, userservice.FieldError{Field: f, Message: m}) }
	switch {
	case b.Type == nil:
		add("type", "is required")
	case *b.Type == userservice.JobImport:
		add("type", "an import is uploaded as text/csv or application/x-ndjson, one user a row")
	case !b.Type.Valid():
		add("type", "must be one of status, delete, enroll, unenroll (or an import upload)")
	}
	typ := userservice.JobType("")
	if b.Type != nil {
		typ = *b.Type
	}
	switch {
	case b.UserIDs == nil && typ == userservice.JobUnenroll:
		// every user enrolled in the course
	case b.UserIDs == nil:
		add("userIds", "is required")
	case len(b.UserIDs) == 0:
		add("userIds", "must not be empty")
	case len(b.UserIDs) > maxItems:
		add("userIds", "must have at most "+strconv.Itoa(maxItems)+" items")
	}
	if typ == userservice.JobStatus {
		switch {
		case b.Status == nil:
			add("status", "is required")
		case !b.Status.Valid():
			add("status", "must be one of active, inactive, suspended, deleted")
		default:
			p.Status = b.Status
		}
	} else if b.Status != nil {
		add("status", "is allowed only in a status job")
	}
	if typ == userservice.JobEnroll || typ == userservice.JobUnenroll {
		id, ok := "", false
		if b.CourseID != nil {
			id, ok = userservice.ParseID(*b.CourseID)
		}
		if !ok {
			add("courseId", "must be a UUID")
		}
		p.CourseID = id
	} else if b.CourseID != nil {
		add("courseId", "is allowed only in an enroll or unenroll job")
	}
	if details != nil {
		return p, userservice.ValidationError(details)
	}
	return p, nil
}

// createJob answers POST /jobs (admin): 202 with the job, queued.
func (s *Server) createJob(r *request) error {
	if s.deps.Jobs == nil {
		return userservice.ErrUnavailable
	}
	key, err := r.idempotencyKey()
	if err != nil {
		return err
	}
	if key == "" {
		return errKeyRequired
	}
	mt, params, _ := mime.ParseMediaType(string(r.fc.Request.Header.ContentType()))
	var format string
	switch mt {
	case "text/csv":
		format = "csv"
	case "application/x-ndjson", "application/ndjson", "application/jsonl":
		format = "ndjson"
	case "application/json":
	default:
		return &userservice.Error{Code: userservice.ECodeUnsupportedMedia,
			Message: "Content-Type must be text/csv or application/x-ndjson (an import) or application/json (other jobs)"}
	}
	if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" {
		return &userservice.Error{Code: userservice.ECodeUnsupportedMedia, Message: "An upload must be UTF-8"}
	}
	h := sha256.New()
	h.Write(r.fc.Method())
	h.Write([]byte{'\n'})
	h.Write(r.fc.URI().PathOriginal())
	h.Write([]byte{'\n'})
	stream := r.fc.RequestBodyStream()
	if stream == nil { // a server without StreamRequestBody (tests) read it whole
		stream = bytes.NewReader(r.fc.Request.Body())
	}
	body := io.TeeReader(stream, h)

	nj := userservice.NewJob{ID: userservice.NewID(), CorrelationID: r.correlationID}
	var src userservice.JobItemSource
	if format == "" {
		raw, err := io.ReadAll(io.LimitReader(body, maxJobSpecBytes+1))
		if err != nil {
			return &userservice.Error{Code: userservice.ECodeInvalidJSON, Message: "Cannot read the request body", Err: err}
		}
		if err := checkBody(raw, r.fc.Request.Header.ContentType(), maxJobSpecBytes); err != nil {
			return err
		}
		var in jobBody
		if err := decodeJSON(raw, &in); err != nil {
			return err
		}
		if nj.Params, err = in.validate(s.cfg.MaxJobItems); err != nil {
			return err
		}
		nj.Type = *in.Type
		if in.UserIDs != nil {
			src = newIDSource(in.UserIDs)
		}
	} else {
		nj.Type, nj.Params.Format = userservice.JobImport, format
		if format == "csv" {
			if src, err = newCSVSource(body); err != nil {
				return err
			}
		} else {
			src = newNDJSONSource(body)
		}
	}
	if err := r.requireAdmin(); err != nil {
		return err
	}
	nj.CreatedBy = r.caller.actorID()
	scope := r.caller.scope()
	rec, err := s.deps.Idempotency.GetIdempotency(r.ctx, scope, key, s.cfg.IdempotencyTTL)
	if err != nil {
		return err
	}
	if rec != nil { // a retry: the body must be the same one
		if _, err := io.Copy(io.Discard, body); err != nil {
			return &userservice.Error{Code: userservice.ECodeInvalidJSON, Message: "Cannot read the request body", Err: err}
		}
		return r.replay(rec, hex.EncodeToString(h.Sum(nil)))
	}
	var hashed string
	nj.Idempotency = func(j *userservice.Job) *userservice.IdempotencyRecord {
		if _, err := io.Copy(io.Discard, body); err != nil { // whatever follows the last row
			return nil
		}
		hashed = hex.EncodeToString(h.Sum(nil))
		b, err := renderSuccess(j, "Job accepted", nil)
		if err != nil {
			return nil
		}
		return &userservice.IdempotencyRecord{CallerID: scope, Key: key, RequestHash: hashed, Status: fasthttp.StatusAccepted,
			Body: b, CreatedAt: userservice.Now()}
	}
	// The upload may take longer than a single request's deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), jobUploadTimeout)
	defer cancel()
	stop := context.AfterFunc(s.base, cancel)
	defer stop()
	j, err := s.deps.Jobs.CreateJob(ctx, nj, src, s.cfg.MaxJobItems)
	if errors.Is(err, userservice.ErrIdempotencyKeyTaken) { // a concurrent duplicate won
		if hashed == "" {
			hashed = hex.EncodeToString(h.Sum(nil))
		}
		rec, gerr := s.deps.Idempotency.GetIdempotency(r.ctx, scope, key, s.cfg.IdempotencyTTL)
		if gerr != nil {
			return gerr
		}
		if rec == nil {
			return err
		}
		return r.replay(rec, hashed)
	}
	if err != nil {
		return err
	}
	if s.deps.JobsNotify != nil {
		s.deps.JobsNotify()
	}
	r.fc.Response.Header.Set("Location", jobsPath+"/"+j.ID)
	return r.ok(fasthttp.StatusAccepted, j, "Job accepted", nil)
}

// jobParam returns the {id} of a job route, after the caller was checked.
func (s *Server) jobParam(r *request) (string, error) {
	id, err := r.uuidParam("jobId")
	if err != nil {
		return "", err
	}
	if err := r.requireAdmin(); err != nil {
		return "", err
	}
	if s.deps.Jobs == nil {
		return "", userservice.ErrUnavailable
	}
	return id, nil
}

// getJob answers GET /jobs/{id} (admin): state, counts and progress.
func (s *Server) getJob(r *request) error {
	id, err := s.jobParam(r)
	if err != nil {
		return err
	}
	j, err := s.deps.Jobs.Job(r.ctx, id)
	if err != nil {
		return err
	}
	return r.ok(fasthttp.StatusOK, j, "", nil)
}

// cancelJob answers DELETE /jobs/{id} (admin): a queued or running job is
// cancelled (items already applied stay applied); a finished one answers 409.
func (s *Server) cancelJob(r *request) error {
	id, err := s.jobParam(r)
	if err != nil {
		return err
	}
	j, err := s.deps.Jobs.CancelJob(r.ctx, id)
	if err != nil {
		return err
	}
	return r.ok(fasthttp.StatusOK, j, "Job cancelled", nil)
}

// jobResults answers GET /jobs/{id}/results (admin): one NDJSON line per item
// that has a result, {item, id, status, error?}, in item order, streamed page by
// page; ?after=N starts after item N.
func (s *Server) jobResults(r *request) error {
	var after int64
	if q := r.query(); q.Has("after") {
		n, err := strconv.ParseInt(q.Get("after"), 10, 64)
		if err != nil || n < 0 {
			return invalidParam("after", "must be an item number: an integer of at least 0")
		}
		after = n
	}
	id, err := s.jobParam(r)
	if err != nil {
		return err
	}
	if _, err := s.deps.Jobs.Job(r.ctx, id); err != nil {
		return err
	}
	first, err := s.deps.Jobs.JobResults(r.ctx, id, after, jobResultsPage)
	if err != nil {
		return err
	}
	r.fc.SetStatusCode(fasthttp.StatusOK)
	r.fc.SetContentType("application/x-ndjson")
	if len(first) < jobResultsPage { // all of it: no stream needed
		b, err := appendResults(nil, first)
		if err != nil {
			return err
		}
		r.fc.SetBody(b)
		return nil
	}
	jobs, base, timeout, logger := s.deps.Jobs, s.base, s.cfg.RequestTimeout, s.logger
	conn, writeTimeout := r.fc.Conn(), s.cfg.ReadTimeout
	r.fc.SetBodyStreamWriter(func(w *bufio.Writer) {
		page := first
		for len(page) > 0 {
			b, err := appendResults(nil, page)
			if err != nil {
				return
			}
			_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := w.Write(b); err != nil || w.Flush() != nil {
				return
			}
			if len(page) < jobResultsPage {
				return
			}
			ctx, cancel := context.WithTimeout(base, timeout)
			page, err = jobs.JobResults(ctx, id, page[len(page)-1].Item, jobResultsPage)
			cancel()
			if err != nil {
				// The status line is gone; the client sees a short stream and
				// resumes with ?after= the last item it got.
				logger.Warn("job results stream cannot read results", "jobId", id, "error", err.Error())
				return
			}
		}
	})
	return nil
}

func appendResults(b []byte, rs []userservice.JobItemResult) ([]byte, error) {
	for i := range rs {
		line, err := json.Marshal(&rs[i])
		if err != nil {
			return nil, err
		}
		b = append(b, line...)
		b = append(b, '\n')
	}
	return b, nil
}

// idSource yields the user ids of a JSON job: a bad id is answered 400 at once,
// a repeated one counts once.
type idSource struct {
	ids  []string
	i    int
	seen map[string]bool
}

func newIDSource(ids []string) *idSource {
	return &idSource{ids: ids, seen: make(map[string]bool, len(ids))}
}

func (s *idSource) Next() (userservice.JobItemInput, error) {
	for s.i < len(s.ids) {
		raw := s.ids[s.i]
		s.i++
		id, ok := userservice.ParseID(raw)
		if !ok {
			if s.seen[raw] {
				continue
			}
			s.seen[raw] = true
			return userservice.JobItemInput{Payload: []byte(raw), Status: fasthttp.StatusBadRequest,
				Error: "Invalid user id: must be a UUID"}, nil
		}
		if s.seen[id] {
			continue
		}
		s.seen[id] = true
		return userservice.JobItemInput{UserID: id}, nil
	}
	return userservice.JobItemInput{}, io.EOF
}

// importRow decodes and validates one row (a JSON object) as POST /users does:
// the item to store, or a 400 answered at once.
func importRow(raw []byte) userservice.JobItemInput {
	var in userservice.CreateUser
	err := decodeJSON(raw, &in)
	if err == nil {
		err = in.Validate()
	}
	if err != nil {
		e, status := wireError(err)
		return userservice.JobItemInput{Status: status, Error: describeError(e)}
	}
	b, err := json.Marshal(&in)
	if err != nil {
		return userservice.JobItemInput{Status: fasthttp.StatusInternalServerError, Error: "Internal server error"}
	}
	return userservice.JobItemInput{Payload: b}
}

// describeError is an error's message with its field details, for one line.
func describeError(e *userservice.Error) string {
	msg := e.Message
	for i, d := range e.Details {
		if i == 0 {
			msg += ": "
		} else {
			msg += "; "
		}
		msg += d.Field + " " + d.Message
	}
	return msg
}

// ndjsonSource reads an NDJSON upload: one JSON object a line; blank lines are
// skipped.
type ndjsonSource struct {
	sc   *bufio.Scanner
	line int
}

func newNDJSONSource(r io.Reader) *ndjsonSource {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxJobRowBytes)
	return &ndjsonSource{sc: sc}
}

func (s *ndjsonSource) Next() (userservice.JobItemInput, error) {
	for s.sc.Scan() {
		s.line++
		line := bytes.TrimSpace(s.sc.Bytes())
		if len(line) == 0 {
			continue
		}
		return importRow(line), nil
	}
	if err := s.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return userservice.JobItemInput{}, invalidUpload(fmt.Sprintf("line %d is longer than %d bytes", s.line+1, maxJobRowBytes))
		}
		return userservice.JobItemInput{}, &userservice.Error{Code: userservice.ECodeInvalidJSON, Message: "Cannot read the upload", Err: err}
	}
	return userservice.JobItemInput{}, io.EOF
}

// csvSource reads a CSV upload (RFC 4180): a header row naming CreateUser's
// fields, then one user a row. An empty cell leaves an optional field out.
type csvSource struct {
	r      *csv.Reader
	header []string
}

func newCSVSource(r io.Reader) (*csvSource, error) {
	cr := csv.NewReader(bufio.NewReader(r))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, invalidUpload("the CSV upload is empty: it needs a header row")
	}
	if err != nil {
		return nil, invalidUpload("the CSV header cannot be read: " + err.Error())
	}
	header = append([]string(nil), header...)
	seen := map[string]bool{}
	var details []userservice.FieldError
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		header[i] = h
		switch {
		case !csvColumns[h]:
			details = append(details, userservice.FieldError{Field: h, Message: "is not a column of an import (authId, email, firstName, lastName, username, displayName, avatarUrl, bio, phone, timezone, language, role)"})
		case seen[h]:
			details = append(details, userservice.FieldError{Field: h, Message: "appears twice in the header"})
		}
		seen[h] = true
	}
	for _, req := range []string{"authId", "email", "firstName", "lastName"} {
		if !seen[req] {
			details = append(details, userservice.FieldError{Field: req, Message: "is a required column"})
		}
	}
	if details != nil {
		return nil, userservice.ValidationError(details)
	}
	return &csvSource{r: cr, header: header}, nil
}

func (s *csvSource) Next() (userservice.JobItemInput, error) {
	rec, err := s.r.Read()
	switch {
	case errors.Is(err, io.EOF):
		return userservice.JobItemInput{}, io.EOF
	case errors.Is(err, csv.ErrFieldCount):
		line, _ := s.r.FieldPos(0)
		return userservice.JobItemInput{Status: fasthttp.StatusBadRequest,
			Error: fmt.Sprintf("Invalid row: line %d has %d fields, the header %d", line, len(rec), len(s.header))}, nil
	case err != nil:
		return userservice.JobItemInput{}, invalidUpload(err.Error())
	}
	obj := make(map[string]string, len(rec))
	for i, v := range rec {
		if v == "" && i < len(s.header) && !requiredColumn(s.header[i]) {
			continue
		}
		obj[s.header[i]] = v
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return userservice.JobItemInput{Status: fasthttp.StatusBadRequest, Error: "Invalid row: " + err.Error()}, nil
	}
	return importRow(raw), nil
}

func requiredColumn(h string) bool {
	return h == "authId" || h == "email" || h == "firstName" || h == "lastName"
}

func invalidUpload(msg string) *userservice.Error {
	return &userservice.Error{Code: userservice.ECodeInvalidJSON, Message: "Invalid upload: " + msg}
}
