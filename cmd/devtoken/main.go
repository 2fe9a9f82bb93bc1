// Command devtoken prints a signed JWT that the User Service accepts, for trying a
// locally running service with curl, k6 or a browser:
//
//	make token ROLE=admin
//	go run ./cmd/devtoken -role student -sub 7c9e6679-7425-40de-944b-e07fc1f90ae7 -ttl 1h
//
// The token is HS256-signed with JWT_SECRET (the service's development default when
// unset), which, as for the service, must be at least 32 bytes. It carries the claims the
// service requires (sub, authId, email, role, iat, exp); sub and authId default to fresh
// random UUIDs and email to <role>@example.com. A negative -ttl yields an already
// expired token. Only the token is written to stdout.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// defaultSecret is the spec's development JWT_SECRET; `make run` uses the same default.
const defaultSecret = "your-super-secret-jwt-key-change-in-production"

// minSecretLen mirrors the service, which refuses to start with a shorter secret.
const minSecretLen = 32

// knownRoles are the roles of the spec's user model. Other roles are signed anyway (to
// probe how the service treats them) with a warning.
var knownRoles = map[string]bool{"admin": true, "instructor": true, "student": true}

// Claims is the payload of a User Service access token.
type Claims struct {
	AuthID string `json:"authId"`
	Email  string `json:"email"`
	Role   string `json:"role"`
	jwt.RegisteredClaims
}

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "devtoken: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devtoken", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", "", "role claim: admin, instructor or student (required)")
	sub := fs.String("sub", "", "sub claim, the user id (default: a random UUID)")
	authID := fs.String("auth-id", "", "authId claim (default: a random UUID)")
	email := fs.String("email", "", "email claim (default: <role>@example.com)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime; negative gives an expired token")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: devtoken -role ROLE [-sub UUID] [-auth-id UUID] [-email EMAIL] [-ttl 24h]")
		fmt.Fprintln(stderr, "Signs with JWT_SECRET from the environment (default: the development secret).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}

	secret := getenv("JWT_SECRET")
	if secret == "" {
		secret = defaultSecret
	}
	if len(secret) < minSecretLen {
		return fmt.Errorf("JWT_SECRET is %d bytes; the service requires at least %d", len(secret), minSecretLen)
	}
	if *role == "" {
		return errors.New("-role is required (admin, instructor or student)")
	}
	if !knownRoles[*role] {
		fmt.Fprintf(stderr, "devtoken: warning: %q is not a role of the spec (admin, instructor, student)\n", *role)
	}
	if *ttl == 0 {
		return errors.New("-ttl must not be zero")
	}
	c := Claims{AuthID: *authID, Email: *email, Role: *role}
	var err error
	if c.Subject, err = uuidOrNew("sub", *sub); err != nil {
		return err
	}
	if c.AuthID, err = uuidOrNew("auth-id", *authID); err != nil {
		return err
	}
	if c.Email == "" {
		c.Email = *role + "@example.com"
	}

	token, err := sign([]byte(secret), c, time.Now(), *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, token)
	return err
}

// sign fills in iat and exp and returns the HS256-signed token.
func sign(secret []byte, c Claims, now time.Time, ttl time.Duration) (string, error) {
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("cannot sign token: %w", err)
	}
	return token, nil
}

// uuidOrNew returns s in canonical form if it is a UUID, a new random UUID if s is empty.
func uuidOrNew(flagName, s string) (string, error) {
	if s == "" {
		return uuid.NewString(), nil
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return "", fmt.Errorf("-%s %q is not a UUID", flagName, s)
	}
	return id.String(), nil
}
