package userservice

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestErasureCommands(t *testing.T) {
	s := loggedIn(t, 2)
	s = apply(t, s, EditProfile{Input: UpdateUser{Bio: Optional[string]{Set: true, Value: "secret bio"}}}, at(1)).State
	s = apply(t, s, SetAttributes{Namespace: "hr", Value: json.RawMessage(`{"department":"Math"}`)}, at(1)).State
	s = apply(t, s, SetAttributes{Namespace: "lms", Value: json.RawMessage(`{"cohort":"2026"}`)}, at(1)).State
	when := timeAt(60)

	o := apply(t, s, RequestErasure{ScheduledAt: when}, at(2))
	m := mutated(t, s, o)
	if got := eventTypes(m); !slices.Equal(got, []string{EventErasureRequested, EventSessionsRevoked}) {
		t.Fatalf("request events %v", got)
	}
	if o.State.User.Status != StatusSuspended || m.Erasure == nil || m.Erasure.Op != ErasureOpRequest ||
		m.Erasure.PreviousStatus != StatusActive || !m.Erasure.ScheduledAt.Equal(when.Time) {
		t.Errorf("request: status %s, erasure %+v", o.State.User.Status, m.Erasure)
	}
	requested := o.State

	o = apply(t, requested, CancelErasure{RestoreStatus: StatusActive}, at(3))
	m = mutated(t, requested, o)
	if len(m.Events) != 0 || o.State.User.Status != StatusActive || m.Erasure.Op != ErasureOpCancel || m.Audit[0].Action != AuditErasureCancelled {
		t.Errorf("cancel: events %v, status %s, erasure %+v", eventTypes(m), o.State.User.Status, m.Erasure)
	}

	o = apply(t, requested, Erase{}, at(61))
	m = mutated(t, requested, o)
	if got := eventTypes(m); !slices.Equal(got, []string{EventUserErased}) {
		t.Fatalf("erase events %v", got)
	}
	checkData(t, dataOf(t, m.Events[0]), map[string]any{"userId": testUserID, "authId": s.User.AuthID})
	if d := dataOf(t, m.Events[0]); len(d) != 2 {
		t.Errorf("user.erased carries %v, want userId and authId only", d)
	}
	u := o.State.User
	if !u.Erased() || u.Email != ErasedEmail(u.ID) || u.Username != nil || u.Bio != nil || u.FirstName != ErasedName || u.Status != StatusDeleted {
		t.Errorf("erased user %+v", u)
	}
	if len(o.State.Preferences) != 0 || len(m.PreferenceDeletes) != len(DefaultPreferences) {
		t.Errorf("%d preferences left, %d deleted", len(o.State.Preferences), len(m.PreferenceDeletes))
	}
	if len(o.State.Attributes) != 0 || !slices.Equal(m.AttributeDeletes, []string{"hr", "lms"}) {
		t.Errorf("attributes left %v, deleted %v", o.State.Attributes, m.AttributeDeletes)
	}
	if len(requested.Attributes) != 2 {
		t.Errorf("erase changed the state it was applied to: %d attributes left there", len(requested.Attributes))
	}
	for _, sess := range o.State.Sessions {
		if sess.Active || sess.IPAddress != nil || sess.UserAgent != nil {
			t.Errorf("session %+v not scrubbed", sess)
		}
	}
	if m.Erasure.Op != ErasureOpErase || m.Audit[0].Action != AuditErasureDone {
		t.Errorf("erase: erasure %+v, audit %+v", m.Erasure, m.Audit)
	}
	erased := o.State
	// Once erased: a second Erase changes nothing, every other command is 404.
	unchanged(t, erased, apply(t, erased, Erase{}, at(62)))
	applyErr(t, erased, EditProfile{Input: UpdateUser{Bio: Optional[string]{Set: true, Value: "x"}}}, at(62), ECodeNotFound)
	applyErr(t, erased, RecordExport{}, at(62), ECodeNotFound)
	applyErr(t, erased, RequestErasure{ScheduledAt: when}, at(62), ECodeNotFound)
	// The Auth Service's late events change nothing and are not refused (a
	// refusal would be retried, then dead-lettered with the person's data).
	ip := "198.51.100.7"
	for _, cmd := range []Command{RecordLogin{SessionID: "late", IPAddress: &ip, At: timeAt(63)}, RecordLogout{SessionID: "late", At: timeAt(63)},
		RecordPasswordChange{At: timeAt(63)}, VerifyEmail{At: timeAt(63)}} {
		unchanged(t, erased, apply(t, erased, cmd, at(63)))
	}
}

func TestErasedNeedsTheUsersOwnErasedEmail(t *testing.T) {
	const id, other = "0190f5c2-0000-7000-8000-000000000001", "0190f5c2-0000-7000-8000-000000000002"
	for email, want := range map[string]bool{
		ErasedEmail(id):                     true,
		ErasedEmail(other):                  false,
		"erased+" + id + "@invalid.example": false,
		"erased+" + id:                      false,
		id + "@invalid":                     false,
		"someone@example.com":               false,
		"":                                  false,
	} {
		u := User{ID: id, Email: email}
		if got := u.Erased(); got != want {
			t.Errorf("Erased() with email %q = %t, want %t", email, got, want)
		}
	}
}
