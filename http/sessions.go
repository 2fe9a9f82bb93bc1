package http

import (
	"strings"
	"unicode/utf8"

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

// maxSessionIDLen is the longest session id the consumer accepts from
// auth.user.login, so a longer one names no session.
const maxSessionIDLen = 255

// sessionIDParam returns the {sessionId} path parameter: the Auth Service's
// session id, any text of 1 to 255 bytes of valid UTF-8 without NUL.
func (r *request) sessionIDParam() (string, error) {
	v := r.param("sessionId")
	if v == "" || len(v) > maxSessionIDLen || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return "", invalidParam("sessionId", "must be 1 to 255 bytes of UTF-8 text")
	}
	return v, nil
}

// revokeSessions answers DELETE /users/{id}/sessions (self, admin): every open
// session of the user ends, user.sessions_revoked names them (issue 14).
func (s *Server) revokeSessions(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	return s.writeUser(r, id, ownerOrAdmin, ifMatch, userservice.RevokeSessions{}, renderResult(fasthttp.StatusOK, "Sessions revoked"))
}

// revokeSession answers DELETE /users/{id}/sessions/{sessionId} (self, admin):
// that session ends (200 with its id), or nothing happens when it already
// ended (200 with no ids); 404 when the user never had it.
func (s *Server) revokeSession(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	sid, err := r.sessionIDParam()
	if err != nil {
		return err
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	return s.writeUser(r, id, ownerOrAdmin, ifMatch, userservice.RevokeSessions{SessionID: sid}, renderResult(fasthttp.StatusOK, "Session revoked"))
}
