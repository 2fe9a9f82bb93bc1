package userservice

import (
	"strings"
)

// Role is what a user may do.
type Role string

// Roles.
const (
	RoleAdmin      Role = "admin"
	RoleInstructor Role = "instructor"
	RoleStudent    Role = "student"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleInstructor || r == RoleStudent }

// Status is the lifecycle state of an account.
type Status string

// Statuses. Inactive users may act; suspended and deleted users get 403.
const (
	StatusActive    Status = "active"
	StatusInactive  Status = "inactive"
	StatusSuspended Status = "suspended"
	StatusDeleted   Status = "deleted"
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	return s == StatusActive || s == StatusInactive || s == StatusSuspended || s == StatusDeleted
}

// MayAct reports whether a user in this status may make requests.
func (s Status) MayAct() bool { return s == StatusActive || s == StatusInactive }

// User is a profile. Its JSON is exactly the spec's User fields plus version; the
// login bookkeeping behind UserStats stays internal.
type User struct {
	ID               string  `json:"id"`
	AuthID           string  `json:"authId"`
	Email            string  `json:"email"`
	Username         *string `json:"username"`
	FirstName        string  `json:"firstName"`
	LastName         string  `json:"lastName"`
	DisplayName      *string `json:"displayName"`
	AvatarURL        *string `json:"avatarUrl"`
	Bio              *string `json:"bio"`
	Phone            *string `json:"phone"`
	Timezone         string  `json:"timezone"`
	Language         string  `json:"language"`
	Role             Role    `json:"role"`
	Status           Status  `json:"status"`
	EmailVerified    bool    `json:"emailVerified"`
	ProfileCompleted bool    `json:"profileCompleted"`
	LastActiveAt     *Time   `json:"lastActiveAt"`
	CreatedAt        Time    `json:"createdAt"`
	UpdatedAt        Time    `json:"updatedAt"`
	Version          int64   `json:"version"`

	// LoginCount and LastLoginAt come from auth.user.login events (UserStats).
	LoginCount  int64 `json:"-"`
	LastLoginAt *Time `json:"-"`
}

// CreateUser is the body of POST /api/v1/users and the payload of
// auth.user.registered.
type CreateUser struct {
	AuthID      string  `json:"authId"`
	Email       string  `json:"email"`
	FirstName   string  `json:"firstName"`
	LastName    string  `json:"lastName"`
	Username    *string `json:"username,omitempty"`
	DisplayName *string `json:"displayName,omitempty"`
	AvatarURL   *string `json:"avatarUrl,omitempty"`
	Bio         *string `json:"bio,omitempty"`
	Phone       *string `json:"phone,omitempty"`
	Timezone    *string `json:"timezone,omitempty"`
	Language    *string `json:"language,omitempty"`
	Role        *Role   `json:"role,omitempty"`
}

// Validate checks every field and normalizes the email (lower case) and authId
// (canonical UUID). It returns a validation *Error listing every bad field.
func (c *CreateUser) Validate() error {
	var v validator
	if id, ok := ParseID(c.AuthID); ok {
		c.AuthID = id
	} else {
		v.add("authId", "must be a UUID")
	}
	c.Email = strings.ToLower(strings.TrimSpace(c.Email))
	v.email("email", c.Email)
	v.name("firstName", c.FirstName, 100)
	v.name("lastName", c.LastName, 100)
	if c.Username != nil {
		v.username("username", *c.Username)
	}
	if c.DisplayName != nil {
		v.name("displayName", *c.DisplayName, 200)
	}
	if c.AvatarURL != nil {
		v.url("avatarUrl", *c.AvatarURL)
	}
	if c.Bio != nil {
		v.maxLen("bio", *c.Bio, 1000)
	}
	if c.Phone != nil {
		v.phone("phone", *c.Phone)
	}
	if c.Timezone != nil {
		v.timezone("timezone", *c.Timezone)
	}
	if c.Language != nil {
		v.language("language", *c.Language)
	}
	if c.Role != nil && !c.Role.Valid() {
		v.add("role", "must be one of admin, instructor, student")
	}
	return v.err()
}

// UpdateUser is the body of PUT /users/me and /users/{id}. A field left out is not
// touched; an optional field sent as JSON null is cleared.
type UpdateUser struct {
	Username    Optional[string] `json:"username"`
	FirstName   Optional[string] `json:"firstName"`
	LastName    Optional[string] `json:"lastName"`
	DisplayName Optional[string] `json:"displayName"`
	AvatarURL   Optional[string] `json:"avatarUrl"`
	Bio         Optional[string] `json:"bio"`
	Phone       Optional[string] `json:"phone"`
	Timezone    Optional[string] `json:"timezone"`
	Language    Optional[string] `json:"language"`
}

