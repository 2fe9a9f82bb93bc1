package http

import (
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// This file holds the steps that the resource handlers (users.go,
// enrollments.go, preferences.go, sessions.go, admin.go) share, so that each
// handler reads as what is particular to it. The token was checked before a
// handler runs (401); the handler still calls the steps in the order of its
// answers: path and query parameters, If-Match and body (400, 413, 415), then
// the caller and the target (403, 404), then the command (409, 412).

// renderFunc turns a command's outcome into the status and body of the answer.
type renderFunc = func(*userservice.Outcome) (int, []byte)

// validator is the pointer to a request body type that checks itself.
type validator[T any] interface {
	*T
	Validate() error
}

// decodeValid reads the JSON body into a T and validates it: 413, 415, then
// 400 for a body that does not parse or does not validate.
func decodeValid[T any, P validator[T]](r *request) (T, error) {
	var in T
	if err := r.decode(&in); err != nil {
		return in, err
	}
	if err := P(&in).Validate(); err != nil {
		return in, err
	}
	return in, nil
}

// writeBody answers a write whose body is a T: If-Match (400), the body (413,
// 415, 400), then the command cmd makes of the body, executed on the user that
// pathID names for a caller a allows, answered 200 with the user and message.
// Path parameters are parsed by the caller, before.
func writeBody[T any, P validator[T]](s *Server, r *request, pathID string, a access, cmd func(T) userservice.Command, message string) error {
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	in, err := decodeValid[T, P](r)
	if err != nil {
		return err
	}
	return s.writeUser(r, pathID, a, ifMatch, cmd(in), renderResult(fasthttp.StatusOK, message))
}

// readUser authorizes a read of the user that pathID names ({id} or "me"; the
// user themself or an admin), returns that user's state and sends its version
// as the ETag.
func (r *request) readUser(pathID string) (*userservice.State, error) {
	target, err := r.authorize(pathID, ownerOrAdmin)
	if err != nil {
		return nil, err
	}
	st, err := r.state(target)
	if err != nil {
		return nil, err
	}
	r.etag(st.User.Version)
	return st, nil
}

// showUser answers a read of the user in the {id} path parameter with view of
// that user's state.
func (r *request) showUser(view func(*userservice.State) any) error {
	st, err := r.readPathUser()
	if err != nil {
		return err
	}
	return r.ok(fasthttp.StatusOK, view(st), "", nil)
}

// readPathUser reads the user in the {id} path parameter, as readUser does.
func (r *request) readPathUser() (*userservice.State, error) {
	id, err := r.userIDParam()
	if err != nil {
		return nil, err
	}
	return r.readUser(id)
}

// writeUser authorizes the caller by a for the user that pathID names, executes
// cmd on that user under the If-Match precondition (nil: any version) and
// answers with render.
func (s *Server) writeUser(r *request, pathID string, a access, ifMatch *userservice.Precondition, cmd userservice.Command, render renderFunc) error {
	target, err := r.authorize(pathID, a)
	if err != nil {
		return err
	}
	out, err := s.deps.Users.Execute(r.ctx, target, cmd, r.meta(ifMatch))
	return r.respondWrite(out, err, render)
}

// executeOnce executes cmd on user id and answers with render. With an
// Idempotency-Key (key != "") a repeat of the request replays the first answer
// instead. The caller must already be resolved (authorize or requireAdmin),
// since keys are scoped by caller.
func (s *Server) executeOnce(r *request, key, id string, cmd userservice.Command, render renderFunc) error {
	if key != "" {
		if done, err := r.beginIdempotent(key); done {
			return err
		}
	}
	meta := r.meta(nil)
	meta.Idempotency = r.idempotencyRequest(render)
	out, err := s.deps.Users.Execute(r.ctx, id, cmd, meta)
	return r.respondWrite(out, err, render)
}
