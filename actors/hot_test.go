package actors

import (
	"testing"
	"time"

	userservice "github.com/lms-platform/userservice"
)

// TestDirectReads: a read of an active user is answered from its published state,
// without a message to its actor, and still sees every acknowledged write; after
// Reload it sees what the store holds, not the state published before.
func TestDirectReads(t *testing.T) {
	store := newMemStore()
	r := newTestRegistry(t, Config{}, store, hooks{})
	ctx := ctxTimeout(t, 10*time.Second)
	id := store.seed(t)
	if _, err := r.Get(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	before := directReads.Get()
	for i := range 50 {
		out, err := r.Execute(ctx, id, editBio("b"+string(rune('a'+i%26))), meta())
		if err != nil {
			t.Fatal(err)
		}
		s, err := r.Get(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.User.Version != out.State.User.Version {
			t.Fatalf("read version %d after the write of %d", s.User.Version, out.State.User.Version)
		}
	}
	if n := directReads.Get() - before; n < 50 {
		t.Fatalf("%d of 50 reads after a write were direct", n)
	}

	t.Run("a read after Reload sees the store", func(t *testing.T) {
		behind := "written behind the actor"
		store.set(func(s *memStore) {
			next := *s.users[id]
			next.User.Bio = &behind
			s.users[id] = &next
		})
		if err := r.Reload(ctx, id); err != nil {
			t.Fatal(err)
		}
		s, err := r.Get(ctx, id, nil)
		if err != nil || s.User.Bio == nil || *s.User.Bio != behind {
			t.Fatalf("after Reload: %+v, %v", s, err)
		}
	})

	t.Run("a due touch goes through the actor", func(t *testing.T) {
		at := userservice.Now()
		s, err := r.Get(ctx, id, &at)
		if err != nil || s.User.LastActiveAt == nil || !s.User.LastActiveAt.Equal(at.Time) {
			t.Fatalf("touch: %+v, %v", s.User.LastActiveAt, err)
		}
		store.set(func(s *memStore) {
			if n := len(s.touches[id]); n != 1 {
				t.Fatalf("TouchLastActive calls = %d, want 1", n)
			}
		})
	})
}

// TestDirectReadsKeepTheActorActive: a user that is only read (every read direct)
// is not passivated for being idle.
func TestDirectReadsKeepTheActorActive(t *testing.T) {
	store := newMemStore()
	r := newTestRegistry(t, Config{IdleTimeout: 20 * time.Millisecond}, store, hooks{})
	ctx := ctxTimeout(t, 10*time.Second)
	id := store.seed(t)
	if _, err := r.Get(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	before := directReads.Get()
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		if _, err := r.Get(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if directReads.Get() == before {
		t.Fatal("no read was direct")
	}
	if n := store.loadCount(id); n != 1 {
		t.Fatalf("the user was loaded %d times while read every millisecond (idle timeout 20ms)", n)
	}
	// Once the reads stop, it passivates as before.
	eventually(t, 5*time.Second, "passivation after the reads stop", func() bool { return r.ActiveCount() == 0 })
}

// TestDirectReadsCountForTheLRU: over the cap, the owner passes over a child that
// was read directly since it last looked and passivates the next least recently
// used one.
func TestDirectReadsCountForTheLRU(t *testing.T) {
	store := newMemStore()
	// 128 owners, 2 children each.
	r := newTestRegistry(t, Config{Owners: 128, MaxActive: 256}, store, hooks{})
	ctx := ctxTimeout(t, 10*time.Second)
	byOwner := map[uint32][]string{}
	var ids []string
	for ids == nil {
		id := store.seed(t)
		o := fnv32(id) % 128
		byOwner[o] = append(byOwner[o], id)
		if len(byOwner[o]) == 3 {
			ids = byOwner[o]
		}
	}
	hot, cold, next := ids[0], ids[1], ids[2]
	for _, id := range []string{hot, cold} {
		if _, err := r.Get(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 { // hot is read directly only: its owner saw it last before cold
		if _, err := r.Get(ctx, hot, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Get(ctx, next, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "one passivation", func() bool { return r.ActiveCount() == 2 })
	if r.live.get(hot) == nil {
		t.Fatal("the user read directly was passivated")
	}
	if r.live.get(cold) != nil {
		t.Fatal("the least recently used user is still active")
	}
	if n := store.loadCount(hot); n != 1 {
		t.Fatalf("hot user loaded %d times", n)
	}
}
