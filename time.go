package userservice

import (
	"crypto/rand"
	"sync"
	"time"

	"github.com/google/uuid"
)

// TimeFormat is the wire format of every timestamp: UTC ISO-8601 with exactly three
// fractional digits, e.g. 2024-01-15T10:30:00.000Z (CONTRACT.md, HTTP).
const TimeFormat = "2006-01-02T15:04:05.000Z"

// Time is a UTC instant with millisecond precision that marshals in [TimeFormat].
// Truncating to milliseconds at creation keeps the in-memory value identical to what
// PostgreSQL (microsecond precision) hands back after a reload.
type Time struct{ time.Time }

// NewTime truncates t to milliseconds in UTC.
func NewTime(t time.Time) Time { return Time{t.UTC().Truncate(time.Millisecond)} }

// Now is the current time as a [Time].
func Now() Time { return NewTime(time.Now()) }

// TimePtr returns a pointer to a [Time] made from t.
func TimePtr(t time.Time) *Time { v := NewTime(t); return &v }

// String formats t in [TimeFormat].
func (t Time) String() string { return t.UTC().Format(TimeFormat) }

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(TimeFormat)+2)
	b = append(b, '"')
	b = t.AppendWire(b)
	return append(b, '"'), nil
}

// AppendWire appends t in [TimeFormat] to b. It formats the digits itself:
// time.Time.AppendFormat allocates on every call, and every timestamp of every
// response goes through here (16 preferences: 33 timestamps; issue 16).
func (t Time) AppendWire(b []byte) []byte {
	u := t.UTC()
	year, month, day := u.Date()
	if year < 0 || year > 9999 {
		return u.AppendFormat(b, TimeFormat)
	}
	hour, minute, sec := u.Clock()
	ms := u.Nanosecond() / 1e6
	return append(b,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-', byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':', byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// UnmarshalJSON implements json.Unmarshaler; it accepts any RFC 3339 instant.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return &time.ParseError{Layout: time.RFC3339, Value: string(b), Message: ": not a JSON string"}
	}
	v, err := time.Parse(time.RFC3339Nano, string(b[1:len(b)-1]))
	if err != nil {
		return err
	}
	// An offset can move the instant out of the four-digit years that TimeFormat
	// (and so our own output) can express.
	if y := v.UTC().Year(); y < 0 || y > 9999 {
		return &time.ParseError{Layout: time.RFC3339, Value: string(b), Message: ": year outside 0000-9999 in UTC"}
	}
	*t = NewTime(v)
	return nil
}

// NewUUID returns a new identifier as NewID does, in its 16 bytes: what a
// value held in memory for long keeps (a preference's id: 16 bytes instead of a
// 36-byte string on the heap).
func NewUUID() uuid.UUID {
	var u uuid.UUID
	ids.next((*[16]byte)(&u))
	return u
}

// NewID returns a new identifier: a UUID version 7, whose time-ordered prefix keeps
// B-tree inserts local. Within this process the ids increase strictly (the 12 bits
// after the millisecond count sub-millisecond time, then a sequence), as
// github.com/google/uuid's NewV7 does; the random part comes from crypto/rand in
// blocks, so an id costs one allocation, its string (issue 16: every request
// makes one or two).
func NewID() string {
	u := NewUUID()
	const hex = "0123456789abcdef"
	var s [36]byte
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hex[c>>4], hex[c&0xf]
		j += 2
	}
	return string(s[:])
}

// idSource hands out the time, sequence and random bits of NewID.
type idSource struct {
	mu   sync.Mutex
	last int64 // milliseconds<<12 | sequence of the last id
	rnd  [4096]byte
	off  int
}

var ids = idSource{off: 4096}

func (g *idSource) next(u *[16]byte) {
	nano := time.Now().UnixNano()
	milli := nano / 1e6
	now := milli<<12 + (nano-milli*1e6)>>8 // sub-millisecond part: 0..3906
	g.mu.Lock()
	if now <= g.last {
		now = g.last + 1
	}
	g.last = now
	if g.off+10 > len(g.rnd) {
		if _, err := rand.Read(g.rnd[:]); err != nil {
			panic("cannot read random bytes: " + err.Error()) // crypto/rand never fails (Go 1.24)
		}
		g.off = 0
	}
	copy(u[6:], g.rnd[g.off:g.off+10])
	g.off += 10
	g.mu.Unlock()
	milli, seq := now>>12, now&0xfff
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(milli>>40), byte(milli>>32), byte(milli>>24), byte(milli>>16), byte(milli>>8), byte(milli)
	u[6], u[7] = 0x70|byte(seq>>8), byte(seq) // version 7
	u[8] = 0x80 | u[8]&0x3f                   // variant 10
}

// ParseID parses s as a UUID and returns its canonical lower-case form.
func ParseID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", false
	}
	return u.String(), true
}
