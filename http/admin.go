package http

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// maxBulkIDs bounds a bulk role change (CONTRACT.md, endpoints).
const maxBulkIDs = 1000

// bulkConcurrency bounds how many users of a bulk request change at once.
const bulkConcurrency = 32

// searchUsers answers GET /users (admin): the search of PostgreSQL.
//
// It pages by page/limit (OFFSET) or by cursor (keyset: the users after the
// cursor's position in (sort key, id) order); every page with a next one carries
// pagination.nextCursor and a Link rel="next". count=none skips the total.
func (s *Server) searchUsers(r *request) error {
	params, cur, err := r.cursorQuery(userservice.CursorListUsers, r.query(), userservice.UserSearchFilters)
	if err != nil {
		return err
	}
	q, err := userservice.ParseUserSearch(params, s.cfg.DefaultPageSize)
	if err != nil {
		return err
	}
	if err := s.checkLimit(q.Limit); err != nil {
		return err
	}
	if err := s.typeAttrFilters(r, q.Attrs); err != nil {
		return err
	}
	if err := r.requireAdmin(); err != nil {
		return err
	}
	if cur != nil {
		q.Page, q.After = cur.Page, &cur.Pos
	}
	var data any
	var page userservice.Pagination
	if rs, ok := s.deps.Directory.(jsonSearcher); ok {
		var raw []byte
		if raw, page, err = rs.SearchUsersJSON(r.ctx, q); err != nil {
			return err
		}
		data = json.RawMessage(raw)
	} else {
		var users []userservice.User
		if users, page, err = s.deps.Directory.SearchUsers(r.ctx, q); err != nil {
			return err
		}
		if users == nil {
			users = []userservice.User{}
		}
		data = users
	}
	r.linkNext(userservice.CursorListUsers, params, userservice.UserSearchFilters, &page)
	return r.ok(fasthttp.StatusOK, data, "", &page)
}

// typeAttrFilters sets each attr filter's Value from its text by the type the
// namespace's schema gives the key ("30" is 30 for an integer): 400 naming the
// parameter for an unknown namespace or key or a text of another type.
func (s *Server) typeAttrFilters(r *request, filters []userservice.AttrFilter) error {
	if len(filters) == 0 {
		return nil
	}
	store, err := s.attributeSchemas()
	if err != nil {
		return err
	}
	var details []userservice.FieldError
	for i := range filters {
		f := &filters[i]
		schema, err := store.Schema(r.ctx, f.Namespace)
		if errors.Is(err, userservice.ErrAttributeSchemaNotFound) {
			details = append(details, userservice.FieldError{Field: f.Param(), Message: "names no attribute namespace"})
			continue
		}
		if err != nil {
			return err
		}
		v, msg := schema.FilterValue(f.Key, f.Text)
		if msg != "" {
			details = append(details, userservice.FieldError{Field: f.Param(), Message: msg})
			continue
		}
		f.Value = v
	}
	if len(details) > 0 {
		return userservice.ValidationError(details)
	}
	return nil
}

// jsonSearcher is a Directory that can also answer the admin search with the
// users already rendered as a JSON array (the Redis search cache stores them so),
// which spares decoding and re-encoding every user of a cached page.
type jsonSearcher interface {
	SearchUsersJSON(ctx context.Context, q userservice.UserSearch) ([]byte, userservice.Pagination, error)
}

// roleBody is the body of PUT /users/{id}/role.
type roleBody struct {
	Role *userservice.Role `json:"role"`
}

// Validate requires a known role.
func (b *roleBody) Validate() error {
	if d := validRole(b.Role); d != nil {
		return userservice.ValidationError(d)
	}
	return nil
}

// validRole says what is wrong with a role field, nil when nothing is.
func validRole(role *userservice.Role) []userservice.FieldError {
	switch {
	case role == nil:
		return []userservice.FieldError{{Field: "role", Message: "is required"}}
	case !role.Valid():
		return []userservice.FieldError{{Field: "role", Message: "must be one of admin, instructor, student"}}
	}
	return nil
}

// changeRole answers PUT /users/{id}/role (admin).
func (s *Server) changeRole(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	return writeBody(s, r, id, adminOnly, func(in roleBody) userservice.Command {
		return userservice.ChangeRole{Role: *in.Role}
	}, "User role updated successfully")
}

// statusBody is the body of PUT /users/{id}/status.
type statusBody struct {
	Status *userservice.Status `json:"status"`
}

// Validate requires a known status.
func (b *statusBody) Validate() error {
	switch {
	case b.Status == nil:
		return userservice.ValidationError([]userservice.FieldError{{Field: "status", Message: "is required"}})
	case !b.Status.Valid():
		return userservice.ValidationError([]userservice.FieldError{{Field: "status", Message: "must be one of active, inactive, suspended, deleted"}})
	}
	return nil
}

