// Package redis keeps what the User Service holds in Redis: snapshots of user
// actors' state, for fast activation, and the rate limiter's counters, shared by
// every process. It is the only importer of rueidis.
//
// # Redis is never the truth
//
// CONTRACT.md (Durability) asks that Redis "never serves state older than an
// acknowledged write (also after a crash between commit and cache update), and the
// service keeps working, slower, when Redis is down". [CachedLoader] meets the first
// half with a version check instead of with invalidation:
//
//   - Every committed change advances users.version in PostgreSQL, in the same
//     transaction as the change (the writer fences on the base version, so one
//     version number names exactly one committed content). lastActiveAt is the one
//     field written behind without a version bump; the loader takes the later of the
//     snapshot's and PostgreSQL's value.
//   - A snapshot carries the version of the state it was taken from. On activation
//     the loader reads the snapshot and the stored version (one primary-key lookup,
//     [VersionProbe]) concurrently and serves the snapshot only when the two versions
//     are equal; otherwise it loads from PostgreSQL.
//   - So a snapshot older than an acknowledged write has a smaller version and is
//     never served, however it came to be in Redis: the process crashed between
//     commit and snapshot refresh; Redis was down while writes went on and came back
//     holding old snapshots; two processes on one database refreshed the same user in
//     either order. No ordering between PostgreSQL and Redis writes is needed, and a
//     lost or dropped snapshot write only costs a slower activation. (The put script
//     also refuses to replace a snapshot by an older version, but only to save
//     activations: serving never depends on it.)
//
// The second half: Redis errors never fail a load (the loader falls back to
// PostgreSQL) and never block an actor ([Saver] is asynchronous and drops when Redis
// is down). [Open] does not fail when Redis is down at start; a small circuit breaker
// in [Client] answers "down" at once while Redis is unreachable, and a background
// probe reconnects with back-off, so the service picks Redis up again without a
// restart. The rate limiter returns an error while Redis is down, and the HTTP edge
// lets the request through (fails open).
//
// The client targets one standalone Redis (rueidis ForceSingleClient), which is what
// lets it start while Redis is down.
package redis
