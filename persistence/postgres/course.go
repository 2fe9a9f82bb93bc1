package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice"
)

// rosterSQL is one page of a course's enrollments after a given enrollment id,
// with the users' public profiles. It walks enrollments_course_idx from the
// cursor; the status filter and the deleted users are checked on the rows.
const rosterSQL = `SELECT e.id, e.user_id, e.enrollment_status, e.progress, e.time_spent_seconds, e.enrolled_at,
	e.completed_at, e.last_accessed_at, e.created_at, e.updated_at,
	u.username, u.first_name, u.last_name, u.display_name, u.avatar_url
FROM enrollments e JOIN users u ON u.id = e.user_id
WHERE e.course_id = $1 AND e.id > $2 AND ($3 = '' OR e.enrollment_status = $3) AND u.status <> 'deleted'
ORDER BY e.id LIMIT $4`

const rosterCountSQL = `SELECT count(*) FROM enrollments e JOIN users u ON u.id = e.user_id
WHERE e.course_id = $1 AND ($2 = '' OR e.enrollment_status = $2) AND u.status <> 'deleted'`

// minID sorts before every UUID: the first page's cursor.
const minID = "00000000-0000-0000-0000-000000000000"

// CourseRoster returns one page of a course's roster (see
// userservice.Directory), the page and the total read in one snapshot.
func (d *Directory) CourseRoster(ctx context.Context, q userservice.RosterQuery) ([]userservice.CourseEnrollment, int64, error) {
	course, ok := userservice.ParseID(q.CourseID)
	if !ok {
		return []userservice.CourseEnrollment{}, 0, nil
	}
	after := minID
	if q.After != "" {
		if after, ok = userservice.ParseID(q.After); !ok {
			return nil, 0, userservice.Errorf(userservice.ECodeValidation, "bad roster cursor")
		}
	}
	limit := q.Limit
	if limit < 1 || limit > userservice.MaxPageSize+1 {
		limit = userservice.MaxPageSize + 1
	}
	ctx, cancel := d.db.timeout(ctx)
	defer cancel()
	out := make([]userservice.CourseEnrollment, 0, limit)
	total := int64(-1)
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
	if q.CountTotal {
		b.Queue(rosterCountSQL, course, string(q.Status)).QueryRow(func(row pgx.Row) error { return row.Scan(&total) })
	}
	b.Queue(rosterSQL, course, after, string(q.Status), limit).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			e := userservice.CourseEnrollment{}
			e.CourseID = course
			var status string
			var enrolled, created, updated time.Time
			var completed, accessed *time.Time
			if err := rows.Scan(&e.ID, &e.UserID, &status, &e.Progress, &e.TimeSpentSeconds, &enrolled,
				&completed, &accessed, &created, &updated,
				&e.User.Username, &e.User.FirstName, &e.User.LastName, &e.User.DisplayName, &e.User.AvatarURL); err != nil {
				return err
			}
			e.EnrollmentStatus = userservice.EnrollmentStatus(status)
			e.EnrolledAt, e.CreatedAt, e.UpdatedAt = userservice.NewTime(enrolled), userservice.NewTime(created), userservice.NewTime(updated)
			e.CompletedAt, e.LastAccessedAt = timePtr(completed), timePtr(accessed)
			e.User.ID = e.UserID
			out = append(out, e)
		}
		return rows.Err()
	})
	b.Queue("COMMIT")
	if err := d.db.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, unavailable("cannot read the course roster", err)
	}
	return out, total, nil
}

// courseStatsSQL counts a course's enrollments of users not deleted, through
// enrollments_course_idx.
const courseStatsSQL = `SELECT count(*),
	count(*) FILTER (WHERE e.enrollment_status = 'active'),
	count(*) FILTER (WHERE e.enrollment_status = 'completed'),
	count(*) FILTER (WHERE e.enrollment_status = 'dropped'),
	count(*) FILTER (WHERE e.enrollment_status = 'suspended'),
	coalesce(avg(e.progress), 0)
FROM enrollments e JOIN users u ON u.id = e.user_id
WHERE e.course_id = $1 AND u.status <> 'deleted'`

// CourseStats counts a course's enrollments (see userservice.Directory).
func (d *Directory) CourseStats(ctx context.Context, courseID string) (userservice.CourseStats, error) {
	s := userservice.CourseStats{CourseID: courseID}
	course, ok := userservice.ParseID(courseID)
	if !ok {
		return s, nil
	}
	ctx, cancel := d.db.timeout(ctx)
	defer cancel()
	err := d.db.pool.QueryRow(ctx, courseStatsSQL, course).
		Scan(&s.Enrolled, &s.Active, &s.Completed, &s.Dropped, &s.Suspended, &s.AverageProgress)
	if err != nil {
		return s, unavailable("cannot read the course stats", err)
	}
	return s, nil
}
