package userservice

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// fieldsOf returns the fields named by a validation error, in order; it fails the
// test if err is not a validation *Error.
func fieldsOf(tb testing.TB, err error) []string {
	tb.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Code != ECodeValidation {
		tb.Fatalf("error %v is not a validation *Error", err)
	}
	out := make([]string, len(e.Details))
	for i, d := range e.Details {
		if d.Message == "" {
			tb.Errorf("field %s has no message", d.Field)
		}
		out[i] = d.Field
	}
	return out
}

// checkFields asserts that err is nil when want is empty, else a validation error
// naming exactly the fields in want.
func checkFields(tb testing.TB, err error, want ...string) {
	tb.Helper()
	if len(want) == 0 {
		if err != nil {
			tb.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		tb.Fatalf("no error, want one for %v", want)
	}
	if got := fieldsOf(tb, err); !reflect.DeepEqual(got, want) {
		tb.Fatalf("fields = %v, want %v (%v)", got, want, err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestValidEmail(t *testing.T) {
	long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 255-64-1-4) + ".com" // 255 bytes
	for _, tc := range []struct {
		email string
		ok    bool
	}{
		{"ada@example.com", true},
		{"first.last+tag@sub.example.co.uk", true},
		{"o'brien@example.ie", true},
		{"ADA@EXAMPLE.COM", true}, // case is normalized by CreateUser.Validate, not refused
		{long, true},
		{"a" + long, false}, // 256 bytes
		{"", false},
		{"ada", false},
		{"ada@", false},
		{"@example.com", false},
		{"ada@localhost", false}, // no dotted domain
		{"ada@.example.com", false},
		{"ada@example.com.", false},
		{"ada@@example.com", false},
		{"a b@example.com", false},
		{`"a b"@example.com`, false},
		{"Ada <ada@example.com>", false},
		{"<ada@example.com>", false},
		{" ada@example.com", false},
		{"ada@example.com\n", false},
		{"a..b@example.com", false},
	} {
		t.Run(tc.email, func(t *testing.T) {
			if got := ValidEmail(tc.email); got != tc.ok {
				t.Errorf("ValidEmail(%q) = %v, want %v", tc.email, got, tc.ok)
			}
		})
	}
}

// validCreate returns a CreateUser that passes validation.
func validCreate() CreateUser {
	return CreateUser{
		AuthID: "2F1F7C9E-8D7A-4C8E-9A51-1F6C1F0D2B11", Email: "  Ada.Lovelace@Example.COM ",
		FirstName: "Ada", LastName: "Lovelace",
	}
}

func TestCreateUserValidate(t *testing.T) {
	t.Run("normalizes email and authId", func(t *testing.T) {
		c := validCreate()
		checkFields(t, c.Validate())
		if c.Email != "ada.lovelace@example.com" {
			t.Errorf("Email = %q, want lower-cased and trimmed", c.Email)
		}
		if c.AuthID != "2f1f7c9e-8d7a-4c8e-9a51-1f6c1f0d2b11" {
			t.Errorf("AuthID = %q, want canonical lower case", c.AuthID)
		}
	})
	for _, tc := range []struct {
		name   string
		edit   func(*CreateUser)
		fields []string
	}{
		{"every optional field valid", func(c *CreateUser) {
			c.Username, c.DisplayName, c.AvatarURL = ptr("ada_l"), ptr("Countess"), ptr("https://cdn.example.com/a.png")
			c.Bio, c.Phone, c.Timezone, c.Language, c.Role = ptr("Analyst."), ptr("+442071234567"), ptr("Europe/London"), ptr("en-GB"), ptr(RoleInstructor)
		}, nil},
		{"authId not a UUID", func(c *CreateUser) { c.AuthID = "auth-1" }, []string{"authId"}},
		{"authId UUID without dashes", func(c *CreateUser) { c.AuthID = "2f1f7c9e8d7a4c8e9a511f6c1f0d2b11" }, []string{"authId"}},
		{"email invalid", func(c *CreateUser) { c.Email = "ada" }, []string{"email"}},
		{"email too long", func(c *CreateUser) { c.Email = strings.Repeat("a", 250) + "@x.com" }, []string{"email"}},
		{"first name blank", func(c *CreateUser) { c.FirstName = "   " }, []string{"firstName"}},
		{"first name 100 runes", func(c *CreateUser) { c.FirstName = strings.Repeat("é", 100) }, nil},
		{"first name 101 runes", func(c *CreateUser) { c.FirstName = strings.Repeat("é", 101) }, []string{"firstName"}},
		{"last name empty", func(c *CreateUser) { c.LastName = "" }, []string{"lastName"}},
		{"last name invalid UTF-8", func(c *CreateUser) { c.LastName = "Love\xfflace" }, []string{"lastName"}},
		{"display name 200 runes", func(c *CreateUser) { c.DisplayName = ptr(strings.Repeat("名", 200)) }, nil},
		{"display name 201 runes", func(c *CreateUser) { c.DisplayName = ptr(strings.Repeat("名", 201)) }, []string{"displayName"}},
		{"display name blank", func(c *CreateUser) { c.DisplayName = ptr(" \t") }, []string{"displayName"}},
		{"username invalid", func(c *CreateUser) { c.Username = ptr("a b") }, []string{"username"}},
		{"avatar relative", func(c *CreateUser) { c.AvatarURL = ptr("/a.png") }, []string{"avatarUrl"}},
		{"bio too long", func(c *CreateUser) { c.Bio = ptr(strings.Repeat("b", 1001)) }, []string{"bio"}},
		{"phone not E.164", func(c *CreateUser) { c.Phone = ptr("020 7123 4567") }, []string{"phone"}},
		{"timezone unknown", func(c *CreateUser) { c.Timezone = ptr("Mars/Olympus") }, []string{"timezone"}},
		{"language invalid", func(c *CreateUser) { c.Language = ptr("english") }, []string{"language"}},
		{"role unknown", func(c *CreateUser) { c.Role = ptr(Role("owner")) }, []string{"role"}},
		{"every problem reported, in field order", func(c *CreateUser) {
			*c = CreateUser{Username: ptr("x"), Phone: ptr("1")}
		}, []string{"authId", "email", "firstName", "lastName", "username", "phone"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validCreate()
			tc.edit(&c)
			checkFields(t, c.Validate(), tc.fields...)
		})
	}
}

func TestValidUsername(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"abc", true}, {"ab", false}, {strings.Repeat("u", 50), true}, {strings.Repeat("u", 51), false},
		{"user.name-1_X", true}, {"a b", false}, {"ünï", false}, {"a@b", false}, {"", false}, {"...", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v validator
			v.username("username", tc.name)
			if v.ok() != tc.ok {
				t.Errorf("username %q ok = %v, want %v", tc.name, v.ok(), tc.ok)
			}
		})
	}
}

