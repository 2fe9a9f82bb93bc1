package http

import (
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// listEnrollments answers GET /users/{id}/enrollments: newest first, paginated,
// optionally one status.
func (s *Server) listEnrollments(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	list := userservice.EnrollmentCursorList(id)
	q, cur, err := r.cursorQuery(list, r.query(), userservice.EnrollmentListFilters)
	if err != nil {
		return err
	}
	p, count, err := userservice.ParseListQuery(q, s.cfg.DefaultPageSize)
	if err != nil {
		return err
	}
	if err := s.checkLimit(p.Limit); err != nil {
		return err
	}
	status := userservice.EnrollmentStatus(q.Get("status"))
	if status != "" && !status.Valid() {
		return userservice.ValidationError([]userservice.FieldError{{Field: "status", Message: "must be one of active, completed, dropped, suspended"}})
	}
	st, err := r.readUser(id)
	if err != nil {
		return err
	}
	all := st.SortedEnrollments(status)
	var items []userservice.Enrollment
	var page userservice.Pagination
	if cur == nil {
		items, page = paginate(all, p)
	} else {
		rest, err := enrollmentsAfter(all, cur.Pos)
		if err != nil {
			return err
		}
		items = rest[:min(p.Limit, len(rest))]
		page = userservice.NewPagination(cur.Page, p.Limit, len(all))
		page.HasNext = len(rest) > len(items)
	}
	if page.HasNext && len(items) > 0 {
		page.Next = enrollmentPosition(items[len(items)-1])
	}
	if count == userservice.CountNone {
		page.Uncounted, page.Total, page.TotalPages = true, 0, 0
	}
	r.linkNext(list, q, userservice.EnrollmentListFilters, &page)
	return r.ok(fasthttp.StatusOK, items, "", &page)
}

// renderEnrollment answers an enroll: 201 for a new enrollment, 200 for a
// reactivated one.
func renderEnrollment(o *userservice.Outcome) (int, []byte) {
	if o.Created {
		return renderResult(fasthttp.StatusCreated, "Enrollment created successfully")(o)
	}
	return renderResult(fasthttp.StatusOK, "Enrollment reactivated successfully")(o)
}

// enroll answers POST /users/{id}/enrollments. It honours Idempotency-Key.
func (s *Server) enroll(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	key, err := r.idempotencyKey()
	if err != nil {
		return err
	}
	in, err := decodeValid[userservice.CreateEnrollment](r)
	if err != nil {
		return err
	}
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	return s.executeOnce(r, key, target, userservice.Enroll{CourseID: in.CourseID}, renderEnrollment)
}

// updateEnrollment answers PUT /users/{id}/enrollments/{courseId}.
func (s *Server) updateEnrollment(r *request) error {
	id, course, err := r.userCourseParams()
	if err != nil {
		return err
	}
	return writeBody(s, r, id, ownerOrAdmin, func(in userservice.UpdateEnrollment) userservice.Command {
		return userservice.EditEnrollment{CourseID: course, Input: in}
	}, "Enrollment updated successfully")
}

// updateProgress answers PUT /users/{id}/enrollments/{courseId}/progress.
func (s *Server) updateProgress(r *request) error {
	id, course, err := r.userCourseParams()
	if err != nil {
		return err
	}
	return writeBody(s, r, id, ownerOrAdmin, func(in userservice.UpdateProgress) userservice.Command {
		return userservice.SetProgress{CourseID: course, Input: in}
	}, "Enrollment progress updated successfully")
}

// unenroll answers DELETE /users/{id}/enrollments/{courseId}.
func (s *Server) unenroll(r *request) error {
	id, course, err := r.userCourseParams()
	if err != nil {
		return err
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	cmd := userservice.Unenroll{CourseID: course}
	return s.writeUser(r, id, ownerOrAdmin, ifMatch, cmd, renderResult(fasthttp.StatusOK, "Enrollment deleted successfully"))
}

// enrollmentStats answers GET /users/{id}/enrollments/stats.
func (s *Server) enrollmentStats(r *request) error {
	return r.showUser(func(st *userservice.State) any { return st.EnrollmentStats() })
}
