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
