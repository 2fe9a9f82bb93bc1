package http

import (
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// listSessions answers GET /users/{id}/sessions: every session of the user,
// newest first, paginated. The actor holds the newest MaxSessionsKept; while it
// holds fewer it holds them all and answers from memory, else PostgreSQL does
// (every acknowledged session is committed there).
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
	if len(st.Sessions) >= userservice.MaxSessionsKept {
		items, total, err := s.deps.Directory.Sessions(r.ctx, st.User.ID, p)
		if err != nil {
			return err
		}
		if items == nil {
			items = []userservice.Session{}
		}
		page := userservice.NewPagination(p.Page, p.Limit, total)
		return r.ok(fasthttp.StatusOK, items, "", &page)
	}
	newest := make([]userservice.Session, len(st.Sessions))
	for i, sess := range st.Sessions {
		newest[len(newest)-1-i] = sess
	}
	items, page := paginate(newest, p)
	return r.ok(fasthttp.StatusOK, items, "", &page)
}
