package http

import (
	stdjson "encoding/json"

	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// Custom attributes (issue 15): schemas per namespace (admins write, every
// authenticated caller reads: a user must know what they may set), and each
// user's value per namespace, written through the user's actor.

// namespaceParam returns the {namespace} path parameter.
func (r *request) namespaceParam() (string, error) {
	ns := r.param("namespace")
	if !userservice.ValidNamespace(ns) {
		return "", invalidParam("namespace", "must match ^[a-z][a-z0-9_]{0,31}$")
	}
	return ns, nil
}

// attributeSchemas returns the schema store, or 503 when none is wired.
func (s *Server) attributeSchemas() (userservice.AttributeSchemas, error) {
	if s.deps.Attributes == nil {
		return nil, userservice.Errorf(userservice.ECodeUnavailable, "custom attributes are not available")
	}
	return s.deps.Attributes, nil
}

// putAttributeSchema answers PUT /attributes/{namespace} (admin).
func (s *Server) putAttributeSchema(r *request) error {
	ns, err := r.namespaceParam()
	if err != nil {
		return err
	}
	var doc map[string]stdjson.RawMessage
	if err := r.decode(&doc); err != nil {
		return err
	}
	schema, err := userservice.ParseAttributeSchema(ns, r.fc.Request.Body())
	if err != nil {
		return err
	}
	if err := r.requireAdmin(); err != nil {
		return err
	}
	store, err := s.attributeSchemas()
	if err != nil {
		return err
	}
	out, err := store.PutSchema(r.ctx, schema)
	if err != nil {
		return err
	}
	return r.ok(fasthttp.StatusOK, out, "Attribute schema saved", nil)
}

// getAttributeSchema answers GET /attributes/{namespace}.
func (s *Server) getAttributeSchema(r *request) error {
	ns, err := r.namespaceParam()
	if err != nil {
		return err
	}
	if _, err := r.resolveCaller(); err != nil {
		return err
	}
	store, err := s.attributeSchemas()
	if err != nil {
		return err
	}
	schema, err := store.Schema(r.ctx, ns)
	if err != nil {
		return err
	}
	return r.ok(fasthttp.StatusOK, schema, "", nil)
}

// listAttributeSchemas answers GET /attributes.
func (s *Server) listAttributeSchemas(r *request) error {
	if _, err := r.resolveCaller(); err != nil {
		return err
	}
	store, err := s.attributeSchemas()
	if err != nil {
		return err
	}
	all, err := store.Schemas(r.ctx)
	if err != nil {
		return err
	}
	return r.ok(fasthttp.StatusOK, all, "", nil)
}

// userAttributeParams returns the {id} and {namespace} path parameters.
func (r *request) userAttributeParams() (id, ns string, err error) {
	if id, err = r.userIDParam(); err != nil {
		return "", "", err
	}
	ns, err = r.namespaceParam()
	return id, ns, err
}

// listUserAttributes answers GET /users/{id}/attributes: {namespace: value}.
func (s *Server) listUserAttributes(r *request) error {
	return r.showUser(func(st *userservice.State) any { return attributesOf(st) })
}

// attributesOf is the user's custom attributes by namespace as the API shows
// them (GET /{id}/attributes, the export): {} when there are none.
func attributesOf(st *userservice.State) map[string]stdjson.RawMessage {
	if st.Attributes == nil {
		return map[string]stdjson.RawMessage{}
	}
	return st.Attributes // published states are immutable: no copy needed
}

// getUserAttributes answers GET /users/{id}/attributes/{namespace}.
func (s *Server) getUserAttributes(r *request) error {
	id, ns, err := r.userAttributeParams()
	if err != nil {
		return err
	}
	st, err := r.readUser(id)
	if err != nil {
		return err
	}
	v, ok := st.Attributes[ns]
	if !ok {
		return userservice.ErrAttributesNotFound
	}
	return r.ok(fasthttp.StatusOK, userservice.AttributesOf(ns, v), "", nil)
}

// putUserAttributes answers PUT /users/{id}/attributes/{namespace}: the body
// replaces the user's value in that namespace once it validates against the
// namespace's schema. Order: 400 (path, If-Match, JSON), 403, 404 (namespace),
// 400 (schema), then the actor (404 user, 412).
func (s *Server) putUserAttributes(r *request) error {
	id, ns, err := r.userAttributeParams()
	if err != nil {
		return err
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	var doc map[string]stdjson.RawMessage
	if err := r.decode(&doc); err != nil {
		return err
	}
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	store, err := s.attributeSchemas()
	if err != nil {
		return err
	}
	schema, err := store.Schema(r.ctx, ns)
	if err != nil {
		return err
	}
	value, err := schema.Validate(r.fc.Request.Body()) // a compacted copy
	if err != nil {
		return err
	}
	out, err := s.deps.Users.Execute(r.ctx, target, userservice.SetAttributes{Namespace: ns, Value: value}, r.meta(ifMatch))
	return r.respondWrite(out, err, renderResult(fasthttp.StatusOK, "Attributes updated successfully"))
}

// deleteUserAttributes answers DELETE /users/{id}/attributes/{namespace}.
func (s *Server) deleteUserAttributes(r *request) error {
	id, ns, err := r.userAttributeParams()
	if err != nil {
		return err
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	cmd := userservice.RemoveAttributes{Namespace: ns}
	return s.writeUser(r, id, ownerOrAdmin, ifMatch, cmd, renderResult(fasthttp.StatusOK, "Attributes deleted successfully"))
}
