package http

import (
	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// getUser answers GET /users/{id} and /users/me.
func (s *Server) getUser(r *request) error {
	st, err := r.readPathUser()
	if err != nil {
		return err
	}
	r.okUser(fasthttp.StatusOK, &st.User, "")
	return nil
}

// updateUser answers PUT /users/{id} and /users/me.
func (s *Server) updateUser(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	return writeBody(s, r, id, ownerOrAdmin, func(in userservice.UpdateUser) userservice.Command {
		return userservice.EditProfile{Input: in}
	}, "User updated successfully")
}

// createUser answers POST /users (admin): a new profile with default
// preferences, 201. It honours Idempotency-Key.
func (s *Server) createUser(r *request) error {
	key, err := r.idempotencyKey()
	if err != nil {
		return err
	}
	in, err := decodeValid[userservice.CreateUser](r)
	if err != nil {
		return err
	}
	if err := r.requireAdmin(); err != nil {
		return err
	}
	id := userservice.NewID()
	cmd := userservice.Register{ID: id, Input: in}
	if err := s.executeOnce(r, key, id, cmd, renderResult(fasthttp.StatusCreated, "User created successfully")); err != nil {
		return err
	}
	setCreatedLocation(r)
	return nil
}

// setCreatedLocation points a 201 answer's Location at the created user. The id
// comes from the body: a replayed Idempotency-Key answers the first request's user.
func setCreatedLocation(r *request) {
	if r.fc.Response.StatusCode() != fasthttp.StatusCreated {
		return
	}
	var body struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if json.Unmarshal(r.fc.Response.Body(), &body) == nil && body.Data.ID != "" {
		r.fc.Response.Header.Set("Location", "/api/v1/users/"+body.Data.ID)
	}
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
	return s.writeUser(r, id, adminOnly, ifMatch, userservice.SoftDelete{}, renderResult(fasthttp.StatusOK, "User deleted successfully"))
}

// userStats answers GET /users/{id}/stats.
func (s *Server) userStats(r *request) error {
	return r.showUser(func(st *userservice.State) any { return st.UserStats() })
}
