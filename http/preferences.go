package http

import (
	stdjson "encoding/json"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// preferenceFormat reads ?format=list|object (list by default).
func preferenceFormat(r *request) (object bool, err error) {
	switch r.query().Get("format") {
	case "", "list":
		return false, nil
	case "object":
		return true, nil
	}
	return false, invalidParam("format", "must be list or object")
}

// listPreferences answers GET /users/{id}/preferences.
func (s *Server) listPreferences(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	return s.readPreferences(r, id, "")
}

// categoryPreferences answers GET /users/{id}/preferences/{category}; a
// category without keys is an empty list.
func (s *Server) categoryPreferences(r *request) error {
	id, category, err := r.userCategoryParams()
	if err != nil {
		return err
	}
	return s.readPreferences(r, id, category)
}

// readPreferences answers a read of the preferences of the user that pathID
// names: of one category, or of all when category is "".
func (s *Server) readPreferences(r *request, pathID, category string) error {
	object, err := preferenceFormat(r)
	if err != nil {
		return err
	}
	st, err := r.readUser(pathID)
	if err != nil {
		return err
	}
	if object {
		return r.ok(fasthttp.StatusOK, st.PreferencesObject(category), "", nil)
	}
	buf := envelopeBuffers.Get().(*[]byte)
	*buf = appendPreferencesEnvelope((*buf)[:0], st.SortedPreferences(category), "", userservice.Now())
	r.writeJSON(fasthttp.StatusOK, *buf) // copies
	if cap(*buf) <= 64<<10 {
		envelopeBuffers.Put(buf)
	}
	return nil
}

// envelopeBuffers recycles the buffers the hand-written envelopes (preferences,
// a user) are appended to.
var envelopeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// setPreferences answers PUT /users/{id}/preferences: every item names its
// category; all or nothing.
func (s *Server) setPreferences(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	return s.writePreferences(r, id, "")
}

// setCategoryPreferences answers PUT /users/{id}/preferences/{category}.
func (s *Server) setCategoryPreferences(r *request) error {
	id, category, err := r.userCategoryParams()
	if err != nil {
		return err
	}
	return s.writePreferences(r, id, category)
}

// writePreferences upserts the preferences in the body for the user that
// pathID names; with a category from the path, every item is of that category.
func (s *Server) writePreferences(r *request, pathID, category string) error {
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	var in userservice.UpsertPreferences
	if err := r.decode(&in); err != nil {
		return err
	}
	if err := in.Validate(category); err != nil {
		return err
	}
	cmd := userservice.SetPreferences{Category: category, Input: in}
	return s.writeUser(r, pathID, ownerOrAdmin, ifMatch, cmd, renderResult(fasthttp.StatusOK, "Preferences updated successfully"))
}

// deletePreference answers DELETE /users/{id}/preferences/{category}/{key}.
func (s *Server) deletePreference(r *request) error {
	id, category, err := r.userCategoryParams()
	if err != nil {
		return err
	}
	key := r.param("key")
	if !userservice.ValidPreferenceKey(key) {
		return invalidParam("key", "must match ^[a-z0-9_]{1,64}$")
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	cmd := userservice.RemovePreference{Category: category, Key: key}
	return s.writeUser(r, id, ownerOrAdmin, ifMatch, cmd, renderResult(fasthttp.StatusOK, "Preference deleted successfully"))
}

// deleteCategory answers DELETE /users/{id}/preferences/{category}.
func (s *Server) deleteCategory(r *request) error {
	id, category, err := r.userCategoryParams()
	if err != nil {
		return err
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	cmd := userservice.RemoveCategory{Category: category}
	return s.writeUser(r, id, ownerOrAdmin, ifMatch, cmd, renderResult(fasthttp.StatusOK, "Preferences deleted successfully"))
}

// patchCategoryPreferences answers PATCH /users/{id}/preferences/{category}: a
// JSON merge patch (RFC 7396) of the category seen as {key: value}; null
// deletes a key. The answer is the category afterwards.
func (s *Server) patchCategoryPreferences(r *request) error {
	id, category, err := r.userCategoryParams()
	if err != nil {
		return err
	}
	ifMatch, err := r.ifMatch()
	if err != nil {
		return err
	}
	body := r.fc.Request.Body()
	if err := checkBody(body, r.fc.Request.Header.ContentType(), r.s.cfg.MaxBodyBytes); err != nil {
		return err
	}
	if path, msg, bad := textProblem(body); bad {
		return userservice.ValidationError([]userservice.FieldError{{Field: path, Message: msg}})
	}
	if !stdjson.Valid(body) {
		return &userservice.Error{Code: userservice.ECodeInvalidJSON, Message: "Request body is not valid JSON"}
	}
	patch, err := userservice.ParsePreferencesPatch(body)
	if err != nil {
		return err
	}
	cmd := userservice.PatchPreferences{Category: category, Patch: patch}
	return s.writeUser(r, id, ownerOrAdmin, ifMatch, cmd, renderResult(fasthttp.StatusOK, "Preferences updated successfully"))
}
