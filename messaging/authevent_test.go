package messaging

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/goccy/go-json"

	"github.com/lms-platform/userservice"
)

const testAuthID = "2f1f7c9e-8d7a-4c8e-9a51-1f6c1f0d2b11"

func TestParseAuthEvent(t *testing.T) {
	long := strings.Repeat("x", 2000)
	for _, tc := range []struct {
		name       string
		body       string
		routingKey string
		messageID  string
		check      func(t *testing.T, ev *authEvent)
		invalid    string // a part of the error, when the message must be refused
	}{
		{
			name: "registered with every field",
			body: `{"id":"m1","type":"auth.user.registered","source":"auth-service","timestamp":"2024-01-15T10:30:00.000Z",
				"correlationId":"c1","metadata":{},"data":{"authId":"2F1F7C9E-8D7A-4C8E-9A51-1F6C1F0D2B11",
				"email":" Ada@Example.COM ","firstName":"Ada","lastName":"Lovelace","username":"ada_l","role":"admin"}}`,
			check: func(t *testing.T, ev *authEvent) {
				r := ev.Register
				if ev.ID != "m1" || ev.CorrelationID != "c1" || ev.AuthID != testAuthID || r.AuthID != testAuthID ||
					r.Email != "ada@example.com" || r.Username == nil || *r.Username != "ada_l" ||
					r.Role == nil || *r.Role != userservice.RoleAdmin || ev.Timestamp == nil {
					t.Errorf("parsed %+v", ev)
				}
			},
		},
		{
			name: "registered with empty optional fields",
			body: `{"id":"m1","type":"auth.user.registered","data":{"authId":"` + testAuthID + `","email":"a@b.co",
				"firstName":"A","lastName":"B","username":"","role":null}}`,
			check: func(t *testing.T, ev *authEvent) {
				if ev.Register.Username != nil || ev.Register.Role != nil {
					t.Errorf("empty optional fields kept: %+v", ev.Register)
				}
			},
		},
		{
			name: "registered with emailVerified",
			body: `{"id":"m1","type":"auth.user.registered","data":{"authId":"` + testAuthID + `","email":"a@b.co",
				"firstName":"A","lastName":"B","emailVerified":true}}`,
			check: func(t *testing.T, ev *authEvent) {
				if !ev.EmailVerified {
					t.Errorf("emailVerified not kept: %+v", ev)
				}
			},
		},
		{name: "registered with a string emailVerified", invalid: "shape",
			body: `{"id":"m","type":"auth.user.registered","data":{"authId":"` + testAuthID + `","email":"a@b.co","firstName":"A","lastName":"B","emailVerified":"yes"}}`},
		{
			name: "email verified",
			body: `{"id":"m7","type":"auth.user.email_verified","data":{"authId":"` + testAuthID + `","verifiedAt":"2024-01-15T10:30:00.000Z"}}`,
			check: func(t *testing.T, ev *authEvent) {
				if ev.Type != userservice.AuthUserEmailVerified || ev.AuthID != testAuthID || ev.At == nil {
					t.Errorf("parsed %+v", ev)
				}
			},
		},
		{name: "email verified without authId", invalid: "authId",
			body: `{"id":"m","type":"auth.user.email_verified","data":{}}`},
		{name: "registered without firstName", invalid: "firstName",
			body: `{"id":"m","type":"auth.user.registered","data":{"authId":"` + testAuthID + `","email":"a@b.co","lastName":"B"}}`},
		{name: "registered with a blank lastName", invalid: "lastName",
			body: `{"id":"m","type":"auth.user.registered","data":{"authId":"` + testAuthID + `","email":"a@b.co","firstName":"A","lastName":"  "}}`},
		{name: "registered with a bad email", invalid: "email",
			body: `{"id":"m","type":"auth.user.registered","data":{"authId":"` + testAuthID + `","email":"a@","firstName":"A","lastName":"B"}}`},
		{name: "registered with a bad role", invalid: "role",
			body: `{"id":"m","type":"auth.user.registered","data":{"authId":"` + testAuthID + `","email":"a@b.co","firstName":"A","lastName":"B","role":"root"}}`},
		{name: "registered with a NUL in a name", invalid: "NUL",
			body: `{"id":"m","type":"auth.user.registered","data":{"authId":"` + testAuthID + `","email":"a@b.co","firstName":"A\u0000","lastName":"B"}}`},
		{
			name:       "login with the type and id from AMQP",
			body:       `{"data":{"authId":"` + testAuthID + `","ipAddress":"10.0.0.1","userAgent":"` + long + `","loginAt":"2024-01-15T11:30:00.123456+01:00","extra":[1,2]}}`,
			routingKey: userservice.AuthUserLogin, messageID: "amqp-id",
			check: func(t *testing.T, ev *authEvent) {
				if ev.ID != "amqp-id" || ev.Type != userservice.AuthUserLogin || ev.SessionID != "" ||
					ev.IPAddress == nil || ev.UserAgent == nil || len(*ev.UserAgent) != maxUserAgentLen ||
					ev.At == nil || ev.At.String() != "2024-01-15T10:30:00.123Z" {
					t.Errorf("parsed %+v", ev)
				}
			},
		},
		{name: "login with a numeric sessionId", invalid: "shape",
			body: `{"id":"m","type":"auth.user.login","data":{"authId":"` + testAuthID + `","sessionId":7}}`},
		{name: "login with a bad loginAt", invalid: "shape",
			body: `{"id":"m","type":"auth.user.login","data":{"authId":"` + testAuthID + `","loginAt":"yesterday"}}`},
		{name: "login with a long sessionId", invalid: "sessionId",
			body: `{"id":"m","type":"auth.user.login","data":{"authId":"` + testAuthID + `","sessionId":"` + long + `"}}`},
		{
			name: "logout with a sessionId",
			body: `{"id":"m","type":"auth.user.logout","data":{"authId":"` + testAuthID + `","sessionId":"s1"}}`,
			check: func(t *testing.T, ev *authEvent) {
				if ev.SessionID != "s1" || ev.AuthID != testAuthID {
					t.Errorf("parsed %+v", ev)
				}
			},
		},
		{
			name: "password_changed",
			body: `{"id":"m","type":"auth.user.password_changed","data":{"authId":"` + testAuthID + `","changedAt":"2024-01-15T10:30:00Z"}}`,
			check: func(t *testing.T, ev *authEvent) {
				if ev.At == nil || ev.Type != userservice.AuthUserPasswordChanged {
					t.Errorf("parsed %+v", ev)
				}
			},
		},
		{
			name: "a bad correlationId is dropped, not refused",
			body: `{"id":"m","type":"auth.user.logout","correlationId":"a\u0000b","data":{"authId":"` + testAuthID + `"}}`,
			check: func(t *testing.T, ev *authEvent) {
				if ev.CorrelationID != "" {
					t.Errorf("correlation id %q kept", ev.CorrelationID)
				}
			},
		},
		{name: "not JSON", body: `{"id":`, invalid: "JSON"},
		{name: "JSON null", body: `null`, routingKey: userservice.AuthUserLogin, messageID: "m", invalid: "data"},
		{name: "an array", body: `[]`, invalid: "JSON"},
		{name: "no id anywhere", body: `{"type":"auth.user.logout","data":{"authId":"` + testAuthID + `"}}`, invalid: "id"},
		{name: "an unbound type", body: `{"id":"m","type":"auth.user.deleted","data":{"authId":"` + testAuthID + `"}}`, invalid: "type"},
		{name: "data null", body: `{"id":"m","type":"auth.user.logout","data":null}`, invalid: "data"},
		{name: "no authId", body: `{"id":"m","type":"auth.user.logout","data":{}}`, invalid: "authId"},
		{name: "a bad envelope timestamp", body: `{"id":"m","type":"auth.user.logout","timestamp":5,"data":{"authId":"` + testAuthID + `"}}`, invalid: "JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := parseAuthEvent([]byte(tc.body), tc.routingKey, tc.messageID, "")
			if tc.invalid != "" {
				var ie *invalidError
				if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.invalid) {
					t.Fatalf("got %+v, %v; want an invalid error mentioning %q", ev, err, tc.invalid)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, ev)
		})
	}
}

