package http

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/golang-jwt/jwt/v5"

	"github.com/lms-platform/userservice"
)

// validatable is a request body type with its validation.
type validatable struct {
	name     string
	new      func() any
	validate func(v any) error
}

func requestTypes() []validatable {
	return []validatable{
		{"CreateUser", func() any { return &userservice.CreateUser{} }, func(v any) error { return v.(*userservice.CreateUser).Validate() }},
		{"UpdateUser", func() any { return &userservice.UpdateUser{} }, func(v any) error { return v.(*userservice.UpdateUser).Validate() }},
		{"CreateEnrollment", func() any { return &userservice.CreateEnrollment{} }, func(v any) error { return v.(*userservice.CreateEnrollment).Validate() }},
		{"UpdateEnrollment", func() any { return &userservice.UpdateEnrollment{} }, func(v any) error { return v.(*userservice.UpdateEnrollment).Validate() }},
		{"UpdateProgress", func() any { return &userservice.UpdateProgress{} }, func(v any) error { return v.(*userservice.UpdateProgress).Validate() }},
		{"UpsertPreferences", func() any { return &userservice.UpsertPreferences{} }, func(v any) error { return v.(*userservice.UpsertPreferences).Validate("") }},
		{"role", func() any { return &roleBody{} }, func(v any) error { return nil }},
		{"status", func() any { return &statusBody{} }, func(v any) error { return nil }},
		{"bulk", func() any { return &bulkRoleBody{} }, func(v any) error { return nil }},
	}
}

// FuzzDecodeBody feeds random bytes to every request type: decoding never
// panics, and every refusal is a 400.
func FuzzDecodeBody(f *testing.F) {
	f.Add([]byte(`{"firstName":"A","bio":null}`))
	f.Add([]byte(`{"preferences":[{"category":"ui","key":"theme","value":{"a":[1,2,{"b":null}]}}]}`))
	types := requestTypes()
	f.Fuzz(func(t *testing.T, body []byte) {
		if err := checkBody(body, []byte("application/json"), 1<<20); err != nil {
			if _, status := wireError(err); status != 400 && status != 413 {
				t.Fatalf("checkBody: status %d for %q", status, body)
			}
			return
		}
		for _, typ := range types {
			v := typ.new()
			err := decodeWithin(t, body, v)
			if err == nil {
				err = typ.validate(v)
			}
			if err == nil {
				if _, merr := json.Marshal(v); merr != nil && typ.name != "UpdateUser" {
					t.Fatalf("%s: decoded value does not marshal: %v", typ.name, merr)
				}
				continue
			}
			var e *userservice.Error
			if !errors.As(err, &e) {
				t.Fatalf("%s: %q: error %v is not a domain error", typ.name, body, err)
			}
			if _, status := wireError(err); status != 400 {
				t.Fatalf("%s: %q: status %d, want 400 (%v)", typ.name, body, status, err)
			}
		}
	})
}

// FuzzParseToken feeds random and near-valid tokens to a verifier of HS256 and
// ES256: it never panics and never accepts a token that is not HS256-signed
// with the secret or ES256-signed with the public key's private half (so
// neither "none" nor the public key used as an HMAC secret).
func FuzzParseToken(f *testing.F) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	now := time.Now()
	claims := jwt.MapClaims{"sub": userservice.NewID(), "authId": userservice.NewID(), "email": "a@b.co", "role": "student", "exp": now.Add(time.Hour).Unix()}
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
		s, err := jwt.NewWithClaims(m, claims).SignedString(testSecret)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s)
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	f.Add(none)
	for _, seed := range []struct {
		m   jwt.SigningMethod
		key any
	}{
		{jwt.SigningMethodES256, ec},     // valid
		{jwt.SigningMethodHS256, pubPEM}, // algorithm confusion: the public key as an HMAC secret
		{jwt.SigningMethodHS256, pubDER},
	} {
		s, err := jwt.NewWithClaims(seed.m, claims).SignedString(seed.key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s)
	}
	a := newAuthenticator(jwtKeys{algorithms: []string{AlgHS256, AlgES256}, secret: testSecret, publicKey: &ec.PublicKey}, 64, &memDirectory{users: newMemUsers(newMemIdem())})
	f.Fuzz(func(t *testing.T, token string) {
		c, err := a.parse(context.Background(), token, now)
		if err != nil {
			if _, status := wireError(err); status != 401 {
				t.Fatalf("refusal status %d", status)
			}
			return
		}
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted a token of %d parts", len(parts))
		}
		hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
		if err != nil {
			hdr, err = base64.URLEncoding.DecodeString(parts[0])
		}
		var h struct {
			Alg string `json:"alg"`
		}
		if err != nil || json.Unmarshal(hdr, &h) != nil || (h.Alg != "HS256" && h.Alg != "ES256") {
			t.Fatalf("accepted a token whose alg is neither HS256 nor ES256: %q", hdr)
		}
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		signed := []byte(parts[0] + "." + parts[1])
		switch h.Alg {
		case "HS256":
			mac := hmac.New(sha256.New, testSecret)
			mac.Write(signed)
			if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
				t.Fatalf("accepted an HS256 token with a wrong signature")
			}
		case "ES256":
			digest := sha256.Sum256(signed)
			if err != nil || len(sig) != 64 || !ecdsa.Verify(&ec.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
				t.Fatalf("accepted an ES256 token with a wrong signature")
			}
		}
		if c.Subject == "" || c.AuthID == "" || c.Email == "" || !c.Role.Valid() || !now.Before(c.Expires) {
			t.Fatalf("accepted incomplete claims %+v", c)
		}
	})
}

