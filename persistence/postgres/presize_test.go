package postgres

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/lms-platform/userservice"
)

func presizeMap() *pgtype.Map {
	m := pgtype.NewMap()
	installPresized(m)
	return m
}

// A presized parameter encodes exactly as its value, into a buffer grown once
// to the size it carries.
func TestPresizedEncodesAsItsValue(t *testing.T) {
	m := presizeMap()
	ids := []string{"0190d7a4-4b1e-7c3a-9b2f-3f1e5d6c7b8a", "0190d7a4-4b1e-7c3a-9b2f-3f1e5d6c7b8b"}
	name := "Ada"
	for _, tc := range []struct {
		oid   uint32
		plain any
		sized any
	}{
		{pgtype.TextArrayOID, ids, presized[[]string]{ids, 4096, nil}},
		{pgtype.TextArrayOID, []*string{&name, nil}, presized[[]*string]{[]*string{&name, nil}, 4096, nil}},
	} {
		want, err := m.Encode(tc.oid, pgtype.BinaryFormatCode, tc.plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 3, 8) // what an earlier parameter left in pgx's buffer
		got, err := m.Encode(tc.oid, pgtype.BinaryFormatCode, tc.sized, buf)
		if err != nil {
			t.Fatalf("oid %d, %T: %v", tc.oid, tc.sized, err)
		}
		if !bytes.Equal(got[3:], want) {
			t.Errorf("oid %d, %T: encoded %x, want %x", tc.oid, tc.sized, got[3:], want)
		}
		if cap(got) < 3+4096 {
			t.Errorf("oid %d, %T: buffer capacity %d, want at least %d", tc.oid, tc.sized, cap(got), 3+4096)
		}
	}
}

// binarySize is never below what pgx sends, so that the one growth is enough.
func TestBinarySizeCoversTheEncoding(t *testing.T) {
	m := pgtype.NewMap()
	now := time.Now()
	s := "x"
	payload := bytes.Repeat([]byte("p"), 900)
	for _, tc := range []struct {
		oid uint32
		v   any
	}{
		{pgtype.TextArrayOID, []string{"", "a", strings.Repeat("b", 300)}},
		{pgtype.TextArrayOID, []*string{nil, &s}},
		{pgtype.ByteaArrayOID, [][]byte{payload, payload, nil}},
		{pgtype.Int8ArrayOID, []int64{1, 2, 3}},
		{pgtype.Float8ArrayOID, []float64{1.5}},
		{pgtype.TimestamptzArrayOID, []time.Time{now, now}},
		{pgtype.TimestamptzArrayOID, []*time.Time{&now, nil}},
		{pgtype.BoolArrayOID, []bool{true, false}},
		{pgtype.Int8OID, int64(7)},
		{pgtype.Int4OID, 7},
	} {
		enc, err := m.Encode(tc.oid, pgtype.BinaryFormatCode, tc.v, nil)
		if err != nil {
			t.Fatalf("%T: %v", tc.v, err)
		}
		if got := binarySize(tc.v); got < len(enc) {
			t.Errorf("binarySize(%T) = %d, below the %d bytes encoded", tc.v, got, len(enc))
		}
	}
}

// withSizedArgs wraps only the first parameter and counts them all.
func TestWithSizedArgs(t *testing.T) {
	ids := []string{"a", "bb"}
	room := new([]byte)
	args := withSizedArgs([]any{ids, []int64{1, 2}, 2}, room)
	p, ok := args[0].(presized[[]string])
	if !ok {
		t.Fatalf("first argument is %T, want presized[[]string]", args[0])
	}
	if want := (arrayHeader + 8 + 3) + (arrayHeader + 24) + 8; p.size != want {
		t.Errorf("size %d, want %d", p.size, want)
	}
	if p.room != room {
		t.Errorf("room %p, want %p", p.room, room)
	}
	if _, ok := args[1].([]int64); !ok {
		t.Errorf("second argument is %T, want it untouched", args[1])
	}
}

