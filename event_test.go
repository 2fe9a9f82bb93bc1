package userservice

import (
	"encoding/json"
	"testing"

	goccyjson "github.com/goccy/go-json"
)

// TestEventSequence: every event carries the envelope version and, as its
// sequence, the user's version after the change; events of one change share it;
// the request id reaches the metadata (change feed, issue 15).
func TestEventSequence(t *testing.T) {
	in := CreateUser{AuthID: "2f1f7c9e-8d7a-4c8e-9a51-1f6c1f0d2b11", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace"}
	meta := at(0)
	meta.RequestID = "req-1"
	o := apply(t, nil, Register{ID: testUserID, Input: in}, meta)
	ev := o.Mutation.Events[0]
	if ev.Sequence != 1 || ev.Version != EnvelopeVersion || ev.Metadata.RequestID != "req-1" {
		t.Errorf("created: sequence %d, version %d, metadata %v", ev.Sequence, ev.Version, ev.Metadata)
	}
	s := o.State
	course := "0190f5c2-0000-7000-8000-0000000000c1"
	s = apply(t, s, Enroll{CourseID: course}, at(1)).State
	pct := 100.0
	o = apply(t, s, SetProgress{CourseID: course, Input: UpdateProgress{Progress: &pct}}, at(2))
	if len(o.Mutation.Events) != 2 {
		t.Fatalf("progress to 100: %d events, want progress and completion", len(o.Mutation.Events))
	}
	for _, e := range o.Mutation.Events {
		if e.Sequence != 3 || e.Sequence != o.State.User.Version || e.Version != EnvelopeVersion {
			t.Errorf("%s: sequence %d, version %d; user version %d", e.Type, e.Sequence, e.Version, o.State.User.Version)
		}
		if e.Metadata.RequestID != "" {
			t.Errorf("%s: requestId without a request", e.Type)
		}
	}
}

// TestEventMetadataJSON: the metadata object is what the map it replaced wrote,
// keys in sorted order, an absent actor or request left out (both encoders the
// service uses: goccy/go-json for payloads, encoding/json elsewhere).
func TestEventMetadataJSON(t *testing.T) {
	actor := "0190f5c2-0000-7000-8000-000000000001"
	for _, tc := range []struct {
		md   EventMetadata
		want string
	}{
		{EventMetadata{ActorID: &actor, RequestID: "req-1", UserVersion: 3}, `{"actorId":"` + actor + `","requestId":"req-1","userVersion":3}`},
		{EventMetadata{UserVersion: 1}, `{"userVersion":1}`},
		{EventMetadata{RequestID: "job:1", UserVersion: 2}, `{"requestId":"job:1","userVersion":2}`},
	} {
		for name, marshal := range map[string]func(any) ([]byte, error){"goccy": goccyjson.Marshal, "std": json.Marshal} {
			b, err := marshal(tc.md)
			if err != nil || string(b) != tc.want {
				t.Errorf("%s: %s, %v; want %s", name, b, err, tc.want)
			}
		}
	}
}
