package redis

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	userservice "github.com/lms-platform/userservice"
)

// loaderEnv is one "process": a client, snapshots, a saver and a cached loader, over
// a shared fake database.
type loaderEnv struct {
	c      *Client
	snaps  *Snapshots
	saver  *Saver
	loader *CachedLoader
}

func newLoaderEnv(tb testing.TB, db *fakeDB, prefix string) *loaderEnv {
	tb.Helper()
	c := newTestClient(tb, Config{KeyPrefix: prefix})
	snaps, err := NewSnapshots(c)
	if err != nil {
		tb.Fatal(err)
	}
	saver, err := NewSaver(snaps, SaverConfig{}, testLogger())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = saver.Close(context.Background()) })
	loader, err := NewCachedLoader(db, db, snaps, testLogger())
	if err != nil {
		tb.Fatal(err)
	}
	return &loaderEnv{c: c, snaps: snaps, saver: saver, loader: loader}
}

// storedVersion returns the version of the user's snapshot in Redis: 0 if none, -1
// if unreadable or another user's.
func (e *loaderEnv) storedVersion(tb testing.TB, userID string) int64 {
	tb.Helper()
	s, err := e.snaps.Get(context.Background(), userID)
	switch {
	case err != nil || (s != nil && s.User.ID != userID):
		return -1
	case s == nil:
		return 0
	}
	return s.User.Version
}

// load runs LoadState and checks it returned exactly the committed state.
func (e *loaderEnv) load(tb testing.TB, db *fakeDB, userID string) *userservice.State {
	tb.Helper()
	got, err := e.loader.LoadState(context.Background(), userID)
	if err != nil {
		tb.Fatalf("LoadState: %v", err)
	}
	want, _ := db.LoadState(context.Background(), userID)
	db.loads.Add(-1)
	if !reflect.DeepEqual(got, want) {
		tb.Fatalf("LoadState returned version %d, committed is %d\n got: %+v\nwant: %+v",
			got.User.Version, want.User.Version, got, want)
	}
	return got
}

