package userservice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Apply applies cmd to the committed state s (nil when the user does not exist yet)
// and returns the outcome. It never changes s. On error nothing changed; the error is
// an *Error whose code says why (validation, not found, conflict, version mismatch).
//
// Apply holds every business rule of CONTRACT.md's "Details": completion is
// permanent, re-enrolling a dropped course reactivates it, deleting an already deleted
// user publishes nothing, and so on.
func Apply(s *State, cmd Command, meta Meta) (*Outcome, error) {
	if reg, ok := cmd.(Register); ok {
		if s != nil {
			return nil, Errorf(ECodeConflict, "User already exists")
		}
		return finish(register(reg, meta))
	}
	if s == nil {
		return nil, ErrUserNotFound
	}
	if s.User.Erased() {
		switch cmd.(type) {
		case Erase:
			return &Outcome{State: s, Result: map[string]any{"erased": true}}, nil // once
		case RecordLogin, RecordLogout, RecordPasswordChange, VerifyEmail:
			// The Auth Service's late news about an erased person (a login it
			// reported before it acted on user.erased): nothing to record, and
			// nothing to retry or dead-letter with the person's IP and agent.
			return &Outcome{State: s, Result: map[string]any{"erased": true}}, nil
		}
		return nil, ErrUserNotFound // an erased user is gone for every route
	}
	c := change{base: s, next: s.clone(), meta: meta}
	var err error
	switch cmd := cmd.(type) {
	case EditProfile:
		err = c.editProfile(cmd)
	case ChangeRole:
		err = c.changeRole(cmd)
	case ChangeStatus:
		err = c.changeStatus(cmd)
	case SoftDelete:
		err = c.softDelete()
	case Enroll:
		err = c.enroll(cmd)
	case EditEnrollment:
		err = c.editEnrollment(cmd)
	case SetProgress:
		err = c.setProgress(cmd.CourseID, cmd.Input.Progress, cmd.Input.TimeSpentSeconds)
	case Unenroll:
		err = c.unenroll(cmd)
	case SetPreferences:
		err = c.setPreferences(cmd)
	case PatchPreferences:
		err = c.patchPreferences(cmd)
	case RemovePreference:
		err = c.removePreference(cmd)
	case RemoveCategory:
		err = c.removeCategory(cmd)
	case SetAttributes:
		err = c.setAttributes(cmd)
	case RemoveAttributes:
		err = c.removeAttributes(cmd)
	case RecordLogin:
		c.recordLogin(cmd)
	case RecordLogout:
		c.recordLogout(cmd)
	case RecordPasswordChange:
		c.recordPasswordChange(cmd)
	case VerifyEmail:
		c.verifyEmail(cmd)
	case RevokeSessions:
		err = c.revokeSessionsCmd(cmd)
	case RecordExport:
		c.recordExport()
	case RequestErasure:
		c.requestErasure(cmd)
	case CancelErasure:
		err = c.cancelErasure(cmd)
	case Erase:
		c.erase()
	default:
		return nil, Errorf(ECodeInternal, "unknown command %T", cmd)
	}
	if meta.IfMatch != nil && !meta.IfMatch.Matches(s.User.Version) && !precedesPrecondition(err) {
		return nil, ErrVersionMismatch
	}
	if err != nil {
		return nil, err
	}
	return finish(&c)
}

// precedesPrecondition reports whether err answers before a failed If-Match
// (CONTRACT.md: 400, 403, 404, then 409/412). The precondition is evaluated
// after the command so that a target it names (an enrollment, a preference) is
// known to exist: RFC 9110 §13.2.2 evaluates preconditions only on an existing
// target, and an unknown one is a 404 whatever If-Match says.
func precedesPrecondition(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case ECodeValidation, ECodeInvalidJSON, ECodeInvalidParam, ECodeForbidden, ECodeAccountInactive, ECodeNotFound:
		return true
	}
	return false
}

// change accumulates the effects of one command on a copy of the state.
type change struct {
	base  *State // nil for Register
	next  *State
	meta  Meta
	m     Mutation
	dirty bool // something must be committed
	// ownEnrollments and ownPreferences say next holds its own copy of that list
	// (copy on write: the base's lists are shared with readers).
	ownEnrollments, ownPreferences bool
	result                         any
	created                        bool
}

