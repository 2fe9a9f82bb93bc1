package postgres

import (
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Parameters of a group commit's set statements are arrays of every row of the
// batch: an outbox INSERT of 14 events sends ~12 KB. pgx encodes a statement's
// parameters into one buffer that it cuts back to 256 bytes before every
// statement, so each set statement regrew it by doubling, six or seven
// allocations and copies for the outbox alone: runtime.growslice was 5% of the
// service's CPU under POST enrollment, and these buffers about a third of the
// bytes it allocated. presized tells the encoder how large the statement's
// parameters will be, so that the buffer grows once.

// presized is a statement's first parameter v, carrying the size of the binary
// encoding of all the statement's parameters. Its encode plan (tryWrapPresized,
// installed on every connection by Open with installPresized) grows pgx's parameter buffer to that
// size and encodes v as it would have been. It is generic so that each inner
// type gets its own entry in pgx's plan cache, which is keyed by the Go type.
//
// With room set, the statement's parameters are encoded into *room instead of a
// buffer allocated for them (see paramRoom): a group commit's set statements
// share one buffer, and the writer keeps it from batch to batch.
type presized[T any] struct {
	v    T
	size int
	room *[]byte
}

func (p presized[T]) inner() (any, int, *[]byte) { return p.v, p.size, p.room }

type presizer interface{ inner() (any, int, *[]byte) }

// tryWrapPresized is a pgtype.TryWrapEncodePlanFunc for presized values.
func tryWrapPresized(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	p, ok := value.(presizer)
	if !ok {
		return nil, nil, false
	}
	v, _, _ := p.inner()
	return &presizedPlan{}, v, true
}

type presizedPlan struct{ next pgtype.EncodePlan }

func (p *presizedPlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *presizedPlan) Encode(value any, buf []byte) ([]byte, error) {
	v, size, room := value.(presizer).inner()
	if room != nil && len(buf) == 0 { // the first parameter, as withSizedArgs places it
		return p.next.Encode(v, paramRoom(room, size))
	}
	return p.next.Encode(v, slices.Grow(buf, size))
}

// keptParamBytes is the largest parameter buffer pgx's ExtendedQueryBuilder keeps
// from one statement to the next (its reset allocates a new one past that).
const keptParamBytes = 256

// paramRoom returns *room emptied, with at least size bytes of capacity; it
// allocates only when *room is too small, and then keeps the new buffer in *room.
//
// Handing pgx a buffer it did not allocate is safe under three facts of pgx v5,
// which TestParamRoomIsReusedAcrossStatements checks against pgx itself: a
// statement's parameters are read only until its Bind is encoded into the
// connection's write buffer, which the pipeline does right after building them
// (Pipeline.SendQueryPrepared), before the next statement is built; the builder
// writes into its parameter buffer only after its reset, which drops a buffer
// larger than keptParamBytes (so room is always larger) instead of reusing it;
// and a batch is built entirely inside SendBatch. So once SendBatch has
// returned, room is free for the next batch, on any connection, and within a
// batch each statement may take it over from the one before.
func paramRoom(room *[]byte, size int) []byte {
	if cap(*room) < size || cap(*room) <= keptParamBytes {
		*room = make([]byte, 0, max(size, 4*keptParamBytes))
	}
	return (*room)[:0]
}

// withSizedArgs returns args with the first wrapped in a presized carrying the
// estimated binary size of them all, and room, where the parameters are then
// encoded when it is not nil (see paramRoom). Only the types of the set
// statements' parameters are counted; others count nothing.
func withSizedArgs(args []any, room *[]byte) []any {
	if len(args) == 0 {
		return args
	}
	size := 0
	for _, a := range args {
		size += binarySize(a)
	}
	if v, ok := args[0].([]string); ok { // every set statement's first parameter
		args[0] = presized[[]string]{v, size, room}
	}
	return args
}

// installPresized makes m encode presized values, before pgx's own wrappers.
func installPresized(m *pgtype.Map) {
	m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{tryWrapPresized}, m.TryWrapEncodePlanFuncs...)
}

// arrayHeader is a one-dimensional binary array's header: dimensions, flags,
// element type, and the dimension's length and lower bound.
const arrayHeader = 20

// binarySize estimates the bytes of v's binary encoding as a parameter: each
// array element is a 4-byte length and its data; a text element counts its
// bytes, which for a uuid sent as text over-estimates the 16 bytes sent.
func binarySize(v any) int {
	switch v := v.(type) {
	case []string:
		n := arrayHeader + 4*len(v)
		for _, s := range v {
			n += len(s)
		}
		return n
	case []*string:
		n := arrayHeader + 4*len(v)
		for _, s := range v {
			if s != nil {
				n += len(*s)
			}
		}
		return n
	case [][]byte:
		n := arrayHeader + 4*len(v)
		for _, b := range v {
			n += len(b)
		}
		return n
	case []int64:
		return arrayHeader + 12*len(v)
	case []float64:
		return arrayHeader + 12*len(v)
	case []time.Time:
		return arrayHeader + 12*len(v)
	case []*time.Time:
		return arrayHeader + 12*len(v)
	case []bool:
		return arrayHeader + 5*len(v)
	case int, int64:
		return 8
	}
	return 0
}

// The same holds one level down: pgx's pipeline encodes every message of a
// batch (each statement's Bind carries a copy of its parameters) into the
// connection's write buffer, which it cuts back to 1 KiB after each flush, so
// every group commit regrew it by doubling up to the batch's size: the largest
// allocation site of the service under the write benchmarks (pgproto3's
// Bind.Encode, 18% of the bytes allocated under PUT progress). reserveWrite
// grows that buffer once, to the batch's estimated size, before the batch is
// sent, through the one message pgx lets a caller add: a FrontendMessage whose
// encoding is empty (writeReserve).

// wireOverhead is a statement's messages beyond its parameters: Bind's header,
// the cached statement's name (68 bytes: "stmtcache_" and 48 hex digits) and
// result formats, Describe and Execute; about 100 bytes, with room to spare.
const wireOverhead = 128

// wireSize estimates the bytes pgx writes for b: each statement's overhead and
// its parameters, each with 6 bytes of length and format code (a presized
// first parameter carries the size of them all, see withSizedArgs; others
// count their binarySize).
func wireSize(b *pgx.Batch) int {
	n := 0
	for _, q := range b.QueuedQueries {
		n += wireOverhead
		if len(q.Arguments) == 0 {
			continue
		}
		if p, ok := q.Arguments[0].(presizer); ok {
			_, size, _ := p.inner()
			n += size + 6*len(q.Arguments)
			continue
		}
		for _, a := range q.Arguments {
			n += 6 + binarySize(a)
		}
	}
	return n
}

// writeReserve is a frontend message that encodes to nothing but room: sent to
// an idle connection before a batch, it grows the write buffer the batch is
// encoded into.
type writeReserve int

func (writeReserve) Frontend() {}

func (writeReserve) Decode([]byte) error { return errors.New("writeReserve is never received") }

func (n writeReserve) Encode(dst []byte) ([]byte, error) { return slices.Grow(dst, int(n)), nil }

// reserveWrite grows the write buffer of c, which must be idle and held by the
// caller, to hold at least n more bytes. Buffers up to 1 KiB are kept by pgx
// anyway.
func reserveWrite(c *pgconn.PgConn, n int) {
	if n > 1024 {
		c.Frontend().Send(writeReserve(n))
	}
}
