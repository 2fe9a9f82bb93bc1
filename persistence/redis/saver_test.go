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
	s.flush()
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