// versionOnly reports whether after differs from before in its version at
// most. It compares the whole structs, so a field added to User is compared
// too; an optional field set to an equal value through another pointer counts
// as changed, which only costs a full update.
func versionOnly(before, after *User) bool {
	a, b := *before, *after
	a.Version, b.Version = 0, 0
	return a == b
}

// knownRows returns which of n upserts change a row of the base state (known
// reports it for one), or nil when none does.
func knownRows(n int, known func(i int) bool) []bool {
	var out []bool
	for i := range n {
		if known(i) {
			if out == nil {
				out = make([]bool, n)
			}
			out[i] = true
		}
	}
	return out
}

func finish(c *change) (*Outcome, error) {
	if !c.dirty {
		if c.base != nil {
			c.next = c.base
		}
		return &Outcome{State: c.next, Result: c.result, Created: c.created}, nil
	}
	if c.ownPreferences && cap(c.next.Preferences) > len(c.next.Preferences) {
		// The copy made for this change had room to grow; the state keeps an
		// exact one for as long as it stays hot (issue 16: memory per user).
		c.next.Preferences = append(make(PreferenceList, 0, len(c.next.Preferences)), c.next.Preferences...)
	}
	m := &c.m
	m.UserID = c.next.User.ID
	if c.base != nil {
		m.BaseVersion = c.base.User.Version
	}
	c.next.User.Version = m.BaseVersion + 1
	m.User = c.next.User
	if c.base != nil {
		m.VersionOnly = versionOnly(&c.base.User, &m.User)
		m.EnrollmentKnown = knownRows(len(m.EnrollmentUpserts), func(i int) bool {
			e, ok := c.base.Enrollments.Get(m.EnrollmentUpserts[i].CourseID)
			return ok && e.ID == m.EnrollmentUpserts[i].ID
		})
		m.PreferenceKnown = knownRows(len(m.PreferenceUpserts), func(i int) bool {
			p := &m.PreferenceUpserts[i]
			was, ok := c.base.Preferences.Get(PrefKey{p.Category, p.Key})
			return ok && was.ID == p.ID
		})
	}
	m.ProcessedMessageID = c.meta.MessageID
	for i := range m.Events {
		m.Events[i].Metadata.UserVersion = c.next.User.Version
		m.Events[i].Sequence = c.next.User.Version
	}
	o := &Outcome{State: c.next, Mutation: m, Result: c.result, Created: c.created}
	if r := c.meta.JobItem; r != nil {
		status := 200
		if c.created {
			status = 201
		}
		m.JobItem = &JobItemDone{JobID: r.JobID, Item: r.Item, Status: status, UserID: m.UserID}
	}
	if c.meta.Idempotency != nil {
		if u, ok := o.Result.(User); ok { // the answer shows the committed version
			u.Version = c.next.User.Version
			o.Result = u
		}
		status, body := c.meta.Idempotency.Render(o)
		m.Idempotency = &IdempotencyRecord{
			CallerID: c.meta.Idempotency.CallerID, Key: c.meta.Idempotency.Key,
			RequestHash: c.meta.Idempotency.RequestHash, Status: status, Body: body, CreatedAt: c.meta.Now,
		}
	}
	if u, ok := o.Result.(User); ok {
		u.Version = c.next.User.Version
		o.Result = u
	}
	return o, nil
}

func (c *change) ownEnrollmentList() {
	if !c.ownEnrollments {
		c.next.writableEnrollments()
		c.ownEnrollments = true
	}
}

// ownPreferenceList copies the preference list for this change, with room for
// `added` new keys (finish trims what is left over, so a count above the real
// one costs a second copy and one below it a regrowth, nothing else).
func (c *change) ownPreferenceList(added int) {
	if !c.ownPreferences {
		c.next.writablePreferences(added)
		c.ownPreferences = true
	}
}

// newKeys counts how many of the n keys that key(i) gives the preference list
// does not hold yet.
func (c *change) newKeys(n int, key func(i int) PrefKey) int {
	added := 0
	for i := range n {
		if !c.next.Preferences.Has(key(i)) {
			added++
		}
	}
	return added
}

