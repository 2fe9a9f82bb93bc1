package userservice

// PlatformStats are the platform-wide user counts of GET /api/v1/users/stats
// (the seed's getStats). Every profile counts, soft-deleted ones included (under
// ByStatus deleted), so ByStatus and ByRole each add up to Total, and
// Verification counts among Total. ByStatus and ByRole name every status and
// role, with 0 for none.
type PlatformStats struct {
	Total        int64            `json:"total"`
	ByStatus     map[Status]int64 `json:"byStatus"`
	ByRole       map[Role]int64   `json:"byRole"`
	Verification Verification     `json:"verification"`
}

// Verification counts the users whose email is verified and whose profile is
// complete.
type Verification struct {
	EmailVerified    int64 `json:"emailVerified"`
	ProfileCompleted int64 `json:"profileCompleted"`
}

// NewPlatformStats returns empty stats with every status and role at 0.
func NewPlatformStats() PlatformStats {
	s := PlatformStats{ByStatus: map[Status]int64{}, ByRole: map[Role]int64{}}
	for _, st := range []Status{StatusActive, StatusInactive, StatusSuspended, StatusDeleted} {
		s.ByStatus[st] = 0
	}
	for _, r := range []Role{RoleAdmin, RoleInstructor, RoleStudent} {
		s.ByRole[r] = 0
	}
	return s
}

// Add counts n users with these attributes.
func (s *PlatformStats) Add(role Role, status Status, emailVerified, profileCompleted bool, n int64) {
	s.Total += n
	s.ByStatus[status] += n
	s.ByRole[role] += n
	if emailVerified {
		s.Verification.EmailVerified += n
	}
	if profileCompleted {
		s.Verification.ProfileCompleted += n
	}
}
