package userservice

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	// evanphx/json-patch: the RFC 7396 (and 6902) implementation Kubernetes uses for
	// merge patches; well kept, no dependencies beyond pkg/errors.
	jsonpatch "github.com/evanphx/json-patch/v5"
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
	ID        uuid.UUID       `json:"id"` // 16 bytes in memory, the canonical string in JSON
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

// PreferencesPatch is the body of PATCH /users/{id}/preferences/{category}: a
// JSON merge patch (RFC 7396) of the category seen as one object {key: value}. A
// member whose value is null deletes that key (a key that does not exist is no
// error); any other value is merged into the key's current value, objects member
// by member and recursively (null deleting a member there), anything else
// replacing it.
type PreferencesPatch struct {
	// Members are the patch's members ordered by key.
	Members []PatchMember
}

// PatchMember is one member of a [PreferencesPatch].
type PatchMember struct {
	Key   string
	Value json.RawMessage // compact; "null" deletes the key
}

// ParsePreferencesPatch reads a merge patch body: a JSON object of at most
// MaxPreferencesPerRequest members with valid keys. Errors name the member.
func ParsePreferencesPatch(body []byte) (PreferencesPatch, error) {
	var v validator
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil || members == nil {
		v.add("body", "must be a JSON object (a merge patch of the category: {key: value or null})")
		return PreferencesPatch{}, v.err()
	}
	if len(members) == 0 {
		v.add("body", "must not be empty")
	}
	if len(members) > MaxPreferencesPerRequest {
		v.add("body", "must have at most "+strconv.Itoa(MaxPreferencesPerRequest)+" members")
		return PreferencesPatch{}, v.err()
	}
	p := PreferencesPatch{Members: make([]PatchMember, 0, len(members))}
	for k, raw := range members {
		if !ValidPreferenceKey(k) {
			v.add(k, "is not a preference key: must match ^[a-z0-9_]{1,64}$")
			continue
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			v.add(k, "must be JSON")
			continue
		}
		p.Members = append(p.Members, PatchMember{Key: k, Value: buf.Bytes()})
	}
	if err := v.err(); err != nil {
		return PreferencesPatch{}, err
	}
	slices.SortFunc(p.Members, func(a, b PatchMember) int { return strings.Compare(a.Key, b.Key) })
	return p, nil
}

// mergePreferenceValue applies one member's merge patch to a current value (nil
// when the key does not exist yet) and returns the compact result.
func mergePreferenceValue(current, patch json.RawMessage) (json.RawMessage, error) {
	doc := current
	if doc == nil {
		doc = json.RawMessage(`{}`) // RFC 7396: a target that is not an object starts as {}
	}
	out, err := jsonpatch.MergePatch(doc, patch)
	if err != nil {
		return nil, fmt.Errorf("cannot merge preference value: %w", err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, out); err != nil {
		return nil, fmt.Errorf("cannot compact merged preference value: %w", err)
	}
	return buf.Bytes(), nil
}
