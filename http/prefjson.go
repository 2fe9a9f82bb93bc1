package http

import (
	stdjson "encoding/json"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/lms-platform/userservice"
)

// appendPreferencesEnvelope appends the success envelope of a preference list:
// byte for byte what the generic encoder writes for successBody{Data: prefs,
// Message: message} at timestamp now (FuzzPreferencesEnvelope compares the two),
// without reflection and with no allocation beyond b's growth. GET preferences is
// a hot read, and encoding 16 preferences through reflection was most of its CPU
// (issue 16); a preference write answers with its category's list the same way.
func appendPreferencesEnvelope(b []byte, prefs []userservice.Preference, message string, now userservice.Time) []byte {
	b = append(b, `{"success":true,"data":`...)
	if prefs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range prefs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendPreference(b, &prefs[i])
		}
		b = append(b, ']')
	}
	return appendEnvelopeEnd(b, message, now)
}

func appendPreference(b []byte, p *userservice.Preference) []byte {
	b = append(b, `{"id":"`...)
	b = appendUUID(b, &p.ID)
	b = append(b, `","userId":`...)
	b = appendJSONString(b, p.UserID)
	b = append(b, `,"category":`...)
	b = appendJSONString(b, p.Category)
	b = append(b, `,"key":`...)
	b = appendJSONString(b, p.Key)
	b = append(b, `,"value":`...)
	b = appendRawJSON(b, p.Value)
	b = append(b, `,"createdAt":"`...)
	b = p.CreatedAt.AppendWire(b)
	b = append(b, `","updatedAt":"`...)
	b = p.UpdatedAt.AppendWire(b)
	return append(b, `"}`...)
}

// appendRawJSON appends a stored JSON value as the encoder does: compacted (a
// value read from PostgreSQL's jsonb has a space after every colon and comma),
// with <, > and & (and U+2028, U+2029) escaped, in one pass. Stored values are
// valid JSON (validated before they are written).
func appendRawJSON(b []byte, v stdjson.RawMessage) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	in := false
	start := 0
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case in && c == '\\':
			i += 2
		case c == '"':
			in = !in
			i++
		case !in && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			b = append(b, v[start:i]...)
			i++
			start = i
		case c == '<' || c == '>' || c == '&':
			b = append(b, v[start:i]...)
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			i++
			start = i
		case c == 0xE2 && i+2 < len(v) && v[i+1] == 0x80 && v[i+2]&^1 == 0xA8:
			b = append(b, v[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[v[i+2]&0xF])
			i += 3
			start = i
		default:
			i++
		}
	}
	return append(b, v[start:]...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string the way encoding/json does with
// HTML escaping: control characters as \uXXXX (\b, \f, \n, \r, \t short), " and \
// backslashed, <, > and & as \u003c, \u003e, \u0026, U+2028/U+2029 escaped, and
// invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendUUID appends u in its canonical form (lower-case hex, hyphenated), as
// uuid.UUID.String gives it, without the string.
func appendUUID(b []byte, u *uuid.UUID) []byte {
	const hex = "0123456789abcdef"
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[c>>4], hex[c&0xf])
	}
	return b
}
