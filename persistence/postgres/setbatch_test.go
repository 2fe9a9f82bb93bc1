package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

// The set statements' counters are process-wide; the tests of this file are not
// parallel, so that no other test's batches move them while they run (Go starts
// the parallel tests only after every sequential one).
func setCounters() (batches, retries, fallbacks uint64) {
	return metrics.GetOrCreateCounter("user_service_write_set_batches_total").Get(),
		metrics.GetOrCreateCounter("user_service_write_set_retries_total").Get(),
		metrics.GetOrCreateCounter("user_service_write_fallbacks_total").Get()
}

// A batch of several users' updates goes out as set statements and writes
// exactly what one statement per row writes: every column of every user, and the
// outbox rows with their exact envelopes in the batch's order.
func TestWriterSetStatements(t *testing.T) {
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{BatchWait: 300 * time.Millisecond})
	loader, err := postgres.NewLoader(db)
	if err != nil {
		t.Fatal(err)
	}
	course := userservice.NewID()
	p40, spent := 40.0, int64(90)
	prefs := userservice.UpsertPreferences{Preferences: []userservice.PreferenceInput{
		{Category: strp(userservice.CategoryUI), Key: "theme", Value: json.RawMessage(`"dark"`)},
		{Category: strp(userservice.CategoryLearning), Key: "custom_key", Value: json.RawMessage(`{"b": 1, "a": [1, 2.50, "x"]}`)},
	}}
	if err := prefs.Validate(""); err != nil {
		t.Fatal(err)
	}
	cmds := []func(s *userservice.State) userservice.Command{
		func(*userservice.State) userservice.Command {
			return userservice.EditProfile{Input: userservice.UpdateUser{Bio: userservice.Optional[string]{Set: true, Value: "a new bio"},
				Phone: userservice.Optional[string]{Set: true, Value: "+15551234567"}, DisplayName: userservice.Optional[string]{Set: true, Null: true}}}
		},
		func(*userservice.State) userservice.Command {
			return userservice.ChangeRole{Role: userservice.RoleInstructor}
		},
		func(*userservice.State) userservice.Command { return userservice.Enroll{CourseID: course} },
		func(*userservice.State) userservice.Command {
			return userservice.RecordLogin{SessionID: "s1", IPAddress: strp("10.0.0.7"), At: at(5)}
		},
		func(*userservice.State) userservice.Command {
			return userservice.RemovePreference{Category: userservice.CategoryNotifications, Key: "marketing_emails"}
		},
		func(*userservice.State) userservice.Command {
			return userservice.ChangeStatus{Status: userservice.StatusSuspended}
		},
		func(*userservice.State) userservice.Command { // an existing key and a new one
			return userservice.SetPreferences{Input: prefs}
		},
		func(*userservice.State) userservice.Command { // an existing enrollment: the upsert's update
			return userservice.SetProgress{CourseID: course, Input: userservice.UpdateProgress{Progress: &p40, TimeSpentSeconds: &spent}}
		},
	}
	var states []*userservice.State
	for i := range cmds {
		s := registered(t, w, fmt.Sprintf("set%d@example.com", i), fmt.Sprintf("setuser%d", i))
		if i == 5 || i == 7 { // users with an enrollment before the batch
			o := apply(t, s, userservice.Enroll{CourseID: course}, metaAt(1))
			mustCommit(t, w, o.Mutation)
			s = o.State
		}
		states = append(states, s)
	}

	b0, r0, f0 := setCounters()
	outs := make([]*userservice.Outcome, len(cmds))
	ms := make([]*userservice.Mutation, len(cmds))
	for i, c := range cmds {
		outs[i] = apply(t, states[i], c(states[i]), metaAt(10+i))
		ms[i] = outs[i].Mutation
	}
	// Both user UPDATEs are in the batch: the whole row's and the version's alone.
	bumped := 0
	for _, m := range ms {
		if m.VersionOnly {
			bumped++
		}
	}
	if bumped < 2 || bumped > len(ms)-2 {
		t.Fatalf("%d of %d mutations change only the user's version; the test needs both kinds", bumped, len(ms))
	}
	// And both ways to write an enrollment and a preference: the upsert's and the
	// UPDATE of a row the mutation knows.
	var known, unknown [2]int
	for _, m := range ms {
		for i := range m.EnrollmentUpserts {
			if m.EnrollmentIsKnown(i) {
				known[0]++
			} else {
				unknown[0]++
			}
		}
		for i := range m.PreferenceUpserts {
			if m.PreferenceIsKnown(i) {
				known[1]++
			} else {
				unknown[1]++
			}
		}
	}
	if min(known[0], known[1], unknown[0], unknown[1]) == 0 {
		t.Fatalf("known/new enrollments %d/%d, preferences %d/%d; the test needs each", known[0], unknown[0], known[1], unknown[1])
	}
	for i, err := range commitAll(t, w, ms...) {
		if err != nil {
			t.Fatalf("mutation %d: %v", i, err)
		}
	}
	b1, r1, f1 := setCounters()
	if b1-b0 != 1 || r1 != r0 || f1 != f0 {
		t.Errorf("set batches +%d, set retries +%d, fallbacks +%d; want +1, +0, +0 (one batch, set statements)", b1-b0, r1-r0, f1-f0)
	}

	for i, o := range outs {
		got, err := loader.LoadState(context.Background(), o.State.User.ID)
		if err != nil {
			t.Fatalf("LoadState: %v", err)
		}
		if len(got.Sessions) == 0 && len(o.State.Sessions) == 0 {
			got.Sessions = o.State.Sessions // none either way (a revocation leaves an empty list)
		}
		if !reflect.DeepEqual(got, o.State) {
			g, _ := json.MarshalIndent(got, "", " ")
			want, _ := json.MarshalIndent(o.State, "", " ")
			t.Errorf("user %d: loaded state differs from the applied one\n got: %s\nwant: %s", i, g, want)
		}
	}

	// The profile writes moved updated_at in the set statement, which kept the
	// updatedAt order itself.
	moved := 0
	for i, o := range outs {
		if !o.State.User.UpdatedAt.Equal(states[i].User.UpdatedAt.Time) {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no mutation of the batch moves updated_at; the test needs some")
	}
	expectUpdatedOrder(t, db, outs...)

	// The outbox rows in id order: the batch's mutations in the writer's order (by
	// user), each one's events in order, byte for byte.
	sorted := append([]*userservice.Mutation(nil), ms...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].UserID < sorted[j].UserID })
	var want []userservice.Event
	var wantUsers []string
	for _, m := range sorted {
		want = append(want, m.Events...)
		for range m.Events {
			wantUsers = append(wantUsers, m.UserID)
		}
	}
	rows := outboxRows(t, db, want)
	for i, r := range rows[:min(len(rows), len(want))] {
		expectOutboxRow(t, i, r, want[i], wantUsers[i])
	}
	if len(rows) != len(want) {
		t.Errorf("outbox rows = %d, want %d", len(rows), len(want))
	}
}

