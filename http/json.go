package http

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"

	"github.com/lms-platform/userservice"
)

// successBody is the envelope of every 2xx answer of /api/v1 (CONTRACT.md, HTTP).
type successBody struct {
	Success    bool                    `json:"success"`
	Data       any                     `json:"data"`
	Message    string                  `json:"message,omitempty"`
	Pagination *userservice.Pagination `json:"pagination,omitempty"`
	Timestamp  userservice.Time        `json:"timestamp"`
}

// errorBody is the envelope of every error answer. RetryAfter is set only on 429.
type errorBody struct {
	Success    bool                     `json:"success"`
	Error      string                   `json:"error"`
	Code       string                   `json:"code"`
	Details    []userservice.FieldError `json:"details,omitempty"`
	RetryAfter *int64                   `json:"retryAfter,omitempty"`
	Timestamp  userservice.Time         `json:"timestamp"`
}

// renderSuccess encodes the success envelope around data.
func renderSuccess(data any, message string, page *userservice.Pagination) ([]byte, error) {
	if page == nil {
		if u := dataOf[userservice.User](data); u != nil {
			return appendUserEnvelope(make([]byte, 0, 1024), u, message, userservice.Now()), nil
		}
		if e := dataOf[userservice.Enrollment](data); e != nil {
			return appendEnrollmentEnvelope(make([]byte, 0, 512), e, message, userservice.Now()), nil
		}
		if prefs, ok := data.([]userservice.Preference); ok {
			return appendPreferencesEnvelope(make([]byte, 0, 256+256*len(prefs)), prefs, message, userservice.Now()), nil
		}
	}
	return json.Marshal(successBody{Success: true, Data: data, Message: message, Pagination: page, Timestamp: userservice.Now()})
}

// renderError encodes the error envelope. It cannot fail: every field is a plain
// string or a FieldError.
func renderError(code, message string, details []userservice.FieldError, retryAfter *int64) []byte {
	b, err := json.Marshal(errorBody{Error: message, Code: code, Details: details, RetryAfter: retryAfter, Timestamp: userservice.Now()})
	if err != nil { // unreachable for these field types; keep the answer well-formed anyway
		return []byte(`{"success":false,"error":"Internal server error","code":"INTERNAL_ERROR"}`)
	}
	return b
}

// isJSONMediaType reports whether a Content-Type names JSON
// (application/json or any application/*+json, parameters ignored).
func isJSONMediaType(ct []byte) bool {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	mt := strings.ToLower(string(bytes.TrimSpace(ct)))
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// checkBody applies the body rules shared by every route that takes one: size
// (413), media type (415) and presence (400).
func checkBody(body, contentType []byte, maxBytes int) error {
	if len(body) > maxBytes {
		return errTooLarge
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errBodyRequired
	}
	if !isJSONMediaType(contentType) {
		return errMediaType
	}
	return nil
}

// decodeJSON decodes body into v: exactly one JSON value, no unknown fields, no
// trailing data, and only text that PostgreSQL can store. Every failure is a 400
// *userservice.Error; one about a value names the value's field.
func decodeJSON(body []byte, v any) (err error) {
	defer func() {
		// The decoder has had panics on malformed input in the past; bad input must
		// never become a 500.
		if p := recover(); p != nil {
			err = &userservice.Error{Code: userservice.ECodeInvalidJSON, Message: "Request body is not valid JSON"}
		}
	}()
	if path, msg, bad := textProblem(body); bad {
		return userservice.ValidationError([]userservice.FieldError{{Field: path, Message: msg}})
	}
	t := reflect.TypeOf(v)
	// A body decodeOneCall takes is one the stream decoder takes too
	// (FuzzDecodeFastPath checks both ways on every request type); it skips the
	// stream's reader and buffer. Any other body goes the stream's way, from a
	// zero value, which says what is wrong with it.
	if decodeOneCall(body, v, t) == nil {
		return nil
	}
	reflect.ValueOf(v).Elem().SetZero()
	return decodeStream(body, v, t)
}

// decodeOneCall decodes body into v in one call of the decoder and checks that
// every key is a field name; its errors say only that the body needs a closer look.
func decodeOneCall(body []byte, v any, t reflect.Type) error {
	if err := json.Unmarshal(body, v); err != nil {
		return err
	}
	return checkFieldNames(body, t)
}

// decodeStream is decodeJSON after the text check, with the stream decoder: no
// unknown fields, exactly one value, every key a field name.
func decodeStream(body []byte, v any, t reflect.Type) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return decodeError(err, body, t)
	}
	var rest json.RawMessage
	if err := d.Decode(&rest); err != io.EOF {
		return &userservice.Error{Code: userservice.ECodeInvalidJSON, Message: "Request body must hold exactly one JSON value"}
	}
	return checkFieldNames(body, t)
}

// decodeError explains a decoder error on body, decoded into a t, as a 400
// naming every value of the wrong type by its path.
func decodeError(err error, body []byte, t reflect.Type) error {
	var goccyType *json.UnmarshalTypeError
	var stdType *stdjson.UnmarshalTypeError
	if errors.As(err, &goccyType) || errors.As(err, &stdType) {
		if details := wrongTypes(body, t, ""); len(details) > 0 {
			return userservice.ValidationError(details)
		}
		// Not found again (unreachable unless the decoders disagree): the
		// decoder's own words.
		field, typ := "", reflect.Type(nil)
		if goccyType != nil {
			field, typ = goccyType.Field, goccyType.Type
		} else {
			field, typ = stdType.Field, stdType.Type
		}
		return userservice.ValidationError([]userservice.FieldError{{Field: fieldPath(field), Message: "must be " + describeType(typ)}})
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return userservice.ValidationError([]userservice.FieldError{{Field: strings.Trim(name, `"`), Message: "is not allowed"}})
	}
	return &userservice.Error{Code: userservice.ECodeInvalidJSON, Message: "Request body is not valid JSON"}
}

// typeComplaint says what a value that failed to decode must be.
func typeComplaint(err error) string {
	var goccyType *json.UnmarshalTypeError
	var stdType *stdjson.UnmarshalTypeError
	switch {
	case errors.As(err, &goccyType):
		return "must be " + describeType(goccyType.Type)
	case errors.As(err, &stdType):
		return "must be " + describeType(stdType.Type)
	}
	return "is not valid"
}

// fieldPath turns a decoder's field ("preferences.3.key") into the contract's
// path ("preferences[3].key"); "" is the body.
func fieldPath(f string) string {
	if f == "" {
		return "body"
	}
	parts := strings.Split(f, ".")
	var b strings.Builder
	for i, p := range parts {
		if _, err := strconv.Atoi(p); err == nil && i > 0 {
			b.WriteString("[" + p + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func describeType(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "of another type"
}
