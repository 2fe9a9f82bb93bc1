package postgres

import (
	"errors"
	"slices"
	"time"

	json "github.com/goccy/go-json"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lms-platform/userservice"
)

// IdempotencyTTL is how long an idempotency key holds its first answer (CONTRACT.md,
// Details: kept 24 h). An older key may be taken again.
const IdempotencyTTL = 24 * time.Hour

// ProcessedMessageRetention is how long consumed message ids are remembered.
const ProcessedMessageRetention = 7 * 24 * time.Hour

// Statements of one mutation. Each is a prepared statement cached per connection;
// a batch pipelines them, so a mutation costs no round trip of its own.
const (
	insertUserSQL = `INSERT INTO users (` + userColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)`

	// The fence: the row must still be at the version the mutation was computed
	// from. last_active_at only moves forward, as TouchLastActive may have written a
	// newer value behind the actor's back.
	updateUserSQL = `UPDATE users SET auth_id = $3, email = $4, username = $5, first_name = $6, last_name = $7,
	display_name = $8, avatar_url = $9, bio = $10, phone = $11, timezone = $12, language = $13, role = $14,
	status = $15, email_verified = $16, profile_completed = $17,
	last_active_at = GREATEST(last_active_at, $18::timestamptz), login_count = $19, last_login_at = $20,
	version = $21, updated_at = $22
	WHERE id = $1 AND version = $2`

	upsertEnrollmentSQL = `INSERT INTO enrollments (id, user_id, course_id, enrollment_status, progress,
	time_spent_seconds, enrolled_at, completed_at, last_accessed_at, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
	ON CONFLICT (user_id, course_id) DO UPDATE SET enrollment_status = EXCLUDED.enrollment_status,
	progress = EXCLUDED.progress, time_spent_seconds = EXCLUDED.time_spent_seconds,
	enrolled_at = EXCLUDED.enrolled_at, completed_at = EXCLUDED.completed_at,
	last_accessed_at = EXCLUDED.last_accessed_at, updated_at = EXCLUDED.updated_at`

	deleteEnrollmentSQL = `DELETE FROM enrollments WHERE user_id = $1 AND course_id = $2`

	// The value goes in as text so that the json column keeps it byte for byte.
	upsertPreferenceSQL = `INSERT INTO preferences (id, user_id, category, key, value, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5::text::json, $6, $7)
	ON CONFLICT (user_id, category, key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at`

	deletePreferenceSQL = `DELETE FROM preferences WHERE user_id = $1 AND category = $2 AND key = $3`

	// doc is {namespace: value}, what the search's GIN index holds (migration 00050).
	upsertAttributesSQL = `INSERT INTO user_attributes (user_id, namespace, value, doc, updated_at)
	VALUES ($1, $2, $3::text::jsonb, jsonb_build_object($2::text, $3::text::jsonb), $4)
	ON CONFLICT (user_id, namespace) DO UPDATE SET value = EXCLUDED.value, doc = EXCLUDED.doc, updated_at = EXCLUDED.updated_at`

	deleteAttributesSQL = `DELETE FROM user_attributes WHERE user_id = $1 AND namespace = $2`

	// A session id seen again restarts the session under the id the actor holds.
	// endSessionsSQL ends open sessions beyond the actor's newest ones: the one
	// named, or all when the name is ''.
	endSessionsSQL = `UPDATE sessions SET ended_at = $3
WHERE user_id = $1 AND ended_at IS NULL AND ($2 = '' OR session_id = $2) AND session_id <> ALL($4::text[])`
	upsertSessionSQL = `INSERT INTO sessions (id, user_id, session_id, ip_address, user_agent, started_at, ended_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7)
	ON CONFLICT (user_id, session_id) DO UPDATE SET id = EXCLUDED.id, ip_address = EXCLUDED.ip_address,
	user_agent = EXCLUDED.user_agent, started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at`

	insertOutboxSQL = `INSERT INTO outbox (event_id, user_id, routing_key, payload, sequence) VALUES ($1, $2, $3, $4, $5)`

	insertAuditSQL = `INSERT INTO audit_log (id, user_id, actor_id, action, before, after, correlation_id, created_at)
	VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, $7, $8)`

	insertProcessedSQL = `INSERT INTO processed_messages (message_id) VALUES ($1) ON CONFLICT DO NOTHING`

	// A key older than the TTL is expired and may be taken again.
	insertIdempotencySQL = `INSERT INTO idempotency_keys (caller_id, key, request_hash, status, body, created_at)
	VALUES ($1, $2, $3, $4, $5, $6)
	ON CONFLICT (caller_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, status = EXCLUDED.status,
	body = EXCLUDED.body, created_at = EXCLUDED.created_at
	WHERE idempotency_keys.created_at < $7`

	// A bulk job item's result, written with the change it made and only while the
	// item has none (issue 15): a second application of the item changes no row.
	recordJobItemSQL = `UPDATE job_items SET status = $3, user_id = $4, error = NULL, payload = NULL, done_at = now()
	WHERE job_id = $1 AND item = $2 AND status IS NULL`

	// The checked statements of a batch, as the writer sends them (see fenceHead).
	fencedUpdateUserSQL      = fenceHead + updateUserSQL + fenceTail
	fencedInsertProcessedSQL = fenceHead + insertProcessedSQL + fenceTail
	fencedInsertIdempotency  = fenceHead + insertIdempotencySQL + fenceTail
	fencedRecordJobItemSQL   = fenceHead + recordJobItemSQL + fenceTail
)

// A batch sends its COMMIT in the same round trip as its statements (runTx), so
// a statement that must change exactly one row (the version fence, a new
// processed message id, a free idempotency key) cannot be checked in Go after
// its result arrived: PostgreSQL would already have committed the rest. Wrapped
// in fenceHead and fenceTail, such a statement fails in PostgreSQL itself with
// a division by zero (SQLSTATE fenceFailedCode) when it changed no row, which
// aborts the transaction before the COMMIT.
const (
	fenceHead       = `WITH fenced AS (`
	fenceTail       = ` RETURNING 1) SELECT 1 / count(*) FROM fenced`
	fenceFailedCode = "22012" // division_by_zero
)

// The set statements of a batch (issue 16): in a batch of several users, the
// profile UPDATE of every mutation that only updates its user (no registration,
// no erasure), the enrollment and preference writes and the outbox rows of those
// mutations go to PostgreSQL as one statement each over arrays, instead of one
// statement per row; a user row, enrollment or preference the mutation knows
// goes to a narrower UPDATE. Per write, PostgreSQL's CPU time fell from 0.13 to
// 0.075 ms for PUT /me's statements in batches of 13 (docs/design.md, "Set
// statements"). The UPDATE is fenced like the single one: it must change one row per mutation,
// else the transaction aborts with fenceFailedCode. A set statement cannot say
// which mutation failed it, so the writer then commits the batch again with one
// statement per row, which can (Writer.commitBatch).
//
// Ids go as text[] and are cast to uuid in PostgreSQL: pgx encodes a uuid[]
// parameter in binary only from UUID values, so from []string it first failed
// (building an error that printed the whole array), then encoded the array as a
// text literal, 11% of the writer's allocated bytes in BenchmarkWriterBatch. An
// id that is not a UUID still fails the statement in PostgreSQL, as before.
const (
	setUpdateUsersSQL = fenceHead + `UPDATE users u SET auth_id = v.auth_id::uuid, email = v.email, username = v.username,
	first_name = v.first_name, last_name = v.last_name, display_name = v.display_name, avatar_url = v.avatar_url,
	bio = v.bio, phone = v.phone, timezone = v.timezone, language = v.language, role = v.role, status = v.status,
	email_verified = v.email_verified, profile_completed = v.profile_completed,
	last_active_at = GREATEST(u.last_active_at, v.last_active_at), login_count = v.login_count,
	last_login_at = v.last_login_at, version = v.version, updated_at = v.updated_at
	FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
		$9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::bool[],
		$17::bool[], $18::timestamptz[], $19::bigint[], $20::timestamptz[], $21::bigint[], $22::timestamptz[])
	AS v(id, base, auth_id, email, username, first_name, last_name, display_name, avatar_url, bio, phone, timezone,
		language, role, status, email_verified, profile_completed, last_active_at, login_count, last_login_at,
		version, updated_at)
	WHERE u.id = v.id::uuid AND u.version = v.base RETURNING u.id, u.updated_at),
	ordered AS (UPDATE user_updated_order o SET changed_at = f.updated_at FROM fenced f
		WHERE o.user_id = f.id AND o.changed_at IS DISTINCT FROM f.updated_at)
	SELECT 1 / (count(*) = $23)::int FROM fenced`

	// The span of setUpdateUsersSQL, in which the trigger on users leaves
	// user_updated_order to the statement (migration 00140). Local to the
	// transaction, and switched off again right after the statement, so that no
	// later statement of the transaction can skip the trigger.
	keepUpdatedOrderSQL  = `SELECT set_config('userservice.updated_order_kept', 'on', true)`
	leaveUpdatedOrderSQL = `SELECT set_config('userservice.updated_order_kept', '', true)`

	// The UPDATE of the mutations that change only their user's version
	// (Mutation.VersionOnly: an enrollment, progress, a preference), fenced the
	// same way: three arrays instead of twenty-two to encode, send and decode.
	setBumpVersionsSQL = fenceHead + `UPDATE users u SET version = v.version
	FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(id, base, version)
	WHERE u.id = v.id::uuid AND u.version = v.base RETURNING 1) SELECT 1 / (count(*) = $4)::int FROM fenced`

	// The rows a mutation does not know (a new enrollment, a new preference key)
	// are inserted over arrays without the single statements' ON CONFLICT: the
	// fenced UPDATE before them proved the user's state is the committed one, and
	// that state has no row under the key, so the table has none either. Without
	// the arbiter the INSERT skips a probe of the unique index and the speculative
	// insertion's confirmation record (2.2-2.9 µs of PostgreSQL per row, 13%, in a
	// loop of 14-row INSERTs). Should the state and the table disagree all the
	// same, the unique key fails the statement, and the batch's retry with one
	// statement per row upserts it as before. A mutation never holds one key
	// twice (the domain merges them), and a batch never holds one user twice.
	setInsertEnrollmentsSQL = `INSERT INTO enrollments (id, user_id, course_id, enrollment_status, progress,
	time_spent_seconds, enrolled_at, completed_at, last_accessed_at, created_at, updated_at)
	SELECT id::uuid, user_id::uuid, course_id::uuid, status, progress, spent, enrolled_at, completed_at,
		accessed_at, created_at, updated_at
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::bigint[],
		$7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[])
	AS t(id, user_id, course_id, status, progress, spent, enrolled_at, completed_at, accessed_at, created_at,
		updated_at)`

	setInsertPreferencesSQL = `INSERT INTO preferences (id, user_id, category, key, value, created_at, updated_at)
	SELECT id::uuid, user_id::uuid, category, key, value::json, created_at, updated_at
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[])
	AS t(id, user_id, category, key, value, created_at, updated_at)`

	// The enrollments and preferences a mutation knows to exist
	// (Mutation.EnrollmentKnown, PreferenceKnown: a progress, a changed value)
	// are updated through their unique keys, as the single statements' DO
	// UPDATE does: an INSERT ... ON CONFLICT first probes the key, then locks the
	// row (a WAL record of its own) and updates it; the UPDATE does the last step
	// only.
	// Fenced: a row that is not there fails the batch's set statements, and the
	// retry with one statement per row upserts it.
	setUpdateEnrollmentsSQL = fenceHead + `UPDATE enrollments e SET enrollment_status = v.status, progress = v.progress,
	time_spent_seconds = v.spent, enrolled_at = v.enrolled_at, completed_at = v.completed_at,
	last_accessed_at = v.accessed_at, updated_at = v.updated_at
	FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::bigint[], $6::timestamptz[], $7::timestamptz[],
		$8::timestamptz[], $9::timestamptz[])
	AS v(user_id, course_id, status, progress, spent, enrolled_at, completed_at, accessed_at, updated_at)
	WHERE e.user_id = v.user_id::uuid AND e.course_id = v.course_id::uuid
	RETURNING 1) SELECT 1 / (count(*) = $10)::int FROM fenced`

	setUpdatePreferencesSQL = fenceHead + `UPDATE preferences p SET value = v.value::json, updated_at = v.updated_at
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS v(user_id, category, key, value, updated_at)
	WHERE p.user_id = v.user_id::uuid AND p.category = v.category AND p.key = v.key
	RETURNING 1) SELECT 1 / (count(*) = $6)::int FROM fenced`

	// The rows keep the order of the arrays (mutation by mutation, each one's
	// events in order), so that outbox ids follow it as with one INSERT per row.
	setInsertOutboxSQL = `INSERT INTO outbox (event_id, user_id, routing_key, payload, sequence)
	SELECT event_id::uuid, user_id::uuid, routing_key, payload, sequence
	FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[])
	WITH ORDINALITY AS t(event_id, user_id, routing_key, payload, sequence, n)
	ORDER BY n`
)

// batchSet collects the arguments of a batch's set statements.
type batchSet struct {
	// room is where the set statements' parameters are encoded (paramRoom); nil
	// lets pgx allocate a buffer per statement.
	room *[]byte

	// users: one entry per mutation, in the column order of setUpdateUsersSQL.
	ids, authIDs                                        []string
	bases, logins, versions                             []int64
	emails, firstNames, lastNames, timezones, languages []string
	roles, statuses                                     []string
	usernames, displayNames, avatars, bios, phones      []*string
	verified, completed                                 []bool
	lastActive, lastLogin                               []*time.Time
	updated                                             []time.Time

	// version bumps: one entry per VersionOnly mutation, in the column order of
	// setBumpVersionsSQL.
	bumpIDs                 []string
	bumpBases, bumpVersions []int64

	// enrollments and preferences: new rows (or rows the mutation does not know)
	// go to the INSERTs, rows it knows to the UPDATEs.
	enrollInserts, enrollUpdates enrollmentArrays
	prefInserts, prefUpdates     preferenceArrays

	// outbox: one entry per event.
	eventIDs, eventUsers, routingKeys []string
	payloads                          [][]byte
	sequences                         []int64
}

// newBatchSet returns a batchSet with room for the user updates and events of
// items, so that adding them does not grow the arrays.
func newBatchSet(items []*txItem) *batchSet {
	users, bumps, events, enrolls, prefs := 0, 0, 0, 0, 0
	for _, it := range items {
		if setEligible(it.p.m) {
			if it.p.m.VersionOnly {
				bumps++
			} else {
				users++
			}
			events += len(it.p.m.Events)
			enrolls += len(it.p.m.EnrollmentUpserts)
			prefs += len(it.p.m.PreferenceUpserts)
		}
	}
	s := &batchSet{
		ids: make([]string, 0, users), authIDs: make([]string, 0, users),
		bases: make([]int64, 0, users), logins: make([]int64, 0, users), versions: make([]int64, 0, users),
		emails: make([]string, 0, users), firstNames: make([]string, 0, users), lastNames: make([]string, 0, users),
		timezones: make([]string, 0, users), languages: make([]string, 0, users),
		roles: make([]string, 0, users), statuses: make([]string, 0, users),
		usernames: make([]*string, 0, users), displayNames: make([]*string, 0, users), avatars: make([]*string, 0, users),
		bios: make([]*string, 0, users), phones: make([]*string, 0, users),
		verified: make([]bool, 0, users), completed: make([]bool, 0, users),
		lastActive: make([]*time.Time, 0, users), lastLogin: make([]*time.Time, 0, users), updated: make([]time.Time, 0, users),
		eventIDs: make([]string, 0, events), eventUsers: make([]string, 0, events), routingKeys: make([]string, 0, events),
		payloads: make([][]byte, 0, events), sequences: make([]int64, 0, events),
		bumpIDs: make([]string, 0, bumps), bumpBases: make([]int64, 0, bumps), bumpVersions: make([]int64, 0, bumps),
	}
	// Whether a row goes to the INSERT or the UPDATE is known only when it is
	// added; room for all of them on the side most mutations take (a new
	// enrollment, a known preference), the other grows as it goes.
	s.enrollInserts.grow(enrolls)
	s.prefUpdates.grow(prefs)
	return s
}

// setEligible reports whether m's statements may join a batch's set statements:
// it updates its user (a registration inserts it, and an erasure's statements
// must come before its own events and after its user's update).
func setEligible(m *userservice.Mutation) bool {
	return !m.Create && m.Erasure == nil
}

// add takes the item's user update, enrollment and preference rows and events
// into the set statements.
func (s *batchSet) add(it *txItem) {
	m, u := it.p.m, &it.p.m.User
	if m.VersionOnly {
		s.bumpIDs = append(s.bumpIDs, u.ID)
		s.bumpBases = append(s.bumpBases, m.BaseVersion)
		s.bumpVersions = append(s.bumpVersions, u.Version)
	} else {
		s.addUser(m)
	}
	s.addRows(it)
}

// addUser takes m's whole user row into the full UPDATE.
func (s *batchSet) addUser(m *userservice.Mutation) {
	u := &m.User
	s.ids = append(s.ids, u.ID)
	s.bases = append(s.bases, m.BaseVersion)
	s.authIDs = append(s.authIDs, u.AuthID)
	s.emails = append(s.emails, u.Email)
	s.usernames = append(s.usernames, u.Username)
	s.firstNames = append(s.firstNames, u.FirstName)
	s.lastNames = append(s.lastNames, u.LastName)
	s.displayNames = append(s.displayNames, u.DisplayName)
	s.avatars = append(s.avatars, u.AvatarURL)
	s.bios = append(s.bios, u.Bio)
	s.phones = append(s.phones, u.Phone)
	s.timezones = append(s.timezones, u.Timezone)
	s.languages = append(s.languages, u.Language)
	s.roles = append(s.roles, string(u.Role))
	s.statuses = append(s.statuses, string(u.Status))
	s.verified = append(s.verified, u.EmailVerified)
	s.completed = append(s.completed, u.ProfileCompleted)
	s.lastActive = append(s.lastActive, timePtrArg(u.LastActiveAt))
	s.logins = append(s.logins, u.LoginCount)
	s.lastLogin = append(s.lastLogin, timePtrArg(u.LastLoginAt))
	s.versions = append(s.versions, u.Version)
	s.updated = append(s.updated, u.UpdatedAt.Time)
}

// addRows takes the item's enrollment and preference rows and its events.
func (s *batchSet) addRows(it *txItem) {
	m, u := it.p.m, &it.p.m.User
	for i := range m.EnrollmentUpserts {
		to := &s.enrollInserts
		if m.EnrollmentIsKnown(i) {
			to = &s.enrollUpdates
		}
		to.add(u.ID, &m.EnrollmentUpserts[i])
	}
	for i := range m.PreferenceUpserts {
		to := &s.prefInserts
		if m.PreferenceIsKnown(i) {
			to = &s.prefUpdates
		}
		to.add(u.ID, &m.PreferenceUpserts[i])
	}
	for i := range m.Events {
		e := &m.Events[i]
		s.eventIDs = append(s.eventIDs, e.ID)
		s.eventUsers = append(s.eventUsers, u.ID)
		s.routingKeys = append(s.routingKeys, e.Type)
		s.payloads = append(s.payloads, it.payloads[i])
		s.sequences = append(s.sequences, e.Sequence)
	}
}

// queue appends the set statements to b; fail is called with the error of the
// first that fails.
func (s *batchSet) queue(b *pgx.Batch, fail func(error)) {
	add := func(sql string, args ...any) {
		b.Queue(sql, withSizedArgs(args, s.room)...).Fn = func(br pgx.BatchResults) error {
			_, err := br.Exec()
			if err != nil {
				fail(err)
			}
			return err
		}
	}
	if len(s.ids) > 0 {
		add(keepUpdatedOrderSQL)
		add(setUpdateUsersSQL, s.ids, s.bases, s.authIDs, s.emails, s.usernames, s.firstNames, s.lastNames,
			s.displayNames, s.avatars, s.bios, s.phones, s.timezones, s.languages, s.roles, s.statuses, s.verified,
			s.completed, s.lastActive, s.logins, s.lastLogin, s.versions, s.updated, len(s.ids))
		add(leaveUpdatedOrderSQL)
	}
	if len(s.bumpIDs) > 0 {
		add(setBumpVersionsSQL, s.bumpIDs, s.bumpBases, s.bumpVersions, len(s.bumpIDs))
	}
	if e := &s.enrollInserts; len(e.ids) > 0 {
		add(setInsertEnrollmentsSQL, e.insertArgs()...)
	}
	if e := &s.enrollUpdates; len(e.users) > 0 {
		add(setUpdateEnrollmentsSQL, e.updateArgs()...)
	}
	if p := &s.prefUpdates; len(p.users) > 0 {
		add(setUpdatePreferencesSQL, p.updateArgs()...)
	}
	if p := &s.prefInserts; len(p.ids) > 0 {
		add(setInsertPreferencesSQL, p.insertArgs()...)
	}
	if len(s.eventIDs) > 0 {
		add(setInsertOutboxSQL, s.eventIDs, s.eventUsers, s.routingKeys, s.payloads, s.sequences)
	}
}

// timePtrArg is a nullable timestamptz as an array element.
func timePtrArg(t *userservice.Time) *time.Time {
	if t == nil {
		return nil
	}
	return &t.Time
}

// enrollmentArrays are enrollment rows as the arrays of setInsertEnrollmentsSQL
// and setUpdateEnrollmentsSQL, one entry per row.
type enrollmentArrays struct {
	ids, users, courses, statuses []string
	progress                      []float64
	spent                         []int64
	enrolledAt, created, updated  []time.Time
	completedAt, accessedAt       []*time.Time
}

func (a *enrollmentArrays) grow(n int) {
	a.ids, a.users, a.courses, a.statuses = slices.Grow(a.ids, n), slices.Grow(a.users, n), slices.Grow(a.courses, n), slices.Grow(a.statuses, n)
	a.progress, a.spent = slices.Grow(a.progress, n), slices.Grow(a.spent, n)
	a.enrolledAt, a.created, a.updated = slices.Grow(a.enrolledAt, n), slices.Grow(a.created, n), slices.Grow(a.updated, n)
	a.completedAt, a.accessedAt = slices.Grow(a.completedAt, n), slices.Grow(a.accessedAt, n)
}

func (a *enrollmentArrays) add(userID string, e *userservice.Enrollment) {
	a.ids = append(a.ids, e.ID)
	a.users = append(a.users, userID)
	a.courses = append(a.courses, e.CourseID)
	a.statuses = append(a.statuses, string(e.EnrollmentStatus))
	a.progress = append(a.progress, e.Progress)
	a.spent = append(a.spent, e.TimeSpentSeconds)
	a.enrolledAt = append(a.enrolledAt, e.EnrolledAt.Time)
	a.completedAt = append(a.completedAt, timePtrArg(e.CompletedAt))
	a.accessedAt = append(a.accessedAt, timePtrArg(e.LastAccessedAt))
	a.created = append(a.created, e.CreatedAt.Time)
	a.updated = append(a.updated, e.UpdatedAt.Time)
}

// insertArgs are setInsertEnrollmentsSQL's parameters.
func (a *enrollmentArrays) insertArgs() []any {
	return []any{a.ids, a.users, a.courses, a.statuses, a.progress, a.spent, a.enrolledAt, a.completedAt,
		a.accessedAt, a.created, a.updated}
}

// updateArgs are setUpdateEnrollmentsSQL's: only what the UPDATE reads (the ids
// and creation times stay home: less to encode, send and decode).
func (a *enrollmentArrays) updateArgs() []any {
	return []any{a.users, a.courses, a.statuses, a.progress, a.spent, a.enrolledAt, a.completedAt, a.accessedAt,
		a.updated, len(a.users)}
}

// preferenceArrays are preference rows as the arrays of setInsertPreferencesSQL
// and setUpdatePreferencesSQL, one entry per row.
type preferenceArrays struct {
	ids                             []uuid.UUID // as text only for the INSERT (insertArgs)
	users, categories, keys, values []string
	created, updated                []time.Time
}

func (a *preferenceArrays) grow(n int) {
	a.ids, a.users, a.categories, a.keys = slices.Grow(a.ids, n), slices.Grow(a.users, n), slices.Grow(a.categories, n), slices.Grow(a.keys, n)
	a.values, a.created, a.updated = slices.Grow(a.values, n), slices.Grow(a.created, n), slices.Grow(a.updated, n)
}

func (a *preferenceArrays) add(userID string, p *userservice.Preference) {
	a.ids = append(a.ids, p.ID)
	a.users = append(a.users, userID)
	a.categories = append(a.categories, p.Category)
	a.keys = append(a.keys, p.Key)
	a.values = append(a.values, string(p.Value))
	a.created = append(a.created, p.CreatedAt.Time)
	a.updated = append(a.updated, p.UpdatedAt.Time)
}

// insertArgs are setInsertPreferencesSQL's parameters.
func (a *preferenceArrays) insertArgs() []any {
	ids := make([]string, len(a.ids))
	for i, id := range a.ids {
		ids[i] = id.String()
	}
	return []any{ids, a.users, a.categories, a.keys, a.values, a.created, a.updated}
}

// updateArgs are setUpdatePreferencesSQL's: only what the UPDATE reads.
func (a *preferenceArrays) updateArgs() []any {
	return []any{a.users, a.categories, a.keys, a.values, a.updated, len(a.users)}
}

// txItem is one mutation ready to be queued: checked, its JSON encoded.
type txItem struct {
	p        pending
	payloads [][]byte     // outbox payloads, one per event
	audit    [][2]*string // before and after of each audit record
}

// prepareItem checks p's mutation and encodes its JSON, so that a mutation that
// cannot be written fails alone before any batch is sent.
func prepareItem(p pending) (*txItem, error) {
	m := p.m
	switch {
	case m == nil:
		return nil, userservice.Errorf(userservice.ECodeInternal, "nil mutation")
	case m.UserID == "" || m.UserID != m.User.ID:
		return nil, userservice.Errorf(userservice.ECodeInternal, "mutation of user %q carries user %q", m.UserID, m.User.ID)
	case m.Create != (m.BaseVersion == 0) || m.User.Version != m.BaseVersion+1:
		return nil, userservice.Errorf(userservice.ECodeInternal, "mutation of user %s: version %d after base %d (create %t)",
			m.UserID, m.User.Version, m.BaseVersion, m.Create)
	}
	it := &txItem{p: p, payloads: make([][]byte, len(m.Events)), audit: make([][2]*string, len(m.Audit))}
	for i := range m.Events {
		b, err := json.Marshal(&m.Events[i])
		if err != nil {
			return nil, userservice.Wrap(userservice.ECodeInternal, "cannot encode event", err)
		}
		it.payloads[i] = b
	}
	for i, a := range m.Audit {
		for j, v := range []map[string]any{a.Before, a.After} {
			if v == nil {
				continue
			}
			b, err := json.Marshal(v)
			if err != nil {
				return nil, userservice.Wrap(userservice.ECodeInternal, "cannot encode audit record", err)
			}
			s := string(b)
			it.audit[i][j] = &s
		}
	}
	return it, nil
}

// queue appends the item's statements to b. fail is called with the error of the
// first statement that fails (a driver error, or a domain error for a fence or a
// taken key); the batch then stops. With set non-nil and an eligible mutation,
// its user update and outbox rows go into set instead, which the caller queues
// after every item.
func (it *txItem) queue(b *pgx.Batch, fail func(error), set *batchSet) {
	m, u := it.p.m, &it.p.m.User
	// want is the error of a checked statement that changed no row; such a
	// statement must be one of the fenced ones.
	// field names the request field that the next statements write, for a data
	// error PostgreSQL answers about them (see mapError).
	field := ""
	add := func(want error, sql string, args ...any) {
		f := field
		qq := b.Queue(sql, args...)
		qq.Fn = func(br pgx.BatchResults) error {
			ct, err := br.Exec()
			if want != nil && (fenceFailed(err) || err == nil && ct.RowsAffected() != 1) {
				err = want
			}
			if err != nil {
				if serverError(err) {
					err = &statementError{field: f, err: err}
				}
				fail(err)
			}
			return err
		}
	}
	// First, so that a redelivered message is reported as such whatever else changed.
	if m.ProcessedMessageID != "" {
		add(userservice.ErrDuplicateMessage, fencedInsertProcessedSQL, m.ProcessedMessageID)
	}
	if j := m.JobItem; j != nil {
		add(userservice.ErrJobItemDone, fencedRecordJobItemSQL, j.JobID, j.Item, j.Status, j.UserID)
	}
	if r := m.Idempotency; r != nil {
		body := r.Body
		if body == nil {
			body = []byte{}
		}
		add(userservice.ErrIdempotencyKeyTaken, fencedInsertIdempotency, r.CallerID, r.Key, r.RequestHash, r.Status, body,
			r.CreatedAt.Time, time.Now().Add(-IdempotencyTTL))
	}
	field = unstorableText("authId", u.AuthID, "email", u.Email, "username", u.Username, "firstName", u.FirstName,
		"lastName", u.LastName, "displayName", u.DisplayName, "avatarUrl", u.AvatarURL, "bio", u.Bio, "phone", u.Phone,
		"timezone", u.Timezone, "language", u.Language)
	inSet := set != nil && setEligible(m)
	switch {
	case inSet:
		set.add(it)
	case m.Create:
		add(nil, insertUserSQL, u.ID, u.AuthID, u.Email, u.Username, u.FirstName, u.LastName, u.DisplayName,
			u.AvatarURL, u.Bio, u.Phone, u.Timezone, u.Language, string(u.Role), string(u.Status), u.EmailVerified,
			u.ProfileCompleted, timeArg(u.LastActiveAt), u.LoginCount, timeArg(u.LastLoginAt), u.Version,
			u.CreatedAt.Time, u.UpdatedAt.Time)
	default:
		add(userservice.ErrStaleVersion, fencedUpdateUserSQL, u.ID, m.BaseVersion, u.AuthID, u.Email, u.Username,
			u.FirstName, u.LastName, u.DisplayName, u.AvatarURL, u.Bio, u.Phone, u.Timezone, u.Language,
			string(u.Role), string(u.Status), u.EmailVerified, u.ProfileCompleted, timeArg(u.LastActiveAt),
			u.LoginCount, timeArg(u.LastLoginAt), u.Version, u.UpdatedAt.Time)
	}
	field = "courseId"
	for _, courseID := range m.EnrollmentDeletes {
		add(nil, deleteEnrollmentSQL, u.ID, courseID)
	}
	if !inSet { // else in the set statement, after every deletion
		for i := range m.EnrollmentUpserts {
			e := &m.EnrollmentUpserts[i]
			add(nil, upsertEnrollmentSQL, e.ID, u.ID, e.CourseID, string(e.EnrollmentStatus), e.Progress,
				e.TimeSpentSeconds, e.EnrolledAt.Time, timeArg(e.CompletedAt), timeArg(e.LastAccessedAt),
				e.CreatedAt.Time, e.UpdatedAt.Time)
		}
	}
	field = "preferences"
	for _, k := range m.PreferenceDeletes {
		add(nil, deletePreferenceSQL, u.ID, k.Category, k.Key)
	}
	if !inSet {
		for i := range m.PreferenceUpserts {
			p := &m.PreferenceUpserts[i]
			add(nil, upsertPreferenceSQL, p.ID, u.ID, p.Category, p.Key, string(p.Value), p.CreatedAt.Time, p.UpdatedAt.Time)
		}
	}
	field = "attributes"
	for _, ns := range m.AttributeDeletes {
		add(nil, deleteAttributesSQL, u.ID, ns)
	}
	for i := range m.AttributeUpserts {
		a := &m.AttributeUpserts[i]
		add(nil, upsertAttributesSQL, u.ID, a.Namespace, string(a.Value), u.UpdatedAt.Time)
	}
	for i := range m.SessionUpserts {
		s := &m.SessionUpserts[i]
		field = unstorableText("sessionId", s.SessionID, "ipAddress", s.IPAddress, "userAgent", s.UserAgent)
		add(nil, upsertSessionSQL, s.ID, u.ID, s.SessionID, s.IPAddress, s.UserAgent, s.StartedAt.Time, timeArg(s.EndedAt))
	}
	if e := m.EndSessions; e != nil {
		except := e.Except
		if except == nil {
			except = []string{} // NULL would make <> ALL unknown, ending nothing
		}
		add(nil, endSessionsSQL, u.ID, e.SessionID, e.At.Time, except)
	}
	field = ""
	// Before the outbox rows: an erase scrubs the user's earlier events, not
	// the user.erased it publishes.
	queueErasure(m, add)
	if !inSet {
		for i := range m.Events {
			e := &m.Events[i]
			add(nil, insertOutboxSQL, e.ID, u.ID, e.Type, it.payloads[i], e.Sequence)
		}
	}
	for i := range m.Audit {
		a := &m.Audit[i]
		add(nil, insertAuditSQL, a.ID, u.ID, a.ActorID, a.Action, it.audit[i][0], it.audit[i][1], a.CorrelationID,
			a.CreatedAt.Time)
	}
}

// fenceFailed reports whether err is a fenced statement's failure.
func fenceFailed(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == fenceFailedCode
}
