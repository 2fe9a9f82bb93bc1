package redis

import (
	"context"
	"net"
	"reflect"
	"strconv"
	"testing"
	"time"

	userservice "github.com/lms-platform/userservice"
)

// closedPortURL returns a redis URL on which nothing listens.
func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return "redis://127.0.0.1:" + strconv.Itoa(port) + "/0"
}

// TestOpenWhileRedisDown: a Redis that is not there does not stop the start, and
// every part works around it without waiting.
func TestOpenWhileRedisDown(t *testing.T) {
	ctx := context.Background()
	start := time.Now()
	c, err := Open(ctx, Config{URL: closedPortURL(t), KeyPrefix: randomPrefix(), DialTimeout: time.Second}, testLogger())
	if err != nil {
		t.Fatalf("Open with Redis down: %v, want a client", err)
	}
	defer c.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Open took %v", took)
	}
	if c.Up() {
		t.Error("Up() = true with nothing listening")
	}
	if err := c.Ping(ctx); errorCode(err) != userservice.ECodeUnavailable {
		t.Errorf("Ping: %v, want %s", err, userservice.ECodeUnavailable)
	}

	r := newTestLimiter(t, c, RateLimitConfig{Max: 10, Window: time.Minute})
	errs := counterDelta(rateLimitErrors)
	start = time.Now()
	if _, err := r.Allow(ctx, "k"); errorCode(err) != userservice.ECodeUnavailable {
		t.Errorf("Allow: %v, want %s", err, userservice.ECodeUnavailable)
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("Allow took %v while Redis is known down, want at once", took)
	}
	if errs() != 1 {
		t.Errorf("ratelimit errors +%d, want +1", errs())
	}

	db := newFakeDB()
	s := typicalState(t)
	db.put(s)
	snaps, _ := NewSnapshots(c)
	loader, _ := NewCachedLoader(db, db, snaps, testLogger())
	got, err := loader.LoadState(ctx, s.User.ID)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Errorf("LoadState with Redis down = %v, %v; want the committed state", got, err)
	}
	if db.probes.Load() != 0 {
		t.Error("the version was probed although no snapshot could be read")
	}

	saver, _ := NewSaver(snaps, SaverConfig{}, testLogger())
	defer saver.Close(ctx)
	dropped := counterDelta(snapshotDroppedDown)
	saver.Save(s)
	if dropped() != 1 {
		t.Errorf("Save with Redis down: dropped +%d, want +1", dropped())
	}
}

