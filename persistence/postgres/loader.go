package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice"
)

// Loader loads one user's committed state for actor activation. It is safe for
// concurrent use.
type Loader struct{ db *DB }

var _ userservice.StateLoader = (*Loader)(nil)

// NewLoader returns a Loader reading from db.
func NewLoader(db *DB) (*Loader, error) {
	if db == nil {
		return nil, errors.New("cannot create loader: nil DB")
	}
	return &Loader{db: db}, nil
}

const (
	loadUserSQL = `SELECT ` + userColumns + ` FROM users WHERE id = $1`

	loadEnrollmentsSQL = `SELECT id, course_id, enrollment_status, progress, time_spent_seconds, enrolled_at,
	completed_at, last_accessed_at, created_at, updated_at FROM enrollments WHERE user_id = $1`

	// value::text reads the json column back byte for byte as it was written.
	loadPreferencesSQL = `SELECT id, category, key, value::text, created_at, updated_at
	FROM preferences WHERE user_id = $1`

	loadAttributesSQL = `SELECT namespace, value::text FROM user_attributes WHERE user_id = $1`

	// The newest sessions, returned oldest first as State keeps them.
	loadSessionsSQL = `SELECT id, session_id, ip_address, user_agent, started_at, ended_at FROM (
	SELECT * FROM sessions WHERE user_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2
) s ORDER BY started_at, id`
)

// LoadState returns the user's committed state: the user row, every enrollment and
// preference and the newest userservice.MaxSessionsKept sessions, read in one round
// trip from one snapshot. It returns userservice.ErrUserNotFound when there is no
// such user.
func (l *Loader) LoadState(ctx context.Context, userID string) (*userservice.State, error) {
	id, ok := userservice.ParseID(userID)
	if !ok {
		return nil, userservice.ErrUserNotFound
	}
	ctx, cancel := l.db.timeout(ctx)
	defer cancel()

	s := &userservice.State{Enrollments: userservice.EnrollmentList{}, Preferences: userservice.PreferenceList{}}
	found := false
	b := &pgx.Batch{}
	// One snapshot for the four reads; BEGIN and COMMIT ride in the same round trip.
	b.Queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
	b.Queue(loadUserSQL, id).QueryRow(func(row pgx.Row) error {
		u, err := scanUser(row)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		s.User, found = u, err == nil
		return err
	})
	b.Queue(loadEnrollmentsSQL, id).Query(func(rows pgx.Rows) error {
		var es []*userservice.Enrollment
		for rows.Next() {
			e := userservice.Enrollment{UserID: id}
			var status string
			var enrolled, created, updated time.Time
			var completed, accessed *time.Time
			if err := rows.Scan(&e.ID, &e.CourseID, &status, &e.Progress, &e.TimeSpentSeconds, &enrolled,
				&completed, &accessed, &created, &updated); err != nil {
				return err
			}
			e.EnrollmentStatus = userservice.EnrollmentStatus(status)
			e.EnrolledAt, e.CreatedAt, e.UpdatedAt = userservice.NewTime(enrolled), userservice.NewTime(created), userservice.NewTime(updated)
			e.CompletedAt, e.LastAccessedAt = timePtr(completed), timePtr(accessed)
			e.ShareNames(id)
			es = append(es, &e)
		}
		if len(es) > 0 {
			// An exact-size copy, as for the preferences below.
			s.Enrollments = userservice.SortEnrollments(append(make([]*userservice.Enrollment, 0, len(es)), es...))
		}
		return rows.Err()
	})
	b.Queue(loadPreferencesSQL, id).Query(func(rows pgx.Rows) error {
		var ps []userservice.Preference
		for rows.Next() {
			p := userservice.Preference{UserID: id}
			var value string
			var created, updated time.Time
			if err := rows.Scan(&p.ID, &p.Category, &p.Key, &value, &created, &updated); err != nil {
				return err
			}
			p.Value = json.RawMessage(value)
			p.CreatedAt, p.UpdatedAt = userservice.NewTime(created), userservice.NewTime(updated)
			p.ShareNames()
			ps = append(ps, p)
		}
		if len(ps) > 0 {
			// An exact-size copy: the appends' spare capacity would stay with
			// the user's state for as long as it is hot.
			s.Preferences = userservice.SortPreferences(append(make([]userservice.Preference, 0, len(ps)), ps...))
		}
		return rows.Err()
	})
	b.Queue(loadAttributesSQL, id).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var ns, value string
			if err := rows.Scan(&ns, &value); err != nil {
				return err
			}
			if s.Attributes == nil {
				s.Attributes = map[string]json.RawMessage{}
			}
			s.Attributes[ns] = json.RawMessage(value)
		}
		return rows.Err()
	})
	b.Queue(loadSessionsSQL, id, userservice.MaxSessionsKept).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var x userservice.Session
			var started time.Time
			var ended *time.Time
			if err := rows.Scan(&x.ID, &x.SessionID, &x.IPAddress, &x.UserAgent, &started, &ended); err != nil {
				return err
			}
			x.StartedAt, x.EndedAt, x.Active = userservice.NewTime(started), timePtr(ended), ended == nil
			s.Sessions = append(s.Sessions, x)
		}
		return rows.Err()
	})
	b.Queue("COMMIT")
	if err := l.db.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, unavailable("cannot load user "+id, err)
	}
	if !found {
		return nil, userservice.ErrUserNotFound
	}
	return s, nil
}

// UserIDByAuthID returns the id of the user with that authId, or
// userservice.ErrUserNotFound.
func (l *Loader) UserIDByAuthID(ctx context.Context, authID string) (string, error) {
	return userIDByAuthID(ctx, l.db, authID)
}

func userIDByAuthID(ctx context.Context, db *DB, authID string) (string, error) {
	aid, ok := userservice.ParseID(authID)
	if !ok {
		return "", userservice.ErrUserNotFound
	}
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	var id string
	err := db.pool.QueryRow(ctx, `SELECT id FROM users WHERE auth_id = $1`, aid).Scan(&id)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", userservice.ErrUserNotFound
	case err != nil:
		return "", unavailable("cannot look up authId", err)
	}
	return id, nil
}

// UserVersion returns the committed version and lastActiveAt of the user with one
// primary-key lookup, or userservice.ErrUserNotFound. The Redis snapshot loader
// serves a snapshot only when its version equals this one.
func (l *Loader) UserVersion(ctx context.Context, userID string) (int64, *userservice.Time, error) {
	id, ok := userservice.ParseID(userID)
	if !ok {
		return 0, nil, userservice.ErrUserNotFound
	}
	ctx, cancel := l.db.timeout(ctx)
	defer cancel()
	var (
		version int64
		active  *time.Time
	)
	err := l.db.pool.QueryRow(ctx, `SELECT version, last_active_at FROM users WHERE id = $1`, id).Scan(&version, &active)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil, userservice.ErrUserNotFound
	case err != nil:
		return 0, nil, unavailable("cannot read user version", err)
	}
	if active == nil {
		return version, nil, nil
	}
	return version, userservice.TimePtr(*active), nil
}