// When a set statement fails (a stale version, a taken username), the batch is
// committed again with one statement per row: the culprits get their own answers
// and the rest is written, as without set statements.
func TestWriterSetStatementFailureRetriesPerRow(t *testing.T) {
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{BatchWait: 300 * time.Millisecond})
	a := registered(t, w, "a@example.com", "alice")
	b := registered(t, w, "b@example.com", "bob")
	c := registered(t, w, "c@example.com", "carol")
	d := registered(t, w, "d@example.com", "dave")
	e := registered(t, w, "e@example.com", "erin")
	moved := apply(t, a, userservice.ChangeRole{Role: userservice.RoleInstructor}, metaAt(1))
	mustCommit(t, w, moved.Mutation) // a is at version 2 behind the batch's back
	movedE := apply(t, e, userservice.Enroll{CourseID: userservice.NewID()}, metaAt(1))
	mustCommit(t, w, movedE.Mutation) // so is e

	b0, r0, _ := setCounters()
	stale := apply(t, a, userservice.ChangeRole{Role: userservice.RoleAdmin}, metaAt(2)).Mutation
	taken := apply(t, b, userservice.EditProfile{Input: userservice.UpdateUser{
		Username: userservice.Optional[string]{Set: true, Value: "CAROL"}}}, metaAt(2)).Mutation
	goodC := apply(t, c, userservice.ChangeStatus{Status: userservice.StatusInactive}, metaAt(2))
	goodD := apply(t, d, userservice.EditProfile{Input: userservice.UpdateUser{
		Bio: userservice.Optional[string]{Set: true, Value: "dave's bio"}}}, metaAt(2))
	staleBump := apply(t, e, userservice.Enroll{CourseID: userservice.NewID()}, metaAt(2)).Mutation
	errs := commitAll(t, w, stale, taken, goodC.Mutation, goodD.Mutation, staleBump)

	if !errors.Is(errs[0], userservice.ErrStaleVersion) {
		t.Errorf("stale: err = %v, want ErrStaleVersion", errs[0])
	}
	if userservice.ErrorCode(errs[1]) != userservice.ECodeConflict || userservice.ErrorMessage(errs[1]) != "Username is already taken" {
		t.Errorf("taken username: err = %v, want conflict %q", errs[1], "Username is already taken")
	}
	if errs[2] != nil || errs[3] != nil {
		t.Errorf("good mutations: %v, %v", errs[2], errs[3])
	}
	if !errors.Is(errs[4], userservice.ErrStaleVersion) {
		t.Errorf("stale enrollment: err = %v, want ErrStaleVersion", errs[4])
	}
	b1, r1, _ := setCounters()
	if r1-r0 != 1 {
		t.Errorf("set retries +%d, want +1", r1-r0)
	}
	if b1 != b0 {
		t.Errorf("set batches +%d, want +0 (the retry writes one statement per row)", b1-b0)
	}
	expectStored(t, db, goodC, goodD)
	for _, m := range []*userservice.Mutation{stale, taken, staleBump} {
		if n := count(t, db, `SELECT count(*) FROM outbox WHERE event_id = $1`, m.Events[0].ID); n != 0 {
			t.Errorf("a failed mutation wrote %d outbox rows", n)
		}
	}
	if got := count(t, db, `SELECT version FROM users WHERE id = $1`, b.User.ID); got != 1 {
		t.Errorf("b's version = %d, want 1", got)
	}
}

