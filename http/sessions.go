package http

import (
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// listSessions answers GET /users/{id}/sessions: the sessions the actor keeps,
// newest first, paginated.
func (s *Server) listSessions(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	p, err := r.page(r.query())
	if err != nil {
		return err
	}
	st, err := r.readUser(id)
	if err != nil {
		return err
	}
	newest := make([]userservice.Session, len(st.Sessions))
	for i, sess := range st.Sessions {
		newest[len(newest)-1-i] = sess
	}
	items, page := paginate(newest, p)
	return r.ok(fasthttp.StatusOK, items, "", &page)
}