// FuzzParseAuthEvent feeds random bodies and routing keys to the parser: it
// must never panic, what it accepts must satisfy the validation rules, and an
// accepted event written back as an envelope must parse to the same event.
func FuzzParseAuthEvent(f *testing.F) {
	f.Add([]byte(`{"id":"m","type":"auth.user.logout","data":{"authId":"`+testAuthID+`"}}`), "")
	f.Add([]byte(`{"data":{"authId":"`+testAuthID+`","sessionId":"s"}}`), userservice.AuthUserLogin)
	f.Fuzz(func(t *testing.T, body []byte, routingKey string) {
		ev, err := parseAuthEvent(body, routingKey, "amqp-id", "amqp-corr")
		if err != nil {
			var ie *invalidError
			if !errors.As(err, &ie) {
				t.Fatalf("error %v is not an *invalidError", err)
			}
			return
		}
		checkAccepted(t, ev)
		again, err := parseAuthEvent(envelopeOf(t, ev), "", "", "")
		if err != nil {
			t.Fatalf("an accepted event does not parse again: %v", err)
		}
		if a, b := describeEvent(t, ev), describeEvent(t, again); a != b {
			t.Fatalf("round trip changed the event:\n%s\n%s", a, b)
		}
	})
}

func checkAccepted(t *testing.T, ev *authEvent) {
	t.Helper()
	clean := func(what, s string, max int) {
		if !cleanText(s, max) {
			t.Fatalf("%s %q is not clean text of at most %d bytes", what, s, max)
		}
	}
	if ev.ID == "" {
		t.Fatal("accepted without an id")
	}
	clean("id", ev.ID, maxMessageIDLen)
	clean("correlationId", ev.CorrelationID, maxMessageIDLen)
	if !consumedType(ev.Type) {
		t.Fatalf("accepted type %q", ev.Type)
	}
	if id, ok := userservice.ParseID(ev.AuthID); !ok || id != ev.AuthID {
		t.Fatalf("authId %q is not a canonical UUID", ev.AuthID)
	}
	clean("sessionId", ev.SessionID, maxSessionIDLen)
	if ev.IPAddress != nil {
		clean("ipAddress", *ev.IPAddress, maxIPAddressLen)
	}
	if ev.UserAgent != nil {
		clean("userAgent", *ev.UserAgent, maxUserAgentLen)
	}
	if ev.Type == userservice.AuthUserRegistered {
		in := ev.Register
		if err := in.Validate(); err != nil {
			t.Fatalf("accepted a registration that fails validation: %v", err)
		}
		if in.Email != ev.Register.Email || in.AuthID != ev.Register.AuthID {
			t.Fatalf("accepted a registration that is not normalized: %+v", ev.Register)
		}
		for _, s := range []string{in.Email, in.FirstName, in.LastName} {
			if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
				t.Fatalf("accepted %q", s)
			}
		}
	}
}

// envelopeOf writes an accepted event back as an Auth Service envelope.
func envelopeOf(t *testing.T, ev *authEvent) []byte {
	t.Helper()
	data := map[string]any{"authId": ev.AuthID}
	switch ev.Type {
	case userservice.AuthUserRegistered:
		r := ev.Register
		data["email"], data["firstName"], data["lastName"], data["username"], data["role"] = r.Email, r.FirstName, r.LastName, r.Username, r.Role
		data["emailVerified"] = ev.EmailVerified
	case userservice.AuthUserLogin:
		data["sessionId"], data["ipAddress"], data["userAgent"], data["loginAt"] = ev.SessionID, ev.IPAddress, ev.UserAgent, ev.At
	case userservice.AuthUserLogout:
		data["sessionId"] = ev.SessionID
	case userservice.AuthUserPasswordChanged:
		data["changedAt"] = ev.At
	case userservice.AuthUserEmailVerified:
		data["verifiedAt"] = ev.At
	}
	b, err := json.Marshal(map[string]any{
		"id": ev.ID, "type": ev.Type, "correlationId": ev.CorrelationID, "timestamp": ev.Timestamp, "data": data,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func describeEvent(t *testing.T, ev *authEvent) string {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