// The version's UPDATE is fenced like the whole row's: a stale version among
// mutations that change only the version fails the set statement, and the retry
// with one statement per row answers it alone.
func TestWriterVersionUpdateIsFenced(t *testing.T) {
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{BatchWait: 300 * time.Millisecond})
	a := registered(t, w, "a@example.com", "alice")
	b := registered(t, w, "b@example.com", "bob")
	c := registered(t, w, "c@example.com", "carol")
	moved := apply(t, b, userservice.Enroll{CourseID: userservice.NewID()}, metaAt(1))
	mustCommit(t, w, moved.Mutation) // b is at version 2 behind the batch's back

	goodA := apply(t, a, userservice.Enroll{CourseID: userservice.NewID()}, metaAt(2))
	stale := apply(t, b, userservice.Enroll{CourseID: userservice.NewID()}, metaAt(2)).Mutation
	goodC := apply(t, c, userservice.Enroll{CourseID: userservice.NewID()}, metaAt(2))
	for _, m := range []*userservice.Mutation{goodA.Mutation, stale, goodC.Mutation} {
		if !m.VersionOnly {
			t.Fatal("an enrollment's mutation should change only the user's version")
		}
	}
	_, r0, _ := setCounters()
	errs := commitAll(t, w, goodA.Mutation, stale, goodC.Mutation)
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("good mutations: %v, %v", errs[0], errs[2])
	}
	if !errors.Is(errs[1], userservice.ErrStaleVersion) {
		t.Errorf("stale: err = %v, want ErrStaleVersion", errs[1])
	}
	if _, r1, _ := setCounters(); r1-r0 != 1 {
		t.Errorf("set retries +%d, want +1 (the version's UPDATE changed fewer rows than it had)", r1-r0)
	}
	expectStored(t, db, goodA, goodC, moved)
	if n := count(t, db, `SELECT count(*) FROM enrollments WHERE id = $1`, stale.EnrollmentUpserts[0].ID); n != 0 {
		t.Errorf("the stale mutation wrote its enrollment")
	}
}

// A mutation that claims to update a row PostgreSQL does not hold (a state that
// went wrong) fails the set statement's fence; the retry with one statement per
// row upserts it, so nothing is lost either way.
func TestWriterKnownRowMissingIsUpserted(t *testing.T) {
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{BatchWait: 300 * time.Millisecond})
	a := registered(t, w, "a@example.com", "alice")
	b := registered(t, w, "b@example.com", "bob")
	course := userservice.NewID()
	enrolled := apply(t, b, userservice.Enroll{CourseID: course}, metaAt(1))
	mustCommit(t, w, enrolled.Mutation)

	p50 := 50.0
	theme := apply(t, a, userservice.SetPreferences{Category: userservice.CategoryUI, Input: userservice.UpsertPreferences{
		Preferences: []userservice.PreferenceInput{{Key: "theme", Value: json.RawMessage(`"dark"`)}}}}, metaAt(2))
	progress := apply(t, enrolled.State, userservice.SetProgress{CourseID: course,
		Input: userservice.UpdateProgress{Progress: &p50}}, metaAt(2))
	if len(theme.Mutation.PreferenceKnown) != 1 || !theme.Mutation.PreferenceKnown[0] ||
		len(progress.Mutation.EnrollmentKnown) != 1 || !progress.Mutation.EnrollmentKnown[0] {
		t.Fatal("the mutations should know their rows")
	}
	// Behind the writer's back, both rows go.
	if _, err := db.Pool().Exec(context.Background(), `DELETE FROM preferences WHERE user_id = $1 AND key = 'theme'`, a.User.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(context.Background(), `DELETE FROM enrollments WHERE user_id = $1`, b.User.ID); err != nil {
		t.Fatal(err)
	}
	_, r0, _ := setCounters()
	for i, err := range commitAll(t, w, theme.Mutation, progress.Mutation) {
		if err != nil {
			t.Fatalf("mutation %d: %v", i, err)
		}
	}
	if _, r1, _ := setCounters(); r1-r0 != 1 {
		t.Errorf("set retries +%d, want +1 (the fenced UPDATE found no row)", r1-r0)
	}
	expectStored(t, db, theme, progress)
}

