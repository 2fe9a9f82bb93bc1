// Package postgres is the service's PostgreSQL side, on pgx/v5: the pool and its
// migrations ([Open], [DB.Migrate], [DB.Ready]), actor activation ([Loader]), the
// group-committing writer ([Writer]), the admin search and audit log
// ([Directory]) and stored idempotent answers ([IdempotencyStore]). Driver errors
// become *userservice.Error values here and nowhere else.
//
// Group commit: [Writer.Commit] only queues a mutation. A few committer goroutines
// each, when free, take what has queued (at most BatchMax mutations, after at most
// BatchWait, zero by default) and commit it in one transaction, its statements
// pipelined with pgx.Batch: a lone write leaves at once, and under load the writes
// that arrived during the previous commits share one round trip and one WAL flush. A mutation's callback runs only after COMMIT
// returned, so an acknowledged write is durable.
//
// Fencing: every mutation updates its user row with WHERE version = BaseVersion.
// If another writer moved the version on, the update touches no row and none of the
// mutation is written: it fails with userservice.ErrStaleVersion and the actor
// reloads. A failed batch is rolled back and retried without the mutation that
// failed it (or, when the cause is unclear, mutation by mutation), so one bad
// mutation never fails the others.
package postgres
