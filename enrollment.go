package userservice

import "math"

// EnrollmentStatus is the state of one enrollment.
type EnrollmentStatus string

// Enrollment statuses.
const (
	EnrollmentActive    EnrollmentStatus = "active"
	EnrollmentCompleted EnrollmentStatus = "completed"
	EnrollmentDropped   EnrollmentStatus = "dropped"
	EnrollmentSuspended EnrollmentStatus = "suspended"
)

// Valid reports whether s is a known enrollment status.
func (s EnrollmentStatus) Valid() bool {
	return s == EnrollmentActive || s == EnrollmentCompleted || s == EnrollmentDropped || s == EnrollmentSuspended
}

// Enrollment is one user's enrollment in one course.
type Enrollment struct {
	ID               string           `json:"id"`
	UserID           string           `json:"userId"`
	CourseID         string           `json:"courseId"`
	EnrollmentStatus EnrollmentStatus `json:"enrollmentStatus"`
	Progress         float64          `json:"progress"`
	TimeSpentSeconds int64            `json:"timeSpentSeconds"`
	EnrolledAt       Time             `json:"enrolledAt"`
	CompletedAt      *Time            `json:"completedAt"`
	LastAccessedAt   *Time            `json:"lastAccessedAt"`
	CreatedAt        Time             `json:"createdAt"`
	UpdatedAt        Time             `json:"updatedAt"`
}

// CreateEnrollment is the body of POST /users/{id}/enrollments.
type CreateEnrollment struct {
	CourseID string `json:"courseId"`
}

// Validate checks and canonicalizes the course id.
func (c *CreateEnrollment) Validate() error {
	var v validator
	if id, ok := ParseID(c.CourseID); ok {
		c.CourseID = id
	} else {
		v.add("courseId", "must be a UUID")
	}
	return v.err()
}

// UpdateEnrollment is the body of PUT /users/{id}/enrollments/{courseId}.
type UpdateEnrollment struct {
	EnrollmentStatus *EnrollmentStatus `json:"enrollmentStatus,omitempty"`
	Progress         *float64          `json:"progress,omitempty"`
	TimeSpentSeconds *int64            `json:"timeSpentSeconds,omitempty"`
}

// Validate checks that at least one field is set and each is in range.
func (u *UpdateEnrollment) Validate() error {
	var v validator
	if u.EnrollmentStatus == nil && u.Progress == nil {
		v.add("body", "enrollmentStatus or progress is required")
	}
	if u.EnrollmentStatus != nil && !u.EnrollmentStatus.Valid() {
		v.add("enrollmentStatus", "must be one of active, completed, dropped, suspended")
	}
	if u.Progress != nil {
		validProgress(&v, *u.Progress)
	}
	if u.TimeSpentSeconds != nil {
		validTimeSpent(&v, *u.TimeSpentSeconds)
	}
	return v.err()
}

// UpdateProgress is the body of PUT /users/{id}/enrollments/{courseId}/progress.
type UpdateProgress struct {
	Progress         *float64 `json:"progress"`
	TimeSpentSeconds *int64   `json:"timeSpentSeconds,omitempty"`
}

// Validate checks that progress is given and in 0–100.
func (u *UpdateProgress) Validate() error {
	var v validator
	if u.Progress == nil {
		v.add("progress", "is required")
	} else {
		validProgress(&v, *u.Progress)
	}
	if u.TimeSpentSeconds != nil {
		validTimeSpent(&v, *u.TimeSpentSeconds)
	}
	return v.err()
}

func validProgress(v *validator, p float64) {
	if math.IsNaN(p) || math.IsInf(p, 0) || p < 0 || p > 100 {
		v.add("progress", "must be a number from 0 to 100")
	}
}

func validTimeSpent(v *validator, s int64) {
	if s < 0 || s > 86400 {
		v.add("timeSpentSeconds", "must be an integer from 0 to 86400")
	}
}

// EnrollmentStats summarizes every enrollment of a user, dropped ones included.
type EnrollmentStats struct {
	TotalCourses       int     `json:"totalCourses"`
	ActiveCourses      int     `json:"activeCourses"`
	CompletedCourses   int     `json:"completedCourses"`
	DroppedCourses     int     `json:"droppedCourses"`
	AverageProgress    float64 `json:"averageProgress"`
	TotalTimeSpent     int64   `json:"totalTimeSpent"`
	LastAccessedCourse *string `json:"lastAccessedCourse"`
	LastAccessedAt     *Time   `json:"lastAccessedAt"`
}

// UserStats is the answer of GET /users/{id}/stats.
type UserStats struct {
	TotalEnrollments            int     `json:"totalEnrollments"`
	ActiveEnrollments           int     `json:"activeEnrollments"`
	CompletedEnrollments        int     `json:"completedEnrollments"`
	TotalProgress               float64 `json:"totalProgress"`
	AverageProgress             float64 `json:"averageProgress"`
	LastLoginAt                 *Time   `json:"lastLoginAt"`
	TotalLoginCount             int64   `json:"totalLoginCount"`
	ProfileCompletionPercentage int     `json:"profileCompletionPercentage"`
}

// round2 rounds to two decimals, so averages read as people expect.
func round2(f float64) float64 { return math.Round(f*100) / 100 }