// A row the mutation takes for new (its state has none under the key) goes in
// by a plain INSERT; if the table holds one all the same (a state that went
// wrong), the unique key fails the set statement and the retry with one
// statement per row upserts it: the mutation's values are stored either way.
func TestWriterSetInsertConflictRetriesPerRow(t *testing.T) {
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{BatchWait: 300 * time.Millisecond})
	a := registered(t, w, "a@example.com", "alice")
	b := registered(t, w, "b@example.com", "bob")
	course := userservice.NewID()
	custom := apply(t, a, userservice.SetPreferences{Category: userservice.CategoryLearning, Input: userservice.UpsertPreferences{
		Preferences: []userservice.PreferenceInput{{Key: "custom_key", Value: json.RawMessage(`"new"`)}}}}, metaAt(2))
	enroll := apply(t, b, userservice.Enroll{CourseID: course}, metaAt(2))
	if custom.Mutation.PreferenceIsKnown(0) || enroll.Mutation.EnrollmentIsKnown(0) {
		t.Fatal("the mutations should take their rows for new")
	}
	// Behind the writer's back, both keys get a row.
	ctx := context.Background()
	if _, err := db.Pool().Exec(ctx, `INSERT INTO preferences (id, user_id, category, key, value, created_at, updated_at)
		VALUES ($1, $2, 'learning', 'custom_key', '"old"', now(), now())`, userservice.NewID(), a.User.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx, `INSERT INTO enrollments (id, user_id, course_id, enrollment_status, progress,
		time_spent_seconds, enrolled_at, created_at, updated_at) VALUES ($1, $2, $3, 'dropped', 10, 60, now(), now(), now())`,
		userservice.NewID(), b.User.ID, course); err != nil {
		t.Fatal(err)
	}
	b0, r0, _ := setCounters()
	for i, err := range commitAll(t, w, custom.Mutation, enroll.Mutation) {
		if err != nil {
			t.Fatalf("mutation %d: %v", i, err)
		}
	}
	if b1, r1, _ := setCounters(); r1-r0 != 1 || b1 != b0 {
		t.Errorf("set retries +%d, set batches +%d; want +1, +0 (the INSERT met the unique key)", r1-r0, b1-b0)
	}
	if n := count(t, db, `SELECT count(*) FROM preferences WHERE user_id = $1 AND key = 'custom_key' AND value::text = '"new"'`, a.User.ID); n != 1 {
		t.Errorf("%d preference rows with the mutation's value, want 1", n)
	}
	if n := count(t, db, `SELECT count(*) FROM enrollments WHERE user_id = $1 AND course_id = $2
		AND enrollment_status = 'active' AND progress = 0 AND time_spent_seconds = 0`, b.User.ID, course); n != 1 {
		t.Errorf("%d enrollment rows with the mutation's values, want 1", n)
	}
	if n := count(t, db, `SELECT count(*) FROM outbox WHERE event_id = $1`, enroll.Mutation.Events[0].ID); n != 1 {
		t.Errorf("%d outbox rows of the enrollment's event, want 1", n)
	}
}

// expectStored checks that what PostgreSQL holds of each outcome's user loads as
// the state Apply returned, and that its updatedAt order row follows.
func expectStored(t *testing.T, db *postgres.DB, outs ...*userservice.Outcome) {
	t.Helper()
	loader, err := postgres.NewLoader(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range outs {
		got, err := loader.LoadState(context.Background(), o.State.User.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, o.State) {
			g, _ := json.MarshalIndent(got, "", " ")
			want, _ := json.MarshalIndent(o.State, "", " ")
			t.Errorf("user %s: loaded state differs from the applied one\n got: %s\nwant: %s", o.State.User.ID, g, want)
		}
	}
	expectUpdatedOrder(t, db, outs...)
}

// expectUpdatedOrder checks that each outcome's user has its user_updated_order
// row at the stored updated_at (the set statement keeps it, migration 00140; the
// trigger every other write).
func expectUpdatedOrder(t *testing.T, db *postgres.DB, outs ...*userservice.Outcome) {
	t.Helper()
	for _, o := range outs {
		if n := count(t, db, `SELECT count(*) FROM users u JOIN user_updated_order o ON o.user_id = u.id
			WHERE u.id = $1 AND o.changed_at = u.updated_at`, o.State.User.ID); n != 1 {
			t.Errorf("user %s: no user_updated_order row at its updated_at", o.State.User.ID)
		}
	}
}