func (c *change) event(typ string, data any) {
	md := EventMetadata{ActorID: c.meta.ActorID, RequestID: c.meta.RequestID} // finish adds userVersion
	c.m.Events = append(c.m.Events, Event{
		ID: NewID(), Type: typ, Source: EventSourceUserService, Version: EnvelopeVersion, Data: data,
		Timestamp: c.meta.Now, CorrelationID: c.meta.CorrelationID, Metadata: md,
	})
	c.dirty = true
}

func (c *change) audit(action string, before, after map[string]any) {
	if c.meta.NoAudit {
		return
	}
	c.m.Audit = append(c.m.Audit, AuditRecord{
		ID: NewID(), UserID: c.next.User.ID, ActorID: c.meta.ActorID, Action: action,
		Before: before, After: after, CorrelationID: c.meta.CorrelationID, CreatedAt: c.meta.Now,
	})
	c.dirty = true
}

// eventProfile is the "profile" object of the user events.
type eventProfile struct {
	FirstName   string  `json:"firstName"`
	LastName    string  `json:"lastName"`
	DisplayName *string `json:"displayName"`
	AvatarURL   *string `json:"avatarUrl"`
}

func profileOf(u *User) eventProfile {
	return eventProfile{FirstName: u.FirstName, LastName: u.LastName, DisplayName: u.DisplayName, AvatarURL: u.AvatarURL}
}

// profileEditedData is the data of user.updated after a profile edit: typed,
// where maps of its fields cost allocations for every entry and a sort of their
// keys at every encoding (issue 16: allocation on the write path).
type profileEditedData struct {
	UserID  string         `json:"userId"`
	Changes profileChanges `json:"changes"`
	Profile eventProfile   `json:"profile"`
}

func register(cmd Register, meta Meta) *change {
	in, now := cmd.Input, meta.Now
	u := User{
		ID: cmd.ID, AuthID: in.AuthID, Email: in.Email,
		Username: in.Username, FirstName: strings.TrimSpace(in.FirstName), LastName: strings.TrimSpace(in.LastName),
		DisplayName: in.DisplayName, AvatarURL: in.AvatarURL, Bio: in.Bio, Phone: in.Phone,
		Timezone: "UTC", Language: "en", Role: RoleStudent, Status: StatusActive,
		CreatedAt: now, UpdatedAt: now,
	}
	if in.Timezone != nil {
		u.Timezone = *in.Timezone
	}
	if in.Language != nil {
		u.Language = *in.Language
	}
	if in.Role != nil {
		u.Role = *in.Role
	}
	u.EmailVerified = cmd.EmailVerified
	u.ProfileCompleted = profileComplete(&u)
	s := &State{User: u, Enrollments: EnrollmentList{}, Preferences: make(PreferenceList, 0, len(DefaultPreferences))}
	c := &change{next: s, meta: meta, created: true, ownEnrollments: true, ownPreferences: true}
	c.m.Create = true
	for i, d := range DefaultPreferences {
		p := Preference{
			ID: NewUUID(), UserID: u.ID, Category: d.Category, Key: d.Key,
			Value: defaultPreferenceValues[i], CreatedAt: now, UpdatedAt: now,
		}
		s.Preferences.Put(p)
		c.m.PreferenceUpserts = append(c.m.PreferenceUpserts, p)
	}
	c.event(EventUserCreated, map[string]any{
		"userId": u.ID, "authId": u.AuthID, "email": u.Email, "role": u.Role, "profile": profileOf(&u),
	})
	c.result = u
	return c
}

