package redis

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"

	userservice "github.com/lms-platform/userservice"
)

// snapshotFormat is the first byte of every snapshot. Change it with any change of
// the layout below: a snapshot in another format is then never misread, only
// reported corrupt, and the loader replaces it.
const snapshotFormat byte = 2

// The snapshot layout (format 2; 1 had no attributes). It is an explicit field list rather than the
// API's JSON because it must carry what the API hides (User.LoginCount,
// User.LastLoginAt) and tell nil from empty, so that a decoded State is identical
// to the encoded one.
//
//	format byte, version (big-endian uint64, where the put script compares it;
//	             versions are positive, a CHECK in the schema)
//	user:        id authId email ?username firstName lastName ?displayName
//	             ?avatarUrl ?bio ?phone timezone language role status
//	             flags(emailVerified=1|profileCompleted=2) ?lastActiveAt createdAt
//	             updatedAt loginCount(varint) ?lastLoginAt
//	enrollments: count, then each: id userId courseId status progress(float64 LE)
//	             timeSpentSeconds(varint) enrolledAt ?completedAt ?lastAccessedAt
//	             createdAt updatedAt
//	preferences: count, then each: id userId category key value createdAt updatedAt
//	sessions:    count, then each: id sessionId ?ipAddress ?userAgent startedAt
//	             ?endedAt active(byte)
//	attributes:  count, then each: namespace value
//
// count is uvarint: 0 for a nil map or slice, n+1 for n elements. A string starts
// with a uvarint header: len<<2 for raw bytes that follow; strUUID for a canonical
// UUID stored as its 16 bytes (ids are most of a snapshot); strUserID for "the
// user's id" (every enrollment and preference repeats it); strNil for an absent
// optional string. A time is varint Unix seconds then uvarint ms<<1, or ns<<1|1
// when it is not whole milliseconds; ?time is a presence byte then a time. A
// preference value is uvarint 0 for nil, len+1 then its bytes.
const (
	strUUID   = 1
	strUserID = 2
	strNil    = 3
)

var errCorrupt = errors.New("corrupt snapshot")

// appendSnapshot appends the encoding of s to dst.
func appendSnapshot(dst []byte, s *userservice.State) ([]byte, error) {
	e := encoder{b: dst, userID: s.User.ID}
	u := &s.User
	e.b = append(e.b, snapshotFormat)
	e.b = binary.BigEndian.AppendUint64(e.b, uint64(u.Version))
	e.str(u.ID, false)
	e.str(u.AuthID, true)
	e.str(u.Email, true)
	e.optStr(u.Username)
	e.str(u.FirstName, true)
	e.str(u.LastName, true)
	e.optStr(u.DisplayName)
	e.optStr(u.AvatarURL)
	e.optStr(u.Bio)
	e.optStr(u.Phone)
	e.str(u.Timezone, true)
	e.str(u.Language, true)
	e.str(string(u.Role), true)
	e.str(string(u.Status), true)
	var flags byte
	if u.EmailVerified {
		flags |= 1
	}
	if u.ProfileCompleted {
		flags |= 2
	}
	e.b = append(e.b, flags)
	e.optTime(u.LastActiveAt)
	e.time(u.CreatedAt)
	e.time(u.UpdatedAt)
	e.b = binary.AppendVarint(e.b, u.LoginCount)
	e.optTime(u.LastLoginAt)

	e.count(s.Enrollments == nil, len(s.Enrollments))
	if !s.Enrollments.Ordered() {
		return dst, errors.New("cannot encode snapshot: the enrollments are not sorted by course, each course once")
	}
	for _, en := range s.Enrollments {
		e.str(en.ID, true)
		e.str(en.UserID, true)
		e.str(en.CourseID, true)
		e.str(string(en.EnrollmentStatus), true)
		e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(en.Progress))
		e.b = binary.AppendVarint(e.b, en.TimeSpentSeconds)
		e.time(en.EnrolledAt)
		e.optTime(en.CompletedAt)
		e.optTime(en.LastAccessedAt)
		e.time(en.CreatedAt)
		e.time(en.UpdatedAt)
	}

	e.count(s.Preferences == nil, len(s.Preferences))
	for _, p := range s.Preferences {
		e.b = append(e.b, strUUID)
		e.b = append(e.b, p.ID[:]...)
		e.str(p.UserID, true)
		e.str(p.Category, true)
		e.str(p.Key, true)
		if p.Value == nil {
			e.b = append(e.b, 0)
		} else {
			e.b = binary.AppendUvarint(e.b, uint64(len(p.Value))+1)
			e.b = append(e.b, p.Value...)
		}
		e.time(p.CreatedAt)
		e.time(p.UpdatedAt)
	}

	e.count(s.Sessions == nil, len(s.Sessions))
	for i := range s.Sessions {
		ss := &s.Sessions[i]
		e.str(ss.ID, true)
		e.str(ss.SessionID, true)
		e.optStr(ss.IPAddress)
		e.optStr(ss.UserAgent)
		e.time(ss.StartedAt)
		e.optTime(ss.EndedAt)
		e.bool(ss.Active)
	}

	e.count(s.Attributes == nil, len(s.Attributes))
	for ns, v := range s.Attributes {
		e.str(ns, true)
		if v == nil {
			e.b = append(e.b, 0)
		} else {
			e.b = binary.AppendUvarint(e.b, uint64(len(v))+1)
			e.b = append(e.b, v...)
		}
	}
	return e.b, nil
}