func TestValidPhone(t *testing.T) {
	for _, tc := range []struct {
		phone string
		ok    bool
	}{
		{"+14155550123", true}, {"+12", true}, {"+" + strings.Repeat("9", 15), true},
		{"+" + strings.Repeat("9", 16), false}, {"14155550123", false}, {"+0123456", false}, {"+1", false},
		{"+1 415 555 0123", false}, {"+1-415-555-0123", false}, {"", false}, {"+", false}, {"+١٢٣", false},
	} {
		t.Run(tc.phone, func(t *testing.T) {
			var v validator
			v.phone("phone", tc.phone)
			if v.ok() != tc.ok {
				t.Errorf("phone %q ok = %v, want %v", tc.phone, v.ok(), tc.ok)
			}
		})
	}
}

func TestValidTimezone(t *testing.T) {
	for _, tc := range []struct {
		zone string
		ok   bool
	}{
		{"UTC", true}, {"Europe/Paris", true}, {"America/New_York", true}, {"Asia/Kolkata", true},
		{"America/Argentina/Buenos_Aires", true}, {"Etc/GMT+5", true},
		{"Mars/Olympus", false}, {"Local", false}, {"", false}, {"europe/paris ", false},
		{"../../etc/passwd", false}, {"/usr/share/zoneinfo/UTC", false}, {strings.Repeat("A", 65), false},
	} {
		t.Run(tc.zone, func(t *testing.T) {
			for i := 0; i < 2; i++ { // the second answer comes from the cache
				if got := ValidTimezone(tc.zone); got != tc.ok {
					t.Errorf("ValidTimezone(%q) = %v, want %v (call %d)", tc.zone, got, tc.ok, i+1)
				}
			}
		})
	}
}

func TestValidLanguage(t *testing.T) {
	for _, tc := range []struct {
		tag string
		ok  bool
	}{
		{"en", true}, {"pt-BR", true}, {"zh-Hant-TW", true}, {"en-US", true}, {"fr", true}, {"es-419", true},
		{"english", false}, {"e", false}, {"", false}, {"en_US", false}, {"en-", false}, {"-en", false},
		{"en-US-" + strings.Repeat("x", 40), false},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			if got := ValidLanguage(tc.tag); got != tc.ok {
				t.Errorf("ValidLanguage(%q) = %v, want %v", tc.tag, got, tc.ok)
			}
		})
	}
}