func (c *change) editProfile(cmd EditProfile) error {
	in, u := cmd.Input, &c.next.User
	setOpt := func(dst **string, o Optional[string]) {
		if !o.Set {
			return
		}
		if o.Null {
			*dst = nil
			return
		}
		v := o.Value
		*dst = &v
	}
	setOpt(&u.Username, in.Username)
	setOpt(&u.DisplayName, in.DisplayName)
	setOpt(&u.AvatarURL, in.AvatarURL)
	setOpt(&u.Bio, in.Bio)
	setOpt(&u.Phone, in.Phone)
	if in.FirstName.Set {
		u.FirstName = strings.TrimSpace(in.FirstName.Value)
	}
	if in.LastName.Set {
		u.LastName = strings.TrimSpace(in.LastName.Value)
	}
	if in.Timezone.Set {
		u.Timezone = in.Timezone.Value
	}
	if in.Language.Set {
		u.Language = in.Language.Value
	}
	// Completion only ever turns on, as in the spec's updateUser.
	if !u.ProfileCompleted && profileComplete(u) {
		u.ProfileCompleted = true
	}
	u.UpdatedAt = c.meta.Now
	c.event(EventUserUpdated, &profileEditedData{UserID: u.ID, Changes: in.changes(), Profile: profileOf(u)})
	c.result = *u
	return nil
}

// verifyEmail marks the email verified; once verified it stays so, and a
// repeated event changes nothing.
func (c *change) verifyEmail(cmd VerifyEmail) {
	u := &c.next.User
	c.result = *u
	if u.EmailVerified {
		return
	}
	u.EmailVerified, u.UpdatedAt = true, c.meta.Now
	c.event(EventUserUpdated, map[string]any{
		"userId": u.ID, "changes": map[string]any{"emailVerified": true}, "profile": profileOf(u), "verifiedAt": cmd.At,
	})
	c.result = *u
}

func (c *change) changeRole(cmd ChangeRole) error {
	if !cmd.Role.Valid() {
		return ValidationError([]FieldError{{Field: "role", Message: "must be one of admin, instructor, student"}})
	}
	u := &c.next.User
	c.result = *u
	if u.Role == cmd.Role {
		return nil
	}
	old := u.Role
	u.Role, u.UpdatedAt = cmd.Role, c.meta.Now
	c.event(EventRoleChanged, map[string]any{"userId": u.ID, "oldRole": old, "newRole": u.Role, "changedBy": c.meta.ActorID})
	c.audit(AuditRoleChanged, map[string]any{"role": old}, map[string]any{"role": u.Role})
	c.revokeSessions("", RevokeReasonRoleChanged, false)
	c.result = *u
	return nil
}

func (c *change) changeStatus(cmd ChangeStatus) error {
	if !cmd.Status.Valid() {
		return ValidationError([]FieldError{{Field: "status", Message: "must be one of active, inactive, suspended, deleted"}})
	}
	u := &c.next.User
	c.result = *u
	switch {
	case u.Status == cmd.Status:
		return nil
	case cmd.Status == StatusDeleted:
		// Exactly DELETE /{id}: user.deleted and its audit record, no
		// user.status_changed. The answer is still the user.
		if err := c.softDelete(); err != nil {
			return err
		}
		c.result = *u
		return nil
	case u.Status == StatusDeleted:
		c.restore(cmd.Status)
		return nil
	}
	old := u.Status
	u.Status, u.UpdatedAt = cmd.Status, c.meta.Now
	c.event(EventStatusChanged, map[string]any{"userId": u.ID, "oldStatus": old, "newStatus": u.Status, "changedBy": c.meta.ActorID})
	c.audit(AuditStatusChanged, map[string]any{"status": old}, map[string]any{"status": u.Status})
	if u.Status == StatusSuspended {
		c.revokeSessions("", RevokeReasonSuspended, false)
	}
	c.result = *u
	return nil
}

// restore brings a soft-deleted user back with status st: user.restored (not
// user.status_changed) and an audit record, the counterpart of softDelete.
func (c *change) restore(st Status) {
	u := &c.next.User
	u.Status, u.UpdatedAt = st, c.meta.Now
	c.event(EventUserRestored, map[string]any{"userId": u.ID, "authId": u.AuthID, "newStatus": st, "restoredBy": c.meta.ActorID})
	c.audit(AuditUserRestored, map[string]any{"status": StatusDeleted}, map[string]any{"status": st})
	c.result = *u
}

