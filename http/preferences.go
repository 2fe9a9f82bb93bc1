package http

import (
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
	return s.readPreferences(r, "")
}

// categoryPreferences answers GET /users/{id}/preferences/{category}; a
// category without keys is an empty list.
func (s *Server) categoryPreferences(r *request) error {
	return s.readPreferences(r, "category")
}

func (s *Server) readPreferences(r *request, categoryParam string) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	category := ""
	if categoryParam != "" {
		if category, err = r.categoryParam(); err != nil {
			return err
		}
	}
	object, err := preferenceFormat(r)
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
	if object {
		return r.ok(fasthttp.StatusOK, st.PreferencesObject(category), "", nil)
	}
	return r.ok(fasthttp.StatusOK, st.SortedPreferences(category), "", nil)
}

// setPreferences answers PUT /users/{id}/preferences: every item names its
// category; all or nothing.
func (s *Server) setPreferences(r *request) error {
	return s.writePreferences(r, false)
}

// setCategoryPreferences answers PUT /users/{id}/preferences/{category}.
func (s *Server) setCategoryPreferences(r *request) error {
	return s.writePreferences(r, true)
}

func (s *Server) writePreferences(r *request, inPath bool) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	category := ""
	if inPath {
		if category, err = r.categoryParam(); err != nil {
			return err
		}
	}
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
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	cmd := userservice.SetPreferences{Category: category, Input: in}
	out, err := s.deps.Users.Execute(r.ctx, target, cmd, r.meta(ifMatch))
	return r.respondWrite(out, err, renderResult(fasthttp.StatusOK, "Preferences updated successfully"))
}

// deletePreference answers DELETE /users/{id}/preferences/{category}/{key}.
func (s *Server) deletePreference(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	category, err := r.categoryParam()
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
	target, err := r.authorize(id, ownerOrAdmin)
	if err != nil {
		return err
	}
	cmd := userservice.RemovePreference{Category: category, Key: key}
	out, err := s.deps.Users.Execute(r.ctx, target, cmd, r.meta(ifMatch))
	return r.respondWrite(out, err, renderResult(fasthttp.StatusOK, "Preference deleted successfully"))
}

// deleteCategory answers DELETE /users/{id}/preferences/{category}.
func (s *Server) deleteCategory(r *request) error {
	id, err := r.userIDParam()
	if err != nil {
		return err
	}
	category, err := r.categoryParam()
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
	out, err := s.deps.Users.Execute(r.ctx, target, userservice.RemoveCategory{Category: category}, r.meta(ifMatch))
	return r.respondWrite(out, err, renderResult(fasthttp.StatusOK, "Preferences deleted successfully"))
}
