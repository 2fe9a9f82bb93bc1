package userservice

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

const (
	testUserID  = "0190f5c2-0000-7000-8000-000000000001"
	testAdminID = "0190f5c2-0000-7000-8000-0000000000ad"
	courseA     = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a01"
	courseB     = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a02"
	courseC     = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a03"
	courseD     = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a04"
)

var t0 = time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC)

// at returns the Meta of a command made by the admin n minutes after t0.
func at(n int) Meta {
	return Meta{ActorID: ptr(testAdminID), CorrelationID: "corr-" + strconv.Itoa(n), Now: NewTime(t0.Add(time.Duration(n) * time.Minute))}
}

func timeAt(n int) Time { return NewTime(t0.Add(time.Duration(n) * time.Minute)) }

// dump renders everything a State holds, including the fields User hides from JSON,
// so that two dumps differ exactly when the states differ.
func dump(tb testing.TB, s *State) string {
	tb.Helper()
	if s == nil {
		return "nil"
	}
	prefs := make(map[string]Preference, len(s.Preferences))
	for _, p := range s.Preferences {
		prefs[p.Category+"/"+p.Key] = p
	}
	b, err := json.Marshal(struct {
		User        User
		LoginCount  int64
		LastLoginAt *Time
		Enrollments EnrollmentList
		Preferences map[string]Preference
		Sessions    []Session
		Attributes  map[string]json.RawMessage
	}{s.User, s.User.LoginCount, s.User.LastLoginAt, s.Enrollments, prefs, s.Sessions, s.Attributes})
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// apply runs Apply, failing the test on error or if Apply changed its input state.
func apply(tb testing.TB, s *State, cmd Command, meta Meta) *Outcome {
	tb.Helper()
	before := dump(tb, s)
	o, err := Apply(s, cmd, meta)
	if err != nil {
		tb.Fatalf("Apply(%T): %v", cmd, err)
	}
	if after := dump(tb, s); after != before {
		tb.Fatalf("Apply(%T) changed its input state:\nbefore %s\nafter  %s", cmd, before, after)
	}
	if o.State == nil {
		tb.Fatalf("Apply(%T) returned no state", cmd)
	}
	return o
}

// applyErr runs Apply expecting an *Error with the code, and no change to s.
func applyErr(tb testing.TB, s *State, cmd Command, meta Meta, code string) {
	tb.Helper()
	before := dump(tb, s)
	o, err := Apply(s, cmd, meta)
	if ErrorCode(err) != code {
		tb.Fatalf("Apply(%T) = %+v, %v; want code %s", cmd, o, err, code)
	}
	var e *Error
	if !errors.As(err, &e) {
		tb.Fatalf("Apply(%T) error %v is not an *Error", cmd, err)
	}
	if o != nil {
		tb.Errorf("Apply(%T) returned an outcome with its error", cmd)
	}
	if after := dump(tb, s); after != before {
		tb.Fatalf("failed Apply(%T) changed its input state", cmd)
	}
}

// mutated asserts that o carries a mutation advancing the version by one.
func mutated(tb testing.TB, before *State, o *Outcome) *Mutation {
	tb.Helper()
	m := o.Mutation
	if m == nil {
		tb.Fatal("no mutation")
	}
	if m.BaseVersion != before.User.Version || m.User.Version != before.User.Version+1 || o.State.User.Version != m.User.Version {
		tb.Fatalf("versions: base %d, mutation %d→%d, state %d", before.User.Version, m.BaseVersion, m.User.Version, o.State.User.Version)
	}
	if m.UserID != before.User.ID || m.Create {
		tb.Errorf("mutation for %q, Create %v", m.UserID, m.Create)
	}
	return m
}

// unchanged asserts that o changed nothing.
func unchanged(tb testing.TB, before *State, o *Outcome) {
	tb.Helper()
	if o.Mutation != nil {
		tb.Fatalf("mutation %+v, want none", o.Mutation)
	}
	if o.State != before {
		tb.Error("a no-op returned a new state")
	}
}

func eventTypes(m *Mutation) []string {
	out := []string{}
	for _, e := range m.Events {
		out = append(out, e.Type)
	}
	return out
}

// dataOf returns the event's data as it goes on the wire.
func dataOf(tb testing.TB, e Event) map[string]any {
	tb.Helper()
	b, err := json.Marshal(e.Data)
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// checkData asserts that the wire form of d has the given values.
func checkData(tb testing.TB, d map[string]any, want map[string]any) {
	tb.Helper()
	for k, w := range want {
		if got, ok := d[k]; !ok || !reflect.DeepEqual(got, w) {
			tb.Errorf("data[%q] = %#v (present %v), want %#v", k, got, ok, w)
		}
	}
}

// registered creates the test user at minute 0.
func registered(tb testing.TB) *State {
	tb.Helper()
	in := CreateUser{AuthID: "2f1f7c9e-8d7a-4c8e-9a51-1f6c1f0d2b11", Email: "ada@example.com", FirstName: " Ada ", LastName: "Lovelace"}
	return apply(tb, nil, Register{ID: testUserID, Input: in}, at(0)).State
}

// defaultPreferences is CONTRACT.md's list (Details), written out independently.
var defaultPreferences = map[string]string{
	"notifications/email_enabled": "true", "notifications/push_enabled": "true",
	"notifications/course_updates": "true", "notifications/assignment_reminders": "true",
	"notifications/marketing_emails": "false",
	"ui/theme":                       `"light"`, "ui/language": `"en"`, "ui/timezone": `"UTC"`, "ui/items_per_page": "20",
	"learning/auto_play_videos": "true", "learning/show_subtitles": "false", "learning/playback_speed": "1.0",
	"learning/reminder_frequency": `"daily"`,
	"privacy/profile_visibility":  `"public"`, "privacy/show_progress": "true", "privacy/allow_messages": "true",
}

func TestRegister(t *testing.T) {
	in := CreateUser{AuthID: "2f1f7c9e-8d7a-4c8e-9a51-1f6c1f0d2b11", Email: "ada@example.com", FirstName: " Ada ", LastName: "Lovelace"}
	o := apply(t, nil, Register{ID: testUserID, Input: in}, at(0))
	s, m := o.State, o.Mutation

	t.Run("creates the user with the spec's defaults", func(t *testing.T) {
		if !o.Created || m == nil || !m.Create || m.BaseVersion != 0 || m.User.Version != 1 || m.UserID != testUserID {
			t.Fatalf("Created %v, mutation %+v", o.Created, m)
		}
		want := User{
			ID: testUserID, AuthID: in.AuthID, Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace",
			Timezone: "UTC", Language: "en", Role: RoleStudent, Status: StatusActive,
			CreatedAt: timeAt(0), UpdatedAt: timeAt(0), Version: 1,
		}
		if !reflect.DeepEqual(s.User, want) {
			t.Errorf("user = %+v\nwant   %+v", s.User, want)
		}
		if !reflect.DeepEqual(m.User, want) || !reflect.DeepEqual(o.Result, want) {
			t.Errorf("mutation user %+v, result %+v", m.User, o.Result)
		}
		if len(s.Enrollments) != 0 || len(s.Sessions) != 0 {
			t.Errorf("enrollments %v sessions %v", s.Enrollments, s.Sessions)
		}
	})
	t.Run("creates the 16 default preferences", func(t *testing.T) {
		got := map[string]string{}
		if !slices.IsSortedFunc(s.Preferences, func(a, b Preference) int { return comparePrefKeys(a.Category, a.Key, b.Category, b.Key) }) {
			t.Errorf("preferences not in order: %v", s.Preferences)
		}
		for _, p := range s.Preferences {
			k := PrefKey{p.Category, p.Key}
			if p.UserID != testUserID || p.CreatedAt != timeAt(0) || p.UpdatedAt != timeAt(0) {
				t.Errorf("preference %+v", p)
			}
			if p.ID.Version() != 7 || p.ID.Variant() != uuid.RFC4122 {
				t.Errorf("preference id %s", p.ID)
			}
			got[k.Category+"/"+k.Key] = string(p.Value)
		}
		if !reflect.DeepEqual(got, defaultPreferences) {
			t.Errorf("preferences = %v\nwant %v", got, defaultPreferences)
		}
		if len(m.PreferenceUpserts) != 16 {
			t.Errorf("mutation has %d preference rows", len(m.PreferenceUpserts))
		}
		for _, p := range m.PreferenceUpserts {
			if !reflect.DeepEqual(getPref(s.Preferences, PrefKey{p.Category, p.Key}), p) {
				t.Errorf("mutation row %+v differs from the state", p)
			}
		}
	})
	t.Run("publishes user.created", func(t *testing.T) {
		if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventUserCreated}) {
			t.Fatalf("events %v", got)
		}
		e := m.Events[0]
		if _, ok := ParseID(e.ID); !ok || e.Source != "user-service" || e.Timestamp != timeAt(0) || e.CorrelationID != "corr-0" {
			t.Errorf("envelope %+v", e)
		}
		if e.Metadata.UserVersion != 1 || e.Metadata.ActorID == nil || *e.Metadata.ActorID != testAdminID {
			t.Errorf("metadata %v", e.Metadata)
		}
		checkData(t, dataOf(t, e), map[string]any{
			"userId": testUserID, "authId": in.AuthID, "email": "ada@example.com", "role": "student",
			"profile": map[string]any{"firstName": "Ada", "lastName": "Lovelace", "displayName": nil, "avatarUrl": nil},
		})
	})
	t.Run("takes the optional fields", func(t *testing.T) {
		in := in
		in.Username, in.Bio, in.AvatarURL = ptr("ada"), ptr("Analyst"), ptr("https://x.io/a.png")
		in.Timezone, in.Language, in.Role = ptr("Europe/London"), ptr("en-GB"), ptr(RoleInstructor)
		u := apply(t, nil, Register{ID: testUserID, Input: in}, at(0)).State.User
		if u.Timezone != "Europe/London" || u.Language != "en-GB" || u.Role != RoleInstructor || *u.Username != "ada" {
			t.Errorf("user %+v", u)
		}
		if !u.ProfileCompleted {
			t.Error("names, email, username, bio and avatar given but profileCompleted false")
		}
	})
	t.Run("system events carry empty metadata but the version", func(t *testing.T) {
		meta := at(0)
		meta.ActorID = nil
		m := apply(t, nil, Register{ID: testUserID, Input: in}, meta).Mutation
		if md := m.Events[0].Metadata; md != (EventMetadata{UserVersion: 1}) {
			t.Errorf("metadata %v", md)
		}
	})
	t.Run("an existing user cannot register again", func(t *testing.T) {
		applyErr(t, s, Register{ID: testUserID, Input: in}, at(1), ECodeConflict)
	})
	t.Run("other commands need an existing user", func(t *testing.T) {
		for _, cmd := range []Command{EditProfile{}, ChangeRole{Role: RoleAdmin}, SoftDelete{}, Enroll{CourseID: courseA}, RecordLogin{}} {
			_, err := Apply(nil, cmd, at(1))
			if !errors.Is(err, ErrUserNotFound) {
				t.Errorf("Apply(nil, %T) = %v, want ErrUserNotFound", cmd, err)
			}
		}
	})
}

