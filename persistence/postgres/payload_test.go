package postgres_test

import (
	"testing"

	json "github.com/goccy/go-json"

	"github.com/lms-platform/userservice"
)

// TestEventPayloadKeepsChangesAsSent: the writer's encoder (goccy/go-json, as in
// prepareItem) renders user.updated's typed changes as the request sent them: a
// field set to null is present and null, a field left out is absent, a value is
// the value. The domain's tests read the same data with encoding/json.
func TestEventPayloadKeepsChangesAsSent(t *testing.T) {
	s := apply(t, nil, newUser("p@example.com", ""), metaAt(0)).State
	o := apply(t, s, userservice.EditProfile{Input: userservice.UpdateUser{
		Bio:   userservice.Optional[string]{Set: true, Value: "hi"},
		Phone: userservice.Optional[string]{Set: true, Null: true},
	}}, metaAt(1))
	if len(o.Mutation.Events) != 1 {
		t.Fatalf("%d events, want 1", len(o.Mutation.Events))
	}
	b, err := json.Marshal(&o.Mutation.Events[0])
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Data struct {
			Changes map[string]any `json:"changes"`
			Profile map[string]any `json:"profile"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	c := env.Data.Changes
	if len(c) != 2 || c["bio"] != "hi" {
		t.Errorf("changes %v, want exactly bio and phone", c)
	}
	if v, ok := c["phone"]; !ok || v != nil {
		t.Errorf("changes.phone = %v (present %v), want present and null", v, ok)
	}
	if _, ok := env.Data.Profile["displayName"]; !ok {
		t.Errorf("profile %v lacks displayName (null when unset)", env.Data.Profile)
	}
}

// TestEnrollmentPayloadsCarryEveryField: the typed enrollment event data, with
// its embedded common part, renders every field under the writer's encoder.
func TestEnrollmentPayloadsCarryEveryField(t *testing.T) {
	const course = "0b6b2b8e-4c1d-4c55-9b8f-6a4e1f2a3b4c"
	s := apply(t, nil, newUser("e@example.com", ""), metaAt(0)).State
	enrolled := apply(t, s, userservice.Enroll{CourseID: course}, metaAt(1))
	progress := 40.0
	updated := apply(t, enrolled.State, userservice.EditEnrollment{CourseID: course,
		Input: userservice.UpdateEnrollment{Progress: &progress}}, metaAt(2))
	for _, c := range []struct {
		o    *userservice.Outcome
		keys []string
	}{
		{enrolled, []string{"userId", "enrollmentId", "courseId", "enrollmentStatus", "progress", "enrolledAt", "reactivated"}},
		{updated, []string{"userId", "enrollmentId", "courseId", "enrollmentStatus", "progress", "previousProgress", "timeSpentSeconds"}},
	} {
		e := c.o.Mutation.Events[0]
		b, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatal(err)
		}
		if len(env.Data) != len(c.keys) {
			t.Errorf("%s: data %v, want exactly %v", e.Type, env.Data, c.keys)
		}
		for _, k := range c.keys {
			if _, ok := env.Data[k]; !ok {
				t.Errorf("%s: data %v lacks %q", e.Type, env.Data, k)
			}
		}
	}
}