func (c *change) softDelete() error {
	u := &c.next.User
	c.result = map[string]any{"deleted": true}
	if u.Status == StatusDeleted {
		return nil // already deleted: 200, nothing published
	}
	old := u.Status
	u.Status, u.UpdatedAt = StatusDeleted, c.meta.Now
	c.event(EventUserDeleted, map[string]any{"userId": u.ID, "authId": u.AuthID, "deletedBy": c.meta.ActorID})
	c.audit(AuditUserDeleted, map[string]any{"status": old}, map[string]any{"status": StatusDeleted})
	c.revokeSessions("", RevokeReasonDeleted, false)
	return nil
}

// enrollmentData is what every enrollment event's data holds; the events add
// their own fields (enrolledData, progressData, unenrolledData). Typed rather
// than maps, as profileEditedData.
type enrollmentData struct {
	UserID           string           `json:"userId"`
	EnrollmentID     string           `json:"enrollmentId"`
	CourseID         string           `json:"courseId"`
	EnrollmentStatus EnrollmentStatus `json:"enrollmentStatus"`
	Progress         float64          `json:"progress"`
}

func enrollmentEventData(e *Enrollment) enrollmentData {
	return enrollmentData{UserID: e.UserID, EnrollmentID: e.ID, CourseID: e.CourseID,
		EnrollmentStatus: e.EnrollmentStatus, Progress: e.Progress}
}

// enrolledData is the data of user.enrolled; previousStatus only on a
// reactivation by status.
type enrolledData struct {
	enrollmentData
	EnrolledAt     Time             `json:"enrolledAt"`
	Reactivated    bool             `json:"reactivated"`
	PreviousStatus EnrollmentStatus `json:"previousStatus,omitempty"`
}

// progressData is the data of enrollment.progress_updated.
type progressData struct {
	enrollmentData
	PreviousProgress float64 `json:"previousProgress"`
	TimeSpentSeconds int64   `json:"timeSpentSeconds"`
}

// unenrolledData is the data of user.unenrolled: previousStatus when dropped or
// suspended by status, deleted when the enrollment was deleted.
type unenrolledData struct {
	enrollmentData
	PreviousStatus EnrollmentStatus `json:"previousStatus,omitempty"`
	Deleted        bool             `json:"deleted,omitempty"`
}

// enrollmentOf returns a copy of s's enrollment in the course, to change and put.
func enrollmentOf(s *State, courseID string) (Enrollment, bool) {
	if e, ok := s.Enrollments.Get(courseID); ok {
		return *e, true
	}
	return Enrollment{}, false
}

func (c *change) putEnrollment(e Enrollment) {
	c.ownEnrollmentList()
	c.next.Enrollments.Put(&e)
	c.m.EnrollmentUpserts = append(c.m.EnrollmentUpserts, e)
	c.dirty = true
	c.result = e
}

func (c *change) enroll(cmd Enroll) error {
	now := c.meta.Now
	e, ok := enrollmentOf(c.base, cmd.CourseID)
	switch {
	case !ok:
		if q := c.meta.Quotas.Enrollments; q > 0 && len(c.base.Enrollments) >= q {
			return quotaExceeded("enrollments", fmt.Sprintf("at most %d enrollments per user", q))
		}
		e = Enrollment{
			ID: NewID(), UserID: c.next.User.ID, CourseID: cmd.CourseID, EnrollmentStatus: EnrollmentActive,
			EnrolledAt: now, CreatedAt: now, UpdatedAt: now,
		}
		c.created = true
	case e.EnrollmentStatus == EnrollmentDropped:
		e.EnrollmentStatus, e.UpdatedAt = EnrollmentActive, now
	default:
		return Errorf(ECodeAlreadyEnrolled, "User is already enrolled in this course")
	}
	c.putEnrollment(e)
	c.event(EventEnrolled, &enrolledData{enrollmentData: enrollmentEventData(&e), EnrolledAt: e.EnrolledAt, Reactivated: !c.created})
	return nil
}

