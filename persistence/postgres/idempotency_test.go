package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

func TestIdempotencyStore(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	store, _ := postgres.NewIdempotencyStore(db)
	ctx := context.Background()
	rec := &userservice.IdempotencyRecord{CallerID: "c1", Key: "k1", RequestHash: "h", Status: 200, Body: []byte(`{"a":1}`), CreatedAt: userservice.Now()}

	if got, err := store.GetIdempotency(ctx, "c1", "k1", time.Hour); err != nil || got != nil {
		t.Fatalf("before Put: %v, %v; want nil, nil", got, err)
	}
	if err := store.PutIdempotency(ctx, rec); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, err := store.GetIdempotency(ctx, "c1", "k1", time.Hour)
	if err != nil || got == nil || got.Status != 200 || string(got.Body) != `{"a":1}` || got.RequestHash != "h" || !got.CreatedAt.Equal(rec.CreatedAt.Time) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if other, _ := store.GetIdempotency(ctx, "c2", "k1", time.Hour); other != nil {
		t.Error("a key is scoped to its caller")
	}
	if err := store.PutIdempotency(ctx, rec); !errors.Is(err, userservice.ErrIdempotencyKeyTaken) {
		t.Errorf("second Put: err = %v, want ErrIdempotencyKeyTaken", err)
	}

	t.Run("an expired key reads as absent and may be taken again", func(t *testing.T) {
		old := *rec
		old.Key, old.CreatedAt = "k-old", userservice.NewTime(time.Now().Add(-25*time.Hour))
		if err := store.PutIdempotency(ctx, &old); err != nil {
			t.Fatal(err)
		}
		if got, _ := store.GetIdempotency(ctx, "c1", "k-old", postgres.IdempotencyTTL); got != nil {
			t.Errorf("expired record returned: %+v", got)
		}
		fresh := old
		fresh.CreatedAt, fresh.Status = userservice.Now(), 201
		if err := store.PutIdempotency(ctx, &fresh); err != nil {
			t.Fatalf("Put over an expired key: %v", err)
		}
		if got, _ := store.GetIdempotency(ctx, "c1", "k-old", postgres.IdempotencyTTL); got == nil || got.Status != 201 {
			t.Errorf("Get = %+v, want the new record", got)
		}
	})
}

func TestPrune(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	store, _ := postgres.NewIdempotencyStore(db)
	ctx := context.Background()
	now := time.Now()
	for key, age := range map[string]time.Duration{"old": 25 * time.Hour, "new": time.Hour} {
		rec := &userservice.IdempotencyRecord{CallerID: "c", Key: key, Status: 200, CreatedAt: userservice.NewTime(now.Add(-age))}
		if err := store.PutIdempotency(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Pool().Exec(ctx, `INSERT INTO processed_messages (message_id, processed_at) VALUES ('m-old', $1), ('m-new', $2)`,
		now.Add(-8*24*time.Hour), now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	p, err := db.Prune(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if p.IdempotencyKeys != 1 || p.ProcessedMessages != 1 {
		t.Errorf("pruned %+v, want one of each", p)
	}
	if n := count(t, db, `SELECT count(*) FROM idempotency_keys WHERE key = 'new'`); n != 1 {
		t.Error("the young key was pruned")
	}
	if ok, _ := db.IsProcessed(ctx, "m-new"); !ok {
		t.Error("the young message id was pruned")
	}
	if ok, _ := db.IsProcessed(ctx, "m-old"); ok {
		t.Error("the old message id survived")
	}
}
