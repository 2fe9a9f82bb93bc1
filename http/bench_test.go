package http

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/lms-platform/userservice"
)

// BenchmarkTokenVerify compares a verified-token cache hit with full HS256
// verification (go test -run X -bench TokenVerify ./http/).
func BenchmarkTokenVerify(b *testing.B) {
	tok := []byte(signToken(b, jwt.MapClaims{"sub": userservice.NewID(), "authId": userservice.NewID(), "email": "a@b.co", "role": "student", "exp": time.Now().Add(time.Hour).Unix()}))
	a := newAuthenticator(jwtKeys{algorithms: []string{AlgHS256}, secret: testSecret}, 10000, &memDirectory{users: newMemUsers(newMemIdem())})
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		if _, err := a.verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := a.verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		s := string(tok)
		now := time.Now()
		for b.Loop() {
			if _, err := a.parse(context.Background(), s, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncodeUser measures rendering a user in the success envelope.
func BenchmarkEncodeUser(b *testing.B) {
	name, bio := "johndoe", "Software developer and lifelong learner"
	now := userservice.Now()
	u := userservice.User{ID: userservice.NewID(), AuthID: userservice.NewID(), Email: "john@example.com", Username: &name, FirstName: "John", LastName: "Doe",
		Bio: &bio, Timezone: "UTC", Language: "en", Role: userservice.RoleStudent, Status: userservice.StatusActive, LastActiveAt: &now, CreatedAt: now, UpdatedAt: now, Version: 7}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := renderSuccess(u, "", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetMe measures a whole GET /api/v1/users/me through the handler.
func BenchmarkGetMe(b *testing.B) {
	h := newHarness(b)
	h.srv.logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	b.ReportAllocs()
	for b.Loop() {
		if r := h.get("/api/v1/users/me", h.alice.token); r.status != 200 {
			b.Fatal(r.status)
		}
	}
}

// BenchmarkDecodePreferences decodes a body of 200 preferences (about 60 KB),
// text check included; BenchmarkTextProblem is that check alone.
func BenchmarkDecodePreferences(b *testing.B) {
	body := preferencesBody(200)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var in userservice.UpsertPreferences
		if err := decodeJSON(body, &in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTextProblem(b *testing.B) {
	body := preferencesBody(200)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, bad := textProblem(body); bad {
			b.Fatal("problem found")
		}
	}
}

func preferencesBody(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"preferences":[`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"category":"learning","key":"k_%03d","value":{"label":"Überschrift %d — café ☕","items":[1,2,3],"on":true,"note":"%s"}}`, i, i, strings.Repeat("x", 200))
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}