func TestValidAvatarURL(t *testing.T) {
	base := "https://cdn.example.com/"
	for _, tc := range []struct {
		name, url string
		ok        bool
	}{
		{"https", "https://cdn.example.com/a.png", true},
		{"http with port and query", "http://localhost:8080/a.png?size=64", true},
		{"2048 bytes", base + strings.Repeat("a", 2048-len(base)), true},
		{"2049 bytes", base + strings.Repeat("a", 2049-len(base)), false},
		{"ftp", "ftp://cdn.example.com/a.png", false},
		{"relative", "/avatars/a.png", false},
		{"no host", "https://", false},
		{"no scheme", "cdn.example.com/a.png", false},
		{"javascript", "javascript:alert(1)", false},
		{"data", "data:image/png;base64,AAAA", false},
		{"credentials", "https://user:pw@cdn.example.com/a.png", false},
		{"empty", "", false},
		{"space in host", "https://cdn example.com/a.png", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValidAvatarURL(tc.url); got != tc.ok {
				t.Errorf("ValidAvatarURL(%q) = %v, want %v", tc.url, got, tc.ok)
			}
		})
	}
}

func TestUpdateUserValidate(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		fields     []string
	}{
		{"empty body", `{}`, []string{"body"}},
		{"one field", `{"firstName":"Ada"}`, nil},
		{"nullable fields may be null", `{"username":null,"displayName":null,"avatarUrl":null,"bio":null,"phone":null}`, nil},
		{"required fields may not be null", `{"firstName":null,"lastName":null,"timezone":null,"language":null}`,
			[]string{"firstName", "lastName", "timezone", "language"}},
		{"blank first name", `{"firstName":"  "}`, []string{"firstName"}},
		{"display name too long", `{"displayName":"` + strings.Repeat("d", 201) + `"}`, []string{"displayName"}},
		{"bio 1000 runes", `{"bio":"` + strings.Repeat("ü", 1000) + `"}`, nil},
		{"bio 1001 runes", `{"bio":"` + strings.Repeat("ü", 1001) + `"}`, []string{"bio"}},
		{"empty bio is a value", `{"bio":""}`, nil},
		{"bad values", `{"username":"x","avatarUrl":"nope","phone":"12","timezone":"Local","language":"e"}`,
			[]string{"username", "avatarUrl", "phone", "timezone", "language"}},
		{"valid values", `{"username":"ada.l","avatarUrl":"https://x.io/a","phone":"+33123456789","timezone":"Europe/Paris","language":"fr-FR"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u UpdateUser
			if err := json.Unmarshal([]byte(tc.body), &u); err != nil {
				t.Fatal(err)
			}
			checkFields(t, u.Validate(), tc.fields...)
		})
	}
}

func TestOptional(t *testing.T) {
	var u UpdateUser
	if err := json.Unmarshal([]byte(`{"bio":null,"firstName":"Ada"}`), &u); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got       Optional[string]
		set, null bool
		value     string
	}{
		{"missing", u.Username, false, false, ""},
		{"null", u.Bio, true, true, ""},
		{"value", u.FirstName, true, false, "Ada"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got.Set != tc.set || tc.got.Null != tc.null || tc.got.Value != tc.value {
				t.Errorf("got %+v, want Set %v Null %v Value %q", tc.got, tc.set, tc.null, tc.value)
			}
		})
	}
	t.Run("wrong type is an error", func(t *testing.T) {
		var u UpdateUser
		if err := json.Unmarshal([]byte(`{"bio":42}`), &u); err == nil {
			t.Error("a number for a string field decoded")
		}
	})
	t.Run("marshals null when unset or null", func(t *testing.T) {
		b, err := json.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"bio":null`) || !strings.Contains(string(b), `"username":null`) || !strings.Contains(string(b), `"firstName":"Ada"`) {
			t.Errorf("marshalled %s", b)
		}
	})
}

func TestPreferenceKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"email_enabled", true}, {"a", true}, {"items_per_page_2", true}, {strings.Repeat("k", 64), true},
		{strings.Repeat("k", 65), false}, {"", false}, {"Email", false}, {"a-b", false}, {"a.b", false},
		{"a b", false}, {"ключ", false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			if got := ValidPreferenceKey(tc.key); got != tc.ok {
				t.Errorf("ValidPreferenceKey(%q) = %v, want %v", tc.key, got, tc.ok)
			}
		})
	}
}