func (c *change) editEnrollment(cmd EditEnrollment) error {
	e, ok := enrollmentOf(c.base, cmd.CourseID)
	if !ok {
		return ErrEnrollmentNotFound
	}
	if st := cmd.Input.EnrollmentStatus; st != nil && *st != e.EnrollmentStatus {
		now := c.meta.Now
		old := e.EnrollmentStatus
		if e.CompletedAt != nil {
			return Errorf(ECodeConflict, "A completed enrollment cannot change status")
		}
		e.EnrollmentStatus, e.UpdatedAt = *st, now
		switch *st {
		case EnrollmentCompleted:
			prev := e.Progress
			e.Progress, e.CompletedAt, e.LastAccessedAt = 100, &now, &now
			c.putEnrollment(e)
			c.event(EventProgressUpdated, &progressData{enrollmentData: enrollmentEventData(&e),
				PreviousProgress: prev, TimeSpentSeconds: e.TimeSpentSeconds})
			c.completed(&e)
		case EnrollmentActive:
			c.putEnrollment(e)
			c.event(EventEnrolled, &enrolledData{enrollmentData: enrollmentEventData(&e), EnrolledAt: e.EnrolledAt,
				Reactivated: true, PreviousStatus: old})
		default: // dropped, suspended
			c.putEnrollment(e)
			c.event(EventUnenrolled, &unenrolledData{enrollmentData: enrollmentEventData(&e), PreviousStatus: old})
		}
	}
	if cmd.Input.Progress != nil {
		return c.setProgress(cmd.CourseID, cmd.Input.Progress, cmd.Input.TimeSpentSeconds)
	}
	if c.result == nil {
		c.result = e // status unchanged and no progress: nothing to do
	}
	return nil
}

func (c *change) setProgress(courseID string, progress *float64, spent *int64) error {
	e, ok := enrollmentOf(c.next, courseID)
	if !ok {
		return ErrEnrollmentNotFound
	}
	if e.EnrollmentStatus == EnrollmentDropped || e.EnrollmentStatus == EnrollmentSuspended {
		return Errorf(ECodeConflict, "Enrollment is %s; re-enroll before recording progress", e.EnrollmentStatus)
	}
	now := c.meta.Now
	prev := e.Progress
	e.Progress, e.LastAccessedAt, e.UpdatedAt = *progress, &now, now
	if spent != nil {
		e.TimeSpentSeconds += *spent
	}
	completing := e.Progress >= 100 && e.CompletedAt == nil
	if completing { // completion is permanent and happens once per enrollment, ever
		e.EnrollmentStatus, e.CompletedAt = EnrollmentCompleted, &now
	}
	c.putEnrollment(e)
	c.event(EventProgressUpdated, &progressData{enrollmentData: enrollmentEventData(&e),
		PreviousProgress: prev, TimeSpentSeconds: e.TimeSpentSeconds})
	if completing {
		c.completed(&e)
	}
	return nil
}

func (c *change) completed(e *Enrollment) {
	c.event(EventCourseCompleted, map[string]any{
		"userId": e.UserID, "enrollmentId": e.ID, "courseId": e.CourseID, "completedAt": e.CompletedAt,
	})
}

func (c *change) unenroll(cmd Unenroll) error {
	e, ok := enrollmentOf(c.base, cmd.CourseID)
	if !ok {
		return ErrEnrollmentNotFound
	}
	c.ownEnrollmentList()
	c.next.Enrollments.Remove(cmd.CourseID)
	c.m.EnrollmentDeletes = append(c.m.EnrollmentDeletes, cmd.CourseID)
	c.event(EventUnenrolled, &unenrolledData{enrollmentData: enrollmentEventData(&e), Deleted: true})
	c.result = map[string]any{"deleted": true}
	return nil
}

func (c *change) setPreferences(cmd SetPreferences) error {
	now := c.meta.Now
	c.ownPreferenceList(c.newKeys(len(cmd.Input.Preferences), func(i int) PrefKey { return cmd.key(cmd.Input.Preferences[i]) }))
	// Later items win over earlier ones with the same key.
	seen := make(map[PrefKey]int, len(cmd.Input.Preferences))
	var out []Preference
	for _, in := range cmd.Input.Preferences {
		k := cmd.key(in)
		p, exists := c.next.Preferences.Get(k)
		if !exists {
			p = Preference{ID: NewUUID(), UserID: c.next.User.ID, Category: k.Category, Key: in.Key, CreatedAt: now}
		}
		p.Value, p.UpdatedAt = in.Value, now
		c.next.Preferences.Put(p)
		if i, dup := seen[k]; dup {
			out[i] = p
			continue
		}
		seen[k] = len(out)
		out = append(out, p)
	}
	if err := c.preferenceQuotas(); err != nil {
		return err
	}
	c.m.PreferenceUpserts = out
	c.dirty = true
	c.result = out
	return nil
}

