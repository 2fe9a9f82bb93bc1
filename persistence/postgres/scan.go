package postgres

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice"
)

// userColumns is the column list that scanUser reads, in its order.
const userColumns = `id, auth_id, email, username, first_name, last_name, display_name, avatar_url, bio, phone,
	timezone, language, role, status, email_verified, profile_completed, last_active_at, login_count,
	last_login_at, version, created_at, updated_at`

// scanUser scans one row that starts with userColumns; extra destinations follow.
func scanUser(row pgx.Row, extra ...any) (userservice.User, error) {
	var (
		u                     userservice.User
		role, status          string
		lastActive, lastLogin *time.Time
		created, updated      time.Time
	)
	dest := []any{&u.ID, &u.AuthID, &u.Email, &u.Username, &u.FirstName, &u.LastName, &u.DisplayName,
		&u.AvatarURL, &u.Bio, &u.Phone, &u.Timezone, &u.Language, &role, &status, &u.EmailVerified,
		&u.ProfileCompleted, &lastActive, &u.LoginCount, &lastLogin, &u.Version, &created, &updated}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return userservice.User{}, err
	}
	u.Role, u.Status = userservice.Role(role), userservice.Status(status)
	u.LastActiveAt, u.LastLoginAt = timePtr(lastActive), timePtr(lastLogin)
	u.CreatedAt, u.UpdatedAt = userservice.NewTime(created), userservice.NewTime(updated)
	return u, nil
}

// timePtr converts a nullable timestamptz.
func timePtr(t *time.Time) *userservice.Time {
	if t == nil {
		return nil
	}
	v := userservice.NewTime(*t)
	return &v
}

// timeArg is the argument for a nullable timestamptz.
func timeArg(t *userservice.Time) any {
	if t == nil {
		return nil
	}
	return t.Time
}