// outboxBatch is a group commit's batch as the writer queues it for n events
// of a 900-byte payload: BEGIN, the presized outbox INSERT, COMMIT.
func outboxBatch(n int) (*pgx.Batch, []any) {
	ids, users, keys := make([]string, n), make([]string, n), make([]string, n)
	payloads, seqs := make([][]byte, n), make([]int64, n)
	for i := range n {
		ids[i], users[i], keys[i] = userservice.NewID(), userservice.NewID(), "user.enrollment.created"
		payloads[i], seqs[i] = bytes.Repeat([]byte("p"), 900), int64(i)
	}
	args := []any{ids, users, keys, payloads, seqs}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(setInsertOutboxSQL, withSizedArgs(slices.Clone(args), nil)...)
	b.Queue("COMMIT")
	return b, args
}

// wireSize is never below the messages pgx writes for a batch (Bind with the
// parameters in binary, Describe, Execute per statement, as its pipeline does
// for a prepared statement), so that the one growth is enough, and not far
// above them.
func TestWireSizeCoversTheBatch(t *testing.T) {
	m := pgtype.NewMap()
	b, args := outboxBatch(14)
	oids := []uint32{pgtype.TextArrayOID, pgtype.TextArrayOID, pgtype.TextArrayOID, pgtype.ByteaArrayOID, pgtype.Int8ArrayOID}
	stmt := "stmtcache_" + strings.Repeat("f", 48) // pgx names a cached statement by its SQL's digest
	var wire []byte
	for _, q := range b.QueuedQueries {
		bind := &pgproto3.Bind{PreparedStatement: stmt, ResultFormatCodes: []int16{1}}
		if q.SQL == setInsertOutboxSQL {
			for i, a := range args {
				enc, err := m.Encode(oids[i], pgtype.BinaryFormatCode, a, nil)
				if err != nil {
					t.Fatal(err)
				}
				bind.Parameters = append(bind.Parameters, enc)
				bind.ParameterFormatCodes = append(bind.ParameterFormatCodes, pgtype.BinaryFormatCode)
			}
		}
		var err error
		for _, msg := range []pgproto3.FrontendMessage{bind, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}} {
			if wire, err = msg.Encode(wire); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := wireSize(b)
	if got < len(wire) {
		t.Errorf("wireSize = %d, below the %d bytes of the batch's messages", got, len(wire))
	}
	if got > len(wire)+len(wire)/4 {
		t.Errorf("wireSize = %d, more than a quarter above the %d bytes of the batch's messages", got, len(wire))
	}
}

// reserveWrite's message writes nothing and grows pgx's write buffer once: a
// batch's messages then encode without another allocation (without it they
// regrow the buffer by doubling from the 1 KiB pgx keeps after a flush).
func TestWriteReserveGrowsTheBufferOnce(t *testing.T) {
	var sent bytes.Buffer
	f := pgproto3.NewFrontend(strings.NewReader(""), &sent)
	bind := &pgproto3.Bind{}
	for range 14 { // an outbox INSERT's parameters are a few arrays of ~1 KB
		bind.Parameters = append(bind.Parameters, bytes.Repeat([]byte("p"), 900))
	}
	want, err := bind.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	send := func(reserve bool) {
		sent.Reset()
		if reserve {
			f.Send(writeReserve(len(want)))
		}
		f.SendBind(bind)
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	send(true)
	if !bytes.Equal(sent.Bytes(), want) {
		t.Fatalf("sent %d bytes, want the Bind's %d alone", sent.Len(), len(want))
	}
	// Each run with the reserve: its growth, its message (an int in an
	// interface), and the 1 KiB buffer pgx makes after flushing a larger one
	// (the race detector adds one of its own). Without it: the doublings from
	// 1 KiB to 16 KiB and that 1 KiB buffer.
	with := testing.AllocsPerRun(20, func() { send(true) })
	without := testing.AllocsPerRun(20, func() { send(false) })
	if with+2 > without {
		t.Errorf("%.0f allocations per batch with the reserve, %.0f without: want at least 2 fewer with it", with, without)
	}
}
