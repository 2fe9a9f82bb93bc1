package postgres_test

import (
	"encoding/json"
	"testing"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

// storedData commits o's mutation and returns the data of its first event as
// the outbox holds it, decoded.
func storedData(t *testing.T, db *postgres.DB, w *postgres.Writer, o *userservice.Outcome) map[string]any {
	t.Helper()
	mustCommit(t, w, o.Mutation)
	rows := outboxRows(t, db, o.Mutation.Events[:1])
	if len(rows) != 1 {
		t.Fatalf("%d outbox rows for event %s, want 1", len(rows), o.Mutation.Events[0].ID)
	}
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(rows[0].payload, &env); err != nil {
		t.Fatal(err)
	}
	return env.Data
}

// TestEventPayloadKeepsChangesAsSent: the outbox row the writer stores renders
// user.updated's typed changes as the request sent them: a field set to null is
// present and null, a field left out is absent, a value is the value. The
// domain's tests read the same data through encoding/json, the writer encodes
// it with goccy/go-json.
func TestEventPayloadKeepsChangesAsSent(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{})
	s := registered(t, w, "p@example.com", "")
	o := apply(t, s, userservice.EditProfile{Input: userservice.UpdateUser{
		Bio:   userservice.Optional[string]{Set: true, Value: "hi"},
		Phone: userservice.Optional[string]{Set: true, Null: true},
	}}, metaAt(1))
	data := storedData(t, db, w, o)
	c, _ := data["changes"].(map[string]any)
	if len(c) != 2 || c["bio"] != "hi" {
		t.Errorf("changes %v, want exactly bio and phone", c)
	}
	if v, ok := c["phone"]; !ok || v != nil {
		t.Errorf("changes.phone = %v (present %v), want present and null", v, ok)
	}
	if p, _ := data["profile"].(map[string]any); p == nil {
		t.Errorf("data %v lacks the profile", data)
	} else if _, ok := p["displayName"]; !ok {
		t.Errorf("profile %v lacks displayName (null when unset)", p)
	}
}

// TestEnrollmentPayloadsCarryEveryField: the typed enrollment event data, with
// its embedded common part, is stored with every field.
func TestEnrollmentPayloadsCarryEveryField(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{})
	const course = "0b6b2b8e-4c1d-4c55-9b8f-6a4e1f2a3b4c"
	s := registered(t, w, "e@example.com", "")
	enrolled := apply(t, s, userservice.Enroll{CourseID: course}, metaAt(1))
	enrolledData := storedData(t, db, w, enrolled)
	progress := 40.0
	updated := apply(t, enrolled.State, userservice.EditEnrollment{CourseID: course,
		Input: userservice.UpdateEnrollment{Progress: &progress}}, metaAt(2))
	for _, c := range []struct {
		typ  string
		data map[string]any
		keys []string
	}{
		{enrolled.Mutation.Events[0].Type, enrolledData,
			[]string{"userId", "enrollmentId", "courseId", "enrollmentStatus", "progress", "enrolledAt", "reactivated"}},
		{updated.Mutation.Events[0].Type, storedData(t, db, w, updated),
			[]string{"userId", "enrollmentId", "courseId", "enrollmentStatus", "progress", "previousProgress", "timeSpentSeconds"}},
	} {
		if len(c.data) != len(c.keys) {
			t.Errorf("%s: data %v, want exactly %v", c.typ, c.data, c.keys)
		}
		for _, k := range c.keys {
			if _, ok := c.data[k]; !ok {
				t.Errorf("%s: data %v lacks %q", c.typ, c.data, k)
			}
		}
	}
}
