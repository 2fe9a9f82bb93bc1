#!/usr/bin/env bash
# bench/pgwrites.sh — `make bench-pgwrites` (issue 16): what PostgreSQL does per write.
#
# Builds the service from the working tree, seeds PGW_USERS users into schema
# PGW_SCHEMA (default pgwrites), starts the service on it and, for each write
# scenario of loadtest/wrk/, runs a wrk closed loop while taking the difference of
#
#   - pg_stat_statements (calls, execution time, rows, WAL records, full-page images
#     and WAL bytes of every statement; the extension is created if missing),
#   - pg_stat_user_tables of the schema (updates, of them HOT, inserts, deletes),
#   - the server's WAL position (pg_current_wal_lsn: every database of the cluster),
#
# and writes them per request to PGW_OUT (default bench/results/<date>-pgwrites.md).
# pg_stat_statements keys a statement by its text and the tables it names (their
# OIDs), so this schema's statements are counted apart from other schemas' ones;
# BEGIN and COMMIT are the cluster's. After each run it waits until the relay has
# published (and deleted) every outbox row, so that the deletes are counted too.
#
# PGW_DROP_INDEXES="users_last_name_idx ..." drops those indexes of the schema
# before the runs: an experiment (what a write would cost without them), never
# applied to the service's migrations.
#
# Knobs: PGW_USERS=5000, PGW_DURATION=10s, PGW_SCENARIOS="put_me put_preference
# post_enrollment put_progress", PGW_SCHEMA, PGW_DROP_INDEXES, PGW_OUT, PGW_PORT=3095.
# Uses the test stack's servers as they are (like bench/run.sh).
set -euo pipefail

cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd -P)
DEVSTACK=${DEVSTACK:-$ROOT/scripts/devstack.sh}
GO=${GO:-go}
USERS=${PGW_USERS:-5000}
WRK_DURATION=${PGW_DURATION:-10s}
SCENARIOS=${PGW_SCENARIOS:-put_me put_preference post_enrollment put_progress}
SCHEMA=${PGW_SCHEMA:-pgwrites}
DROP_INDEXES=${PGW_DROP_INDEXES:-}
PORT=${PGW_PORT:-3095}
WRK_THREADS=2
WRK_CONNS=64
CLK_TCK=$(getconf CLK_TCK)
WORK=$ROOT/bench/.work/pgwrites-$(date -u +%Y%m%dT%H%M%SZ)
OUT=${PGW_OUT:-$ROOT/bench/results/$(date -u +%Y-%m-%d)-pgwrites${DROP_INDEXES:+-experiment}.md}
mkdir -p "$WORK" "$(dirname -- "$OUT")"

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

SERVICE_PID=
cleanup() {
	[[ -n $WRK_PID ]] && kill -TERM "$WRK_PID" 2>/dev/null || true
	if [[ -n $SERVICE_PID ]]; then
		kill -TERM "$SERVICE_PID" 2>/dev/null || true
		wait "$SERVICE_PID" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stack_up
command -v wrk >/dev/null 2>&1 || die "wrk is missing (scripts/devstack.sh install test installs it)"
psql=(psql "$TEST_DATABASE_URL" -X -q -At -v ON_ERROR_STOP=1)

$GO build -o "$WORK/userservice" ./cmd/userservice
$GO build -o "$WORK/seed" ./cmd/seed
JWT_SECRET="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export JWT_SECRET
log "seeding $USERS users into schema $SCHEMA"
"$WORK/seed" -database-url "$TEST_DATABASE_URL" -schema "$SCHEMA" -reset -users "$USERS" -admins 1 -out "$WORK/tokens.json" 2>"$WORK/seed.log" ||
	{
		cat "$WORK/seed.log" >&2
		die "seeding failed"
	}
"${psql[@]}" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public"
for idx in $DROP_INDEXES; do
	log "experiment: dropping index $SCHEMA.$idx"
	"${psql[@]}" -c "DROP INDEX \"$SCHEMA\".\"$idx\""
done
INDEXES=$("${psql[@]}" -c "SELECT string_agg(indexname, ', ' ORDER BY indexname) FROM pg_indexes WHERE schemaname = '$SCHEMA' AND tablename = 'users'")

env PORT="$PORT" HOST=127.0.0.1 NODE_ENV=production \
	DATABASE_URL="$TEST_DATABASE_URL" REDIS_URL="$TEST_REDIS_URL" RABBITMQ_URL="$TEST_RABBITMQ_URL" \
	DB_SCHEMA="$SCHEMA" REDIS_KEY_PREFIX="$SCHEMA:$(date +%s):" RABBITMQ_EXCHANGE="$SCHEMA.events" RABBITMQ_QUEUE="$SCHEMA.q" \
	RATE_LIMIT_MAX=1000000000 LOG_LEVEL=warn "$WORK/userservice" >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
wait_http "http://127.0.0.1:$PORT/health/ready" 60 || {
	tail -n 30 "$WORK/service.log" >&2
	die "the service did not become ready"
}
WRK_DURATION=$((USERS / 1000 + 3))s run_wrk warmup get_me "http://127.0.0.1:$PORT" "$SERVICE_PID" "$WORK/tokens.json"

statements() { # FILE: queryid, calls, ms, rows, wal records, fpi, wal bytes, query
	"${psql[@]}" -F $'\t' -c "SELECT queryid, calls, total_exec_time, rows, wal_records, wal_fpi, wal_bytes,
		regexp_replace(left(query, 90), '\s+', ' ', 'g') FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())" >"$1"
}
tables() { # FILE
	"${psql[@]}" -F $'\t' -c "SELECT relname, n_tup_upd, n_tup_hot_upd, n_tup_ins, n_tup_del FROM pg_stat_user_tables WHERE schemaname = '$SCHEMA'" >"$1"
}
outbox_empty() { [[ $("${psql[@]}" -c "SELECT count(*) FROM \"$SCHEMA\".outbox") == 0 ]]; }
wal_lsn() { "${psql[@]}" -c "SELECT pg_current_wal_lsn()"; }

