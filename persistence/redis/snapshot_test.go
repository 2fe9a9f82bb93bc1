package redis

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	userservice "github.com/lms-platform/userservice"
)

func TestSnapshots(t *testing.T) {
	ctx := context.Background()
	c := newTestClient(t, Config{SnapshotTTL: 90 * time.Second})
	snaps, err := NewSnapshots(c)
	if err != nil {
		t.Fatal(err)
	}
	s := typicalState(t)

	t.Run("miss is nil without error", func(t *testing.T) {
		got, err := snaps.Get(ctx, userservice.NewID())
		if got != nil || err != nil {
			t.Errorf("Get of an absent snapshot = %v, %v; want nil, nil", got, err)
		}
	})
	t.Run("round trip equals the state", func(t *testing.T) {
		if err := snaps.Put(ctx, s); err != nil {
			t.Fatalf("Put: %v", err)
		}
		got, err := snaps.Get(ctx, s.User.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("Get differs from Put\n got: %+v\nwant: %+v", got, s)
		}
	})
	t.Run("stored under the prefix with the TTL", func(t *testing.T) {
		pttl, err := c.rdb.Do(ctx, c.rdb.B().Pttl().Key(c.cfg.KeyPrefix+"snap:"+s.User.ID).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if pttl <= 80_000 || pttl > 90_000 {
			t.Errorf("PTTL = %d ms, want about 90000", pttl)
		}
	})
	t.Run("an older state does not replace a newer snapshot", func(t *testing.T) {
		newer := apply(t, s, userservice.ChangeRole{Role: userservice.RoleAdmin}, time.Now())
		if err := snaps.Put(ctx, newer); err != nil {
			t.Fatal(err)
		}
		superseded := counterDelta(snapshotWritesOlder)
		if err := snaps.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
		got, err := snaps.Get(ctx, s.User.ID)
		if err != nil || got == nil || got.User.Version != newer.User.Version || superseded() != 1 {
			t.Errorf("after a late Put of version %d: stored %v, %v (superseded +%d); want version %d kept",
				s.User.Version, got, err, superseded(), newer.User.Version)
		}
		if err := snaps.store(ctx, s, true); err != nil {
			t.Fatal(err)
		}
		if got, _ := snaps.Get(ctx, s.User.ID); got == nil || got.User.Version != s.User.Version {
			t.Errorf("a forced store did not overwrite: %v", got)
		}
	})
	t.Run("delete removes it", func(t *testing.T) {
		if err := snaps.Delete(ctx, s.User.ID); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if got, err := snaps.Get(ctx, s.User.ID); got != nil || err != nil {
			t.Errorf("Get after Delete = %v, %v; want nil, nil", got, err)
		}
	})
	t.Run("unreadable snapshot is an error", func(t *testing.T) {
		key := c.cfg.KeyPrefix + "snap:" + s.User.ID
		if err := c.rdb.Do(ctx, c.rdb.B().Set().Key(key).Value("\x07garbage").Build()).Error(); err != nil {
			t.Fatal(err)
		}
		if got, err := snaps.Get(ctx, s.User.ID); got != nil || !errors.Is(err, errCorrupt) {
			t.Errorf("Get of a corrupt snapshot = %v, %v; want nil, errCorrupt", got, err)
		}
	})
}

// bigState returns s with enough large preference values to encode past limit.
func bigState(tb testing.TB, s *userservice.State, limit int) *userservice.State {
	tb.Helper()
	value := json.RawMessage(`"` + strings.Repeat("x", 4000) + `"`)
	var in []userservice.PreferenceInput
	for i := 0; len(in)*4000 <= limit; i++ {
		in = append(in, userservice.PreferenceInput{Key: "big_" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Value: value})
	}
	return apply(tb, s, userservice.SetPreferences{Category: userservice.CategoryLearning,
		Input: userservice.UpsertPreferences{Preferences: in}}, time.Now())
}

func TestSnapshotsRefuseOversize(t *testing.T) {
	ctx := context.Background()
	const limit = 16 << 10
	c := newTestClient(t, Config{MaxSnapshotBytes: limit})
	snaps, _ := NewSnapshots(c)
	small := typicalState(t)
	if err := snaps.Put(ctx, small); err != nil {
		t.Fatalf("Put of a small state: %v", err)
	}
	big := bigState(t, small, limit)
	oversize := counterDelta(snapshotOversize)

	err := snaps.Put(ctx, big)
	if !errors.Is(err, ErrSnapshotTooLarge) {
		t.Fatalf("Put of a %d-byte state: err %v, want ErrSnapshotTooLarge", len(must(appendSnapshot(nil, big))), err)
	}
	if got, err := snaps.Get(ctx, big.User.ID); got != nil || err != nil {
		t.Errorf("after an oversize Put, Get = %v, %v; want the older snapshot deleted", got, err)
	}
	if oversize() != 1 {
		t.Errorf("user_service_snapshot_oversize_total grew by %d, want 1", oversize())
	}
}