type encoder struct {
	b      []byte
	userID string
}

func (e *encoder) count(isNil bool, n int) {
	if isNil {
		e.b = append(e.b, 0)
		return
	}
	e.b = binary.AppendUvarint(e.b, uint64(n)+1)
}

// str appends s; refUser allows the short form for a copy of the user's id.
func (e *encoder) str(s string, refUser bool) {
	if refUser && s == e.userID && s != "" {
		e.b = append(e.b, strUserID)
		return
	}
	if u, ok := canonicalUUID(s); ok {
		e.b = append(e.b, strUUID)
		e.b = append(e.b, u[:]...)
		return
	}
	e.b = binary.AppendUvarint(e.b, uint64(len(s))<<2)
	e.b = append(e.b, s...)
}

// canonicalUUID parses s if it is a UUID in the canonical form the decoder gives
// back (lower-case, hyphenated), so that the round trip is byte-exact.
func canonicalUUID(s string) (uuid.UUID, bool) {
	if len(s) != 36 || strings.ContainsAny(s, "ABCDEF") {
		return uuid.UUID{}, false
	}
	u, err := uuid.Parse(s)
	return u, err == nil
}

func (e *encoder) optStr(s *string) {
	if s == nil {
		e.b = append(e.b, strNil)
		return
	}
	e.str(*s, true)
}

func (e *encoder) time(t userservice.Time) {
	e.b = binary.AppendVarint(e.b, t.Unix())
	ns := uint64(t.Nanosecond())
	if ns%uint64(time.Millisecond) == 0 {
		e.b = binary.AppendUvarint(e.b, ns/uint64(time.Millisecond)<<1)
	} else {
		e.b = binary.AppendUvarint(e.b, ns<<1|1)
	}
}

