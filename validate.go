package userservice

import (
	"encoding/json"
	"net/mail"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/text/language"
)

// Optional is a JSON field that distinguishes "left out" (Set false), "null"
// (Set and Null) and a value.
type Optional[T any] struct {
	Set   bool
	Null  bool
	Value T
}

// UnmarshalJSON implements json.Unmarshaler. It runs only when the field is present.
func (o *Optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.Value)
}

// MarshalJSON implements json.Marshaler (null when unset or null).
func (o Optional[T]) MarshalJSON() ([]byte, error) {
	if !o.Set || o.Null {
		return []byte("null"), nil
	}
	return json.Marshal(o.Value)
}

var (
	usernameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,50}$`)
	// E.164: a plus, a country code that does not start with 0, at most 15 digits.
	phoneRE   = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
	prefKeyRE = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
)

// validator collects field errors in the order checks run.
type validator struct{ details []FieldError }

func (v *validator) add(field, msg string) {
	v.details = append(v.details, FieldError{Field: field, Message: msg})
}

func (v *validator) ok() bool { return len(v.details) == 0 }

func (v *validator) err() error {
	if v.ok() {
		return nil
	}
	return ValidationError(v.details)
}

func (v *validator) name(field, s string, max int) {
	n := utf8.RuneCountInString(strings.TrimSpace(s))
	switch {
	case !utf8.ValidString(s):
		v.add(field, "must be valid UTF-8")
	case hasNUL(s):
		v.add(field, "must not contain NUL characters")
	case n < 1:
		v.add(field, "must not be empty")
	case utf8.RuneCountInString(s) > max:
		v.add(field, "must be at most "+strconv.Itoa(max)+" characters")
	}
}

func (v *validator) maxLen(field, s string, max int) {
	if !utf8.ValidString(s) {
		v.add(field, "must be valid UTF-8")
	} else if hasNUL(s) {
		v.add(field, "must not contain NUL characters")
	} else if utf8.RuneCountInString(s) > max {
		v.add(field, "must be at most "+strconv.Itoa(max)+" characters")
	}
}

func (v *validator) username(field, s string) {
	if !usernameRE.MatchString(s) {
		v.add(field, "must be 3-50 characters of letters, digits, '_', '.' or '-'")
	}
}

func (v *validator) email(field, s string) {
	if !ValidEmail(s) {
		v.add(field, "must be a valid email address of at most 255 characters")
	}
}

func (v *validator) phone(field, s string) {
	if !phoneRE.MatchString(s) {
		v.add(field, "must be an E.164 phone number such as +14155550123")
	}
}

func (v *validator) url(field, s string) {
	if !ValidAvatarURL(s) {
		v.add(field, "must be an absolute http(s) URL of at most 2048 characters")
	}
}

func (v *validator) timezone(field, s string) {
	if !ValidTimezone(s) {
		v.add(field, "must be an IANA time zone such as Europe/Paris")
	}
}

func (v *validator) language(field, s string) {
	if !ValidLanguage(s) {
		v.add(field, "must be a BCP 47 language tag such as en or pt-BR")
	}
}

// ValidEmail reports whether s is a plain address (no display name) that net/mail
// parses, with a dotted domain, at most 255 bytes.
func ValidEmail(s string) bool {
	if len(s) == 0 || len(s) > 255 || strings.ContainsAny(s, " \t\r\n<>\x00") {
		return false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	domain := s[at+1:]
	return at > 0 && strings.Contains(domain, ".") && !strings.HasPrefix(domain, ".") && !strings.HasSuffix(domain, ".")
}

// ValidAvatarURL reports whether s is an absolute http or https URL with a host, at
// most 2048 bytes.
func ValidAvatarURL(s string) bool {
	if len(s) == 0 || len(s) > 2048 || hasNUL(s) {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil
}

// zoneCache holds the zones found valid: a fixed set of a few hundred names.
// Invalid ones are not kept, since clients choose them and they are unbounded
// (issue 11); each costs a LoadLocation lookup in the embedded database.
var zoneCache sync.Map // string -> struct{}

// ValidTimezone reports whether s names a zone in the IANA database. The binary
// embeds time/tzdata, so the answer does not depend on the host. "Local" and ""
// are refused: they are not IANA names.
func ValidTimezone(s string) bool {
	if s == "" || s == "Local" || len(s) > 64 {
		return false
	}
	if _, found := zoneCache.Load(s); found {
		return true
	}
	if _, err := time.LoadLocation(s); err != nil {
		return false
	}
	zoneCache.Store(s, struct{}{})
	return true
}

// ValidLanguage reports whether s is a well-formed BCP 47 tag
// (golang.org/x/text/language does the parsing). "en_US" is refused: the parser
// accepts the POSIX underscore, BCP 47 does not.
func ValidLanguage(s string) bool {
	if s == "" || len(s) > 35 || strings.ContainsRune(s, '_') {
		return false
	}
	_, err := language.Parse(s)
	return err == nil
}

// hasNUL reports whether s contains a NUL character, which PostgreSQL text cannot
// store: such input is refused as invalid rather than failing at the database.
func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

// ValidPreferenceKey reports whether k matches ^[a-z0-9_]{1,64}$.
func ValidPreferenceKey(k string) bool { return prefKeyRE.MatchString(k) }
