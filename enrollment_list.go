package userservice

import (
	"slices"
	"strings"
)

// EnrollmentList is a user's enrollments sorted by course id, each course once.
//
// A sorted slice of pointers rather than a map by course id (issue 16): a write
// copies its user's list before changing it (copy on write, the published list
// is shared with readers), and copying n pointers is n words, where a map's copy
// is a new table of about n/0.875 slots, each a 16-byte key and an 8-byte value
// plus a control byte: several times the bytes to allocate, and two pointers per
// entry (the key's string, the value) for the collector to scan while the state
// lives. An Enrollment in the list is never modified either: a change puts a
// new one. Lookups are binary searches over at most QUOTA_ENROLLMENTS_PER_USER
// entries.
//
// Like the rest of a published [State] it is immutable: a writer copies it
// first (State.writableEnrollments) and only then calls Put or Remove.
type EnrollmentList []*Enrollment

// search returns where the course is, or where it would be inserted, and whether it is there.
func (l EnrollmentList) search(courseID string) (int, bool) {
	return slices.BinarySearchFunc(l, courseID, func(e *Enrollment, c string) int {
		return strings.Compare(e.CourseID, c)
	})
}

// Get returns the enrollment in the course; it must not be modified.
func (l EnrollmentList) Get(courseID string) (*Enrollment, bool) {
	if i, ok := l.search(courseID); ok {
		return l[i], true
	}
	return nil, false
}

// Put inserts e, or replaces the enrollment in its course, in place.
func (l *EnrollmentList) Put(e *Enrollment) {
	i, ok := l.search(e.CourseID)
	if ok {
		(*l)[i] = e
		return
	}
	*l = slices.Insert(*l, i, e)
}

// Remove deletes the enrollment in the course, in place, and reports whether it was there.
func (l *EnrollmentList) Remove(courseID string) bool {
	i, ok := l.search(courseID)
	if ok {
		*l = slices.Delete(*l, i, i+1)
	}
	return ok
}

// Ordered reports whether the list is in its order: sorted by course id, each course once.
func (l EnrollmentList) Ordered() bool {
	for i := 1; i < len(l); i++ {
		if l[i-1].CourseID >= l[i].CourseID {
			return false
		}
	}
	return true
}

// SortEnrollments puts enrollments read in any order (rows, a snapshot) in the
// list's order; of two in the same course the last one read is kept.
func SortEnrollments(es []*Enrollment) EnrollmentList {
	slices.SortStableFunc(es, func(a, b *Enrollment) int { return strings.Compare(a.CourseID, b.CourseID) })
	out := es[:0]
	for i, e := range es {
		if i+1 < len(es) && es[i+1].CourseID == e.CourseID {
			continue
		}
		out = append(out, e)
	}
	clear(es[len(out):]) // no stale pointer kept alive past the list's length
	return EnrollmentList(out)
}

// ShareNames makes e's user id the given one (the state's own copy of its user's
// id) and its status the process's one copy of that status, instead of the
// copies that were just decoded: two strings fewer per enrollment to allocate and
// for the collector to visit.
func (e *Enrollment) ShareNames(userID string) {
	if e.UserID == userID {
		e.UserID = userID
	}
	switch e.EnrollmentStatus {
	case EnrollmentActive:
		e.EnrollmentStatus = EnrollmentActive
	case EnrollmentCompleted:
		e.EnrollmentStatus = EnrollmentCompleted
	case EnrollmentDropped:
		e.EnrollmentStatus = EnrollmentDropped
	case EnrollmentSuspended:
		e.EnrollmentStatus = EnrollmentSuspended
	}
}
