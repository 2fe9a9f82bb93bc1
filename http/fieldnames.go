package http

import (
	"bytes"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	json "github.com/goccy/go-json"

	"github.com/lms-platform/userservice"
)

// The JSON decoder, like encoding/json, matches object keys to struct fields
// regardless of case, so {"FirstName": …} would set firstName. CONTRACT.md wants
// camelCase names and unknown fields rejected: checkFieldNames rejects every key
// that is not a field name exactly, at every level of the body's type.

// fieldSet is what checkFieldNames knows of one struct type: its JSON names, and
// for each name the type to check the value against when it holds objects.
type fieldSet struct {
	names map[string]reflect.Type // nil type: the value is not checked further
	types map[string]reflect.Type // each name's Go type
}

var fieldSets sync.Map // reflect.Type → *fieldSet

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// checkFieldNames checks body, already decoded into a value of type t without
// error, for keys that name a field only up to case.
func checkFieldNames(body []byte, t reflect.Type) error {
	if bad, found := misnamedField(body, t, ""); found {
		if bad == "" { // the body's own key "" (the stream decoder refuses it first)
			bad = "body"
		}
		return userservice.ValidationError([]userservice.FieldError{{Field: bad, Message: "is not allowed"}})
	}
	return nil
}

// misnamedField returns the path of the first key of raw that is not exactly a
// field of t, and whether there is one (a key may be "").
func misnamedField(raw []byte, t reflect.Type, path string) (string, bool) {
	t = checkedType(t)
	switch {
	case t == nil:
		return "", false
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		bad, found := "", false
		scanArray(raw, func(i int, item []byte) bool { // false for null, or not an array: the decoder has judged it
			bad, found = misnamedField(item, t.Elem(), path+"["+strconv.Itoa(i)+"]")
			return found
		})
		return bad, found
	}
	fs := fieldsOf(t)
	bad, found := "", false
	member := func(key, value []byte) bool { // true once a misnamed key is found
		ft, ok := fs.names[string(key)]
		switch {
		case !ok:
			bad, found = joinPath(path, string(key)), true
		case ft != nil:
			bad, found = misnamedField(value, ft, joinPath(path, string(key)))
		}
		return found
	}
	if scanObject(raw, member) {
		return bad, found
	}
	// Not an object, or a key written with an escape: the decoder's way.
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return "", false
	}
	for k, v := range obj {
		if member([]byte(k), v) {
			break
		}
	}
	return bad, found
}

// scanObject calls fn with the key (its text between the quotes) and the value
// of each member of the JSON object raw holds, in order, until fn returns true,
// without decoding anything (issue 16: the map of raw members it replaces was
// most of what checking a body's names cost). It reports false, having called fn
// for none or some of the members, when raw is not an object or a key holds an
// escape: keys are compared as written, so those take the decoder's way. raw has
// passed the decoder and textProblem.
func scanObject(raw []byte, fn func(key, value []byte) bool) bool {
	s := textScanner{b: raw}
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	for first := true; ; first = false {
		s.ws()
		if first && s.i < len(s.b) && s.b[s.i] == '}' {
			return true
		}
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		key := s.str()
		if s.stop() || bytes.IndexByte(key, '\\') >= 0 {
			return false
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		start := s.i
		s.value(1)
		if s.stop() {
			return false
		}
		if fn(key, raw[start:s.i]) {
			return true
		}
		if next, closed := s.separator('}'); !next {
			return closed
		}
	}
}

// scanArray calls fn with the index and the value of each item of the JSON array
// raw holds, in order, until fn returns true, without decoding anything (the slice
// of raw items it replaces was 40% of checking a preference write's names). It
// reports false, having called fn for none or some of the items, when raw is not
// an array. raw has passed the decoder and textProblem.
func scanArray(raw []byte, fn func(i int, item []byte) bool) bool {
	s := textScanner{b: raw}
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '[' {
		return false
	}
	s.i++
	for n := 0; ; n++ {
		s.ws()
		if n == 0 && s.i < len(s.b) && s.b[s.i] == ']' {
			return true
		}
		start := s.i
		s.value(1)
		if s.stop() {
			return false
		}
		if fn(n, raw[start:s.i]) {
			return true
		}
		if next, closed := s.separator(']'); !next {
			return closed
		}
	}
}

// separator moves past the comma after a member or an item and reports that
// another follows (next); otherwise it reports whether the container ends there,
// at close.
func (s *textScanner) separator(close byte) (next, closed bool) {
	s.ws()
	if s.i >= len(s.b) {
		return false, false
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		return true, false
	case close:
		return false, true
	}
	return false, false
}

// checkedType returns the struct, or slice of structs, type that t's JSON is
// checked against, or nil when its value is a leaf: a scalar, a map, any, or a
// type that decodes itself (json.RawMessage, Optional[T], Time).
func checkedType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		return t
	case reflect.Slice, reflect.Array:
		if checkedType(t.Elem()) != nil {
			return t
		}
	}
	return nil
}

func fieldsOf(t reflect.Type) *fieldSet {
	if fs, ok := fieldSets.Load(t); ok {
		return fs.(*fieldSet)
	}
	fs := &fieldSet{names: map[string]reflect.Type{}, types: map[string]reflect.Type{}}
	addFields(fs, t)
	actual, _ := fieldSets.LoadOrStore(t, fs)
	return actual.(*fieldSet)
}

// addFields adds t's JSON field names as encoding/json sees them: the tag's name,
// else the Go name; "-" skipped; untagged embedded structs flattened.
func addFields(fs *fieldSet, t reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			for et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				addFields(fs, et)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fs.names[name] = checkedType(f.Type)
		fs.types[name] = f.Type
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// wrongTypes returns, in key order, every value of raw that does not decode into
// its field of t, named by its path (`bio`, `preferences[3].value`,
// `userIds[1]`; "body" for the body itself). The decoder stops at the first
// such value and does not always say where it was (not inside a type that
// decodes itself, such as Optional[T]); this says where, for each of them.
func wrongTypes(raw []byte, t reflect.Type, path string) []userservice.FieldError {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	leaf := func() []userservice.FieldError {
		err := json.Unmarshal(raw, reflect.New(t).Interface())
		if err == nil {
			return nil
		}
		name := path
		if name == "" {
			name = "body"
		}
		return []userservice.FieldError{{Field: name, Message: typeComplaint(err)}}
	}
	selfDecoding := t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType)
	switch {
	case selfDecoding || (t.Kind() != reflect.Struct && t.Kind() != reflect.Slice) || t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return leaf()
	case t.Kind() == reflect.Slice:
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return leaf()
		}
		var out []userservice.FieldError
		for i, item := range items {
			out = append(out, wrongTypes(item, t.Elem(), path+"["+strconv.Itoa(i)+"]")...)
		}
		return out
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return leaf()
	}
	fs := fieldsOf(t)
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []userservice.FieldError
	for _, k := range keys {
		if ft, ok := fs.types[k]; ok {
			out = append(out, wrongTypes(obj[k], ft, joinPath(path, k))...)
		}
	}
	return out
}
