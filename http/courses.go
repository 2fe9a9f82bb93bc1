package http

import (
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// errForbiddenCourse answers a caller whom mayViewCourse refuses.
var errForbiddenCourse = &userservice.Error{Code: userservice.ECodeForbidden, Message: "Access denied. Required roles: instructor, admin"}

// mayViewCourse is the instructor-visibility policy, decided here and nowhere
// else: admins and instructors may read any course's roster and stats,
// students none. This service cannot tell whether an instructor teaches a
// course: courses and their staff live in the Course Service, and no event
// tells this service who teaches what. A platform that wants instructors
// limited to their own courses enforces it in front of these routes (the
// gateway or the Course Service), or replaces this function once such a
// signal exists.
func mayViewCourse(c *caller, courseID string) bool {
	return c.role == userservice.RoleAdmin || c.role == userservice.RoleInstructor
}

// courseParam returns the {courseId} path parameter.
func (r *request) courseParam() (string, error) { return r.uuidParam("courseId") }

// authorizeCourse resolves the caller and applies mayViewCourse (403).
func (r *request) authorizeCourse(courseID string) error {
	c, err := r.resolveCaller()
	if err != nil {
		return err
	}
	if !mayViewCourse(c, courseID) {
		return errForbiddenCourse
	}
	return nil
}

// cursorPagination is the pagination of a keyset-paged list: NextCursor is
// null on the last page; Total is left out with count=none.
type cursorPagination struct {
	Limit      int     `json:"limit"`
	Total      *int64  `json:"total,omitempty"`
	HasNext    bool    `json:"hasNext"`
	NextCursor *string `json:"nextCursor"`
}

type cursorBody struct {
	Success    bool             `json:"success"`
	Data       any              `json:"data"`
	Pagination cursorPagination `json:"pagination"`
	Timestamp  userservice.Time `json:"timestamp"`
}

// rosterCursor is what a roster cursor carries: the filter it was made under
// and the last enrollment id of its page, base64url("v1|status|id").
func encodeRosterCursor(status userservice.EnrollmentStatus, after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1|" + string(status) + "|" + after))
}

func decodeRosterCursor(s string) (userservice.EnrollmentStatus, string, error) {
	bad := invalidParam("cursor", "must be a nextCursor of this list")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "", "", bad
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 || parts[0] != "v1" {
		return "", "", bad
	}
	status := userservice.EnrollmentStatus(parts[1])
	id, ok := userservice.ParseID(parts[2])
	if (status != "" && !status.Valid()) || !ok {
		return "", "", bad
	}
	return status, id, nil
}

// courseRoster answers GET /courses/{courseId}/enrollments (instructor, admin):
// the course's enrollments with each user's public profile, keyset-paged in
// enrollment id order. Query: status, limit, cursor (which carries the status
// filter, so the two are never given together), count=none.
func (s *Server) courseRoster(r *request) error {
	course, err := r.courseParam()
	if err != nil {
		return err
	}
	q := r.query()
	rq, err := s.rosterQuery(course, q)
	if err != nil {
		return err
	}
	if err := r.authorizeCourse(course); err != nil {
		return err
	}
	limit := rq.Limit
	rq.Limit++ // one more row tells whether a next page exists
	rows, total, err := s.deps.Directory.CourseRoster(r.ctx, rq)
	if err != nil {
		return err
	}
	page := cursorPagination{Limit: limit}
	if rq.CountTotal {
		page.Total = &total
	}
	if len(rows) > limit {
		rows = rows[:limit]
		next := encodeRosterCursor(rq.Status, rows[len(rows)-1].ID)
		page.HasNext, page.NextCursor = true, &next
		link := url.Values{"cursor": {next}, "limit": {strconv.Itoa(limit)}}
		if !rq.CountTotal {
			link.Set("count", "none")
		}
		r.fc.Response.Header.Set("Link", "</api/v1/courses/"+course+"/enrollments?"+link.Encode()+`>; rel="next"`)
	}
	if rows == nil {
		rows = []userservice.CourseEnrollment{}
	}
	b, err := json.Marshal(cursorBody{Success: true, Data: rows, Pagination: page, Timestamp: userservice.Now()})
	if err != nil {
		return err
	}
	r.writeJSON(fasthttp.StatusOK, b)
	return nil
}

// rosterQuery parses the roster's query string (400 with field details).
func (s *Server) rosterQuery(course string, q url.Values) (userservice.RosterQuery, error) {
	rq := userservice.RosterQuery{CourseID: course, Limit: s.cfg.DefaultPageSize, CountTotal: true}
	var problems []userservice.FieldError
	add := func(field, msg string) {
		problems = append(problems, userservice.FieldError{Field: field, Message: msg})
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.cfg.MaxPageSize {
			add("limit", "must be an integer from 1 to "+strconv.Itoa(s.cfg.MaxPageSize))
		}
		rq.Limit = n
	}
	if q.Has("page") {
		add("page", "this list is paged with cursor (pagination.nextCursor)")
	}
	switch c := q.Get("count"); c {
	case "", "exact":
	case "none":
		rq.CountTotal = false
	default:
		add("count", "must be exact or none")
	}
	status := userservice.EnrollmentStatus(q.Get("status"))
	if status != "" && !status.Valid() {
		add("status", "must be one of active, completed, dropped, suspended")
	}
	rq.Status = status
	if c := q.Get("cursor"); c != "" {
		if status != "" {
			add("cursor", "carries the filters of its list: give it without status")
		} else if st, after, err := decodeRosterCursor(c); err != nil {
			add("cursor", "must be a nextCursor of this list")
		} else {
			rq.Status, rq.After = st, after
		}
	}
	if len(problems) > 0 {
		return rq, userservice.ValidationError(problems)
	}
	return rq, nil
}

// courseStats answers GET /courses/{courseId}/stats (instructor, admin).
func (s *Server) courseStats(r *request) error {
	course, err := r.courseParam()
	if err != nil {
		return err
	}
	if err := r.authorizeCourse(course); err != nil {
		return err
	}
	st, err := s.deps.Directory.CourseStats(r.ctx, course)
	if err != nil {
		return err
	}
	return r.ok(fasthttp.StatusOK, st, "", nil)
}