type unknownCommand struct{}

func (unknownCommand) command() {}

func TestApplyVersions(t *testing.T) {
	s := registered(t)
	t.Run("every mutation advances the version by one", func(t *testing.T) {
		cur := s
		for i, cmd := range []Command{
			EditProfile{Input: UpdateUser{Bio: Optional[string]{Set: true, Value: "hi"}}},
			ChangeRole{Role: RoleInstructor},
			Enroll{CourseID: courseA},
			SetProgress{CourseID: courseA, Input: UpdateProgress{Progress: ptr(10.0)}},
			SetPreferences{Category: CategoryUI, Input: UpsertPreferences{Preferences: []PreferenceInput{{Key: "theme", Value: json.RawMessage(`"dark"`)}}}},
			RecordLogin{SessionID: "s1", At: timeAt(9)},
			RecordPasswordChange{At: timeAt(10)},
		} {
			o := apply(t, cur, cmd, at(i+1))
			mutated(t, cur, o)
			if o.State.User.Version != int64(i+2) {
				t.Fatalf("after %T version %d, want %d", cmd, o.State.User.Version, i+2)
			}
			cur = o.State
		}
	})
	t.Run("If-Match naming the version passes", func(t *testing.T) {
		for _, p := range []Precondition{{Versions: []int64{1}}, {Versions: []int64{4, 1}}, {Any: true}} {
			meta := at(1)
			meta.IfMatch = &p
			mutated(t, s, apply(t, s, ChangeStatus{Status: StatusInactive}, meta))
		}
	})
	t.Run("If-Match naming another version fails", func(t *testing.T) {
		for _, p := range []Precondition{{Versions: []int64{0}}, {Versions: []int64{2, 3}}, {}} {
			meta := at(1)
			meta.IfMatch = &p
			applyErr(t, s, ChangeStatus{Status: StatusInactive}, meta, ECodeVersionMismatch)
			applyErr(t, s, ChangeRole{Role: RoleStudent}, meta, ECodeVersionMismatch) // even a no-op
		}
	})
	t.Run("an unknown target answers before a failed If-Match", func(t *testing.T) {
		meta := at(1)
		meta.IfMatch = &Precondition{Versions: []int64{99}}
		applyErr(t, s, Unenroll{CourseID: courseA}, meta, ECodeNotFound)
		applyErr(t, s, RemovePreference{Category: CategoryUI, Key: "nope"}, meta, ECodeNotFound)
		applyErr(t, nil, ChangeStatus{Status: StatusInactive}, meta, ECodeNotFound)
	})
	t.Run("a failed If-Match answers before a conflict", func(t *testing.T) {
		o := apply(t, s, Enroll{CourseID: courseA}, at(1))
		meta := at(2)
		meta.IfMatch = &Precondition{Versions: []int64{1}}
		applyErr(t, o.State, Enroll{CourseID: courseA}, meta, ECodeVersionMismatch)
		meta.IfMatch = &Precondition{Versions: []int64{2}}
		applyErr(t, o.State, Enroll{CourseID: courseA}, meta, ECodeAlreadyEnrolled)
	})
	t.Run("the consumed message id is recorded", func(t *testing.T) {
		meta := at(1)
		meta.MessageID = "msg-1"
		if m := apply(t, s, RecordLogin{SessionID: "s", At: timeAt(1)}, meta).Mutation; m.ProcessedMessageID != "msg-1" {
			t.Errorf("ProcessedMessageID %q", m.ProcessedMessageID)
		}
	})
	t.Run("the idempotent answer is rendered with the committed version", func(t *testing.T) {
		meta := at(1)
		var seen int64
		meta.Idempotency = &IdempotencyRequest{CallerID: testAdminID, Key: "k1", RequestHash: "h", Render: func(o *Outcome) (int, []byte) {
			seen = o.Result.(User).Version
			return 200, []byte(`{"ok":true}`)
		}}
		o := apply(t, s, ChangeRole{Role: RoleAdmin}, meta)
		r := o.Mutation.Idempotency
		if seen != 2 || r == nil || r.CallerID != testAdminID || r.Key != "k1" || r.RequestHash != "h" || r.Status != 200 ||
			string(r.Body) != `{"ok":true}` || r.CreatedAt != timeAt(1) {
			t.Errorf("rendered version %d, record %+v", seen, r)
		}
		if o.Result.(User).Version != 2 {
			t.Errorf("result version %d", o.Result.(User).Version)
		}
	})
	t.Run("an unknown command is an internal error", func(t *testing.T) {
		applyErr(t, s, unknownCommand{}, at(1), ECodeInternal)
	})
}

func TestEditProfile(t *testing.T) {
	s := registered(t)
	s = apply(t, s, EditProfile{Input: UpdateUser{Phone: Optional[string]{Set: true, Value: "+14155550123"}}}, at(1)).State

	var in UpdateUser
	if err := json.Unmarshal([]byte(`{"bio":"Analyst","phone":null,"firstName":"  Augusta Ada "}`), &in); err != nil {
		t.Fatal(err)
	}
	o := apply(t, s, EditProfile{Input: in}, at(2))
	m := mutated(t, s, o)
	u := o.State.User
	t.Run("sets given fields, clears nulls, keeps missing ones", func(t *testing.T) {
		if u.Bio == nil || *u.Bio != "Analyst" || u.Phone != nil || u.FirstName != "Augusta Ada" || u.LastName != "Lovelace" ||
			u.Timezone != "UTC" || u.UpdatedAt != timeAt(2) || u.CreatedAt != timeAt(0) {
			t.Errorf("user %+v", u)
		}
		if !reflect.DeepEqual(o.Result, u) {
			t.Errorf("result %+v", o.Result)
		}
	})
	t.Run("publishes user.updated with the changes as sent", func(t *testing.T) {
		if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventUserUpdated}) {
			t.Fatalf("events %v", got)
		}
		d := dataOf(t, m.Events[0])
		checkData(t, d, map[string]any{
			"userId":  testUserID,
			"changes": map[string]any{"bio": "Analyst", "phone": nil, "firstName": "  Augusta Ada "},
			"profile": map[string]any{"firstName": "Augusta Ada", "lastName": "Lovelace", "displayName": nil, "avatarUrl": nil},
		})
	})
	t.Run("profileCompleted turns on and stays on", func(t *testing.T) {
		if u.ProfileCompleted {
			t.Fatal("profileCompleted without username and avatar")
		}
		s2 := apply(t, o.State, EditProfile{Input: UpdateUser{
			Username: Optional[string]{Set: true, Value: "ada"}, AvatarURL: Optional[string]{Set: true, Value: "https://x.io/a"},
		}}, at(3)).State
		if !s2.User.ProfileCompleted {
			t.Fatal("profileCompleted off with every field")
		}
		s3 := apply(t, s2, EditProfile{Input: UpdateUser{Bio: Optional[string]{Set: true, Null: true}}}, at(4)).State
		if !s3.User.ProfileCompleted {
			t.Error("profileCompleted turned off")
		}
	})
}

