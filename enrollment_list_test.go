package userservice

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

// TestEnrollmentListAgainstAMap applies random puts and removes to an
// EnrollmentList and to a map, and checks after each step that the list holds
// exactly the map's entries, in order, and that Get agrees.
func TestEnrollmentListAgainstAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	courses := make([]string, 40)
	for i := range courses {
		courses[i] = NewID()
	}
	var l EnrollmentList
	model := map[string]*Enrollment{}
	for step := range 5000 {
		c := courses[rng.IntN(len(courses))]
		if rng.IntN(3) == 0 {
			_, want := model[c]
			if got := l.Remove(c); got != want {
				t.Fatalf("step %d: Remove(%s) = %v, want %v", step, c, got, want)
			}
			delete(model, c)
		} else {
			e := &Enrollment{CourseID: c, ID: strconv.Itoa(step)}
			l.Put(e)
			model[c] = e
		}
		if len(l) != len(model) {
			t.Fatalf("step %d: %d entries, want %d", step, len(l), len(model))
		}
		if !l.Ordered() {
			t.Fatalf("step %d: not in order", step)
		}
		for c, want := range model {
			if got, ok := l.Get(c); !ok || got != want {
				t.Fatalf("step %d: Get(%s) = %v %v, want %v", step, c, got, ok, want)
			}
		}
		if _, ok := l.Get("not-a-course"); ok {
			t.Fatalf("step %d: Get of an absent course found one", step)
		}
	}
}

func TestSortEnrollmentsKeepsTheLastOfEachCourse(t *testing.T) {
	in := []*Enrollment{
		{CourseID: "c", ID: "1"}, {CourseID: "a", ID: "2"}, {CourseID: "c", ID: "3"}, {CourseID: "b", ID: "4"}, {CourseID: "a", ID: "5"},
	}
	got := SortEnrollments(in)
	var order []string
	for _, e := range got {
		order = append(order, e.CourseID+"="+e.ID)
	}
	if want := []string{"a=5", "b=4", "c=3"}; !slices.Equal(order, want) {
		t.Errorf("SortEnrollments = %v, want %v", order, want)
	}
	if !got.Ordered() || (EnrollmentList{{CourseID: "a"}, {CourseID: "a"}}).Ordered() || (EnrollmentList{{CourseID: "b"}, {CourseID: "a"}}).Ordered() {
		t.Error("Ordered must hold for a sorted list only, each course once")
	}
	if slices.ContainsFunc(in[len(got):], func(e *Enrollment) bool { return e != nil }) {
		t.Error("SortEnrollments left pointers past the list's length in the array")
	}
}

// TestStateCopyOnWriteEnrollments: a change's writes never reach the state it
// was applied to (the list is copied before Put or Remove), and each write
// leaves the list in order.
func TestStateCopyOnWriteEnrollments(t *testing.T) {
	s := registered(t)
	courses := []string{"c3000000-0000-4000-8000-000000000000", "a1000000-0000-4000-8000-000000000000", "b2000000-0000-4000-8000-000000000000"}
	for i, c := range courses {
		s = apply(t, s, Enroll{CourseID: c}, at(i+1)).State
	}
	if !s.Enrollments.Ordered() || len(s.Enrollments) != 3 {
		t.Fatalf("after three enrollments: %d, ordered %v", len(s.Enrollments), s.Enrollments.Ordered())
	}
	before := slices.Clone(s.Enrollments)
	beforeValues := make([]Enrollment, len(before))
	for i, e := range before {
		beforeValues[i] = *e
	}
	apply(t, s, Enroll{CourseID: "00000000-0000-4000-8000-000000000000"}, at(5))
	apply(t, s, SetProgress{CourseID: courses[1], Input: UpdateProgress{Progress: ptr(50.0)}}, at(6))
	apply(t, s, Unenroll{CourseID: courses[2]}, at(7))
	if !slices.Equal(s.Enrollments, before) {
		t.Fatalf("the base state's list changed: %v, was %v", s.Enrollments, before)
	}
	for i, e := range s.Enrollments {
		if *e != beforeValues[i] {
			t.Fatalf("the base state's enrollment %d changed: %+v, was %+v", i, *e, beforeValues[i])
		}
	}
}
