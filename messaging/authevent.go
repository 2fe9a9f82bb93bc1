package messaging

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-json"

	"github.com/lms-platform/userservice"
)

// Limits on consumed strings, so that what is accepted also fits the columns
// and never carries a NUL, which PostgreSQL text refuses.
const (
	maxMessageIDLen = 255
	maxSessionIDLen = 255
	maxIPAddressLen = 255
	maxUserAgentLen = 1024 // longer user agents are truncated, not refused
)

// authEvent is a consumed Auth Service event, parsed and validated: every field
// is ready to become a command.
type authEvent struct {
	ID            string // message id, for exactly-once
	Type          string // one of the userservice.AuthUser* types
	CorrelationID string // "" when the message carries none
	Timestamp     *userservice.Time
	AuthID        string // canonical UUID

	Register  userservice.CreateUser // registered: validated and normalized
	SessionID string                 // login, logout; "" when absent
	IPAddress *string                // login
	UserAgent *string                // login
	At        *userservice.Time      // login loginAt, password_changed changedAt, email_verified verifiedAt
	// EmailVerified is registered's emailVerified (false when absent).
	EmailVerified bool
}

// invalidError says why a message was refused; it goes into the dead-letter
// headers.
type invalidError struct{ reason string }

func (e *invalidError) Error() string { return "invalid event: " + e.reason }

func invalid(format string, args ...any) error {
	return &invalidError{reason: fmt.Sprintf(format, args...)}
}

// envelope is the shape of a consumed message body (CONTRACT.md, Events); source
// and metadata are not needed and unknown fields are ignored.
type envelope struct {
	ID            *string           `json:"id"`
	Type          *string           `json:"type"`
	Data          json.RawMessage   `json:"data"`
	Timestamp     *userservice.Time `json:"timestamp"`
	CorrelationID *string           `json:"correlationId"`
}

type registeredData struct {
	AuthID    *string `json:"authId"`
	Email     *string `json:"email"`
	FirstName *string `json:"firstName"`
	LastName  *string `json:"lastName"`
	Username  *string `json:"username"`
	Role      *string `json:"role"`
	// EmailVerified is sent by Auth Services that verify before registering
	// (or register already-verified accounts, e.g. through SSO).
	EmailVerified *bool `json:"emailVerified"`
}

type emailVerifiedData struct {
	AuthID     *string           `json:"authId"`
	VerifiedAt *userservice.Time `json:"verifiedAt"`
}

type loginData struct {
	AuthID    *string           `json:"authId"`
	SessionID *string           `json:"sessionId"`
	IPAddress *string           `json:"ipAddress"`
	UserAgent *string           `json:"userAgent"`
	LoginAt   *userservice.Time `json:"loginAt"`
}

type logoutData struct {
	AuthID    *string `json:"authId"`
	SessionID *string `json:"sessionId"`
}

type passwordData struct {
	AuthID    *string           `json:"authId"`
	ChangedAt *userservice.Time `json:"changedAt"`
}

// parseAuthEvent parses and validates a consumed message. routingKey,
// messageID and correlationID are the AMQP ones, used when the envelope lacks
// type, id or correlationId. The error is an *invalidError.
func parseAuthEvent(body []byte, routingKey, messageID, correlationID string) (*authEvent, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, invalid("body is not a JSON envelope: %v", err)
	}
	ev := &authEvent{Timestamp: env.Timestamp}

	ev.ID = messageID
	if env.ID != nil && *env.ID != "" {
		ev.ID = *env.ID
	}
	if ev.ID == "" {
		return nil, invalid("no message id (envelope id or AMQP message_id)")
	}
	if !cleanText(ev.ID, maxMessageIDLen) {
		return nil, invalid("message id must be valid UTF-8 without NUL, at most %d bytes", maxMessageIDLen)
	}

	ev.Type = routingKey
	if env.Type != nil && *env.Type != "" {
		ev.Type = *env.Type
	}

	if env.CorrelationID != nil && *env.CorrelationID != "" {
		correlationID = *env.CorrelationID
	}
	if cleanText(correlationID, maxMessageIDLen) {
		ev.CorrelationID = correlationID // otherwise dropped: the consumer makes a new one
	}

	data := bytes.TrimSpace(env.Data)
	if len(data) == 0 || data[0] != '{' {
		return nil, invalid("data must be a JSON object")
	}
	var err error
	switch ev.Type {
	case userservice.AuthUserRegistered:
		err = ev.parseRegistered(data)
	case userservice.AuthUserLogin:
		err = ev.parseLogin(data)
	case userservice.AuthUserLogout:
		err = ev.parseLogout(data)
	case userservice.AuthUserPasswordChanged:
		err = ev.parsePasswordChanged(data)
	case userservice.AuthUserEmailVerified:
		err = ev.parseEmailVerified(data)
	default:
		return nil, invalid("unsupported event type %.100q", ev.Type)
	}
	if err != nil {
		return nil, err
	}
	return ev, nil
}