// preferenceQuotas refuses a preference write that takes the user past a limit
// it grows: more keys than Quotas.Preferences, or more bytes than
// Quotas.PreferenceBytes.
func (c *change) preferenceQuotas() error {
	q := c.meta.Quotas
	if n := len(c.next.Preferences); q.Preferences > 0 && n > q.Preferences && n > len(c.base.Preferences) {
		return quotaExceeded("preferences", fmt.Sprintf("at most %d preferences per user", q.Preferences))
	}
	if q.PreferenceBytes > 0 {
		if n := preferenceBytes(c.next.Preferences); n > q.PreferenceBytes && n > preferenceBytes(c.base.Preferences) {
			return quotaExceeded("preferences", fmt.Sprintf("at most %d bytes of preferences per user (keys and values)", q.PreferenceBytes))
		}
	}
	return nil
}

// preferenceBytes is what Quotas.PreferenceBytes counts: every key and its
// compact JSON value.
func preferenceBytes(ps PreferenceList) int {
	n := 0
	for _, p := range ps {
		n += len(p.Key) + len(p.Value)
	}
	return n
}

func quotaExceeded(field, message string) error {
	return &Error{Code: ECodeQuotaExceeded, Message: "Quota exceeded: " + message, Details: []FieldError{{Field: field, Message: message}}}
}

// patchPreferences applies a JSON merge patch to one category (RFC 7396; see
// PreferencesPatch). Members that change nothing write nothing; a patch that
// changes nothing is no change at all. The answer is the category afterwards.
func (c *change) patchPreferences(cmd PatchPreferences) error {
	now := c.meta.Now
	var v validator
	var upserts []Preference
	var deletes []PrefKey
	for _, m := range cmd.Patch.Members {
		k := PrefKey{cmd.Category, m.Key}
		cur, exists := c.base.Preferences.Get(k)
		if string(m.Value) == "null" {
			if exists {
				deletes = append(deletes, k)
			}
			continue
		}
		var current json.RawMessage
		if exists {
			current = cur.Value
		}
		merged, err := mergePreferenceValue(current, m.Value)
		if err != nil {
			v.add(m.Key, "cannot be merged: "+err.Error())
			continue
		}
		if len(merged) > MaxPreferenceValueBytes {
			v.add(m.Key, "must be at most 4096 bytes as compact JSON once merged")
			continue
		}
		if exists && bytes.Equal(merged, cur.Value) {
			continue
		}
		p := cur
		if !exists {
			p = Preference{ID: NewUUID(), UserID: c.next.User.ID, Category: cmd.Category, Key: m.Key, CreatedAt: now}
		}
		p.Value, p.UpdatedAt = merged, now
		upserts = append(upserts, p)
	}
	if err := v.err(); err != nil {
		return err
	}
	if len(upserts) > 0 || len(deletes) > 0 {
		c.ownPreferenceList(c.newKeys(len(upserts), func(i int) PrefKey { return PrefKey{upserts[i].Category, upserts[i].Key} }))
		for _, k := range deletes {
			c.next.Preferences.Remove(k)
		}
		for _, p := range upserts {
			c.next.Preferences.Put(p)
		}
		if err := c.preferenceQuotas(); err != nil {
			return err
		}
		c.m.PreferenceUpserts = upserts
		c.m.PreferenceDeletes = deletes
		c.dirty = true
	}
	c.result = c.next.SortedPreferences(cmd.Category)
	return nil
}

func (c *change) removePreference(cmd RemovePreference) error {
	k := PrefKey{cmd.Category, cmd.Key}
	if !c.base.Preferences.Has(k) {
		return ErrPreferenceNotFound
	}
	c.ownPreferenceList(0)
	c.next.Preferences.Remove(k)
	c.m.PreferenceDeletes = append(c.m.PreferenceDeletes, k)
	c.dirty = true
	c.result = map[string]any{"deleted": true}
	return nil
}