// TestOutageRedisStopAndStart stops the test Redis while writes go on, starts it
// again holding the old snapshot, and checks that the old snapshot is not served and
// that everything uses Redis again without being recreated. It affects other
// packages' tests running in parallel, so it is kept short.
func TestOutageRedisStopAndStart(t *testing.T) {
	ctx := context.Background()
	const cmdTimeout = 200 * time.Millisecond
	db := newFakeDB()
	prefix := randomPrefix()
	c := newTestClient(t, Config{KeyPrefix: prefix, CommandTimeout: cmdTimeout})
	snaps, _ := NewSnapshots(c)
	saver, _ := NewSaver(snaps, SaverConfig{}, testLogger())
	defer saver.Close(ctx)
	loader, _ := NewCachedLoader(db, db, snaps, testLogger())
	limiter := newTestLimiter(t, c, RateLimitConfig{Max: 100, Window: time.Minute})

	before := typicalState(t)
	db.put(before)
	if err := snaps.Put(ctx, before); err != nil {
		t.Fatal(err)
	}
	id, key := before.User.ID, snaps.key(before.User.ID)
	oldSnapshot, err := c.rdb.Do(ctx, c.rdb.B().Get().Key(key).Build()).AsBytes()
	if err != nil {
		t.Fatal(err)
	}

	devstack(t, "stop-redis")
	stopped := true
	defer func() {
		if stopped { // never leave the shared Redis down
			devstack(t, "start-redis")
		}
	}()

	// Down: the limiter errs within the command timeout, loads come from the
	// primary, snapshot writes are dropped, and writes go on.
	for i := range 3 {
		start := time.Now()
		if _, err := limiter.Allow(ctx, "k"); errorCode(err) != userservice.ECodeUnavailable {
			t.Errorf("Allow %d with Redis stopped: %v, want %s", i, err, userservice.ECodeUnavailable)
		}
		if took := time.Since(start); took > cmdTimeout+100*time.Millisecond {
			t.Errorf("Allow %d with Redis stopped took %v, want at most about %v", i, took, cmdTimeout)
		}
	}
	if c.Up() {
		t.Error("Up() = true after failed calls")
	}
	dropped := counterDelta(snapshotDroppedDown)
	for _, cmd := range []userservice.Command{
		userservice.ChangeStatus{Status: userservice.StatusSuspended},
		userservice.ChangeRole{Role: userservice.RoleInstructor},
	} {
		saver.Save(db.commit(t, id, cmd))
	}
	if dropped() != 2 {
		t.Errorf("snapshot writes dropped +%d while down, want +2", dropped())
	}
	start := time.Now()
	got, err := loader.LoadState(ctx, id)
	committed, _ := db.LoadState(ctx, id)
	if err != nil || !reflect.DeepEqual(got, committed) {
		t.Errorf("LoadState while down = %v, %v; want the committed state", got, err)
	}
	if took := time.Since(start); took > cmdTimeout {
		t.Errorf("LoadState while down took %v", took)
	}

	devstack(t, "start-redis")
	stopped = false
	eventually(t, 15*time.Second, "the client to find Redis again by itself", c.Up)

	// Redis is back holding the snapshot from before the outage (restored here if
	// this Redis does not persist across restarts).
	var n int64
	err = c.do(ctx, func(ctx context.Context) (err error) {
		n, err = c.rdb.Do(ctx, c.rdb.B().Exists().Key(key).Build()).AsInt64()
		return err
	})
	if err != nil || n == 0 {
		t.Logf("Redis came back empty (%v); putting the pre-outage snapshot back", err)
		err := c.do(ctx, func(ctx context.Context) error {
			return c.rdb.Do(ctx, c.rdb.B().Set().Key(key).Value(string(oldSnapshot)).Build()).Error()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	stale, loads := counterDelta(snapshotMissStale), db.loads.Load()
	got, err = loader.LoadState(ctx, id)
	if err != nil || !reflect.DeepEqual(got, committed) {
		t.Fatalf("LoadState after the outage = %v, %v; want the committed state (version %d), not the old snapshot (version %d)",
			got, err, committed.User.Version, before.User.Version)
	}
	if stale() != 1 || db.loads.Load() != loads+1 {
		t.Errorf("stale misses +%d, primary loads +%d; want +1, +1", stale(), db.loads.Load()-loads)
	}
	if d, err := limiter.Allow(ctx, "k"); err != nil || !d.Allowed {
		t.Errorf("Allow after Redis returned: %+v, %v", d, err)
	}
	eventually(t, 5*time.Second, "the refreshed snapshot", func() bool {
		s, err := snaps.Get(ctx, id)
		return err == nil && s != nil && s.User.Version == committed.User.Version
	})
}

// TestOutageSlowRedis pauses the test Redis briefly: a load must not wait for it
// longer than the command timeout. It affects other packages' tests running in
// parallel, so the pause is short.
func TestOutageSlowRedis(t *testing.T) {
	ctx := context.Background()
	const cmdTimeout = 100 * time.Millisecond
	db := newFakeDB()
	pauser := newTestClient(t, Config{})
	c := newTestClient(t, Config{CommandTimeout: cmdTimeout})
	snaps, _ := NewSnapshots(c)
	loader, _ := NewCachedLoader(db, db, snaps, testLogger())
	s := typicalState(t)
	db.put(s)
	if err := snaps.Put(ctx, s); err != nil {
		t.Fatal(err)
	}

	if err := pauser.rdb.Do(ctx, pauser.rdb.B().ClientPause().Timeout(400).All().Build()).Error(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	start := time.Now()
	got, err := loader.LoadState(ctx, s.User.ID)
	took := time.Since(start)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Errorf("LoadState with Redis paused = %v, %v; want the committed state", got, err)
	}
	if took > cmdTimeout+150*time.Millisecond {
		t.Errorf("LoadState with Redis paused took %v, want about the %v command timeout", took, cmdTimeout)
	}
	if db.loads.Load() != 1 {
		t.Errorf("primary loads %d, want 1", db.loads.Load())
	}
	eventually(t, 5*time.Second, "Redis to answer again", c.Up)
}