func decodeData(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return invalid("data does not match the event's shape: %v", err)
	}
	return nil
}

func (ev *authEvent) setAuthID(s *string) error {
	if s == nil {
		return invalid("data.authId is required")
	}
	id, ok := userservice.ParseID(*s)
	if !ok {
		return invalid("data.authId must be a UUID")
	}
	ev.AuthID = id
	return nil
}

func (ev *authEvent) parseRegistered(data []byte) error {
	var d registeredData
	if err := decodeData(data, &d); err != nil {
		return err
	}
	if d.AuthID == nil || d.Email == nil || d.FirstName == nil || d.LastName == nil {
		return invalid("data.authId, data.email, data.firstName and data.lastName are required")
	}
	in := userservice.CreateUser{
		AuthID: *d.AuthID, Email: *d.Email, FirstName: *d.FirstName, LastName: *d.LastName,
		Username: nonEmpty(d.Username),
	}
	if r := nonEmpty(d.Role); r != nil {
		role := userservice.Role(*r)
		in.Role = &role
	}
	for _, s := range []*string{&in.AuthID, &in.Email, &in.FirstName, &in.LastName, in.Username} {
		if s != nil && !cleanText(*s, len(*s)) {
			return invalid("data must be valid UTF-8 without NUL characters")
		}
	}
	if err := in.Validate(); err != nil {
		return invalid("%s", describe(err))
	}
	ev.AuthID = in.AuthID
	ev.Register = in
	ev.EmailVerified = d.EmailVerified != nil && *d.EmailVerified
	return nil
}

func (ev *authEvent) parseEmailVerified(data []byte) error {
	var d emailVerifiedData
	if err := decodeData(data, &d); err != nil {
		return err
	}
	if err := ev.setAuthID(d.AuthID); err != nil {
		return err
	}
	ev.At = d.VerifiedAt
	return nil
}

func (ev *authEvent) parseLogin(data []byte) error {
	var d loginData
	if err := decodeData(data, &d); err != nil {
		return err
	}
	if err := ev.setAuthID(d.AuthID); err != nil {
		return err
	}
	if err := ev.setSessionID(d.SessionID); err != nil {
		return err
	}
	if ip := nonEmpty(d.IPAddress); ip != nil {
		if !cleanText(*ip, maxIPAddressLen) {
			return invalid("data.ipAddress must be valid UTF-8 without NUL, at most %d bytes", maxIPAddressLen)
		}
		ev.IPAddress = ip
	}
	if ua := nonEmpty(d.UserAgent); ua != nil {
		s := truncate(*ua, maxUserAgentLen)
		if !cleanText(s, maxUserAgentLen) {
			return invalid("data.userAgent must be valid UTF-8 without NUL")
		}
		ev.UserAgent = &s
	}
	ev.At = d.LoginAt
	return nil
}

func (ev *authEvent) parseLogout(data []byte) error {
	var d logoutData
	if err := decodeData(data, &d); err != nil {
		return err
	}
	if err := ev.setAuthID(d.AuthID); err != nil {
		return err
	}
	return ev.setSessionID(d.SessionID)
}

func (ev *authEvent) parsePasswordChanged(data []byte) error {
	var d passwordData
	if err := decodeData(data, &d); err != nil {
		return err
	}
	if err := ev.setAuthID(d.AuthID); err != nil {
		return err
	}
	ev.At = d.ChangedAt
	return nil
}

func (ev *authEvent) setSessionID(s *string) error {
	if s == nil || *s == "" {
		return nil
	}
	if !cleanText(*s, maxSessionIDLen) {
		return invalid("data.sessionId must be valid UTF-8 without NUL, at most %d bytes", maxSessionIDLen)
	}
	ev.SessionID = *s
	return nil
}

// cleanText reports whether s is valid UTF-8 without NUL and at most max bytes.
func cleanText(s string, max int) bool {
	return len(s) <= max && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// nonEmpty treats "" like an absent optional field.
func nonEmpty(s *string) *string {
	if s == nil || *s == "" {
		return nil
	}
	return s
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// describe renders a validation error with its field details.
func describe(err error) string {
	var e *userservice.Error
	if !errors.As(err, &e) || len(e.Details) == 0 {
		return err.Error()
	}
	parts := make([]string, len(e.Details))
	for i, d := range e.Details {
		parts[i] = "data." + d.Field + " " + d.Message
	}
	return strings.Join(parts, "; ")
}