// FuzzQuery feeds random query strings to the list routes: the answer is 200 or
// 400, never 500, and an accepted page is within bounds.
func FuzzQuery(f *testing.F) {
	f.Add("page=1&limit=20&search=john&role=student&status=active&sortBy=createdAt&sortOrder=desc")
	f.Add("limit=101")
	f.Add("count=none&limit=2&cursor=eyJsIjoidXNlcnMiLCJwIjoyfQ.AAAA")
	f.Add("cursor=&count=exact")
	h := newHarness(f)
	f.Fuzz(func(t *testing.T, q string) {
		h := h.withT(t)
		for _, path := range []string{"/api/v1/users", userPath("me", "enrollments"), userPath("me", "sessions"), userPath(h.alice.id, "audit")} {
			r := h.do(req{method: "GET", path: path + "?" + q, token: h.admin.token})
			if r.status != 200 && r.status != 400 && r.status != 404 {
				t.Fatalf("GET %s?%q: status %d %s", path, q, r.status, r.body)
			}
			if r.status != 200 {
				continue
			}
			p, ok := r.json()["pagination"].(map[string]any)
			if !ok {
				t.Fatalf("no pagination: %s", r.body)
			}
			if l := p["limit"].(float64); l < 1 || l > 100 {
				t.Fatalf("limit %v accepted", l)
			}
			if pg := p["page"].(float64); pg < 1 {
				t.Fatalf("page %v accepted", pg)
			}
		}
	})
}

// decodeWithin fails the fuzz input when decoding takes over two seconds: a
// body that hangs the decoder would be a denial of service.
func decodeWithin(t *testing.T, body []byte, v any) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- decodeJSON(body, v) }()
	select {
	case err := <-done:
		return err
	case <-time.After(2 * time.Second):
		t.Fatalf("decoding %q took over 2s", body)
		return nil
	}
}

