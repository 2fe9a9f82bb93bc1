package userservice

import (
	"encoding/json"
	"slices"
	"strings"
)

// State is everything the service keeps hot about one user: the aggregate a user
// actor owns. A published State is immutable: [Apply] builds a new one (sharing the
// lists and maps it does not change), so a reader may hold a *State without locks
// or copies.
type State struct {
	User User
	// Enrollments sorted by course id. An Enrollment in the list is never
	// modified: a change puts a new one, so that a copy of the list copies
	// pointers.
	Enrollments EnrollmentList
	Preferences PreferenceList
	Sessions    []Session // oldest first, the newest MaxSessionsKept
	// Attributes are the user's custom attributes: a compact JSON object per
	// namespace (issue 15). Replaced, never modified in place.
	Attributes map[string]json.RawMessage
}

// clone returns a shallow copy: the maps and slices are shared until a writer
// replaces them (copy on write).
func (s *State) clone() *State {
	c := *s
	return &c
}

func (s *State) writableEnrollments() {
	l := make(EnrollmentList, len(s.Enrollments), len(s.Enrollments)+1) // room for the one a write most often adds
	copy(l, s.Enrollments)
	s.Enrollments = l
}

// writablePreferences gives s its own copy of the preference list with room for
// `added` more keys: as many as the change will insert, so that this copy is
// the one the state keeps (finish trims a list left with room to spare).
func (s *State) writablePreferences(added int) {
	l := make(PreferenceList, len(s.Preferences), len(s.Preferences)+added)
	copy(l, s.Preferences)
	s.Preferences = l
}

// SortedEnrollments returns the enrollments, newest enrollment first, optionally only
// those with the given status.
func (s *State) SortedEnrollments(status EnrollmentStatus) []Enrollment {
	out := make([]Enrollment, 0, len(s.Enrollments))
	for _, e := range s.Enrollments {
		if status == "" || e.EnrollmentStatus == status {
			out = append(out, *e)
		}
	}
	slices.SortFunc(out, func(a, b Enrollment) int {
		if c := b.EnrolledAt.Compare(a.EnrolledAt.Time); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out
}

// SortedPreferences returns the preferences ordered by category (in [Categories]
// order) then key, optionally only one category. The result shares the state's
// list: it must not be modified.
func (s *State) SortedPreferences(category string) []Preference {
	return s.Preferences.Category(category)
}

// PreferencesObject returns {category: {key: value}} for ?format=object, optionally
// for one category.
func (s *State) PreferencesObject(category string) map[string]map[string]json.RawMessage {
	out := map[string]map[string]json.RawMessage{}
	for _, p := range s.Preferences.Category(category) {
		m := out[p.Category]
		if m == nil {
			m = map[string]json.RawMessage{}
			out[p.Category] = m
		}
		m[p.Key] = p.Value
	}
	return out
}

// EnrollmentStats counts every enrollment, dropped ones included.
func (s *State) EnrollmentStats() EnrollmentStats {
	var st EnrollmentStats
	var sum float64
	for _, e := range s.Enrollments {
		st.TotalCourses++
		switch e.EnrollmentStatus {
		case EnrollmentActive:
			st.ActiveCourses++
		case EnrollmentCompleted:
			st.CompletedCourses++
		case EnrollmentDropped:
			st.DroppedCourses++
		}
		sum += e.Progress
		st.TotalTimeSpent += e.TimeSpentSeconds
		if e.LastAccessedAt != nil && (st.LastAccessedAt == nil || e.LastAccessedAt.After(st.LastAccessedAt.Time)) {
			at, course := *e.LastAccessedAt, e.CourseID
			st.LastAccessedAt, st.LastAccessedCourse = &at, &course
		}
	}
	if st.TotalCourses > 0 {
		st.AverageProgress = round2(sum / float64(st.TotalCourses))
	}
	return st
}

// UserStats is the answer of GET /users/{id}/stats.
func (s *State) UserStats() UserStats {
	st := UserStats{
		LastLoginAt:                 s.User.LastLoginAt,
		TotalLoginCount:             s.User.LoginCount,
		ProfileCompletionPercentage: ProfileCompletion(&s.User),
	}
	for _, e := range s.Enrollments {
		st.TotalEnrollments++
		switch e.EnrollmentStatus {
		case EnrollmentActive:
			st.ActiveEnrollments++
		case EnrollmentCompleted:
			st.CompletedEnrollments++
		}
		st.TotalProgress += e.Progress
	}
	st.TotalProgress = round2(st.TotalProgress)
	if st.TotalEnrollments > 0 {
		st.AverageProgress = round2(st.TotalProgress / float64(st.TotalEnrollments))
	}
	return st
}
