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