func (e *encoder) optTime(t *userservice.Time) {
	if t == nil {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.time(*t)
}

func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// decodeSnapshot decodes what appendSnapshot wrote. Any other input gives an error
// (never a panic): the bytes come from outside the process.
func decodeSnapshot(b []byte) (*userservice.State, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", errCorrupt)
	}
	if b[0] != snapshotFormat {
		return nil, fmt.Errorf("%w: format %d, want %d", errCorrupt, b[0], snapshotFormat)
	}
	if len(b) < 9 {
		return nil, fmt.Errorf("%w: short header", errCorrupt)
	}
	d := decoder{b: b[9:]}
	s := &userservice.State{}
	u := &s.User
	u.Version = int64(binary.BigEndian.Uint64(b[1:9]))
	u.ID = d.str(false)
	d.userID = u.ID
	u.AuthID = d.str(true)
	u.Email = d.str(true)
	u.Username = d.optStr()
	u.FirstName = d.str(true)
	u.LastName = d.str(true)
	u.DisplayName = d.optStr()
	u.AvatarURL = d.optStr()
	u.Bio = d.optStr()
	u.Phone = d.optStr()
	u.Timezone = d.str(true)
	u.Language = d.str(true)
	u.Role = userservice.Role(d.str(true))
	u.Status = userservice.Status(d.str(true))
	flags := d.byte()
	if flags&^3 != 0 {
		d.fail("user flags")
	}
	u.EmailVerified, u.ProfileCompleted = flags&1 != 0, flags&2 != 0
	u.LastActiveAt = d.optTime()
	u.CreatedAt = d.time()
	u.UpdatedAt = d.time()
	u.LoginCount = d.varint()
	u.LastLoginAt = d.optTime()

	if n, ok := d.count(); ok {
		s.Enrollments = make(userservice.EnrollmentList, 0, n)
		for range n {
			en := new(userservice.Enrollment)
			en.ID = d.str(true)
			en.UserID = d.str(true)
			en.CourseID = d.str(true)
			en.EnrollmentStatus = userservice.EnrollmentStatus(d.str(true))
			en.Progress = math.Float64frombits(d.uint64LE())
			en.TimeSpentSeconds = d.varint()
			en.EnrolledAt = d.time()
			en.CompletedAt = d.optTime()
			en.LastAccessedAt = d.optTime()
			en.CreatedAt = d.time()
			en.UpdatedAt = d.time()
			en.ShareNames(u.ID)
			s.Enrollments = append(s.Enrollments, en)
		}
		// Written in the list's order; a snapshot of a build that kept them in a
		// map has them in any order, and is still read.
		if !s.Enrollments.Ordered() {
			s.Enrollments = userservice.SortEnrollments(s.Enrollments)
		}
	}

	if n, ok := d.count(); ok {
		ps := make([]userservice.Preference, 0, n)
		for range n {
			var p userservice.Preference
			p.ID = d.uuid()
			p.UserID = d.str(true)
			p.Category = d.str(true)
			p.Key = d.str(true)
			if l := d.uvarint(); l > 0 {
				p.Value = json.RawMessage(d.bytes(l - 1))
			}
			p.CreatedAt = d.time()
			p.UpdatedAt = d.time()
			p.ShareNames()
			ps = append(ps, p)
		}
		// Written in order since the list is sorted; sorting again covers
		// snapshots written from the earlier map in any order (and is cheap
		// on sorted input).
		s.Preferences = userservice.SortPreferences(ps)
	}

	if n, ok := d.count(); ok {
		s.Sessions = make([]userservice.Session, n)
		for i := range s.Sessions {
			ss := &s.Sessions[i]
			ss.ID = d.str(true)
			ss.SessionID = d.str(true)
			ss.IPAddress = d.optStr()
			ss.UserAgent = d.optStr()
			ss.StartedAt = d.time()
			ss.EndedAt = d.optTime()
			ss.Active = d.bool()
		}
	}

	if n, ok := d.count(); ok {
		s.Attributes = make(map[string]json.RawMessage, n)
		for range n {
			ns := d.str(true)
			var v json.RawMessage
			if l := d.uvarint(); l > 0 {
				v = json.RawMessage(d.bytes(l - 1))
			}
			s.Attributes[ns] = v
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}

// decoder reads a snapshot; after the first error every read returns a zero value
// and err keeps that first error.
type decoder struct {
	b      []byte
	userID string
	err    error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("length")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bool")
	return false
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64LE() uint64 {
	if len(d.b) < 8 {
		d.fail("length")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// bytes returns a copy of the next n bytes.
func (d *decoder) bytes(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b)
	d.b = d.b[n:]
	return v
}

// count reads a collection length; ok is false for nil. Each element takes at
// least one byte, which bounds what corrupt input can make us allocate.
func (d *decoder) count() (n int, ok bool) {
	v := d.uvarint()
	if v == 0 || d.err != nil {
		return 0, false
	}
	if v-1 > uint64(len(d.b)) {
		d.fail("count")
		return 0, false
	}
	return int(v - 1), true
}

func (d *decoder) str(refUser bool) string {
	s, isNil := d.strOrNil(refUser)
	if isNil {
		d.fail("string")
	}
	return s
}

// uuid reads an id written as a UUID (every preference id since they are kept
// as 16 bytes; earlier snapshots wrote them with str, which gives a UUID the
// same encoding).
func (d *decoder) uuid() uuid.UUID {
	if len(d.b) > 16 && d.err == nil && uint64(d.b[0]) == strUUID {
		u := uuid.UUID(d.b[1:17])
		d.b = d.b[17:]
		return u
	}
	s, isNil := d.strOrNil(false)
	if d.err != nil {
		return uuid.UUID{}
	}
	u, ok := canonicalUUID(s)
	if isNil || !ok {
		d.fail("uuid")
	}
	return u
}

func (d *decoder) optStr() *string {
	s, isNil := d.strOrNil(true)
	if isNil || d.err != nil {
		return nil
	}
	return &s
}

func (d *decoder) strOrNil(refUser bool) (s string, isNil bool) {
	h := d.uvarint()
	if d.err != nil {
		return "", false
	}
	switch {
	case h == strUUID:
		if len(d.b) < 16 {
			d.fail("uuid")
			return "", false
		}
		s = uuid.UUID(d.b[:16]).String()
		d.b = d.b[16:]
		return s, false
	case h == strUserID && refUser && d.userID != "":
		return d.userID, false
	case h == strNil:
		return "", true
	case h&3 != 0:
		d.fail("string header")
		return "", false
	}
	n := h >> 2
	if n > uint64(len(d.b)) {
		d.fail("string length")
		return "", false
	}
	s = string(d.b[:n])
	d.b = d.b[n:]
	return s, false
}

func (d *decoder) time() userservice.Time {
	sec := d.varint()
	f := d.uvarint()
	ns := f >> 1
	if f&1 == 0 {
		if ns >= 1000 {
			d.fail("time")
		}
		ns *= uint64(time.Millisecond)
	} else if ns >= uint64(time.Second) {
		d.fail("time")
	}
	if d.err != nil {
		return userservice.Time{}
	}
	return userservice.Time{Time: time.Unix(sec, int64(ns)).UTC()}
}

func (d *decoder) optTime() *userservice.Time {
	if !d.bool() {
		return nil
	}
	t := d.time()
	if d.err != nil {
		return nil
	}
	return &t
}
