package http

import (
	"strconv"
	"unicode/utf8"
)

// Every string of a body ends up in a PostgreSQL text or jsonb column, which
// refuse what JSON lets through: bytes that are not UTF-8, the NUL character
// (\u0000) and, in jsonb, an escaped surrogate that is not half of a pair. Left
// to PostgreSQL, such a value fails the commit of a whole batch; so textProblem
// finds it in the body first, and the answer is a 400 that names its field.

// maxTextDepth bounds the nesting textProblem follows; deeper bodies are left to
// the decoder.
const maxTextDepth = 512

// textProblem returns the path (`bio`, `preferences[3].value`,
// `preferences[3].value.label`) and the complaint of the first string of body,
// key or value, that PostgreSQL could not store; ok is false when there is
// none. A body that is not well-formed JSON is left to the decoder: ok false.
func textProblem(body []byte) (path, message string, ok bool) {
	s := textScanner{b: body}
	s.value(0)
	if s.problem == "" {
		return "", "", false
	}
	if s.path == "" {
		s.path = "body"
	}
	return s.path, s.problem, true
}

type textScanner struct {
	b       []byte
	i       int
	segs    []pathSeg // where the scan is; spelled out only for a problem
	path    string    // where problem was found
	problem string    // "" while none was
	broken  bool      // the JSON is malformed: left to the decoder
}

// pathSeg is one step of a path: an object key (the raw text between its quotes)
// or, when key is nil, an array index.
type pathSeg struct {
	key   []byte
	index int
}

// where spells out the current path.
func (s *textScanner) where() string {
	var b []byte
	for _, g := range s.segs {
		if g.key == nil {
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(g.index), 10)
			b = append(b, ']')
			continue
		}
		if len(b) > 0 {
			b = append(b, '.')
		}
		b = append(b, g.key...)
	}
	return string(b)
}

func (s *textScanner) stop() bool { return s.problem != "" || s.broken }

func (s *textScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *textScanner) value(depth int) {
	s.ws()
	if s.i >= len(s.b) || depth > maxTextDepth {
		s.broken = true
		return
	}
	switch s.b[s.i] {
	case '{':
		s.object(depth)
	case '[':
		s.array(depth)
	case '"':
		s.str()
	default: // a number, true, false or null: no text in it
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', ']', '}', ' ', '\t', '\n', '\r':
				return
			}
			s.i++
		}
	}
}

func (s *textScanner) object(depth int) {
	s.i++ // {
	for first := true; ; first = false {
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == '}' && first {
			s.i++
			return
		}
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			s.broken = true
			return
		}
		key := s.str() // a bad key is reported at the object holding it
		if s.stop() {
			return
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			s.broken = true
			return
		}
		s.i++
		s.segs = append(s.segs, pathSeg{key: key})
		s.value(depth + 1)
		s.segs = s.segs[:len(s.segs)-1]
		if s.stop() {
			return
		}
		s.ws()
		if s.i >= len(s.b) {
			s.broken = true
			return
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return
		default:
			s.broken = true
			return
		}
	}
}

func (s *textScanner) array(depth int) {
	s.i++ // [
	for n := 0; ; n++ {
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ']' && n == 0 {
			s.i++
			return
		}
		s.segs = append(s.segs, pathSeg{index: n})
		s.value(depth + 1)
		s.segs = s.segs[:len(s.segs)-1]
		if s.stop() {
			return
		}
		s.ws()
		if s.i >= len(s.b) {
			s.broken = true
			return
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return
		default:
			s.broken = true
			return
		}
	}
}

// str scans the string at s.i, reporting a problem at the current path, and
// returns its raw text (escapes kept as written), for a path.
func (s *textScanner) str() []byte {
	s.i++ // "
	start := s.i
	fail := func(msg string) []byte {
		s.path, s.problem = s.where(), msg
		return nil
	}
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			text := s.b[start:s.i:s.i]
			s.i++
			return text
		case c == '\\':
			if s.i+1 >= len(s.b) {
				s.broken = true
				return nil
			}
			if s.b[s.i+1] != 'u' {
				s.i += 2
				continue
			}
			r, ok := s.hex4(s.i + 2)
			if !ok {
				s.broken = true
				return nil
			}
			s.i += 6
			switch {
			case r == 0:
				return fail("must not contain the NUL character (\\u0000)")
			case r >= 0xDC00 && r <= 0xDFFF:
				return fail("must be valid Unicode: \\u" + strconv.FormatInt(int64(r), 16) + " is half of a surrogate pair")
			case r >= 0xD800 && r <= 0xDBFF:
				lo, ok := rune(0), false
				if s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					lo, ok = s.hex4(s.i + 2)
				}
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return fail("must be valid Unicode: \\u" + strconv.FormatInt(int64(r), 16) + " is half of a surrogate pair")
				}
				s.i += 6
			}
		case c < 0x20: // the decoder refuses control characters itself
			s.broken = true
			return nil
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size <= 1 {
				return fail("must be valid UTF-8")
			}
			s.i += size
		}
	}
	s.broken = true
	return nil
}

// hex4 reads four hex digits at i.
func (s *textScanner) hex4(i int) (rune, bool) {
	if i+4 > len(s.b) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(s.b[i:i+4]), 16, 16)
	if err != nil {
		return 0, false
	}
	return rune(n), true
}
