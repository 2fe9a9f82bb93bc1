package redis

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"

	userservice "github.com/lms-platform/userservice"
)

var (
	snapshotOversize    = metrics.GetOrCreateCounter(`user_service_snapshot_oversize_total`)
	snapshotWritesOK    = metrics.GetOrCreateCounter(`user_service_snapshot_writes_total{result="ok"}`)
	snapshotWritesOlder = metrics.GetOrCreateCounter(`user_service_snapshot_writes_total{result="superseded"}`)
	snapshotWritesErr   = metrics.GetOrCreateCounter(`user_service_snapshot_writes_total{result="error"}`)
	snapshotEncodeErrs  = metrics.GetOrCreateCounter(`user_service_snapshot_encode_errors_total`)
)

// ErrSnapshotTooLarge is returned by [Snapshots.Put] when the encoded state exceeds
// Config.MaxSnapshotBytes: nothing is stored and any older snapshot is deleted.
var ErrSnapshotTooLarge = errors.New("snapshot too large")

// putSnapshotScript stores ARGV[1] (an encoded snapshot) with TTL ARGV[2] ms unless
// the key holds a snapshot of the same format with a higher version (bytes 2–9 of
// both, the big-endian version), or ARGV[3] is "1" (overwrite regardless). So a late
// write of an older state does not replace a newer snapshot. This only saves
// activations: serving never depends on it (see the package documentation).
// Returns 1 when stored, 0 when superseded.
const putSnapshotScript = `
local new = ARGV[1]
if ARGV[3] ~= '1' then
  local cur = redis.call('GETRANGE', KEYS[1], 0, 8)
  if #cur == 9 and cur:byte(1) == new:byte(1) then
    for i = 2, 9 do
      local a, b = cur:byte(i), new:byte(i)
      if a ~= b then
        if a > b then return 0 end
        break
      end
    end
  end
end
redis.call('SET', KEYS[1], new, 'PX', ARGV[2])
return 1
`

// Snapshots stores encoded user states under <prefix>snap:<userID> with the
// configured TTL. It is safe for concurrent use. A snapshot is a hint, never the
// truth: see [CachedLoader] for when one may be served.
type Snapshots struct {
	c         *Client
	putScript *rueidis.Lua
	putSHA    string // for pipelined batches, which load the script first
	ttlMS     string
}

// NewSnapshots returns the snapshot store of c.
func NewSnapshots(c *Client) (*Snapshots, error) {
	if c == nil {
		return nil, errors.New("cannot create snapshots: nil client")
	}
	sum := sha1.Sum([]byte(putSnapshotScript))
	return &Snapshots{
		c:         c,
		putScript: rueidis.NewLuaScript(putSnapshotScript),
		putSHA:    hex.EncodeToString(sum[:]),
		ttlMS:     strconv.FormatInt(c.cfg.SnapshotTTL.Milliseconds(), 10),
	}, nil
}

func (s *Snapshots) key(userID string) string { return s.c.key("snap:", userID) }

// Get returns the stored snapshot of the user, or nil, nil when there is none.
func (s *Snapshots) Get(ctx context.Context, userID string) (*userservice.State, error) {
	var b []byte
	err := s.c.call(ctx, func(ctx context.Context) error {
		var err error
		b, err = s.c.rdb.Do(ctx, s.c.rdb.B().Get().Key(s.key(userID)).Build()).AsBytes()
		return err
	})
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("get snapshot", err)
	}
	st, err := decodeSnapshot(b)
	if err != nil {
		return nil, fmt.Errorf("cannot decode snapshot of user %s: %w", userID, err)
	}
	return st, nil
}

// Put stores st as the user's snapshot, unless Redis holds one of a newer version.
// Only committed states may be stored: a version number must name one content.
func (s *Snapshots) Put(ctx context.Context, st *userservice.State) error {
	return s.store(ctx, st, false)
}

// store is Put; force overwrites even a snapshot of a newer version (one that is
// ahead of PostgreSQL can only be wrong).
func (s *Snapshots) store(ctx context.Context, st *userservice.State, force bool) error {
	b, err := s.encode(st)
	if errors.Is(err, ErrSnapshotTooLarge) {
		if derr := s.Delete(ctx, st.User.ID); derr != nil {
			return derr
		}
		return err
	}
	if err != nil {
		return err
	}
	var stored int64
	err = s.c.call(ctx, func(ctx context.Context) error {
		var err error
		stored, err = s.putScript.Exec(ctx, s.c.rdb, []string{s.key(st.User.ID)}, s.putArgs(b, force)).AsInt64()
		return err
	})
	if err != nil {
		snapshotWritesErr.Inc()
		return unavailable("put snapshot", err)
	}
	countStored(stored)
	return nil
}

func (s *Snapshots) putArgs(b []byte, force bool) []string {
	f := "0"
	if force {
		f = "1"
	}
	return []string{rueidis.BinaryString(b), s.ttlMS, f}
}

func countStored(stored int64) {
	if stored == 1 {
		snapshotWritesOK.Inc()
	} else {
		snapshotWritesOlder.Inc()
	}
}

// encode returns the snapshot bytes of st, or ErrSnapshotTooLarge (counted).
func (s *Snapshots) encode(st *userservice.State) ([]byte, error) {
	b, err := appendSnapshot(make([]byte, 0, 4096), st)
	if err != nil {
		snapshotEncodeErrs.Inc()
		return nil, err
	}
	if len(b) > s.c.cfg.MaxSnapshotBytes {
		snapshotOversize.Inc()
		return nil, fmt.Errorf("cannot store snapshot of user %s (%d bytes, limit %d): %w",
			st.User.ID, len(b), s.c.cfg.MaxSnapshotBytes, ErrSnapshotTooLarge)
	}
	return b, nil
}

// batchCommand returns the command that stores the encoded snapshot b of the user
// in a pipelined batch that starts with loadScriptCommand: the EVALSHA of the put
// script, or, when b is nil (too large to store), the DEL of any older snapshot.
func (s *Snapshots) batchCommand(userID string, b []byte) rueidis.Completed {
	if b == nil {
		return s.c.rdb.B().Del().Key(s.key(userID)).Build()
	}
	return s.c.rdb.B().Evalsha().Sha1(s.putSHA).Numkeys(1).Key(s.key(userID)).Arg(s.putArgs(b, false)...).Build()
}

// loadScriptCommand loads the put script, so that the EVALSHAs pipelined after it on
// the same connection find it even right after a Redis restart.
func (s *Snapshots) loadScriptCommand() rueidis.Completed {
	return s.c.rdb.B().ScriptLoad().Script(putSnapshotScript).Build()
}

// Delete removes the user's snapshot.
func (s *Snapshots) Delete(ctx context.Context, userID string) error {
	err := s.c.call(ctx, func(ctx context.Context) error {
		return s.c.rdb.Do(ctx, s.c.rdb.B().Del().Key(s.key(userID)).Build()).Error()
	})
	if err != nil {
		return unavailable("delete snapshot", err)
	}
	return nil
}