{
	echo "# PostgreSQL per write: $(date -u +%FT%TZ)"
	echo
	echo "Written by \`make bench-pgwrites${DROP_INDEXES:+ PGW_DROP_INDEXES=\"$DROP_INDEXES\"}\` (bench/pgwrites.sh) at commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' with uncommitted changes'); $USERS users, wrk closed loop of $WRK_DURATION per scenario (2 threads, 64 connections). Figures are per request (per write); WAL is what pg_stat_statements attributes to the statement, the cluster's WAL growth includes every other database and process on this shared server. Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "Indexes of users in this run: $INDEXES."
	[[ -n $DROP_INDEXES ]] && echo && echo "**Experiment**: dropped $DROP_INDEXES before the runs (not a migration)."
} >"$OUT"

for s in $SCENARIOS; do
	statements "$WORK/$s.st0"
	tables "$WORK/$s.tb0"
	lsn0=$(wal_lsn)
	run_wrk "$s" "$s" "http://127.0.0.1:$PORT" "$SERVICE_PID" "$WORK/tokens.json"
	for _ in $(seq 100); do outbox_empty && break; sleep 0.1; done
	statements "$WORK/$s.st1"
	tables "$WORK/$s.tb1"
	lsn1=$(wal_lsn)
	n=$(grep -o '"requests":[0-9]*' "$WORK/$s.wrk" | cut -d: -f2)
	wal=$("${psql[@]}" -c "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/$s.wrk")
	{
		echo
		echo "## $s: $n requests ($rps req/s)"
		echo
		echo "Cluster WAL: $(awk -v w="$wal" -v n="$n" 'BEGIN { printf "%.0f bytes per request", w / n }'). Tables of the schema:"
		echo
		echo "| table | updates | of them HOT | inserts | deletes |"
		echo "|---|---|---|---|---|"
		awk -F'\t' -v n="$n" 'NR == FNR { a[$1] = $0; next }
			{ split(a[$1], b, "\t"); u = $2 - b[2]; h = $3 - b[3]; i = $4 - b[4]; d = $5 - b[5]
			  if (u + i + d > 0) printf "| %s | %.2f | %.2f | %.2f | %.2f |\n", $1, u / n, h / n, i / n, d / n }' \
			"$WORK/$s.tb0" "$WORK/$s.tb1"
		echo
		echo "Statements (at least 1 call per 20 requests, or 0.002 ms of execution per request: the relay's, which run once per batch of events), per request:"
		echo
		echo "| statement | calls | exec ms | rows | WAL records | full-page images | WAL bytes |"
		echo "|---|---|---|---|---|---|---|"
		awk -F'\t' -v n="$n" 'NR == FNR { for (i = 2; i <= 7; i++) a[$1, i] = $i; next }
			{ c = $2 - a[$1, 2]; if (c * 20 < n && ($3 - a[$1, 3]) * 500 < n) next
			  printf "| `%s` | %.2f | %.4f | %.2f | %.2f | %.3f | %.0f |\n", $8, c / n, ($3 - a[$1, 3]) / n, ($4 - a[$1, 4]) / n,
				($5 - a[$1, 5]) / n, ($6 - a[$1, 6]) / n, ($7 - a[$1, 7]) / n
			  tw += $7 - a[$1, 7]; tr += $5 - a[$1, 5]; tt += $3 - a[$1, 3] }
			END { printf "| **sum of these** | | %.4f | | %.2f | | %.0f |\n", tt / n, tr / n, tw / n }' \
			"$WORK/$s.st0" "$WORK/$s.st1" | sort -t'|' -k3,3 -rn
	} >>"$OUT"
done
log "wrote $OUT (raw data in $WORK)"
