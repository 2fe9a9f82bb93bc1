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
	q := r.query()
	p, err := r.page(q)
	if err != nil {
		return err
	}
	status := userservice.EnrollmentStatus(q.Get("status"))
	if status != "" && !status.Valid() {
		return userservice.ValidationError([]userservice.FieldError{{Field: "status", Message: "must be one of active, completed, dropped, suspended"}})
	}
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	st, err := r.state(target)
	if err != nil {
		return err
	}
	items, page := paginate(st.SortedEnrollments(status), p)
	r.etag(st.User.Version)
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
	var in userservice.CreateEnrollment
	if err := r.decode(&in); err != nil {
		return err
	}
	if err := in.Validate(); err != nil {
		return err
	}
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	if key != "" {
		if done, err := r.beginIdempotent(key); done {
			return err
		}
	}
	meta := r.meta(nil)
	meta.Idempotency = r.idempotencyRequest(renderEnrollment)
	out, err := s.deps.Users.Execute(r.ctx, target, userservice.Enroll{CourseID: in.CourseID}, meta)
	return r.respondWrite(out, err, renderEnrollment)
}

// updateEnrollment answers PUT /users/{id}/enrollments/{courseId}.
func (s *Server) updateEnrollment(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	course, err := r.uuidParam("courseId")
	if err != nil {
		return err
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	var in userservice.UpdateEnrollment
	if err := r.decode(&in); err != nil {
		return err
	}
	if err := in.Validate(); err != nil {
		return err
	}
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	out, err := s.deps.Users.Execute(r.ctx, target, userservice.EditEnrollment{CourseID: course, Input: in}, r.meta(ifMatch))
	return r.respondWrite(out, err, renderResult(fasthttp.StatusOK, "Enrollment updated successfully"))
}

// updateProgress answers PUT /users/{id}/enrollments/{courseId}/progress.
func (s *Server) updateProgress(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	course, err := r.uuidParam("courseId")
	if err != nil {
		return err
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	var in userservice.UpdateProgress
	if err := r.decode(&in); err != nil {
		return err
	}
	if err := in.Validate(); err != nil {
		return err
	}
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	out, err := s.deps.Users.Execute(r.ctx, target, userservice.SetProgress{CourseID: course, Input: in}, r.meta(ifMatch))
	return r.respondWrite(out, err, renderResult(fasthttp.StatusOK, "Enrollment progress updated successfully"))
}

// unenroll answers DELETE /users/{id}/enrollments/{courseId}.
func (s *Server) unenroll(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	course, err := r.uuidParam("courseId")
	if err != nil {
		return err
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	out, err := s.deps.Users.Execute(r.ctx, target, userservice.Unenroll{CourseID: course}, r.meta(ifMatch))
	return r.respondWrite(out, err, renderResult(fasthttp.StatusOK, "Enrollment deleted successfully"))
}

// enrollmentStats answers GET /users/{id}/enrollments/stats.
func (s *Server) enrollmentStats(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	st, err := r.state(target)
	if err != nil {
		return err
	}
	r.etag(st.User.Version)
	return r.ok(fasthttp.StatusOK, st.EnrollmentStats(), "", nil)
}