// changeStatus answers PUT /users/{id}/status (admin).
func (s *Server) changeStatus(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	return writeBody(s, r, id, adminOnly, func(in statusBody) userservice.Command {
		return userservice.ChangeStatus{Status: *in.Status}
	}, "User status updated successfully")
}

// bulkRoleBody is the body of PUT /users/bulk/role.
type bulkRoleBody struct {
	UserIDs []string          `json:"userIds"`
	Role    *userservice.Role `json:"role"`
}

// bulkResult is the answer of a bulk role change (the spec's shape).
type bulkResult struct {
	Successful int         `json:"successful"`
	Failed     int         `json:"failed"`
	Errors     []bulkError `json:"errors"`
}

// bulkError is the failure of one user of a bulk role change.
type bulkError struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

// bulkChangeRole answers PUT /users/bulk/role (admin): each user changes
// through its own actor, a bounded number at a time; a bad or unknown id is
// reported in its own entry.
func (s *Server) bulkChangeRole(r *request) error {
	var in bulkRoleBody
	if err := r.decode(&in); err != nil {
		return err
	}
	var details []userservice.FieldError
	switch {
	case in.UserIDs == nil:
		details = append(details, userservice.FieldError{Field: "userIds", Message: "is required"})
	case len(in.UserIDs) == 0:
		details = append(details, userservice.FieldError{Field: "userIds", Message: "must not be empty"})
	case len(in.UserIDs) > maxBulkIDs:
		details = append(details, userservice.FieldError{Field: "userIds", Message: "must have at most " + strconv.Itoa(maxBulkIDs) + " items"})
	}
	details = append(details, validRole(in.Role)...)
	if details != nil {
		return userservice.ValidationError(details)
	}
	if err := r.requireAdmin(); err != nil {
		return err
	}

	// Duplicates count once: by canonical id, and bad ids by their text.
	res := bulkResult{Errors: []bulkError{}}
	seen := make(map[string]bool, len(in.UserIDs))
	ids := make([]string, 0, len(in.UserIDs))
	for _, raw := range in.UserIDs {
		id, ok := userservice.ParseID(raw)
		if !ok {
			if !seen[raw] {
				seen[raw] = true
				res.Failed++
				res.Errors = append(res.Errors, bulkError{ID: raw, Error: "Invalid user id: must be a UUID"})
			}
			continue
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}

	errs := make([]error, len(ids))
	sem := make(chan struct{}, bulkConcurrency)
	var wg sync.WaitGroup
	cmd := userservice.ChangeRole{Role: *in.Role}
	for i, id := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() {
				if p := recover(); p != nil { // the request's own recover does not reach this goroutine
					errs[i] = fmt.Errorf("cannot change role: panic: %v", p)
				}
				<-sem
				wg.Done()
			}()
			_, errs[i] = s.deps.Users.Execute(r.ctx, id, cmd, r.meta(nil))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			res.Successful++
			continue
		}
		e, status := wireError(err)
		if status >= fasthttp.StatusInternalServerError {
			r.s.logger.Warn("bulk role change failed for one user", "userId", ids[i], "requestId", r.requestID, "error", s.mask.text(err.Error()))
		}
		res.Failed++
		res.Errors = append(res.Errors, bulkError{ID: ids[i], Error: e.Message})
	}
	return r.ok(fasthttp.StatusOK, res, "Bulk role update completed", nil)
}

// auditLog answers GET /users/{id}/audit (admin): the user's audit records,
// newest first.
func (s *Server) auditLog(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	p, err := r.page(r.query())
	if err != nil {
		return err
	}
	target, err := r.authorize(id, adminOnly)
	if err != nil {
		return err
	}
	if _, err := r.state(target); err != nil {
		return err
	}
	records, total, err := s.deps.Directory.AuditLog(r.ctx, target, p)
	if err != nil {
		return err
	}
	if records == nil {
		records = []userservice.AuditRecord{}
	}
	page := userservice.NewPagination(p.Page, p.Limit, total)
	return r.ok(fasthttp.StatusOK, records, "", &page)
}

// platformStats answers GET /users/stats (admin): the platform-wide counts of
// users by status, role and verification (the seed's getStats).
func (s *Server) platformStats(r *request) error {
	if err := r.requireAdmin(); err != nil {
		return err
	}
	st, err := s.deps.Directory.PlatformStats(r.ctx)
	if err != nil {
		return err
	}
	return r.ok(fasthttp.StatusOK, st, "", nil)
}
