package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"

	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

// TestParamRoomIsReusedAcrossStatements holds pgx to what paramRoom relies on:
// statements of one batch that share a room each reach PostgreSQL with their own
// parameters, later batches reuse the room without allocating, and a statement
// with small parameters that the connection runs afterwards does not write into
// it.
func TestParamRoomIsReusedAcrossStatements(t *testing.T) {
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := db.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()

	room := new([]byte)
	var array *byte
	for round := range 4 {
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		for i := range 3 {
			ids := []string{fmt.Sprintf("round %d statement %d", round, i), strings.Repeat(string(rune('a'+i)), 10*(i+1))}
			nums := []int64{int64(round), int64(i)}
			b.Queue(`SELECT $1::text[], $2::bigint[]`, postgres.SizedArgs([]any{slices.Clone(ids), nums}, room)...).
				QueryRow(func(row pgx.Row) error {
					var gotIDs []string
					var gotNums []int64
					if err := row.Scan(&gotIDs, &gotNums); err != nil {
						return err
					}
					if !slices.Equal(gotIDs, ids) || !slices.Equal(gotNums, nums) {
						t.Errorf("round %d, statement %d: PostgreSQL got %q %v, want %q %v",
							round, i, gotIDs, gotNums, ids, nums)
					}
					return nil
				})
		}
		b.Queue("COMMIT")
		if err := c.SendBatch(ctx, b).Close(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if cap(*room) == 0 {
			t.Fatal("the statements were not encoded into the room")
		}
		switch first := unsafe.SliceData(*room); {
		case round == 0:
			array = first
		case first != array:
			t.Errorf("round %d: the room was allocated again", round)
		}

		kept := slices.Clone((*room)[:cap(*room)])
		var echo string
		if err := c.QueryRow(ctx, `SELECT $1::text`, "small").Scan(&echo); err != nil || echo != "small" {
			t.Fatalf("round %d: plain statement after the batch: %q, %v", round, echo, err)
		}
		if !slices.Equal((*room)[:cap(*room)], kept) {
			t.Fatalf("round %d: a later statement on the connection wrote into the room", round)
		}
	}
}