func TestCachedLoaderServesSnapshotOfCommittedVersion(t *testing.T) {
	db := newFakeDB()
	e := newLoaderEnv(t, db, randomPrefix())
	s := typicalState(t)
	db.put(s)
	if err := e.snaps.Put(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	hits, fromRedis, fromPG := counterDelta(snapshotHits), counterDelta(loadsFromRedis), counterDelta(loadsFromPostgres)

	e.load(t, db, s.User.ID)

	if db.loads.Load() != 0 {
		t.Errorf("primary loaded %d times, want 0", db.loads.Load())
	}
	if db.probes.Load() != 1 {
		t.Errorf("version probed %d times, want 1", db.probes.Load())
	}
	if hits() != 1 || fromRedis() != 1 || fromPG() != 0 {
		t.Errorf("hits +%d, loads from redis +%d, from postgres +%d; want +1, +1, +0", hits(), fromRedis(), fromPG())
	}
}

func TestCachedLoaderTakesLaterLastActiveAt(t *testing.T) {
	ctx := context.Background()
	db := newFakeDB()
	e := newLoaderEnv(t, db, randomPrefix())
	s := typicalState(t)
	t0 := *s.User.LastActiveAt
	later := userservice.NewTime(t0.Add(time.Hour))

	t.Run("committed lastActiveAt is later", func(t *testing.T) {
		db.put(s)
		if err := e.snaps.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
		db.touch(s.User.ID, later) // written behind: no version change
		got := e.load(t, db, s.User.ID)
		if !got.User.LastActiveAt.Equal(later.Time) || db.loads.Load() != 0 {
			t.Errorf("lastActiveAt %v (primary loads %d), want %v from the snapshot", got.User.LastActiveAt, db.loads.Load(), later)
		}
	})
	t.Run("snapshot lastActiveAt is later", func(t *testing.T) {
		if err := e.snaps.Put(ctx, withLastActive(s, userservice.NewTime(later.Add(time.Hour)))); err != nil {
			t.Fatal(err)
		}
		got, err := e.loader.LoadState(ctx, s.User.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.User.LastActiveAt.Equal(later.Add(time.Hour)) {
			t.Errorf("lastActiveAt %v, want the snapshot's later %v", got.User.LastActiveAt, later.Add(time.Hour))
		}
	})
}

func TestCachedLoaderFallsBackAndRefreshes(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		reason func() uint64 // the miss counter that must grow
		redis  func(t *testing.T, e *loaderEnv, committed *userservice.State)
	}{
		{"absent snapshot", counterDelta(snapshotMissAbsent), func(*testing.T, *loaderEnv, *userservice.State) {}},
		{"snapshot a version behind", counterDelta(snapshotMissStale), func(t *testing.T, e *loaderEnv, committed *userservice.State) {
			old := *committed
			old.User.Version--
			if err := e.snaps.Put(ctx, &old); err != nil {
				t.Fatal(err)
			}
		}},
		{"snapshot ahead of the database", counterDelta(snapshotMissStale), func(t *testing.T, e *loaderEnv, committed *userservice.State) {
			ahead := *committed
			ahead.User.Version += 100 // say, the database was restored from a backup
			if err := e.snaps.Put(ctx, &ahead); err != nil {
				t.Fatal(err)
			}
		}},
		{"snapshot of another user", counterDelta(snapshotMissStale), func(t *testing.T, e *loaderEnv, committed *userservice.State) {
			other := *committed
			other.User.ID = userservice.NewID()
			b := must(appendSnapshot(nil, &other))
			if err := e.c.rdb.Do(ctx, e.c.rdb.B().Set().Key(e.snaps.key(committed.User.ID)).Value(string(b)).Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated snapshot claiming a newer version", counterDelta(snapshotMissError), func(t *testing.T, e *loaderEnv, committed *userservice.State) {
			ahead := *committed
			ahead.User.Version += 100
			b := must(appendSnapshot(nil, &ahead))
			if err := e.c.rdb.Do(ctx, e.c.rdb.B().Set().Key(e.snaps.key(committed.User.ID)).Value(string(b[:len(b)-1])).Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}},
		{"unreadable snapshot", counterDelta(snapshotMissError), func(t *testing.T, e *loaderEnv, committed *userservice.State) {
			if err := e.c.rdb.Do(ctx, e.c.rdb.B().Set().Key(e.snaps.key(committed.User.ID)).Value("\x01\x05").Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newFakeDB()
			e := newLoaderEnv(t, db, randomPrefix())
			s := typicalState(t)
			db.put(s)
			tt.redis(t, e, s)
			missesBefore := tt.reason()

			e.load(t, db, s.User.ID)

			if db.loads.Load() != 1 {
				t.Errorf("primary loaded %d times, want 1", db.loads.Load())
			}
			if tt.reason()-missesBefore != 1 {
				t.Errorf("miss counter grew by %d, want 1", tt.reason()-missesBefore)
			}
			eventually(t, 5*time.Second, "the snapshot to be refreshed", func() bool {
				return e.storedVersion(t, s.User.ID) == s.User.Version
			})
			e.load(t, db, s.User.ID)
			if db.loads.Load() != 1 {
				t.Errorf("after the refresh the primary loaded again (%d loads)", db.loads.Load())
			}
		})
	}
}

func TestCachedLoaderUnknownUser(t *testing.T) {
	db := newFakeDB()
	e := newLoaderEnv(t, db, randomPrefix())
	_, err := e.loader.LoadState(context.Background(), userservice.NewID())
	if !errors.Is(err, userservice.ErrUserNotFound) {
		t.Errorf("LoadState of an unknown user: %v, want ErrUserNotFound", err)
	}
}

// TestCachedLoaderNeverServesStale drives the ways Redis can hold a snapshot older
// than an acknowledged write; the Redis-outage way is TestOutageRedisStopAndStart.
func TestCachedLoaderNeverServesStale(t *testing.T) {
	ctx := context.Background()

	t.Run("crash between commit and cache update", func(t *testing.T) {
		db := newFakeDB()
		e := newLoaderEnv(t, db, randomPrefix())
		s := registered(t, time.Now()) // version 1
		for range 3 {
			s = apply(t, s, userservice.RecordLogin{SessionID: userservice.NewID(), At: userservice.Now()}, time.Now())
		}
		v4 := s
		if err := e.snaps.Put(ctx, v4); err != nil { // refreshed after the commit of v4
			t.Fatal(err)
		}
		db.put(v4)
		// v5 commits, then the process dies before refreshing the snapshot.
		v5 := db.commit(t, v4.User.ID, userservice.ChangeStatus{Status: userservice.StatusSuspended})
		if v5.User.Version != 5 || e.storedVersion(t, v4.User.ID) != 4 {
			t.Fatalf("setup: committed %d, snapshot %d", v5.User.Version, e.storedVersion(t, v4.User.ID))
		}
		// A new process activates the user.
		restarted := newLoaderEnv(t, db, e.c.cfg.KeyPrefix)
		got := restarted.load(t, db, v4.User.ID)
		if got.User.Status != userservice.StatusSuspended {
			t.Errorf("served status %s: the acknowledged suspension was lost", got.User.Status)
		}
	})

	t.Run("two processes sharing Redis and the database", func(t *testing.T) {
		db := newFakeDB()
		prefix := randomPrefix()
		a, b := newLoaderEnv(t, db, prefix), newLoaderEnv(t, db, prefix)
		s := typicalState(t)
		db.put(s)
		id := s.User.ID

		// Each step commits through one process (refreshing its snapshot or not,
		// as a crash or a dropped write would), then both processes load.
		steps := []struct {
			name    string
			by      *loaderEnv
			cmd     userservice.Command
			refresh bool
		}{
			{"a enrolls and refreshes", a, userservice.Enroll{CourseID: userservice.NewID()}, true},
			{"b changes role without refreshing", b, userservice.ChangeRole{Role: userservice.RoleInstructor}, false},
			{"a edits the profile and refreshes", a, userservice.EditProfile{Input: userservice.UpdateUser{
				Bio: userservice.Optional[string]{Set: true, Value: "v4"}}}, true},
			{"b records a login and refreshes", b, userservice.RecordLogin{SessionID: "s9", At: userservice.Now()}, true},
			{"a logs out without refreshing", a, userservice.RecordLogout{At: userservice.Now()}, false},
		}
		for _, st := range steps {
			next := db.commit(t, id, st.cmd)
			if st.refresh {
				st.by.saver.Save(next)
				eventually(t, 5*time.Second, st.name+": snapshot refreshed", func() bool {
					return a.storedVersion(t, id) == next.User.Version
				})
			}
			a.load(t, db, id)
			b.load(t, db, id)
		}

		// A late write of an old state, landing after a newer one (two savers, or a
		// refresh racing a commit), leaves Redis behind: still never served.
		old := db.commit(t, id, userservice.ChangeRole{Role: userservice.RoleAdmin})
		newer := db.commit(t, id, userservice.ChangeRole{Role: userservice.RoleStudent})
		if err := b.snaps.Put(ctx, newer); err != nil {
			t.Fatal(err)
		}
		if err := a.snaps.Put(ctx, old); err != nil {
			t.Fatal(err)
		}
		if got := a.load(t, db, id); got.User.Role != userservice.RoleStudent {
			t.Errorf("served role %s after a late stale write, want student", got.User.Role)
		}
	})
}
