package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

func TestLoadStateNotFound(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	loader, _ := postgres.NewLoader(db)
	for _, id := range []string{userservice.NewID(), "not-a-uuid", ""} {
		if _, err := loader.LoadState(context.Background(), id); !errors.Is(err, userservice.ErrUserNotFound) {
			t.Errorf("LoadState(%q): err = %v, want ErrUserNotFound", id, err)
		}
	}
}

func TestLoadStateKeepsTheNewestSessions(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{})
	loader, _ := postgres.NewLoader(db)
	s := registered(t, w, "a@example.com", "")
	const logins = userservice.MaxSessionsKept + 5
	for i := 1; i <= logins; i++ {
		o := apply(t, s, userservice.RecordLogin{SessionID: fmt.Sprintf("s%03d", i), At: at(i)}, metaAt(i))
		mustCommit(t, w, o.Mutation)
		s = o.State
	}
	got, err := loader.LoadState(context.Background(), s.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Sessions) != userservice.MaxSessionsKept {
		t.Fatalf("sessions = %d, want %d", len(got.Sessions), userservice.MaxSessionsKept)
	}
	if first, last := got.Sessions[0].SessionID, got.Sessions[len(got.Sessions)-1].SessionID; first != "s006" || last != fmt.Sprintf("s%03d", logins) {
		t.Errorf("sessions run %s..%s, want s006..s%03d (oldest first)", first, last, logins)
	}
	if got.User.LoginCount != logins || got.User.Version != logins+1 {
		t.Errorf("loginCount %d version %d, want %d and %d", got.User.LoginCount, got.User.Version, logins, logins+1)
	}
	if n := count(t, db, `SELECT count(*) FROM sessions`); n != logins {
		t.Errorf("stored sessions = %d, want all %d", n, logins)
	}
}

func TestUserIDByAuthID(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{})
	s := registered(t, w, "a@example.com", "")
	loader, _ := postgres.NewLoader(db)
	dir, _ := postgres.NewDirectory(db)
	for name, f := range map[string]func(context.Context, string) (string, error){
		"Loader": loader.UserIDByAuthID, "Directory": dir.UserIDByAuthID,
	} {
		t.Run(name, func(t *testing.T) {
			if id, err := f(context.Background(), s.User.AuthID); err != nil || id != s.User.ID {
				t.Errorf("known authId: %q, %v; want %q", id, err, s.User.ID)
			}
			for _, aid := range []string{userservice.NewID(), "nope"} {
				if _, err := f(context.Background(), aid); !errors.Is(err, userservice.ErrUserNotFound) {
					t.Errorf("authId %q: err = %v, want ErrUserNotFound", aid, err)
				}
			}
		})
	}
}

func TestConstructorsRefuseNil(t *testing.T) {
	if _, err := postgres.NewLoader(nil); err == nil {
		t.Error("NewLoader(nil) succeeded")
	}
	if _, err := postgres.NewDirectory(nil); err == nil {
		t.Error("NewDirectory(nil) succeeded")
	}
	if _, err := postgres.NewIdempotencyStore(nil); err == nil {
		t.Error("NewIdempotencyStore(nil) succeeded")
	}
	if _, err := postgres.NewWriter(nil, postgres.WriterConfig{}, testLogger(t)); err == nil {
		t.Error("NewWriter(nil, ...) succeeded")
	}
}

func TestUserVersion(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	w := newWriter(t, db, postgres.WriterConfig{})
	loader, _ := postgres.NewLoader(db)
	ctx := context.Background()
	if _, _, err := loader.UserVersion(ctx, userservice.NewID()); !errors.Is(err, userservice.ErrUserNotFound) {
		t.Fatalf("unknown user: err = %v, want ErrUserNotFound", err)
	}
	s := registered(t, w, "v@example.com", "")
	o := apply(t, s, userservice.RecordLogin{SessionID: "s1", At: at(3)}, metaAt(3))
	mustCommit(t, w, o.Mutation)
	v, active, err := loader.UserVersion(ctx, s.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v != 2 || active == nil || !active.Equal(at(3).Time) {
		t.Fatalf("UserVersion = %d, %v; want 2, %v", v, active, at(3))
	}
}