// FuzzDecodeFastPath: decodeJSON's one-call path never takes a body that the
// stream decoder refuses, and decodes what it takes into the same value; and
// decodeJSON answers exactly as the stream path alone for every body.
func FuzzDecodeFastPath(f *testing.F) {
	for _, seed := range []string{
		`{"courseId":"9b2f6a3e-8d4c-4e6b-9a1f-2c3d4e5f6a7b"}`,
		`{"courseId":"9b2f6a3e-8d4c-4e6b-9a1f-2c3d4e5f6a7b"} {}`,
		`{"courseId":"x"}x`,
		`{"CourseId":"x"}`,
		`{"courseid":"x","courseId":"y"}`,
		`{"progress":50,"timeSpentSeconds":10}`,
		`{"progress":"50"}`,
		`{"progress":50,"extra":1}`,
		`{"firstName":"A","bio":null,"FirstName":"B"}`,
		`{"preferences":[{"category":"ui","key":"theme","value":{"a":[1,2,{"b":null}]},"Key":"x"}]}`,
		`{"preferences":[{"category":"ui","key":"theme","value":1}],"unknown":{}}`,
		`{"userIds":["a","b"],"role":"admin"}`,
		`[]`, `null`, `"x"`, `{}`, `{"a":1}  `, "{\"courseId\":\"x\"}\n\n",
	} {
		f.Add([]byte(seed))
	}
	types := requestTypes()
	f.Fuzz(func(t *testing.T, body []byte) {
		if checkBody(body, []byte("application/json"), 1<<20) != nil {
			return
		}
		if _, _, bad := textProblem(body); bad {
			return
		}
		for _, typ := range types {
			fast, slow, both := typ.new(), typ.new(), typ.new()
			fastErr := noPanic(func() error { return decodeOneCall(body, fast, reflect.TypeOf(fast)) })
			slowErr := noPanic(func() error { return decodeStream(body, slow, reflect.TypeOf(slow)) })
			if fastErr == nil {
				if slowErr != nil {
					t.Fatalf("%s: %q: the one-call path takes it, the stream refuses it: %v", typ.name, body, slowErr)
				}
				if !reflect.DeepEqual(fast, slow) {
					t.Fatalf("%s: %q: decoded %+v by the one-call path, %+v by the stream", typ.name, body, fast, slow)
				}
			}
			bothErr := decodeWithin(t, body, both)
			if (bothErr == nil) != (slowErr == nil) || bothErr != nil && bothErr.Error() != slowErr.Error() {
				t.Fatalf("%s: %q: decodeJSON says %v, the stream alone %v", typ.name, body, bothErr, slowErr)
			}
			if bothErr == nil && !reflect.DeepEqual(both, slow) {
				t.Fatalf("%s: %q: decodeJSON decoded %+v, the stream alone %+v", typ.name, body, both, slow)
			}
		}
	})
}

// noPanic runs decode, turning a panic into an error as decodeJSON does.
func noPanic(decode func() error) (err error) {
	defer func() {
		if recover() != nil {
			err = errors.New("panic")
		}
	}()
	return decode()
}

// FuzzScanObject: scanObject visits the members of an object as the decoder
// reads them (the last of a repeated key wins in both), or says it cannot.
func FuzzScanObject(f *testing.F) {
	for _, seed := range []string{`{}`, `{"a":1,"b":[1,{"c":"d"}],"e":{"f":null}}`, `{"a":1,"a":"x"}`, ` { "a" : "\u0041" } `, `{"\u0061":1}`, `[1]`, `null`, `{"a":"}"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil || obj == nil {
			return
		}
		if _, _, bad := textProblem(raw); bad {
			return
		}
		seen := map[string][]byte{}
		if !scanObject(raw, func(key, value []byte) bool {
			seen[string(key)] = value
			return false
		}) {
			if !bytes.Contains(raw, []byte(`\`)) {
				t.Fatalf("%q: scanObject gave up on an object without escapes", raw)
			}
			return
		}
		if len(seen) != len(obj) {
			t.Fatalf("%q: scanObject saw %d keys, the decoder %d", raw, len(seen), len(obj))
		}
		for k, v := range obj {
			if got, ok := seen[k]; !ok || !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(v)) {
				t.Fatalf("%q: key %q: scanObject %q, the decoder %q", raw, k, got, v)
			}
		}
	})
}

// FuzzScanArray: scanArray visits the items of an array as the decoder reads
// them, and says so; for any other JSON value it says it cannot.
func FuzzScanArray(f *testing.F) {
	for _, seed := range []string{`[]`, ` [ 1 , "a" , {"b":[2,3]} , [] , null ] `, `[{"key":"x","value":{"y":"]"}}]`, `{"a":[1]}`, `null`, `"[1]"`, `[[[]]]`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		if _, _, bad := textProblem(raw); bad {
			return
		}
		var items []json.RawMessage
		isArray := json.Unmarshal(raw, &items) == nil && items != nil
		var seen [][]byte
		ok := scanArray(raw, func(i int, item []byte) bool {
			if i != len(seen) {
				t.Fatalf("%q: item %d visited as index %d", raw, len(seen), i)
			}
			seen = append(seen, item)
			return false
		})
		if ok != isArray {
			t.Fatalf("%q: scanArray says array %t, the decoder %t", raw, ok, isArray)
		}
		if len(seen) != len(items) {
			t.Fatalf("%q: scanArray saw %d items, the decoder %d", raw, len(seen), len(items))
		}
		for i := range items {
			if !bytes.Equal(bytes.TrimSpace(seen[i]), bytes.TrimSpace(items[i])) {
				t.Fatalf("%q: item %d: scanArray %q, the decoder %q", raw, i, seen[i], items[i])
			}
		}
	})
}
