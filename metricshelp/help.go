// Package metricshelp writes the service's Prometheus exposition with a one-line
// HELP text for every user_service_* metric family.
//
// VictoriaMetrics/metrics (the metrics library of every package here) writes an
// empty "# HELP name" line and has no way to attach a text, so `promtool check
// metrics` reports "no help text" for each family (issue 13). Rather than
// replacing the library, WritePrometheus wraps its writer: it renders the
// exposition into a buffer and fills each empty HELP line from the table in this
// file, the one place an operator reads what a metric means. The metric
// variables stay declared beside the code they measure; TestEveryMetricInTheSourceHasHelp
// fails when a user_service_* name in the source has no entry here.
package metricshelp

import (
	"bytes"
	"io"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// help maps a metric family (the name without labels and without the
// _bucket/_sum/_count suffixes of a histogram) to its HELP text: one line, no
// backslash, no newline (TestHelpTextsAreOneLine).
var help = map[string]string{
	// HTTP (http/middleware.go)
	"user_service_requests_total":           "HTTP requests answered, by method, route template and status code.",
	"user_service_request_duration_seconds": "HTTP request duration in seconds, by method and route template.",
	"user_service_ratelimit_failopen_total": "Requests let through because the rate limiter could not decide (Redis unavailable).",

	// Actors (actors/)
	"user_service_actors_active":                      "User actors currently active on this node.",
	"user_service_actors_max":                         "The bound on active user actors (ACTOR_MAX_ACTIVE); beyond it the least recently used are passivated.",
	"user_service_actor_activations_total":            "User actors activated (state loaded from Redis or PostgreSQL).",
	"user_service_actor_passivations_total":           "User actors stopped after ACTOR_IDLE_TIMEOUT or to stay under ACTOR_MAX_ACTIVE.",
	"user_service_actor_unexpected_stops_total":       "User actors that stopped without being passivated (a panic or a failed start).",
	"user_service_actor_passivations_cancelled_total": "Passivations called off because a message reached the user actor while it was stopping.",
	"user_service_actor_over_cap_waits_total":         "Activations that waited because all ACTOR_MAX_ACTIVE actors were busy (none idle to passivate).",
	"user_service_actor_load_errors_total":            "User actor activations that could not load the user's state.",
	"user_service_actor_mailbox_wait_seconds":         "Time a message waited in a user actor's mailbox before it was handled, in seconds.",
	"user_service_actor_message_duration_seconds":     "Time a user actor spent handling one message, in seconds.",
	"user_service_actor_direct_reads_total":           "Reads of an active user answered from its published state, without a message to its actor.",

	// Cluster mode (actors/cluster.go)
	"user_service_cluster_members":            "Members in this node's latest view of the cluster topology.",
	"user_service_cluster_handoffs_total":     "Users this node gave up to another node (a release asked by the new owner, a lost lease, or leaving the cluster).",
	"user_service_cluster_moved_total":        "Calls to a user actor answered moved (its placement changed) and sent again to the new owner.",
	"user_service_cluster_call_retries_total": "Calls to a user actor retried while its placement was resolved or moved (placement retries).",
	"user_service_cluster_self_fenced_total":  "Times this node stopped its actors because it lost its cluster lease.",
	"user_service_cluster_activation_seconds": "Time to acquire a user's placement and activate its actor in cluster mode, in seconds.",

	// PostgreSQL writer and pool (persistence/postgres/)
	"user_service_write_batch_size":                   "Commands committed per PostgreSQL write transaction.",
	"user_service_write_commit_duration_seconds":      "Duration of one PostgreSQL write batch's commit, in seconds.",
	"user_service_write_queue_length":                 "Commands waiting for the PostgreSQL writer.",
	"user_service_write_fallbacks_total":              "Batches retried one command per transaction after the batch failed.",
	"user_service_write_overlaps_total":               "Batches started beside a large one (8 or more commands) that had been committing for longer than the overlap delay (10 ms): under load, a sign of commits stuck on a lock or a slow disk.",
	"user_service_write_set_batches_total":            "Batches committed with set statements (the user updates of several commands in one statement, their upserts in one per table, their outbox rows in one).",
	"user_service_write_set_retries_total":            "Batches whose set statement failed and that were committed again with one statement per row, to find the failing command.",
	"user_service_write_errors_total":                 "Commands the PostgreSQL writer refused or failed, by kind (conflict, stale, unavailable).",
	"user_service_last_active_flushed_total":          "lastActiveAt updates written to PostgreSQL.",
	"user_service_last_active_dropped_total":          "lastActiveAt updates dropped because the flush queue was full.",
	"user_service_registrations_total":                "Users created (by POST or from auth.user.registered).",
	"user_service_enrollments_total":                  "Enrollments created or reactivated.",
	"user_service_course_completions_total":           "Enrollments that reached progress 100 for the first time.",
	"user_service_db_pool_acquired_conns":             "PostgreSQL pool connections currently in use.",
	"user_service_db_pool_idle_conns":                 "PostgreSQL pool connections currently idle.",
	"user_service_db_pool_total_conns":                "PostgreSQL pool connections open (in use, idle or being opened).",
	"user_service_db_pool_max_conns":                  "Maximum size of the PostgreSQL pool (DB_POOL_MAX).",
	"user_service_db_pool_acquires_total":             "Connections acquired from the PostgreSQL pool.",
	"user_service_db_pool_empty_acquires_total":       "Acquires that had to wait because the PostgreSQL pool had no idle connection.",
	"user_service_db_pool_acquire_wait_seconds_total": "Total time spent acquiring PostgreSQL pool connections, in seconds.",
	"user_service_users":                              "Users in PostgreSQL (read periodically, not at each scrape).",
	"user_service_users_by_status":                    "Users in PostgreSQL by account status.",
	"user_service_users_by_role":                      "Users in PostgreSQL by role.",
	"user_service_users_email_verified":               "Users whose email is verified.",
	"user_service_users_profile_completed":            "Users whose profile is complete.",

	// Outbox relay and consumer (messaging/)
	"user_service_outbox_backlog":                "Outbox events not yet published to RabbitMQ.",
	"user_service_outbox_oldest_age_seconds":     "Age of the oldest unpublished outbox event, in seconds (0 when the outbox is empty).",
	"user_service_outbox_published_total":        "Outbox events published to RabbitMQ and confirmed.",
	"user_service_outbox_publish_failures_total": "Outbox publish attempts that failed (they are retried).",
	"user_service_outbox_publish_batch_seconds":  "Duration of one outbox publish batch, in seconds.",
	"user_service_outbox_vacuums_total":          "VACUUMs of the outbox the relay leader ran itself after deleting many published rows (dead rows every claim would otherwise walk until autovacuum).",
	"user_service_events_consumed_total":         "Events consumed from RabbitMQ, by event type and result (processed, duplicate, invalid, retried, waiting, dead_lettered, failed, skipped).",

	// Redis (persistence/redis/)
	"user_service_redis_outages_total":              "Times Redis became unreachable.",
	"user_service_redis_reconnects_total":           "Times Redis became reachable again after an outage.",
	"user_service_cache_hits_total":                 "Cache hits, by cache (snapshot, search).",
	"user_service_cache_misses_total":               "Cache misses, by cache and reason (absent, stale, error).",
	"user_service_snapshot_loads_total":             "User states loaded at actor activation, by source (redis, postgres).",
	"user_service_snapshot_writes_total":            "User snapshots written to Redis, by result (ok, superseded, error).",
	"user_service_snapshot_writes_coalesced_total":  "User snapshot writes merged into a later write of the same user.",
	"user_service_snapshot_writes_dropped_total":    "User snapshot writes dropped, by reason (busy, down, full, closed).",
	"user_service_snapshot_write_batch_size":        "User snapshots written per Redis pipeline.",
	"user_service_snapshot_oversize_total":          "User snapshots not cached because they exceed the size limit.",
	"user_service_snapshot_encode_errors_total":     "User snapshots that could not be encoded.",
	"user_service_search_cache_writes_total":        "Search results offered to the Redis cache, by result (stored, error, too_large, dropped_busy).",
	"user_service_search_cache_decode_errors_total": "Cached search results that could not be decoded (treated as misses).",
	"user_service_search_cache_skipped_total":       "Searches that went straight to PostgreSQL because the cache kept missing (writes outpace repeated searches); every eighth still looks.",
	"user_service_search_orders_total":              "Admin search pages by the kept order of a term's matches, by result: reused (read by id, the snapshot saw the order's search facts) or read (the matches read and sorted, and the order kept).",
	"user_service_search_counts_total":              "Admin search totals, by result: reused (a count kept with the search facts it was read at, and the snapshot saw the same facts) or counted.",
	"user_service_ratelimit_allowed_total":          "Requests the rate limiter allowed.",
	"user_service_ratelimit_rejected_total":         "Requests the rate limiter rejected (answered 429).",
	"user_service_ratelimit_errors_total":           "Rate limiter calls to Redis that failed.",
	"user_service_ratelimit_refunds_total":          "Rate limit tokens given back for requests that were not charged.",
	"user_service_ratelimit_leases_total":           "Batches of rate limit tokens leased from Redis.",
	"user_service_ratelimit_local_decisions_total":  "Rate limit decisions taken from a local lease, without a Redis round trip.",
	"user_service_ratelimit_duration_seconds":       "Duration of a rate limiter call to Redis, in seconds.",

	// The heap floor (cmd/userservice/heapfloor.go)
	"user_service_gc_percent": "The garbage collector's GOGC as the heap floor (GC_HEAP_FLOOR_MB) last set it: the heap grows by this percentage of the live data before a collection.",

	// Bulk jobs (jobs/runner.go)
	"user_service_job_items_total":     "Bulk job items applied, by result (success, failure).",
	"user_service_jobs_finished_total": "Bulk jobs that finished (every item has a result, or the job was cancelled).",

	// Retention job (persistence/postgres/retention.go, docs/data-rights.md)
	"user_service_retention_deleted_total":              "Rows the retention job deleted, by table.",
	"user_service_retention_batches_total":              "DELETE batches the retention job ran.",
	"user_service_retention_errors_total":               "Retention job runs or batches that failed.",
	"user_service_retention_last_run_timestamp_seconds": "Unix time at which the retention job last completed a run.",
}

// Text returns the HELP text of a metric family and whether it has one.
func Text(family string) (string, bool) {
	t, ok := help[family]
	return t, ok
}

// Families returns every family that has a HELP text, in no particular order.
func Families() []string {
	out := make([]string, 0, len(help))
	for f := range help {
		out = append(out, f)
	}
	return out
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// WritePrometheus writes every registered metric (and the Go runtime and process
// metrics) in the Prometheus text format, like metrics.WritePrometheus(w, true),
// with the HELP texts of this package's table. HELP lines appear only when
// metrics.ExposeMetadata(true) is set, as cmd/userservice does at start. It is
// safe for concurrent use.
func WritePrometheus(w io.Writer) error {
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		buf.Reset()
		bufPool.Put(buf)
	}()
	metrics.WritePrometheus(buf, true)
	out := bufPool.Get().(*bytes.Buffer)
	defer func() {
		out.Reset()
		bufPool.Put(out)
	}()
	AddHelp(out, buf.Bytes())
	_, err := w.Write(out.Bytes())
	return err
}

var helpPrefix = []byte("# HELP ")

// AddHelp copies the exposition text to out, filling each empty "# HELP family"
// line whose family has a text in the table. Other lines are copied unchanged.
func AddHelp(out *bytes.Buffer, text []byte) {
	out.Grow(len(text) + len(text)/8)
	for len(text) > 0 {
		line := text
		next := []byte(nil)
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, next = text[:i+1], text[i+1:]
		}
		text = next
		if bytes.HasPrefix(line, helpPrefix) {
			family := bytes.TrimRight(line[len(helpPrefix):], "\r\n")
			if bytes.IndexByte(family, ' ') < 0 {
				if t, ok := help[string(family)]; ok {
					out.Write(helpPrefix)
					out.Write(family)
					out.WriteByte(' ')
					out.WriteString(t)
					out.WriteByte('\n')
					continue
				}
			}
		}
		out.Write(line)
	}
}
