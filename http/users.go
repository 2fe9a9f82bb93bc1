package http

import (
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// getUser answers GET /users/{id} and /users/me.
func (s *Server) getUser(r *request) error {
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
	return r.ok(fasthttp.StatusOK, st.User, "", nil)
}

// updateUser answers PUT /users/{id} and /users/me.
func (s *Server) updateUser(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	var in userservice.UpdateUser
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
	out, err := s.deps.Users.Execute(r.ctx, target, userservice.EditProfile{Input: in}, r.meta(ifMatch))
	return r.respondWrite(out, err, renderResult(fasthttp.StatusOK, "User updated successfully"))
}

// createUser answers POST /users (admin): a new profile with default
// preferences, 201. It honours Idempotency-Key.
func (s *Server) createUser(r *request) error {
	key, err := r.idempotencyKey()
	if err != nil {
		return err
	}
	var in userservice.CreateUser
	if err := r.decode(&in); err != nil {
		return err
	}
	if err := in.Validate(); err != nil {
		return err
	}
	if err := r.requireAdmin(); err != nil {
		return err
	}
	if key != "" {
		if done, err := r.beginIdempotent(key); done {
			return err
		}
	}
	id := userservice.NewID()
	render := renderResult(fasthttp.StatusCreated, "User created successfully")
	meta := r.meta(nil)
	meta.Idempotency = r.idempotencyRequest(render)
	out, err := s.deps.Users.Execute(r.ctx, id, userservice.Register{ID: id, Input: in}, meta)
	return r.respondWrite(out, err, render)
}

// deleteUser answers DELETE /users/{id} (admin): soft delete.
func (s *Server) deleteUser(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	target, err := r.authorize(id, adminOnly)
	if err != nil {
		return err
	}
	out, err := s.deps.Users.Execute(r.ctx, target, userservice.SoftDelete{}, r.meta(ifMatch))
	return r.respondWrite(out, err, renderResult(fasthttp.StatusOK, "User deleted successfully"))
}

// userStats answers GET /users/{id}/stats.
func (s *Server) userStats(r *request) error {
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
	return r.ok(fasthttp.StatusOK, st.UserStats(), "", nil)
}