// Validate checks every field that is set.
func (u *UpdateUser) Validate() error {
	var v validator
	if u.Username.Set && !u.Username.Null {
		v.username("username", u.Username.Value)
	}
	for _, f := range []struct {
		name string
		opt  Optional[string]
	}{{"firstName", u.FirstName}, {"lastName", u.LastName}, {"timezone", u.Timezone}, {"language", u.Language}} {
		if f.opt.Set && f.opt.Null {
			v.add(f.name, "must not be null")
		}
	}
	if u.FirstName.Set && !u.FirstName.Null {
		v.name("firstName", u.FirstName.Value, 100)
	}
	if u.LastName.Set && !u.LastName.Null {
		v.name("lastName", u.LastName.Value, 100)
	}
	if u.DisplayName.Set && !u.DisplayName.Null {
		v.name("displayName", u.DisplayName.Value, 200)
	}
	if u.AvatarURL.Set && !u.AvatarURL.Null {
		v.url("avatarUrl", u.AvatarURL.Value)
	}
	if u.Bio.Set && !u.Bio.Null {
		v.maxLen("bio", u.Bio.Value, 1000)
	}
	if u.Phone.Set && !u.Phone.Null {
		v.phone("phone", u.Phone.Value)
	}
	if u.Timezone.Set && !u.Timezone.Null {
		v.timezone("timezone", u.Timezone.Value)
	}
	if u.Language.Set && !u.Language.Null {
		v.language("language", u.Language.Value)
	}
	if v.ok() && !u.any() {
		v.add("body", "at least one field must be given")
	}
	return v.err()
}

func (u *UpdateUser) any() bool {
	return u.Username.Set || u.FirstName.Set || u.LastName.Set || u.DisplayName.Set ||
		u.AvatarURL.Set || u.Bio.Set || u.Phone.Set || u.Timezone.Set || u.Language.Set
}

// profileChanges is the "changes" object of user.updated: the fields that
// were set, as sent. A field left out is a nil pointer (omitted); one set to
// null points to a nil string.
type profileChanges struct {
	Username    **string `json:"username,omitempty"`
	FirstName   **string `json:"firstName,omitempty"`
	LastName    **string `json:"lastName,omitempty"`
	DisplayName **string `json:"displayName,omitempty"`
	AvatarURL   **string `json:"avatarUrl,omitempty"`
	Bio         **string `json:"bio,omitempty"`
	Phone       **string `json:"phone,omitempty"`
	Timezone    **string `json:"timezone,omitempty"`
	Language    **string `json:"language,omitempty"`
}

// changes returns the fields that were set, as sent, for the user.updated event.
func (u *UpdateUser) changes() profileChanges {
	field := func(o Optional[string]) **string {
		if !o.Set {
			return nil
		}
		var v *string
		if !o.Null {
			s := o.Value
			v = &s
		}
		return &v
	}
	return profileChanges{
		Username: field(u.Username), FirstName: field(u.FirstName), LastName: field(u.LastName),
		DisplayName: field(u.DisplayName), AvatarURL: field(u.AvatarURL), Bio: field(u.Bio),
		Phone: field(u.Phone), Timezone: field(u.Timezone), Language: field(u.Language),
	}
}

// ProfileCompletion returns the spec's profileCompletionPercentage
// (calculateProfileCompletion): weighted presence of the profile fields.
func ProfileCompletion(u *User) int {
	fields := []struct {
		present bool
		weight  float64
	}{
		{nonBlank(&u.FirstName), 20},
		{nonBlank(&u.LastName), 20},
		{nonBlank(&u.Email), 20},
		{nonBlank(u.Username), 10},
		{nonBlank(u.Bio), 10},
		{nonBlank(u.AvatarURL), 10},
		{nonBlank(u.Phone), 5},
		{nonBlank(&u.Timezone), 2.5},
		{nonBlank(&u.Language), 2.5},
	}
	var done, total float64
	for _, f := range fields {
		total += f.weight
		if f.present {
			done += f.weight
		}
	}
	return int(done/total*100 + 0.5)
}

// profileComplete is the spec's isProfileCompleted: the fields a learner is asked for
// (names, email, username, bio, avatar) are all there.
func profileComplete(u *User) bool {
	return nonBlank(&u.FirstName) && nonBlank(&u.LastName) && nonBlank(&u.Email) &&
		nonBlank(u.Username) && nonBlank(u.Bio) && nonBlank(u.AvatarURL)
}

func nonBlank(s *string) bool { return s != nil && strings.TrimSpace(*s) != "" }
