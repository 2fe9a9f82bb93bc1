package http

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// masker hides the AUDIT_SENSITIVE_FIELDS (email, phone, password) in log lines.
// Bodies are never logged; what can carry such values is the text of an error
// (a driver's "Key (email)=(…) already exists"), which goes through text.
type masker struct {
	email, phone, password bool
	emailRE, phoneRE       *regexp.Regexp
}

func newMasker(fields []string) masker {
	m := masker{
		emailRE: regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`),
		phoneRE: regexp.MustCompile(`\+?[0-9][0-9 \-]{6,18}[0-9]`),
	}
	for _, f := range fields {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "email":
			m.email = true
		case "phone":
			m.phone = true
		case "password":
			m.password = true
		}
	}
	return m
}

// field masks the value of a named field when that field is sensitive.
func (m masker) field(name, value string) string {
	switch strings.ToLower(name) {
	case "email":
		if m.email {
			return maskEmail(value)
		}
	case "phone":
		if m.phone {
			return maskPhone(value)
		}
	case "password":
		if m.password {
			return "[REDACTED]"
		}
	}
	return value
}

// text masks every email address and phone number inside free text.
func (m masker) text(s string) string {
	if m.email {
		s = m.emailRE.ReplaceAllStringFunc(s, maskEmail)
	}
	if m.phone {
		s = m.phoneRE.ReplaceAllStringFunc(s, maskPhone)
	}
	return s
}

// maskEmail keeps the first character of the local part and the domain:
// john@example.com → j***@example.com.
func maskEmail(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return "***"
	}
	_, n := utf8.DecodeRuneInString(s)
	return s[:n] + "***" + s[at:]
}

// maskPhone keeps the first two and the last two characters:
// +14155550190 → +1********90.
func maskPhone(s string) string {
	if len(s) <= 4 {
		return "****"
	}
	return s[:2] + strings.Repeat("*", len(s)-4) + s[len(s)-2:]
}
