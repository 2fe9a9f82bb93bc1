package userservice

// Course roster and course statistics: the instructors' read path across
// users (GET /api/v1/courses/{courseId}/enrollments and .../stats). Enrollments
// live in per-user actors; these answers come from PostgreSQL, where every
// acknowledged enrollment change is committed.

// PublicProfile is the part of a User that other users (a course's
// instructors) may see.
type PublicProfile struct {
	ID          string  `json:"id"`
	Username    *string `json:"username"`
	FirstName   string  `json:"firstName"`
	LastName    string  `json:"lastName"`
	DisplayName *string `json:"displayName"`
	AvatarURL   *string `json:"avatarUrl"`
}

// CourseEnrollment is one row of a course roster: the enrollment and its
// user's public profile.
type CourseEnrollment struct {
	Enrollment
	User PublicProfile `json:"user"`
}

// RosterQuery selects one page of a course roster, in enrollment id order (ids
// are UUIDv7, so roughly enrollment order). Soft-deleted users are left out.
type RosterQuery struct {
	CourseID string
	Status   EnrollmentStatus // "" for every status
	After    string           // the last enrollment id of the previous page, "" for the first
	// Limit is how many rows to return, at most MaxPageSize+1: a page and one
	// more to tell whether another page follows.
	Limit int
	// CountTotal asks for the number of rows matching CourseID and Status.
	CountTotal bool
}

// CourseStats counts a course's enrollments of users that are not deleted:
// Enrolled is every enrollment whatever its status (dropped included, as in
// EnrollmentStats), AverageProgress is over all of them (0 when none).
type CourseStats struct {
	CourseID        string  `json:"courseId"`
	Enrolled        int64   `json:"enrolled"`
	Active          int64   `json:"active"`
	Completed       int64   `json:"completed"`
	Dropped         int64   `json:"dropped"`
	Suspended       int64   `json:"suspended"`
	AverageProgress float64 `json:"averageProgress"`
}
