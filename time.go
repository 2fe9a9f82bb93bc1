package userservice

import (
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
	b = t.UTC().AppendFormat(b, TimeFormat)
	return append(b, '"'), nil
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

// NewID returns a new identifier: a UUID version 7, whose time-ordered prefix keeps
// B-tree inserts local.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

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