func TestEnrollmentInputsValidate(t *testing.T) {
	t.Run("CreateEnrollment canonicalizes the course id", func(t *testing.T) {
		c := CreateEnrollment{CourseID: "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"}
		checkFields(t, c.Validate())
		if c.CourseID != "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" {
			t.Errorf("CourseID = %q", c.CourseID)
		}
		checkFields(t, (&CreateEnrollment{CourseID: "course-1"}).Validate(), "courseId")
	})
	for _, tc := range []struct {
		name, body string
		fields     []string
	}{
		{"UpdateEnrollment empty", `{}`, []string{"body"}},
		{"UpdateEnrollment status", `{"enrollmentStatus":"dropped"}`, nil},
		{"UpdateEnrollment bad status", `{"enrollmentStatus":"paused"}`, []string{"enrollmentStatus"}},
		{"UpdateEnrollment progress bounds", `{"progress":100.5,"timeSpentSeconds":86401}`, []string{"progress", "timeSpentSeconds"}},
		{"UpdateEnrollment progress 0 and time 86400", `{"progress":0,"timeSpentSeconds":86400}`, nil},
		{"UpdateEnrollment negative time", `{"progress":1,"timeSpentSeconds":-1}`, []string{"timeSpentSeconds"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u UpdateEnrollment
			if err := json.Unmarshal([]byte(tc.body), &u); err != nil {
				t.Fatal(err)
			}
			checkFields(t, u.Validate(), tc.fields...)
		})
	}
	for _, tc := range []struct {
		name, body string
		fields     []string
	}{
		{"UpdateProgress missing progress", `{"timeSpentSeconds":5}`, []string{"progress"}},
		{"UpdateProgress 100", `{"progress":100}`, nil},
		{"UpdateProgress negative", `{"progress":-0.1}`, []string{"progress"}},
		{"UpdateProgress fractional", `{"progress":33.3,"timeSpentSeconds":60}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u UpdateProgress
			if err := json.Unmarshal([]byte(tc.body), &u); err != nil {
				t.Fatal(err)
			}
			checkFields(t, u.Validate(), tc.fields...)
		})
	}
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"2f1f7c9e-8d7a-4c8e-9a51-1f6c1f0d2b11", "2f1f7c9e-8d7a-4c8e-9a51-1f6c1f0d2b11", true},
		{"2F1F7C9E-8D7A-4C8E-9A51-1F6C1F0D2B11", "2f1f7c9e-8d7a-4c8e-9a51-1f6c1f0d2b11", true},
		{"{2f1f7c9e-8d7a-4c8e-9a51-1f6c1f0d2b11}", "", false},
		{"urn:uuid:2f1f7c9e-8d7a-4c8e-9a51-1f6c1f0d2b11", "", false},
		{"2f1f7c9e8d7a4c8e9a511f6c1f0d2b11", "", false},
		{"2f1f7c9e-8d7a-4c8e-9a51-1f6c1f0d2b1g", "", false},
		{"me", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := ParseID(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("ParseID(%q) = %q, %v, want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
	if id, ok := ParseID(NewID()); !ok || id == "" {
		t.Error("NewID() does not parse")
	}
}

func TestNULIsRefusedInText(t *testing.T) {
	nul := "Ada\x00"
	c := CreateUser{AuthID: NewID(), Email: "a\x00@example.com", FirstName: nul, LastName: "L", Bio: &nul}
	err := c.Validate()
	var e *Error
	if !errors.As(err, &e) || e.Code != ECodeValidation {
		t.Fatalf("Validate: %v, want a validation error", err)
	}
	fields := map[string]bool{}
	for _, d := range e.Details {
		fields[d.Field] = true
	}
	for _, f := range []string{"email", "firstName", "bio"} {
		if !fields[f] {
			t.Errorf("no error for %s: %+v", f, e.Details)
		}
	}
	if ValidAvatarURL("https://example.com/a\x00.png") {
		t.Error("avatar URL with NUL accepted")
	}
}

// TestZoneCacheKeepsOnlyValidZones: client-chosen invalid names must not grow
// the cache (issue 11); valid ones are a fixed set.
func TestZoneCacheKeepsOnlyValidZones(t *testing.T) {
	size := func() int {
		n := 0
		zoneCache.Range(func(any, any) bool { n++; return true })
		return n
	}
	ValidTimezone("Europe/Paris")
	before := size()
	for i := range 2000 {
		if ValidTimezone(fmt.Sprintf("Nowhere/Zone%d", i)) {
			t.Fatalf("Nowhere/Zone%d accepted", i)
		}
	}
	if !ValidTimezone("Europe/Paris") || !ValidTimezone("America/New_York") {
		t.Fatal("a valid zone refused")
	}
	if after := size(); after > before+1 {
		t.Fatalf("the zone cache grew from %d to %d entries after 2,000 invalid names", before, after)
	}
}