func (c *change) removeCategory(cmd RemoveCategory) error {
	c.ownPreferenceList(0)
	n := 0
	for _, p := range c.base.Preferences.Category(cmd.Category) {
		k := PrefKey{p.Category, p.Key}
		c.next.Preferences.Remove(k)
		c.m.PreferenceDeletes = append(c.m.PreferenceDeletes, k)
		n++
	}
	if n == 0 {
		return ErrPreferenceNotFound
	}
	c.dirty = true
	c.result = map[string]any{"deleted": true, "count": n}
	return nil
}

func (c *change) recordLogin(cmd RecordLogin) {
	u := &c.next.User
	at := cmd.At
	u.LoginCount++
	if u.LastLoginAt == nil || at.After(u.LastLoginAt.Time) {
		u.LastLoginAt = &at
	}
	if u.LastActiveAt == nil || at.After(u.LastActiveAt.Time) {
		u.LastActiveAt = &at
	}
	c.dirty = true
	if cmd.NoSession {
		return
	}
	s := Session{ID: NewID(), SessionID: cmd.SessionID, IPAddress: cmd.IPAddress, UserAgent: cmd.UserAgent, StartedAt: at, Active: true}
	sessions := make([]Session, 0, len(c.base.Sessions)+1)
	for _, old := range c.base.Sessions {
		if old.SessionID == cmd.SessionID { // a session id seen again restarts it
			s.ID = old.ID
			continue
		}
		sessions = append(sessions, old)
	}
	sessions = append(sessions, s)
	if len(sessions) > MaxSessionsKept {
		sessions = sessions[len(sessions)-MaxSessionsKept:]
	}
	c.m.SessionUpserts = append(c.m.SessionUpserts, s)
	if q := c.meta.Quotas.Sessions; q > 0 {
		c.endSessionsOverQuota(sessions, q, at)
	}
	c.next.Sessions = sessions
	c.result = s
}

// endSessionsOverQuota ends the oldest open sessions beyond the quota of open
// sessions, sessions being the new list (oldest first, the new one last). When the
// actor holds MaxSessionsKept sessions, older ones may still be open in PostgreSQL
// only (left from before the quota): they are ended too.
func (c *change) endSessionsOverQuota(sessions []Session, quota int, at Time) {
	open := 0
	for i := range sessions {
		if sessions[i].Active {
			open++
		}
	}
	for i := 0; i < len(sessions) && open > quota; i++ {
		s := &sessions[i]
		if !s.Active {
			continue
		}
		s.Active, s.EndedAt = false, &at
		c.m.SessionUpserts = append(c.m.SessionUpserts, *s)
		open--
	}
	if len(c.base.Sessions) >= MaxSessionsKept {
		held := make([]string, len(sessions))
		for i := range sessions {
			held[i] = sessions[i].SessionID
		}
		c.m.EndSessions = &SessionsEnd{At: at, Except: held}
	}
}

func (c *change) recordLogout(cmd RecordLogout) {
	sessions := make([]Session, len(c.base.Sessions))
	copy(sessions, c.base.Sessions)
	found := false
	for i := range sessions {
		s := &sessions[i]
		if cmd.SessionID != "" && s.SessionID == cmd.SessionID {
			found = true
		}
		if !s.Active || (cmd.SessionID != "" && s.SessionID != cmd.SessionID) {
			continue
		}
		at := cmd.At
		s.Active, s.EndedAt = false, &at
		c.m.SessionUpserts = append(c.m.SessionUpserts, *s)
		c.dirty = true
	}
	c.next.Sessions = sessions
	// The actor holds the newest MaxSessionsKept sessions; once it holds that many,
	// older ones may be open in PostgreSQL only, and the logout must reach them too.
	if len(sessions) >= MaxSessionsKept && !found {
		c.m.EndSessions = &SessionsEnd{SessionID: cmd.SessionID, At: cmd.At}
		c.dirty = true
	}
}

func (c *change) recordPasswordChange(cmd RecordPasswordChange) {
	c.audit(AuditPasswordChanged, nil, map[string]any{"changedAt": cmd.At})
}
