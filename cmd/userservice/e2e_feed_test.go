package main

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestEventEnvelopeSequence: a published event carries the user's version after
// the change as its sequence, the envelope version, and the actor and request id
// in its metadata, so a consumer can order a user's events and drop the echoes of
// its own requests (issue 15, change feed; the shape is checked by checkEnvelope).
func TestEventEnvelopeSequence(t *testing.T) {
	st := newStack(t)
	tp := st.tap(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	u := svc.createUser(t, admin, newUserBody(t))
	tp.expect(t, "user.created")

	tok := st.tokenFor(t, u)
	r := svc.do(t, "PUT", "/api/v1/users/me", tok, map[string]any{"bio": "sequenced"}, "X-Request-ID", "feed-test-request-1")
	r.data(t, http.StatusOK, nil)
	version := r.version(t)
	ev := tp.expect(t, "user.updated")[0]
	var seq int64
	if err := json.Unmarshal(ev.raw["sequence"], &seq); err != nil || seq != version {
		t.Errorf("sequence %s, want the answer's version %d", ev.raw["sequence"], version)
	}
	if ev.Metadata["requestId"] != "feed-test-request-1" || ev.Metadata["actorId"] != u.ID {
		t.Errorf("metadata %v, want the request id and the actor", ev.Metadata)
	}
}