func TestChangeRoleAndStatus(t *testing.T) {
	s := registered(t)
	t.Run("same role changes nothing", func(t *testing.T) {
		o := apply(t, s, ChangeRole{Role: RoleStudent}, at(1))
		unchanged(t, s, o)
		if o.Result.(User).Role != RoleStudent {
			t.Errorf("result %+v", o.Result)
		}
	})
	t.Run("new role publishes user.role_changed and audits", func(t *testing.T) {
		o := apply(t, s, ChangeRole{Role: RoleInstructor}, at(1))
		m := mutated(t, s, o)
		if o.State.User.Role != RoleInstructor || o.State.User.UpdatedAt != timeAt(1) {
			t.Errorf("user %+v", o.State.User)
		}
		if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventRoleChanged}) {
			t.Fatalf("events %v", got)
		}
		checkData(t, dataOf(t, m.Events[0]), map[string]any{"userId": testUserID, "oldRole": "student", "newRole": "instructor", "changedBy": testAdminID})
		if len(m.Audit) != 1 || m.Audit[0].Action != AuditRoleChanged || m.Audit[0].Before["role"] != RoleStudent ||
			m.Audit[0].After["role"] != RoleInstructor || *m.Audit[0].ActorID != testAdminID || m.Audit[0].CorrelationID != "corr-1" {
			t.Errorf("audit %+v", m.Audit)
		}
	})
	t.Run("unknown role is a validation error", func(t *testing.T) {
		applyErr(t, s, ChangeRole{Role: "owner"}, at(1), ECodeValidation)
	})
	t.Run("same status changes nothing", func(t *testing.T) {
		unchanged(t, s, apply(t, s, ChangeStatus{Status: StatusActive}, at(1)))
	})
	t.Run("new status publishes user.status_changed and audits", func(t *testing.T) {
		o := apply(t, s, ChangeStatus{Status: StatusSuspended}, at(1))
		m := mutated(t, s, o)
		if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventStatusChanged}) {
			t.Fatalf("events %v", got)
		}
		checkData(t, dataOf(t, m.Events[0]), map[string]any{"userId": testUserID, "oldStatus": "active", "newStatus": "suspended", "changedBy": testAdminID})
		if len(m.Audit) != 1 || m.Audit[0].Action != AuditStatusChanged {
			t.Errorf("audit %+v", m.Audit)
		}
	})
	t.Run("unknown status is a validation error", func(t *testing.T) {
		applyErr(t, s, ChangeStatus{Status: "banned"}, at(1), ECodeValidation)
	})
}

func TestSoftDelete(t *testing.T) {
	s := registered(t)
	o := apply(t, s, SoftDelete{}, at(1))
	m := mutated(t, s, o)
	if o.State.User.Status != StatusDeleted {
		t.Errorf("status %q", o.State.User.Status)
	}
	if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventUserDeleted}) {
		t.Errorf("events %v, want only user.deleted", got)
	}
	checkData(t, dataOf(t, m.Events[0]), map[string]any{"userId": testUserID, "authId": s.User.AuthID, "deletedBy": testAdminID})
	if len(m.Audit) != 1 || m.Audit[0].Action != AuditUserDeleted || m.Audit[0].After["status"] != StatusDeleted {
		t.Errorf("audit %+v", m.Audit)
	}
	t.Run("deleting again changes and publishes nothing", func(t *testing.T) {
		o2 := apply(t, o.State, SoftDelete{}, at(2))
		unchanged(t, o.State, o2)
		if !reflect.DeepEqual(o2.Result, map[string]any{"deleted": true}) {
			t.Errorf("result %v", o2.Result)
		}
	})
}

// enrollment returns the state's enrollment in the course, failing if absent.
func enrollment(tb testing.TB, s *State, course string) Enrollment {
	tb.Helper()
	e, ok := s.Enrollments.Get(course)
	if !ok {
		tb.Fatalf("no enrollment in %s", course)
	}
	return *e
}

func progress(course string, p float64, spent int64) SetProgress {
	in := UpdateProgress{Progress: &p}
	if spent > 0 {
		in.TimeSpentSeconds = &spent
	}
	return SetProgress{CourseID: course, Input: in}
}

func editStatus(course string, st EnrollmentStatus) EditEnrollment {
	return EditEnrollment{CourseID: course, Input: UpdateEnrollment{EnrollmentStatus: &st}}
}

func TestEnrollmentLifecycle(t *testing.T) {
	s := registered(t)

	// Enroll: a new enrollment is Created (201) and publishes user.enrolled.
	o := apply(t, s, Enroll{CourseID: courseA}, at(1))
	m := mutated(t, s, o)
	e := enrollment(t, o.State, courseA)
	if !o.Created || e.EnrollmentStatus != EnrollmentActive || e.Progress != 0 || e.UserID != testUserID ||
		e.EnrolledAt != timeAt(1) || e.CompletedAt != nil || !reflect.DeepEqual(o.Result, e) {
		t.Fatalf("enroll: created %v, enrollment %+v", o.Created, e)
	}
	if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventEnrolled}) || len(m.EnrollmentUpserts) != 1 {
		t.Fatalf("enroll: events %v, rows %d", got, len(m.EnrollmentUpserts))
	}
	checkData(t, dataOf(t, m.Events[0]), map[string]any{
		"userId": testUserID, "enrollmentId": e.ID, "courseId": courseA, "enrollmentStatus": "active",
		"progress": 0.0, "reactivated": false, "enrolledAt": "2024-01-15T10:31:00.000Z",
	})
	s = o.State
	id := e.ID

	// Enrolling again while active is a conflict.
	applyErr(t, s, Enroll{CourseID: courseA}, at(2), ECodeAlreadyEnrolled)

	// Progress publishes user.progress_updated and accumulates time.
	o = apply(t, s, progress(courseA, 40, 600), at(2))
	m = mutated(t, s, o)
	e = enrollment(t, o.State, courseA)
	if e.Progress != 40 || e.TimeSpentSeconds != 600 || *e.LastAccessedAt != timeAt(2) || e.EnrollmentStatus != EnrollmentActive {
		t.Fatalf("progress 40: %+v", e)
	}
	if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventProgressUpdated}) {
		t.Fatalf("progress 40: events %v", got)
	}
	checkData(t, dataOf(t, m.Events[0]), map[string]any{"progress": 40.0, "previousProgress": 0.0, "timeSpentSeconds": 600.0, "courseId": courseA})
	s = o.State

	// Dropping through EditEnrollment publishes user.unenrolled with the status.
	o = apply(t, s, editStatus(courseA, EnrollmentDropped), at(3))
	m = mutated(t, s, o)
	if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventUnenrolled}) {
		t.Fatalf("drop: events %v", got)
	}
	checkData(t, dataOf(t, m.Events[0]), map[string]any{"enrollmentStatus": "dropped", "previousStatus": "active", "enrollmentId": id})
	if _, ok := dataOf(t, m.Events[0])["deleted"]; ok {
		t.Error("drop: event says deleted")
	}
	s = o.State
	if enrollment(t, s, courseA).EnrollmentStatus != EnrollmentDropped {
		t.Fatal("not dropped")
	}

	// No progress on a dropped enrollment; no drop twice.
	applyErr(t, s, progress(courseA, 50, 0), at(4), ECodeConflict)
	unchanged(t, s, apply(t, s, editStatus(courseA, EnrollmentDropped), at(4)))

	// Re-enrolling a dropped course reactivates the same enrollment, progress kept, not Created.
	o = apply(t, s, Enroll{CourseID: courseA}, at(5))
	m = mutated(t, s, o)
	e = enrollment(t, o.State, courseA)
	if o.Created || e.ID != id || e.Progress != 40 || e.TimeSpentSeconds != 600 || e.EnrollmentStatus != EnrollmentActive || e.EnrolledAt != timeAt(1) {
		t.Fatalf("re-enroll: created %v, %+v", o.Created, e)
	}
	if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventEnrolled}) {
		t.Fatalf("re-enroll: events %v", got)
	}
	checkData(t, dataOf(t, m.Events[0]), map[string]any{"reactivated": true, "enrollmentStatus": "active", "progress": 40.0, "enrollmentId": id})
	s = o.State

	// Reaching 100 completes: progress_updated THEN course_completed.
	o = apply(t, s, progress(courseA, 100, 300), at(6))
	m = mutated(t, s, o)
	e = enrollment(t, o.State, courseA)
	if e.EnrollmentStatus != EnrollmentCompleted || e.CompletedAt == nil || *e.CompletedAt != timeAt(6) || e.TimeSpentSeconds != 900 {
		t.Fatalf("progress 100: %+v", e)
	}
	if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventProgressUpdated, EventCourseCompleted}) {
		t.Fatalf("progress 100: events %v", got)
	}
	checkData(t, dataOf(t, m.Events[1]), map[string]any{
		"userId": testUserID, "enrollmentId": id, "courseId": courseA, "completedAt": "2024-01-15T10:36:00.000Z",
	})
	for _, ev := range m.Events {
		if ev.Metadata.UserVersion != m.User.Version {
			t.Errorf("event %s metadata %v", ev.Type, ev.Metadata)
		}
	}
	s = o.State

	// Completion is permanent: later progress is recorded, never completes again.
	for i, p := range []float64{50, 100, 0} {
		o = apply(t, s, progress(courseA, p, 0), at(7+i))
		m = mutated(t, s, o)
		e = enrollment(t, o.State, courseA)
		if e.Progress != p || e.EnrollmentStatus != EnrollmentCompleted || *e.CompletedAt != timeAt(6) || e.TimeSpentSeconds != 900 {
			t.Fatalf("progress %v after completion: %+v", p, e)
		}
		if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventProgressUpdated}) {
			t.Fatalf("progress %v after completion: events %v", p, got)
		}
		s = o.State
	}
	applyErr(t, s, editStatus(courseA, EnrollmentActive), at(10), ECodeConflict)
	applyErr(t, s, editStatus(courseA, EnrollmentDropped), at(10), ECodeConflict)
	applyErr(t, s, Enroll{CourseID: courseA}, at(10), ECodeAlreadyEnrolled)

	// Completing through EditEnrollment sets 100 and publishes both events.
	s = apply(t, s, Enroll{CourseID: courseB}, at(11)).State
	o = apply(t, s, editStatus(courseB, EnrollmentCompleted), at(12))
	m = mutated(t, s, o)
	if e := enrollment(t, o.State, courseB); e.Progress != 100 || *e.CompletedAt != timeAt(12) {
		t.Errorf("status completed: %+v", e)
	}
	if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventProgressUpdated, EventCourseCompleted}) {
		t.Errorf("status completed: events %v", got)
	}
	s = o.State

	// Suspending publishes user.unenrolled; reactivating through EditEnrollment publishes user.enrolled.
	s = apply(t, s, Enroll{CourseID: courseC}, at(13)).State
	o = apply(t, s, editStatus(courseC, EnrollmentSuspended), at(14))
	if got := eventTypes(o.Mutation); !reflect.DeepEqual(got, []string{EventUnenrolled}) {
		t.Errorf("suspend: events %v", got)
	}
	checkData(t, dataOf(t, o.Mutation.Events[0]), map[string]any{"enrollmentStatus": "suspended"})
	o = apply(t, o.State, editStatus(courseC, EnrollmentActive), at(15))
	if got := eventTypes(o.Mutation); !reflect.DeepEqual(got, []string{EventEnrolled}) {
		t.Errorf("reactivate: events %v", got)
	}
	checkData(t, dataOf(t, o.Mutation.Events[0]), map[string]any{"reactivated": true, "previousStatus": "suspended"})
	s = o.State

	// A status and progress in one edit: one mutation, both events in order.
	st := EnrollmentActive
	o = apply(t, s, EditEnrollment{CourseID: courseC, Input: UpdateEnrollment{EnrollmentStatus: &st, Progress: ptr(20.0)}}, at(16))
	if got := eventTypes(o.Mutation); !reflect.DeepEqual(got, []string{EventProgressUpdated}) {
		t.Errorf("edit with same status and progress: events %v", got)
	}
	s = o.State

	// DELETE removes the enrollment and publishes user.unenrolled with deleted: true.
	o = apply(t, s, Unenroll{CourseID: courseA}, at(17))
	m = mutated(t, s, o)
	if _, ok := o.State.Enrollments.Get(courseA); ok || !reflect.DeepEqual(m.EnrollmentDeletes, []string{courseA}) {
		t.Fatalf("unenroll: still there or rows %v", m.EnrollmentDeletes)
	}
	if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventUnenrolled}) {
		t.Fatalf("unenroll: events %v", got)
	}
	checkData(t, dataOf(t, m.Events[0]), map[string]any{"deleted": true, "enrollmentId": id, "courseId": courseA})
	s = o.State
	applyErr(t, s, Unenroll{CourseID: courseA}, at(18), ECodeNotFound)
	applyErr(t, s, progress(courseA, 10, 0), at(18), ECodeNotFound)
	applyErr(t, s, editStatus(courseA, EnrollmentDropped), at(18), ECodeNotFound)

	// Enrolling after a DELETE is a new enrollment.
	o = apply(t, s, Enroll{CourseID: courseA}, at(19))
	if e := enrollment(t, o.State, courseA); !o.Created || e.ID == id || e.Progress != 0 {
		t.Errorf("enroll after delete: created %v, %+v", o.Created, e)
	}

	t.Run("an edit that changes nothing commits nothing", func(t *testing.T) {
		o := apply(t, s, editStatus(courseB, EnrollmentCompleted), at(20))
		unchanged(t, s, o)
		if o.Result.(Enrollment).CourseID != courseB {
			t.Errorf("result %+v", o.Result)
		}
	})
}

