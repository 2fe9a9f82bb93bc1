package postgres

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
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
		{pgtype.TextArrayOID, ids, presized[[]string]{ids, 4096}},
		{pgtype.TextArrayOID, []*string{&name, nil}, presized[[]*string]{[]*string{&name, nil}, 4096}},
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
	args := withSizedArgs([]any{ids, []int64{1, 2}, 2})
	p, ok := args[0].(presized[[]string])
	if !ok {
		t.Fatalf("first argument is %T, want presized[[]string]", args[0])
	}
	if want := (arrayHeader + 8 + 3) + (arrayHeader + 24) + 8; p.size != want {
		t.Errorf("size %d, want %d", p.size, want)
	}
	if _, ok := args[1].([]int64); !ok {
		t.Errorf("second argument is %T, want it untouched", args[1])
	}
}
