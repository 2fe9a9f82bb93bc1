package http

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// Erasure routes (issue 14): POST requests it (self, admin), GET shows its
// state, DELETE cancels it before it runs. While it is requested the user is
// suspended, so in practice the user's own token can only POST; an admin
// reads and cancels, and still reads it once done (the user is then 404 on
// every other route).

// requestErasure answers POST /users/{id}/erasure: 202 with the request.
func (s *Server) requestErasure(r *request) error {
	key, err := r.idempotencyKey()
	if err != nil {
		return err
	}
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	if s.deps.Erasures == nil {
		return userservice.ErrUnavailable
	}
	at := userservice.NewTime(time.Now().Add(s.cfg.ErasureCoolOff))
	return s.executeOnce(r, key, target, userservice.RequestErasure{ScheduledAt: at},
		renderResult(fasthttp.StatusAccepted, "Erasure requested"))
}

// erasureState answers GET /users/{id}/erasure.
func (s *Server) erasureState(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	if s.deps.Erasures == nil {
		return userservice.ErrUnavailable
	}
	e, err := s.deps.Erasures.Erasure(r.ctx, target)
	if err != nil {
		return err
	}
	return r.ok(fasthttp.StatusOK, e, "", nil)
}

// cancelErasure answers DELETE /users/{id}/erasure: the user gets back the
// status they had before the request.
func (s *Server) cancelErasure(r *request) error {
	id, err := r.userIDParam()
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
	if s.deps.Erasures == nil {
		return userservice.ErrUnavailable
	}
	e, err := s.deps.Erasures.Erasure(r.ctx, target)
	if err != nil {
		return err
	}
	if e.State != userservice.ErasureRequested {
		return userservice.ErrNoErasure
	}
	// The writer fences on the request still being 'requested', so a cancel
	// that races the erase (or another cancel) changes nothing.
	meta := r.meta(ifMatch)
	out, err := s.deps.Users.Execute(r.ctx, target, userservice.CancelErasure{RestoreStatus: e.PreviousStatus}, meta)
	if err != nil {
		return err
	}
	r.etag(out.State.User.Version)
	e.State, e.CancelledAt, e.CancelledBy = userservice.ErasureCancelled, &meta.Now, meta.ActorID
	return r.ok(fasthttp.StatusOK, e, "Erasure cancelled", nil)
}
