package userservice

import "testing"

// TestEventSequence: every event carries the envelope version and, as its
// sequence, the user's version after the change; events of one change share it;
// the request id reaches the metadata (change feed, issue 15).
func TestEventSequence(t *testing.T) {
	in := CreateUser{AuthID: "2f1f7c9e-8d7a-4c8e-9a51-1f6c1f0d2b11", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace"}
	meta := at(0)
	meta.RequestID = "req-1"
	o := apply(t, nil, Register{ID: testUserID, Input: in}, meta)
	ev := o.Mutation.Events[0]
	if ev.Sequence != 1 || ev.Version != EnvelopeVersion || ev.Metadata["requestId"] != "req-1" {
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
		if _, ok := e.Metadata["requestId"]; ok {
			t.Errorf("%s: requestId without a request", e.Type)
		}
	}
}