func TestStats(t *testing.T) {
	s := registered(t)
	step := 0
	do := func(cmd Command) {
		t.Helper()
		step++
		s = apply(t, s, cmd, at(step)).State
	}
	do(Enroll{CourseID: courseA})
	do(Enroll{CourseID: courseB})
	do(Enroll{CourseID: courseC})
	do(Enroll{CourseID: courseD})
	do(progress(courseA, 100, 100))    // completed
	do(progress(courseB, 33.333, 200)) // active
	do(progress(courseB, 50.5, 50))    // active, time accumulates to 250
	do(progress(courseC, 30, 1000))    // then dropped: still counted
	do(editStatus(courseC, EnrollmentDropped))
	do(editStatus(courseD, EnrollmentSuspended)) // counted in totals only
	do(progress(courseA, 80, 0))                 // stays completed; the last access
	do(RecordLogin{SessionID: "s1", At: timeAt(20)})
	do(RecordLogin{SessionID: "s2", At: timeAt(30)})

	t.Run("EnrollmentStats", func(t *testing.T) {
		want := EnrollmentStats{
			TotalCourses: 4, ActiveCourses: 1, CompletedCourses: 1, DroppedCourses: 1,
			AverageProgress: 40.13, // (80 + 50.5 + 30 + 0) / 4 = 40.125
			TotalTimeSpent:  1350, LastAccessedCourse: ptr(courseA), LastAccessedAt: ptr(timeAt(11)),
		}
		if got := s.EnrollmentStats(); !reflect.DeepEqual(got, want) {
			t.Errorf("got  %+v\nwant %+v", got, want)
		}
	})
	t.Run("UserStats", func(t *testing.T) {
		want := UserStats{
			TotalEnrollments: 4, ActiveEnrollments: 1, CompletedEnrollments: 1,
			TotalProgress: 160.5, AverageProgress: 40.13,
			LastLoginAt: ptr(timeAt(30)), TotalLoginCount: 2, ProfileCompletionPercentage: 65,
		}
		if got := s.UserStats(); !reflect.DeepEqual(got, want) {
			t.Errorf("got  %+v\nwant %+v", got, want)
		}
	})
	t.Run("no enrollments", func(t *testing.T) {
		s := registered(t)
		if got := s.EnrollmentStats(); !reflect.DeepEqual(got, EnrollmentStats{}) {
			t.Errorf("got %+v", got)
		}
		if got := s.UserStats(); got.AverageProgress != 0 || got.TotalEnrollments != 0 || got.LastLoginAt != nil {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("SortedEnrollments newest first, filtered", func(t *testing.T) {
		var got []string
		for _, e := range s.SortedEnrollments("") {
			got = append(got, e.CourseID)
		}
		if want := []string{courseD, courseC, courseB, courseA}; !reflect.DeepEqual(got, want) {
			t.Errorf("order %v, want %v", got, want)
		}
		if d := s.SortedEnrollments(EnrollmentDropped); len(d) != 1 || d[0].CourseID != courseC {
			t.Errorf("dropped %+v", d)
		}
	})
}

func TestSetPreferences(t *testing.T) {
	s := registered(t)
	theme := getPref(s.Preferences, PrefKey{CategoryUI, "theme"})
	in := UpsertPreferences{Preferences: []PreferenceInput{
		{Key: "theme", Value: json.RawMessage(`"dark"`)},
		{Key: "font_size", Value: json.RawMessage(`14`)},
		{Category: ptr(CategoryUI), Key: "theme", Value: json.RawMessage(`"solarized"`)}, // later wins
		{Key: "sidebar", Value: json.RawMessage(`null`)},
	}}
	o := apply(t, s, SetPreferences{Category: CategoryUI, Input: in}, at(1))
	m := mutated(t, s, o)

	t.Run("one mutation with every item, last duplicate wins", func(t *testing.T) {
		got := map[string]string{}
		for _, p := range m.PreferenceUpserts {
			got[p.Category+"/"+p.Key] = string(p.Value)
		}
		want := map[string]string{"ui/theme": `"solarized"`, "ui/font_size": "14", "ui/sidebar": "null"}
		if !reflect.DeepEqual(got, want) || len(m.PreferenceUpserts) != 3 {
			t.Errorf("rows %v, want %v", got, want)
		}
		if !reflect.DeepEqual(o.Result, m.PreferenceUpserts) {
			t.Errorf("result %v", o.Result)
		}
		if len(m.Events) != 0 {
			t.Errorf("events %v", eventTypes(m))
		}
		for _, p := range m.PreferenceUpserts {
			if !reflect.DeepEqual(getPref(o.State.Preferences, PrefKey{p.Category, p.Key}), p) {
				t.Errorf("state differs from row %+v", p)
			}
		}
		if len(o.State.Preferences) != 18 {
			t.Errorf("%d preferences, want 16 + 2", len(o.State.Preferences))
		}
	})
	t.Run("an existing preference keeps its id and creation time", func(t *testing.T) {
		p := getPref(o.State.Preferences, PrefKey{CategoryUI, "theme"})
		if p.ID != theme.ID || p.CreatedAt != timeAt(0) || p.UpdatedAt != timeAt(1) || string(p.Value) != `"solarized"` {
			t.Errorf("theme %+v (was %+v)", p, theme)
		}
		n := getPref(o.State.Preferences, PrefKey{CategoryUI, "font_size"})
		if n.ID.Version() != 7 || n.CreatedAt != timeAt(1) || n.UserID != testUserID {
			t.Errorf("new preference %+v", n)
		}
	})
	t.Run("items name their category on the all-categories route", func(t *testing.T) {
		o := apply(t, s, SetPreferences{Input: UpsertPreferences{Preferences: []PreferenceInput{
			{Category: ptr(CategoryPrivacy), Key: "show_progress", Value: json.RawMessage(`false`)},
			{Category: ptr(CategoryLearning), Key: "playback_speed", Value: json.RawMessage(`1.5`)},
		}}}, at(2))
		if string(getPref(o.State.Preferences, PrefKey{CategoryPrivacy, "show_progress"}).Value) != "false" ||
			string(getPref(o.State.Preferences, PrefKey{CategoryLearning, "playback_speed"}).Value) != "1.5" {
			t.Error("values not set")
		}
	})
	t.Run("PreferencesObject and SortedPreferences", func(t *testing.T) {
		obj := o.State.PreferencesObject(CategoryUI)
		if len(obj) != 1 || string(obj["ui"]["theme"]) != `"solarized"` || len(obj["ui"]) != 6 {
			t.Errorf("object %v", obj)
		}
		if all := o.State.PreferencesObject(""); len(all) != 4 {
			t.Errorf("object has %d categories", len(all))
		}
		var keys []string
		for _, p := range o.State.SortedPreferences("") {
			keys = append(keys, p.Category+"/"+p.Key)
		}
		if len(keys) != 18 || keys[0] != "notifications/assignment_reminders" || keys[17] != "privacy/show_progress" {
			t.Errorf("order %v", keys)
		}
		if ui := o.State.SortedPreferences(CategoryUI); len(ui) != 6 || ui[0].Key != "font_size" {
			t.Errorf("ui %v", ui)
		}
	})
}

func TestRemovePreferences(t *testing.T) {
	s := registered(t)
	t.Run("one preference", func(t *testing.T) {
		o := apply(t, s, RemovePreference{Category: CategoryUI, Key: "theme"}, at(1))
		m := mutated(t, s, o)
		if o.State.Preferences.Has(PrefKey{CategoryUI, "theme"}) || len(o.State.Preferences) != 15 {
			t.Error("not removed")
		}
		if !reflect.DeepEqual(m.PreferenceDeletes, []PrefKey{{CategoryUI, "theme"}}) || len(m.Events) != 0 {
			t.Errorf("rows %v events %v", m.PreferenceDeletes, eventTypes(m))
		}
		applyErr(t, o.State, RemovePreference{Category: CategoryUI, Key: "theme"}, at(2), ECodeNotFound)
	})
	t.Run("absent preference", func(t *testing.T) {
		applyErr(t, s, RemovePreference{Category: CategoryUI, Key: "nope"}, at(1), ECodeNotFound)
		applyErr(t, s, RemovePreference{Category: CategoryPrivacy, Key: "theme"}, at(1), ECodeNotFound)
	})
	t.Run("a category", func(t *testing.T) {
		o := apply(t, s, RemoveCategory{Category: CategoryNotifications}, at(1))
		m := mutated(t, s, o)
		if len(m.PreferenceDeletes) != 5 || len(o.State.Preferences) != 11 {
			t.Errorf("%d rows deleted, %d left", len(m.PreferenceDeletes), len(o.State.Preferences))
		}
		if !reflect.DeepEqual(o.Result, map[string]any{"deleted": true, "count": 5}) {
			t.Errorf("result %v", o.Result)
		}
		if got := o.State.SortedPreferences(CategoryNotifications); len(got) != 0 {
			t.Errorf("left %v", got)
		}
		applyErr(t, o.State, RemoveCategory{Category: CategoryNotifications}, at(2), ECodeNotFound)
	})
}

func TestSessions(t *testing.T) {
	s := registered(t)
	ip := ptr("203.0.113.7")
	o := apply(t, s, RecordLogin{SessionID: "s1", IPAddress: ip, UserAgent: ptr("curl"), At: timeAt(10)}, at(10))
	m := mutated(t, s, o)
	s = o.State
	if s.User.LoginCount != 1 || *s.User.LastLoginAt != timeAt(10) || *s.User.LastActiveAt != timeAt(10) || len(m.Events) != 0 {
		t.Fatalf("after login: %+v events %v", s.User, eventTypes(m))
	}
	if len(s.Sessions) != 1 || !s.Sessions[0].Active || s.Sessions[0].SessionID != "s1" || *s.Sessions[0].IPAddress != *ip ||
		s.Sessions[0].StartedAt != timeAt(10) || s.Sessions[0].EndedAt != nil || !reflect.DeepEqual(m.SessionUpserts, s.Sessions) {
		t.Fatalf("sessions %+v rows %+v", s.Sessions, m.SessionUpserts)
	}
	s1 := s.Sessions[0].ID

	s = apply(t, s, RecordLogin{SessionID: "s2", At: timeAt(20)}, at(20)).State
	s = apply(t, s, RecordLogin{SessionID: "s3", At: timeAt(15)}, at(21)).State // late delivery
	if s.User.LoginCount != 3 || *s.User.LastLoginAt != timeAt(20) || *s.User.LastActiveAt != timeAt(20) {
		t.Fatalf("a late login moved the clock back: %+v", s.User)
	}

	// Logout of one session ends only that one.
	o = apply(t, s, RecordLogout{SessionID: "s1", At: timeAt(30)}, at(30))
	m = mutated(t, s, o)
	s = o.State
	if len(m.SessionUpserts) != 1 || m.SessionUpserts[0].ID != s1 || m.SessionUpserts[0].Active || *m.SessionUpserts[0].EndedAt != timeAt(30) {
		t.Fatalf("logout s1 rows %+v", m.SessionUpserts)
	}
	if active := activeSessions(s); !reflect.DeepEqual(active, []string{"s2", "s3"}) {
		t.Fatalf("active %v", active)
	}
	unchanged(t, s, apply(t, s, RecordLogout{SessionID: "s1", At: timeAt(31)}, at(31)))
	unchanged(t, s, apply(t, s, RecordLogout{SessionID: "unknown", At: timeAt(31)}, at(31)))

	// Logout without a session id ends every open session, and only those.
	o = apply(t, s, RecordLogout{At: timeAt(40)}, at(40))
	m = mutated(t, s, o)
	s = o.State
	if len(m.SessionUpserts) != 2 || len(activeSessions(s)) != 0 {
		t.Fatalf("logout all rows %+v, active %v", m.SessionUpserts, activeSessions(s))
	}
	for _, r := range s.Sessions {
		if r.SessionID == "s1" && *r.EndedAt != timeAt(30) {
			t.Errorf("an ended session was ended again: %+v", r)
		}
	}
	unchanged(t, s, apply(t, s, RecordLogout{At: timeAt(41)}, at(41)))

	// A session id seen again restarts that session under its id.
	o = apply(t, s, RecordLogin{SessionID: "s1", At: timeAt(50)}, at(50))
	s = o.State
	if len(s.Sessions) != 3 || o.Mutation.SessionUpserts[0].ID != s1 || !o.Mutation.SessionUpserts[0].Active {
		t.Errorf("restart: sessions %+v rows %+v", s.Sessions, o.Mutation.SessionUpserts)
	}

	t.Run("keeps the newest MaxSessionsKept", func(t *testing.T) {
		cur := s
		for i := 0; i < MaxSessionsKept+5; i++ {
			cur = apply(t, cur, RecordLogin{SessionID: "x" + strconv.Itoa(i), At: timeAt(100 + i)}, at(100+i)).State
		}
		if len(cur.Sessions) != MaxSessionsKept || cur.Sessions[len(cur.Sessions)-1].SessionID != "x"+strconv.Itoa(MaxSessionsKept+4) ||
			cur.Sessions[0].SessionID != "x5" {
			t.Errorf("%d sessions, first %s", len(cur.Sessions), cur.Sessions[0].SessionID)
		}
	})
	t.Run("a password change is audited, not published", func(t *testing.T) {
		o := apply(t, s, RecordPasswordChange{At: timeAt(60)}, at(60))
		m := mutated(t, s, o)
		if len(m.Events) != 0 || len(m.Audit) != 1 || m.Audit[0].Action != AuditPasswordChanged || m.Audit[0].After["changedAt"] != timeAt(60) {
			t.Errorf("events %v audit %+v", eventTypes(m), m.Audit)
		}
	})
}

func activeSessions(s *State) []string {
	var out []string
	for _, r := range s.Sessions {
		if r.Active {
			out = append(out, r.SessionID)
		}
	}
	return out
}

func TestProfileCompletion(t *testing.T) {
	full := User{
		FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com", Username: ptr("ada"), Bio: ptr("b"),
		AvatarURL: ptr("https://x.io/a"), Phone: ptr("+441234567890"), Timezone: "UTC", Language: "en",
	}
	for _, tc := range []struct {
		name string
		edit func(*User)
		want int
	}{
		{"every field", func(*User) {}, 100},
		{"only names and email", func(u *User) { *u = User{FirstName: "A", LastName: "L", Email: "a@x.io"} }, 60},
		{"names, email, timezone, language (a new user)", func(u *User) {
			*u = User{FirstName: "A", LastName: "L", Email: "a@x.io", Timezone: "UTC", Language: "en"}
		}, 65},
		{"no phone", func(u *User) { u.Phone = nil }, 95},
		{"no timezone", func(u *User) { u.Timezone = "" }, 98}, // 97.5 rounds half up
		{"blank username and bio count as missing", func(u *User) { u.Username, u.Bio = ptr("  "), ptr("") }, 80},
		{"nothing", func(u *User) { *u = User{} }, 0},
		{"only a timezone (2.5 rounds half up, as Math.round)", func(u *User) { *u = User{Timezone: "UTC"} }, 3},
		{"only a phone", func(u *User) { *u = User{Phone: ptr("+12")} }, 5},
		{"only username, bio, avatar", func(u *User) { *u = User{Username: ptr("a"), Bio: ptr("b"), AvatarURL: ptr("c")} }, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := full
			tc.edit(&u)
			if got := ProfileCompletion(&u); got != tc.want {
				t.Errorf("ProfileCompletion = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestApplyNeverMutatesInput runs every command against one rich state: the apply
// helper compares a dump of the state before and after each call.
func TestApplyNeverMutatesInput(t *testing.T) {
	s := registered(t)
	s = apply(t, s, Enroll{CourseID: courseA}, at(1)).State
	s = apply(t, s, progress(courseA, 30, 10), at(2)).State
	s = apply(t, s, Enroll{CourseID: courseB}, at(3)).State
	s = apply(t, s, editStatus(courseB, EnrollmentDropped), at(4)).State
	s = apply(t, s, RecordLogin{SessionID: "s1", At: timeAt(5)}, at(5)).State
	before := dump(t, s)
	for _, cmd := range []Command{
		EditProfile{Input: UpdateUser{FirstName: Optional[string]{Set: true, Value: "B"}, Bio: Optional[string]{Set: true, Value: "x"}}},
		ChangeRole{Role: RoleAdmin}, ChangeStatus{Status: StatusSuspended}, SoftDelete{},
		Enroll{CourseID: courseB}, Enroll{CourseID: courseC},
		progress(courseA, 100, 5), editStatus(courseA, EnrollmentDropped), editStatus(courseA, EnrollmentCompleted),
		Unenroll{CourseID: courseA},
		SetPreferences{Category: CategoryUI, Input: UpsertPreferences{Preferences: []PreferenceInput{{Key: "theme", Value: json.RawMessage(`"dark"`)}}}},
		RemovePreference{Category: CategoryUI, Key: "theme"}, RemoveCategory{Category: CategoryPrivacy},
		RecordLogin{SessionID: "s1", At: timeAt(6)}, RecordLogin{SessionID: "s2", At: timeAt(6)},
		RecordLogout{SessionID: "s1", At: timeAt(7)}, RecordLogout{At: timeAt(7)}, RecordPasswordChange{At: timeAt(8)},
	} {
		t.Run(reflect.TypeOf(cmd).Name(), func(t *testing.T) {
			o := apply(t, s, cmd, at(9))
			if o.Mutation != nil && o.State == s {
				t.Error("a mutation returned the input state")
			}
		})
	}
	if after := dump(t, s); after != before {
		t.Errorf("state changed:\nbefore %s\nafter  %s", before, after)
	}
}

// TestFeatureFlags: AUDIT_ENABLED=false (Meta.NoAudit) keeps no audit record but
// changes and publishes as before; ENABLE_SESSION_TRACKING=false
// (RecordLogin.NoSession) counts the login without a session.
func TestFeatureFlags(t *testing.T) {
	s := registered(t)
	noAudit := at(1)
	noAudit.NoAudit = true
	for _, cmd := range []Command{ChangeRole{Role: RoleInstructor}, ChangeStatus{Status: StatusSuspended}, SoftDelete{}} {
		o := apply(t, s, cmd, noAudit)
		m := mutated(t, s, o)
		if len(m.Audit) != 0 || len(m.Events) != 1 {
			t.Errorf("%T without audit: %d audit records, events %v", cmd, len(m.Audit), eventTypes(m))
		}
	}
	if o := apply(t, s, RecordPasswordChange{At: timeAt(2)}, noAudit); o.Mutation != nil {
		t.Errorf("a password change without audit changed something: %+v", o.Mutation)
	}

	o := apply(t, s, RecordLogin{SessionID: "s1", At: timeAt(3), NoSession: true}, at(3))
	m := mutated(t, s, o)
	u := o.State.User
	if len(o.State.Sessions) != 0 || len(m.SessionUpserts) != 0 || u.LoginCount != 1 || u.LastLoginAt == nil || *u.LastLoginAt != timeAt(3) {
		t.Errorf("login without session tracking: %d sessions, %d upserts, count %d, last %v",
			len(o.State.Sessions), len(m.SessionUpserts), u.LoginCount, u.LastLoginAt)
	}
}

func TestStatusDeletedIsSoftDeleteAndRestore(t *testing.T) {
	s := registered(t)
	byDelete := mutated(t, s, apply(t, s, SoftDelete{}, at(1)))
	o := apply(t, s, ChangeStatus{Status: StatusDeleted}, at(1))
	m := mutated(t, s, o)
	if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventUserDeleted}) {
		t.Fatalf("events %v, want only user.deleted", got)
	}
	if !reflect.DeepEqual(dataOf(t, m.Events[0]), dataOf(t, byDelete.Events[0])) || len(m.Audit) != 1 ||
		m.Audit[0].Action != AuditUserDeleted || !reflect.DeepEqual(m.Audit[0].After, byDelete.Audit[0].After) {
		t.Errorf("status deleted: %+v, SoftDelete: %+v", m, byDelete)
	}
	if u, ok := o.Result.(User); !ok || u.Status != StatusDeleted {
		t.Errorf("result %+v, want the deleted user", o.Result)
	}
	deleted := o.State
	unchanged(t, deleted, apply(t, deleted, ChangeStatus{Status: StatusDeleted}, at(2)))

	for _, st := range []Status{StatusActive, StatusInactive, StatusSuspended} {
		t.Run("restore to "+string(st), func(t *testing.T) {
			o := apply(t, deleted, ChangeStatus{Status: st}, at(3))
			m := mutated(t, deleted, o)
			if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventUserRestored}) {
				t.Fatalf("events %v, want only user.restored", got)
			}
			checkData(t, dataOf(t, m.Events[0]), map[string]any{"userId": testUserID, "authId": s.User.AuthID, "newStatus": string(st), "restoredBy": testAdminID})
			if len(m.Audit) != 1 || m.Audit[0].Action != AuditUserRestored || m.Audit[0].Before["status"] != StatusDeleted || m.Audit[0].After["status"] != st {
				t.Errorf("audit %+v", m.Audit)
			}
			if o.State.User.Status != st {
				t.Errorf("status %s", o.State.User.Status)
			}
		})
	}
}

func TestVerifyEmail(t *testing.T) {
	s := registered(t)
	if s.User.EmailVerified {
		t.Fatal("registered verified without saying so")
	}
	o := apply(t, s, VerifyEmail{At: timeAt(1)}, at(1))
	m := mutated(t, s, o)
	if !o.State.User.EmailVerified || o.State.User.UpdatedAt != timeAt(1) {
		t.Errorf("user %+v", o.State.User)
	}
	if got := eventTypes(m); !reflect.DeepEqual(got, []string{EventUserUpdated}) {
		t.Fatalf("events %v", got)
	}
	if ch, _ := dataOf(t, m.Events[0])["changes"].(map[string]any); ch["emailVerified"] != true {
		t.Errorf("event data %v", dataOf(t, m.Events[0]))
	}
	unchanged(t, o.State, apply(t, o.State, VerifyEmail{At: timeAt(2)}, at(2)))

	reg := apply(t, nil, Register{ID: NewID(), Input: CreateUser{AuthID: NewID(), Email: "v@example.com", FirstName: "V", LastName: "W"}, EmailVerified: true}, at(0))
	if !reg.State.User.EmailVerified {
		t.Errorf("Register with EmailVerified: %+v", reg.State.User)
	}
}

// TestLogoutReachesSessionsBeyondTheActor: once the actor holds MaxSessionsKept
// sessions, older ones may be open in PostgreSQL only, so a logout that names no
// session, or one the actor does not hold, also ends them there (issue 11).
func TestLogoutReachesSessionsBeyondTheActor(t *testing.T) {
	s := registered(t)
	for i := range MaxSessionsKept - 1 {
		s = apply(t, s, RecordLogin{SessionID: fmt.Sprintf("s%d", i), At: timeAt(10)}, at(10)).State
	}
	// Below the limit the actor holds every session: nothing more to end.
	if m := mutated(t, s, apply(t, s, RecordLogout{At: timeAt(20)}, at(20))); m.EndSessions != nil {
		t.Fatalf("with %d sessions held: EndSessions %+v", len(s.Sessions), m.EndSessions)
	}
	s = apply(t, s, RecordLogin{SessionID: "last", At: timeAt(11)}, at(11)).State
	if len(s.Sessions) != MaxSessionsKept {
		t.Fatalf("%d sessions held", len(s.Sessions))
	}
	o := apply(t, s, RecordLogout{At: timeAt(20)}, at(20))
	m := mutated(t, s, o)
	if m.EndSessions == nil || m.EndSessions.SessionID != "" || m.EndSessions.At != timeAt(20) || len(activeSessions(o.State)) != 0 {
		t.Fatalf("logout of all at the limit: EndSessions %+v, active %v", m.EndSessions, activeSessions(o.State))
	}
	// A session the actor does not hold may be an older one.
	m = mutated(t, o.State, apply(t, o.State, RecordLogout{SessionID: "older", At: timeAt(21)}, at(21)))
	if m.EndSessions == nil || m.EndSessions.SessionID != "older" {
		t.Fatalf("logout of a session not held: EndSessions %+v", m.EndSessions)
	}
	// One it holds needs nothing more.
	m = mutated(t, s, apply(t, s, RecordLogout{SessionID: "last", At: timeAt(22)}, at(22)))
	if m.EndSessions != nil || len(m.SessionUpserts) != 1 {
		t.Fatalf("logout of a held session: EndSessions %+v, rows %+v", m.EndSessions, m.SessionUpserts)
	}
}

// TestSessionsQuota: a login beyond Quotas.Sessions ends the oldest open sessions
// (a login cannot be refused: it happened at the auth service); ended sessions do
// not count; once the actor holds MaxSessionsKept, open sessions it does not hold
// are ended in PostgreSQL too.
func TestSessionsQuota(t *testing.T) {
	withQuota := func(n, q int) Meta {
		m := at(n)
		m.Quotas.Sessions = q
		return m
	}
	s := registered(t)
	for i := range 3 {
		s = apply(t, s, RecordLogin{SessionID: fmt.Sprintf("s%d", i), At: timeAt(10 + i)}, withQuota(10+i, 3)).State
	}
	if got := activeSessions(s); len(got) != 3 {
		t.Fatalf("3 logins within a quota of 3: active %v", got)
	}
	o := apply(t, s, RecordLogin{SessionID: "s3", At: timeAt(20)}, withQuota(20, 3))
	m := mutated(t, s, o)
	if got := activeSessions(o.State); !reflect.DeepEqual(got, []string{"s1", "s2", "s3"}) {
		t.Fatalf("a 4th login over a quota of 3: active %v", got)
	}
	if len(m.SessionUpserts) != 2 || m.SessionUpserts[1].SessionID != "s0" || m.SessionUpserts[1].Active ||
		m.SessionUpserts[1].EndedAt == nil || *m.SessionUpserts[1].EndedAt != timeAt(20) || m.EndSessions != nil {
		t.Fatalf("rows %+v, EndSessions %+v", m.SessionUpserts, m.EndSessions)
	}
	// An ended session does not count.
	s = apply(t, o.State, RecordLogout{SessionID: "s2", At: timeAt(21)}, withQuota(21, 3)).State
	o = apply(t, s, RecordLogin{SessionID: "s4", At: timeAt(22)}, withQuota(22, 3))
	if got := activeSessions(o.State); !reflect.DeepEqual(got, []string{"s1", "s3", "s4"}) {
		t.Fatalf("after a logout: active %v", got)
	}
	// Without a quota nothing is ended.
	o = apply(t, o.State, RecordLogin{SessionID: "s5", At: timeAt(23)}, at(23))
	if got := activeSessions(o.State); len(got) != 4 {
		t.Fatalf("no quota: active %v", got)
	}

	// At MaxSessionsKept held, older sessions may be open in PostgreSQL only.
	s = registered(t)
	for i := range MaxSessionsKept {
		s = apply(t, s, RecordLogin{SessionID: fmt.Sprintf("h%d", i), At: timeAt(30)}, at(30)).State
	}
	o = apply(t, s, RecordLogin{SessionID: "new", At: timeAt(40)}, withQuota(40, MaxSessionsKept))
	m = mutated(t, s, o)
	if m.EndSessions == nil || m.EndSessions.SessionID != "" || len(m.EndSessions.Except) != MaxSessionsKept ||
		m.EndSessions.Except[MaxSessionsKept-1] != "new" || m.EndSessions.Except[0] != "h1" {
		t.Fatalf("EndSessions %+v", m.EndSessions)
	}
	if got := activeSessions(o.State); len(got) != MaxSessionsKept {
		t.Fatalf("%d active", len(got))
	}
}

// TestQuotas: a write that takes a user past a per-user limit is refused with
// QUOTA_EXCEEDED naming the limit, and changes nothing; a write that does not
// grow what a limit counts is allowed, also for a user already over it (issue 11).
func TestQuotas(t *testing.T) {
	withQuotas := func(n int, q Quotas) Meta {
		m := at(n)
		m.Quotas = q
		return m
	}
	prefs := func(cat string, kv ...string) SetPreferences {
		var in []PreferenceInput
		for i := 0; i < len(kv); i += 2 {
			in = append(in, PreferenceInput{Key: kv[i], Value: json.RawMessage(kv[i+1])})
		}
		return SetPreferences{Category: cat, Input: UpsertPreferences{Preferences: in}}
	}
	quotaErr := func(t *testing.T, s *State, cmd Command, meta Meta, field string) {
		t.Helper()
		applyErr(t, s, cmd, meta, ECodeQuotaExceeded)
		_, err := Apply(s, cmd, meta)
		var e *Error
		if !errors.As(err, &e) || len(e.Details) != 1 || e.Details[0].Field != field || !strings.Contains(e.Details[0].Message, "at most") {
			t.Fatalf("quota error %+v, want details naming %s and the limit", err, field)
		}
	}

	t.Run("preference keys", func(t *testing.T) {
		s := registered(t)
		n := len(s.Preferences) // the defaults
		q := Quotas{Preferences: n + 2}
		s = apply(t, s, prefs(CategoryUI, "a", `1`, "b", `2`), withQuotas(1, q)).State
		quotaErr(t, s, prefs(CategoryUI, "c", `3`), withQuotas(2, q), "preferences")
		// Updating existing keys, and replacing one by another after a delete, is fine.
		s = apply(t, s, prefs(CategoryUI, "a", `10`, "theme", `"dark"`), withQuotas(3, q)).State
		s = apply(t, s, RemovePreference{Category: CategoryUI, Key: "a"}, withQuotas(4, q)).State
		s = apply(t, s, prefs(CategoryUI, "c", `3`), withQuotas(5, q)).State
		// The limit lowered below what the user holds: edits and deletes still work.
		low := Quotas{Preferences: 3}
		s = apply(t, s, prefs(CategoryUI, "c", `4`), withQuotas(6, low)).State
		quotaErr(t, s, prefs(CategoryUI, "d", `4`), withQuotas(7, low), "preferences")
		apply(t, s, RemoveCategory{Category: CategoryNotifications}, withQuotas(8, low))
	})
	t.Run("preference bytes", func(t *testing.T) {
		s := registered(t)
		q := Quotas{PreferenceBytes: preferenceBytes(s.Preferences) + 100}
		s = apply(t, s, prefs(CategoryUI, "note", `"`+strings.Repeat("x", 80)+`"`), withQuotas(1, q)).State
		quotaErr(t, s, prefs(CategoryUI, "note2", `"`+strings.Repeat("x", 30)+`"`), withQuotas(2, q), "preferences")
		quotaErr(t, s, prefs(CategoryUI, "note", `"`+strings.Repeat("x", 120)+`"`), withQuotas(3, q), "preferences")
		// Shrinking a value is always allowed, even past a lowered limit.
		s = apply(t, s, prefs(CategoryUI, "note", `"short"`), withQuotas(4, Quotas{PreferenceBytes: 10})).State
		apply(t, s, RemovePreference{Category: CategoryUI, Key: "note"}, withQuotas(5, Quotas{PreferenceBytes: 10}))
	})
	t.Run("enrollments", func(t *testing.T) {
		s := registered(t)
		q := Quotas{Enrollments: 1}
		s = apply(t, s, Enroll{CourseID: courseA}, withQuotas(1, q)).State
		quotaErr(t, s, Enroll{CourseID: courseB}, withQuotas(2, q), "enrollments")
		// Dropped enrollments count; re-enrolling one does not grow the count.
		s = apply(t, s, editStatus(courseA, EnrollmentDropped), withQuotas(3, q)).State
		quotaErr(t, s, Enroll{CourseID: courseB}, withQuotas(4, q), "enrollments")
		s = apply(t, s, Enroll{CourseID: courseA}, withQuotas(5, q)).State
		s = apply(t, s, Unenroll{CourseID: courseA}, withQuotas(6, q)).State
		apply(t, s, Enroll{CourseID: courseB}, withQuotas(7, q))
	})
	t.Run("no quotas: no limit", func(t *testing.T) {
		s := registered(t)
		for i := range 5 {
			s = apply(t, s, Enroll{CourseID: fmt.Sprintf("a0eebc99-9c0b-4ef8-bb6d-6bb9bd3800%02d", i)}, at(i+1)).State
		}
	})
}

// getPref is the preference with key k, or the zero Preference.
func getPref(l PreferenceList, k PrefKey) Preference {
	p, _ := l.Get(k)
	return p
}

// BenchmarkApplyEnroll measures Apply of an enrollment in a new course for a user
// with 40 enrollments: the copy of the list (40 pointers) grows by one.
//
//	go test -run '^$' -bench ApplyEnroll -benchmem .
func BenchmarkApplyEnroll(b *testing.B) {
	s := registered(b)
	for i := range 40 {
		s = apply(b, s, Enroll{CourseID: NewID()}, at(1+i)).State
	}
	course, meta := NewID(), at(100)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := Apply(s, Enroll{CourseID: course}, meta); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyProgress measures Apply of a progress update for a user with 40
// enrollments (late in a write benchmark): the copy of the enrollments list, the
// new enrollment, its event.
//
//	go test -run '^$' -bench ApplyProgress -benchmem .
func BenchmarkApplyProgress(b *testing.B) {
	s := registered(b)
	courses := make([]string, 40)
	for i := range courses {
		courses[i] = NewID()
		s = apply(b, s, Enroll{CourseID: courses[i]}, at(1+i)).State
	}
	meta := at(100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := Apply(s, progress(courses[i%len(courses)], float64(i%99), 10), meta); err != nil {
			b.Fatal(err)
		}
	}
}

// versionOnly must see a change of any User field but the version, whatever
// fields User has: each field is changed in turn through reflection.
func TestVersionOnlySeesEveryField(t *testing.T) {
	s := registered(t)
	base := s.User
	onlyVersion := map[string]bool{"Version": true}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		f := typ.Field(i)
		t.Run(f.Name, func(t *testing.T) {
			next := base
			v := reflect.ValueOf(&next).Elem().Field(i)
			switch v.Kind() {
			case reflect.String:
				v.SetString(v.String() + "x")
			case reflect.Bool:
				v.SetBool(!v.Bool())
			case reflect.Int64:
				v.SetInt(v.Int() + 1)
			case reflect.Pointer:
				nv := reflect.New(v.Type().Elem())
				if f.Type.Elem() == reflect.TypeOf(Time{}) {
					nv.Elem().Set(reflect.ValueOf(timeAt(99)))
				} else if v.IsNil() {
					nv.Elem().SetString("set")
				} else {
					nv.Elem().SetString(v.Elem().String() + "x")
				}
				v.Set(nv)
			case reflect.Struct:
				if f.Type != reflect.TypeOf(Time{}) {
					t.Fatalf("field %s: a struct this test does not know how to change", f.Name)
				}
				v.Set(reflect.ValueOf(timeAt(99)))
			default:
				t.Fatalf("field %s: kind %s this test does not know how to change", f.Name, v.Kind())
			}
			if got, want := versionOnly(&base, &next), onlyVersion[f.Name]; got != want {
				t.Errorf("versionOnly after a change of %s = %t, want %t", f.Name, got, want)
			}
		})
	}
	if !versionOnly(&base, &base) {
		t.Error("versionOnly of a user and itself = false")
	}
}

// The mutations that change only the user's version say so; the others do not.
func TestMutationVersionOnly(t *testing.T) {
	s := registered(t)
	s = apply(t, s, Enroll{CourseID: courseA}, at(1)).State
	for _, c := range []struct {
		cmd  Command
		want bool
	}{
		{Enroll{CourseID: courseB}, true},
		{progress(courseA, 30, 10), true},
		{editStatus(courseA, EnrollmentDropped), true},
		{Unenroll{CourseID: courseA}, true},
		{SetPreferences{Category: CategoryUI, Input: UpsertPreferences{Preferences: []PreferenceInput{{Key: "theme", Value: json.RawMessage(`"dark"`)}}}}, true},
		{RemoveCategory{Category: CategoryPrivacy}, true},
		{EditProfile{Input: UpdateUser{Bio: Optional[string]{Set: true, Value: "x"}}}, false},
		{ChangeRole{Role: RoleAdmin}, false},
		{ChangeStatus{Status: StatusSuspended}, false},
		{SoftDelete{}, false},
		{RecordLogin{SessionID: "s1", At: timeAt(6)}, false},
	} {
		t.Run(reflect.TypeOf(c.cmd).Name(), func(t *testing.T) {
			o := apply(t, s, c.cmd, at(9))
			if o.Mutation == nil {
				t.Fatal("no mutation")
			}
			if o.Mutation.VersionOnly != c.want {
				t.Errorf("VersionOnly = %t, want %t", o.Mutation.VersionOnly, c.want)
			}
		})
	}
	if o := apply(t, nil, Register{Input: CreateUser{AuthID: testUserID, Email: "n@example.com", FirstName: "N", LastName: "M"}}, at(1)); o.Mutation == nil || o.Mutation.VersionOnly {
		t.Error("a registration is not VersionOnly")
	}
}

// An upsert is known when its row is in the base state (so in PostgreSQL); a
// new enrollment or preference is not.
func TestMutationKnownRows(t *testing.T) {
	s := registered(t)
	s = apply(t, s, Enroll{CourseID: courseA}, at(1)).State
	s = apply(t, s, Enroll{CourseID: courseC}, at(1)).State
	s = apply(t, s, editStatus(courseA, EnrollmentDropped), at(2)).State
	for _, c := range []struct {
		name               string
		cmd                Command
		enrollments, prefs []bool // per upsert; nil: none known
	}{
		{"new enrollment", Enroll{CourseID: courseB}, nil, nil},
		{"re-enrollment", Enroll{CourseID: courseA}, []bool{true}, nil},
		{"progress", progress(courseC, 30, 10), []bool{true}, nil},
		{"a default and a new preference", SetPreferences{Category: CategoryUI, Input: UpsertPreferences{Preferences: []PreferenceInput{
			{Key: "brand_new", Value: json.RawMessage(`1`)}, {Key: "theme", Value: json.RawMessage(`"dark"`)}}}}, nil, []bool{false, true}},
		{"only new preferences", SetPreferences{Category: CategoryUI, Input: UpsertPreferences{Preferences: []PreferenceInput{
			{Key: "brand_new", Value: json.RawMessage(`1`)}}}}, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := apply(t, s, c.cmd, at(9)).Mutation
			if m == nil {
				t.Fatal("no mutation")
			}
			if !slices.Equal(m.EnrollmentKnown, c.enrollments) || !slices.Equal(m.PreferenceKnown, c.prefs) {
				t.Errorf("known enrollments %v, preferences %v; want %v, %v", m.EnrollmentKnown, m.PreferenceKnown, c.enrollments, c.prefs)
			}
		})
	}
	// A preference created by one mutation is known to the next.
	o := apply(t, s, SetPreferences{Category: CategoryUI, Input: UpsertPreferences{Preferences: []PreferenceInput{
		{Key: "brand_new", Value: json.RawMessage(`1`)}}}}, at(3))
	m := apply(t, o.State, SetPreferences{Category: CategoryUI, Input: UpsertPreferences{Preferences: []PreferenceInput{
		{Key: "brand_new", Value: json.RawMessage(`2`)}}}}, at(4)).Mutation
	if !slices.Equal(m.PreferenceKnown, []bool{true}) {
		t.Errorf("a preference of the base state: known %v, want [true]", m.PreferenceKnown)
	}
}

// A preference write copies the list once, with room for exactly the keys it
// adds, and the state keeps that copy: no room left over (memory per user), the
// base's list untouched (readers share it).
func TestPreferenceWritesKeepAnExactList(t *testing.T) {
	s := registered(t)
	ui := func(key, value string) PreferenceInput {
		return PreferenceInput{Key: key, Value: json.RawMessage(value)}
	}
	for i, cmd := range []Command{
		SetPreferences{Category: CategoryUI, Input: UpsertPreferences{Preferences: []PreferenceInput{ui("theme", `"dark"`)}}},
		SetPreferences{Category: CategoryUI, Input: UpsertPreferences{Preferences: []PreferenceInput{ui("theme", `"light"`), ui("added_a", `1`), ui("added_b", `2`)}}},
		SetPreferences{Category: CategoryUI, Input: UpsertPreferences{Preferences: []PreferenceInput{ui("added_c", `1`), ui("added_c", `2`)}}}, // a key twice
		PatchPreferences{Category: CategoryUI, Patch: mustPatch(t, `{"theme":"system","added_d":true,"added_a":null}`)},
		RemovePreference{Category: CategoryUI, Key: "added_b"},
		RemoveCategory{Category: CategoryUI},
	} {
		before := slices.Clone(s.Preferences)
		o := apply(t, s, cmd, at(i+1))
		if l := o.State.Preferences; cap(l) != len(l) {
			t.Errorf("after %T: the list keeps %d entries in room for %d", cmd, len(l), cap(l))
		}
		if !reflect.DeepEqual(s.Preferences, before) {
			t.Fatalf("%T changed the base state's list", cmd)
		}
		s = o.State
	}
}

// BenchmarkApplySetPreferences measures Apply of PUT preference category's
// command on the default preferences: the list's copy, the two values, their
// events.
//
//	go test -run '^$' -bench ApplySetPreferences -benchmem .
func BenchmarkApplySetPreferences(b *testing.B) {
	s := registered(b)
	cmd := SetPreferences{Category: CategoryUI, Input: UpsertPreferences{Preferences: []PreferenceInput{
		{Key: "theme", Value: json.RawMessage(`"dark"`)}, {Key: "items_per_page", Value: json.RawMessage(`30`)}}}}
	meta := at(100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Apply(s, cmd, meta); err != nil {
			b.Fatal(err)
		}
	}
}
