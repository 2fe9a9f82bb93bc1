package redis

import (
	"context"
	"testing"
	"time"

	userservice "github.com/lms-platform/userservice"
)

func TestSaverKeepsNewestStatePerUser(t *testing.T) {
	c := newTestClient(t, Config{})
	snaps, _ := NewSnapshots(c)
	s := newSaver(snaps, SaverConfig{MaxPending: 2, BatchSize: 10}, testLogger()) // writer not running
	v1 := registered(t, time.Now())
	v2 := apply(t, v1, userservice.ChangeRole{Role: userservice.RoleInstructor}, time.Now())
	v3 := apply(t, v2, userservice.ChangeRole{Role: userservice.RoleAdmin}, time.Now())
	other, third := registered(t, time.Now()), registered(t, time.Now())
	coalesced, full := counterDelta(snapshotCoalesced), counterDelta(snapshotDroppedFull)

	s.Save(v1)
	s.Save(v3)
	s.Save(v2) // older than the pending v3: ignored
	s.Save(other)
	s.Save(third) // past MaxPending: dropped

	if got := s.pending[v1.User.ID]; got != v3 {
		t.Errorf("pending version %d, want the newest, 3", got.User.Version)
	}
	if len(s.pending) != 2 || coalesced() != 2 || full() != 1 {
		t.Errorf("pending %d users, coalesced +%d, dropped full +%d; want 2, +2, +1", len(s.pending), coalesced(), full())
	}
	s.flush(true)
	ctx := context.Background()
	for _, want := range []*userservice.State{v3, other} {
		if got, err := snaps.Get(ctx, want.User.ID); err != nil || got == nil || got.User.Version != want.User.Version {
			t.Errorf("after flush, snapshot of %s = %v, %v; want version %d", want.User.ID, got, err, want.User.Version)
		}
	}
	if got, _ := snaps.Get(ctx, third.User.ID); got != nil {
		t.Error("a dropped state was written")
	}
	if len(s.pending) != 0 {
		t.Errorf("%d users still pending after flush", len(s.pending))
	}
}

func TestSaverWritesEverythingInBatches(t *testing.T) {
	c := newTestClient(t, Config{})
	snaps, _ := NewSnapshots(c)
	s, err := NewSaver(snaps, SaverConfig{BatchSize: 16}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	states := make([]*userservice.State, 100)
	for i := range states {
		states[i] = registered(t, time.Now())
		s.Save(states[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, want := range states {
		if got, err := snaps.Get(ctx, want.User.ID); err != nil || got == nil {
			t.Fatalf("snapshot of %s = %v, %v; want it written", want.User.ID, got, err)
		}
	}
	dropped := counterDelta(snapshotDroppedShut)
	s.Save(registered(t, time.Now()))
	if dropped() != 1 {
		t.Error("Save after Close was not dropped")
	}
}

func TestSaverStoresNoOversizeSnapshot(t *testing.T) {
	const limit = 16 << 10
	c := newTestClient(t, Config{MaxSnapshotBytes: limit})
	snaps, _ := NewSnapshots(c)
	ctx := context.Background()
	small := typicalState(t)
	if err := snaps.Put(ctx, small); err != nil {
		t.Fatal(err)
	}
	s, _ := NewSaver(snaps, SaverConfig{}, testLogger())
	oversize := counterDelta(snapshotOversize)
	s.Save(bigState(t, small, limit))
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := snaps.Get(ctx, small.User.ID); got != nil || err != nil {
		t.Errorf("after saving an oversize state, Get = %v, %v; want nothing stored", got, err)
	}
	if oversize() != 1 {
		t.Errorf("oversize counter grew by %d, want 1", oversize())
	}
}

// TestSaverDelayCoalesces: with a Delay, a user committing several times is written
// once, at the next tick, with the newest state; the snapshot is never newer than
// the commits but may be older, which the loader's version check makes harmless.
func TestSaverDelayCoalesces(t *testing.T) {
	c := newTestClient(t, Config{})
	snaps, _ := NewSnapshots(c)
	const delay = 400 * time.Millisecond
	s, err := NewSaver(snaps, SaverConfig{Delay: delay}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	written := counterDelta(snapshotWritesOK)
	v1 := registered(t, time.Now())
	v2 := apply(t, v1, userservice.ChangeRole{Role: userservice.RoleInstructor}, time.Now())
	v3 := apply(t, v2, userservice.ChangeRole{Role: userservice.RoleAdmin}, time.Now())
	start := time.Now()
	for _, st := range []*userservice.State{v1, v2, v3} {
		s.Save(st)
	}
	deadline := start.Add(delay + 2*time.Second)
	for {
		got, err := snaps.Get(ctx, v1.User.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got != nil {
			if got.User.Version != 3 {
				t.Errorf("first snapshot written has version %d, want the newest, 3", got.User.Version)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no snapshot written within the delay")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(delay + 100*time.Millisecond) // another tick: nothing pending, nothing written
	if n := written(); n != 1 {
		t.Errorf("%d snapshot writes for three commits of one user, want 1", n)
	}
}

// TestSaverSaveNowWritesAtOnce: a passivating actor's pending state is written
// right away even with a long Delay, and Close writes whatever is still pending.
func TestSaverSaveNowWritesAtOnce(t *testing.T) {
	c := newTestClient(t, Config{})
	snaps, _ := NewSnapshots(c)
	s, err := NewSaver(snaps, SaverConfig{Delay: time.Hour}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	committed, passivated, unchanged := registered(t, time.Now()), registered(t, time.Now()), registered(t, time.Now())
	s.Save(committed)
	s.Save(passivated)
	s.SaveNow(passivated)
	s.SaveNow(unchanged) // nothing pending: its snapshot is current already
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := snaps.Get(ctx, passivated.User.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SaveNow's state was not written within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, _ := snaps.Get(ctx, committed.User.ID); got != nil {
		t.Error("a state saved without SaveNow was written before the delay")
	}
	if got, _ := snaps.Get(ctx, unchanged.User.ID); got != nil {
		t.Error("SaveNow with nothing pending wrote a snapshot")
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := snaps.Get(ctx, committed.User.ID); got == nil {
		t.Error("Close did not write the pending state")
	}
}

// TestSaverWritesEarlyWhenFull: past MaxPending the saver drops the newcomer but
// writes what is pending at once instead of at the next tick.
func TestSaverWritesEarlyWhenFull(t *testing.T) {
	c := newTestClient(t, Config{})
	snaps, _ := NewSnapshots(c)
	s, err := NewSaver(snaps, SaverConfig{Delay: time.Hour, MaxPending: 3}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	full := counterDelta(snapshotDroppedFull)
	states := []*userservice.State{registered(t, time.Now()), registered(t, time.Now()), registered(t, time.Now()), registered(t, time.Now())}
	for _, st := range states {
		s.Save(st)
	}
	if full() != 1 {
		t.Errorf("dropped full +%d, want +1", full())
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, st := range states[:3] {
		for {
			got, err := snaps.Get(ctx, st.User.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the pending states were not written once the saver was full")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
