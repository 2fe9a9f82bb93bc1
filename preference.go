package userservice

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Preference categories.
const (
	CategoryNotifications = "notifications"
	CategoryUI            = "ui"
	CategoryLearning      = "learning"
	CategoryPrivacy       = "privacy"
)

// Categories lists the preference categories in display order.
var Categories = []string{CategoryNotifications, CategoryUI, CategoryLearning, CategoryPrivacy}

// ValidCategory reports whether c is a known preference category.
func ValidCategory(c string) bool {
	switch c {
	case CategoryNotifications, CategoryUI, CategoryLearning, CategoryPrivacy:
		return true
	}
	return false
}

// MaxPreferenceValueBytes bounds a value re-serialized as compact JSON.
const MaxPreferenceValueBytes = 4096

// MaxPreferencesPerRequest bounds one upsert request.
const MaxPreferencesPerRequest = 200

// Preference is one per-user setting. Value is compact JSON.
type Preference struct {
	ID        string          `json:"id"`
	UserID    string          `json:"userId"`
	Category  string          `json:"category"`
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	CreatedAt Time            `json:"createdAt"`
	UpdatedAt Time            `json:"updatedAt"`
}

// PrefKey identifies a preference within a user.
type PrefKey struct {
	Category string
	Key      string
}

// PreferenceInput is one item of an upsert request.
type PreferenceInput struct {
	Category *string         `json:"category,omitempty"`
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value"`
}

// UpsertPreferences is the body of PUT /users/{id}/preferences[/{category}].
type UpsertPreferences struct {
	Preferences []PreferenceInput `json:"preferences"`
}

// Validate checks every item. pathCategory is the category named in the path, or ""
// for the all-categories route (then each item must name its category). Values are
// compacted in place.
func (u *UpsertPreferences) Validate(pathCategory string) error {
	var v validator
	if u.Preferences == nil {
		v.add("preferences", "is required")
		return v.err()
	}
	if len(u.Preferences) == 0 {
		v.add("preferences", "must not be empty")
	}
	if len(u.Preferences) > MaxPreferencesPerRequest {
		v.add("preferences", "must have at most "+strconv.Itoa(MaxPreferencesPerRequest)+" items")
		return v.err()
	}
	for i := range u.Preferences {
		p := &u.Preferences[i]
		at := "preferences[" + strconv.Itoa(i) + "]."
		switch {
		case p.Category == nil && pathCategory == "":
			v.add(at+"category", "is required")
		case p.Category != nil && !ValidCategory(*p.Category):
			v.add(at+"category", "must be one of notifications, ui, learning, privacy")
		case p.Category != nil && pathCategory != "" && *p.Category != pathCategory:
			v.add(at+"category", "must match the category in the path")
		}
		if !ValidPreferenceKey(p.Key) {
			v.add(at+"key", "must match ^[a-z0-9_]{1,64}$")
		}
		if len(p.Value) == 0 {
			v.add(at+"value", "is required")
			continue
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, p.Value); err != nil {
			v.add(at+"value", "must be JSON")
			continue
		}
		if buf.Len() > MaxPreferenceValueBytes {
			v.add(at+"value", "must be at most 4096 bytes as compact JSON")
			continue
		}
		p.Value = json.RawMessage(buf.Bytes())
	}
	return v.err()
}

// DefaultPreferences are created with every new user (CONTRACT.md, Details).
var DefaultPreferences = []struct {
	Category, Key, Value string
}{
	{CategoryNotifications, "email_enabled", "true"},
	{CategoryNotifications, "push_enabled", "true"},
	{CategoryNotifications, "course_updates", "true"},
	{CategoryNotifications, "assignment_reminders", "true"},
	{CategoryNotifications, "marketing_emails", "false"},
	{CategoryUI, "theme", `"light"`},
	{CategoryUI, "language", `"en"`},
	{CategoryUI, "timezone", `"UTC"`},
	{CategoryUI, "items_per_page", "20"},
	{CategoryLearning, "auto_play_videos", "true"},
	{CategoryLearning, "show_subtitles", "false"},
	{CategoryLearning, "playback_speed", "1.0"},
	{CategoryLearning, "reminder_frequency", `"daily"`},
	{CategoryPrivacy, "profile_visibility", `"public"`},
	{CategoryPrivacy, "show_progress", "true"},
	{CategoryPrivacy, "allow_messages", "true"},
}
