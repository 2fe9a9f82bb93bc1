package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// parse verifies token the way the service must: HS256 only, exp required.
func parse(t *testing.T, token, secret string) *Claims {
	t.Helper()
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	return &c
}

func TestRunSignsTokenWithGivenClaims(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-test"
	sub, authID := uuid.NewString(), uuid.NewString()
	var out, errOut bytes.Buffer
	args := []string{"-role", "instructor", "-sub", sub, "-auth-id", authID, "-email", "i@example.org", "-ttl", "1h"}
	if err := run(args, env(map[string]string{"JWT_SECRET": secret}), &out, &errOut); err != nil {
		t.Fatalf("run: %v (stderr %q)", err, errOut.String())
	}
	token := strings.TrimSpace(out.String())
	if strings.Count(out.String(), "\n") != 1 || strings.Count(token, ".") != 2 {
		t.Fatalf("stdout should be exactly one JWT, got %q", out.String())
	}
	c := parse(t, token, secret)
	if c.Subject != sub || c.AuthID != authID || c.Email != "i@example.org" || c.Role != "instructor" {
		t.Errorf("claims = %+v", c)
	}
	if got := c.ExpiresAt.Sub(c.IssuedAt.Time); got != time.Hour {
		t.Errorf("exp - iat = %v, want 1h", got)
	}
	if errOut.Len() != 0 {
		t.Errorf("unexpected stderr %q", errOut.String())
	}
}

func TestRunDefaults(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-role", "admin"}, env(nil), &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	c := parse(t, strings.TrimSpace(out.String()), defaultSecret)
	if _, err := uuid.Parse(c.Subject); err != nil {
		t.Errorf("sub %q is not a UUID", c.Subject)
	}
	if _, err := uuid.Parse(c.AuthID); err != nil {
		t.Errorf("authId %q is not a UUID", c.AuthID)
	}
	if c.Subject == c.AuthID {
		t.Error("sub and authId should be independent UUIDs")
	}
	if c.Email != "admin@example.com" || c.Role != "admin" {
		t.Errorf("email, role = %q, %q", c.Email, c.Role)
	}
	if got := c.ExpiresAt.Sub(c.IssuedAt.Time); got != 24*time.Hour {
		t.Errorf("exp - iat = %v, want 24h", got)
	}
}

func TestRunRefuses(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"short secret", []string{"-role", "admin"}, map[string]string{"JWT_SECRET": "too-short"}, "at least 32"},
		{"no role", nil, nil, "-role is required"},
		{"bad sub", []string{"-role", "admin", "-sub", "42"}, nil, "not a UUID"},
		{"bad auth id", []string{"-role", "admin", "-auth-id", "x"}, nil, "not a UUID"},
		{"zero ttl", []string{"-role", "admin", "-ttl", "0s"}, nil, "zero"},
		{"stray argument", []string{"-role", "admin", "extra"}, nil, "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(tt.args, env(tt.env), &out, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q despite the error", out.String())
			}
		})
	}
}

func TestNegativeTTLGivesExpiredToken(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-role", "student", "-ttl", "-1h"}, env(nil), &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	_, err := jwt.Parse(strings.TrimSpace(out.String()), func(*jwt.Token) (any, error) { return []byte(defaultSecret), nil })
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err = %v, want an expired token", err)
	}
}
