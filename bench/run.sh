#!/usr/bin/env bash
# bench/run.sh — the whole-stack benchmark behind `make bench` (issue 7).
#
# It uses the test profile's PostgreSQL/Redis/RabbitMQ (started with scripts/devstack.sh
# up test only when they are not all up already: a running shared stack is never
# stopped or restarted), builds the service, the bare fasthttp baseline (bench/baseline)
# and the seeder, seeds BENCH_USERS users into their own schema, activates their actors
# (a warm-up pass over every user), then for each scenario of loadtest/ runs:
#
#   1. a closed loop with wrk (loadtest/wrk/<scenario>.lua, BENCH_WRK_THREADS threads,
#      BENCH_WRK_CONNS connections) against the service and then against the baseline:
#      the maximum of each, with a generator light enough not to be the limit (issue
#      16); the service's CPU and allocation profiles are taken during this run for
#      the BENCH_PROFILE scenarios,
#   2. a closed loop at BENCH_VUS k6 virtual users against the service,
#   3. a constant arrival rate of BENCH_RATE req/s (k6) against the service, with the
#      spec's p95 thresholds and 0% errors,
#   4. the same two k6 runs against the baseline, in the same run, so every figure is
#      also a ratio to what this machine can do at this moment;
#
# sampling the CPU time and RSS of the process under test (from /proc) and of the
# load generator.
# Then it stops the service (SIGTERM; its exit status is reported), runs the
# micro-benchmarks beside the code briefly (-benchtime=1s), the cluster hop over HTTP
# (BenchmarkE2EClusterHop: single-node, owner, non-owner) and the actor footprint
# tests (idle actor; active typical user), and writes bench/results/<date>-<host>.md with bench/report.
#
# Knobs (environment):
#   BENCH_USERS=10000        seeded users (the issue's search target is on 10k users)
#   BENCH_DURATION=20s       length of every k6 run (Ns or Nm)
#   BENCH_VUS=64             closed-loop concurrency
#   BENCH_RATE=1000          arrival rate of the rate runs (req/s)
#   BENCH_SCENARIOS="..."    scenario scripts to run (default: all eight)
#   BENCH_MICRO=1            0 skips the micro-benchmarks
#   BENCH_BASELINE_RATE=1    0 skips the baseline's rate runs (closed loop only)
#   BENCH_PROFILE="get_me put_me mix"  scenarios whose wrk closed loop is profiled
#                            (CPU and allocations, pprof)
#   BENCH_WRK=1              0 skips the wrk closed loops
#   BENCH_K6=1               0 skips every k6 run (wrk only; the warm-up is then a wrk
#                            pass of GET /me long enough to reach every user)
#   BENCH_WRK_THREADS=2      wrk threads (-t)
#   BENCH_WRK_CONNS=64       wrk connections (-c)
#   BENCH_LOG_LEVEL=warn     the service's LOG_LEVEL (info logs one line per request)
#   BENCH_OUT=bench/results/<date>-<host>.md
#   K6=/path/to/k6           default: k6 on PATH, else $(go env GOPATH)/bin/k6, else
#                            `go install go.k6.io/k6@v1.8.1` (about 3 minutes)
#
# It uses the test stack's servers but its own schema (bench), Redis key prefix,
# exchange and queue, so it can run beside `make test` (the figures are then noisier).
set -euo pipefail

cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd -P)
DEVSTACK=${DEVSTACK:-$ROOT/scripts/devstack.sh}
GO=${GO:-go}

USERS=${BENCH_USERS:-10000}
DURATION=${BENCH_DURATION:-20s}
VUS=${BENCH_VUS:-64}
RATE=${BENCH_RATE:-1000}
SCENARIOS=${BENCH_SCENARIOS:-get_me get_preferences put_me put_preference post_enrollment put_progress admin_search mix}
MICRO=${BENCH_MICRO:-1}
BASELINE_RATE=${BENCH_BASELINE_RATE:-1}
PROFILE_SCENARIOS=${BENCH_PROFILE:-get_me put_me mix}
WRK=${BENCH_WRK:-1}
USE_K6=${BENCH_K6:-1}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
WRK_CONNS=${BENCH_WRK_CONNS:-64}
WRK_DURATION=$DURATION
LOG_LEVEL_BENCH=${BENCH_LOG_LEVEL:-warn}
SERVICE_PORT=${BENCH_SERVICE_PORT:-3090}
BASELINE_PORT=${BENCH_BASELINE_PORT:-3099}
PPROF_PORT=${BENCH_PPROF_PORT:-6090}
HOST_NAME=$(hostname -s 2>/dev/null || hostname)
STAMP=$(date -u +%Y-%m-%d)
OUT=${BENCH_OUT:-$ROOT/bench/results/$STAMP-$HOST_NAME.md}
WORK=$ROOT/bench/.work/$(date -u +%Y%m%dT%H%M%SZ)
BIN=$ROOT/bench/.work/bin
CLK_TCK=$(getconf CLK_TCK)

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

mkdir -p "$WORK" "$BIN" "$(dirname -- "$OUT")"
T0=$SECONDS

# ---------------------------------------------------------------------------------------
# Processes we start, stopped on exit by pid (never by name).

SERVICE_PID= BASELINE_PID= K6_PID=
cleanup() {
	local pid
	for pid in $K6_PID $WRK_PID $BASELINE_PID $SERVICE_PID; do
		[[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in $K6_PID $WRK_PID $BASELINE_PID $SERVICE_PID; do
		[[ -n $pid ]] && wait "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# k6

find_k6() {
	if [[ -n ${K6:-} ]]; then
		[[ -x $K6 ]] || die "K6=$K6 is not executable"
		return
	fi
	if K6=$(command -v k6 2>/dev/null); then return; fi
	K6="$($GO env GOPATH)/bin/k6"
	[[ -x $K6 ]] && return
	log "k6 not found; go install go.k6.io/k6@v1.8.1 (about 3 minutes)"
	$GO install go.k6.io/k6@v1.8.1
	[[ -x $K6 ]] || die "go install did not produce $K6"
}

# run_k6 LABEL SCRIPT MODE URL PID: one k6 run of loadtest/SCRIPT against URL while
# sampling process PID. Writes WORK/LABEL.json (k6 summary), .log and .sample.
run_k6() {
	local label=$1 script=$2 mode=$3 url=$4 pid=$5
	local out=$WORK/$label rc=0
	sample_start "$label" "$pid"
	MODE=$mode BASE_URL=$url TOKENS=$TOKENS DURATION=$DURATION VUS=$VUS RATE=$RATE \
		"$K6" run --quiet --no-color --summary-export "$out.json" "$ROOT/loadtest/$script.js" >"$out.log" 2>&1 &
	K6_PID=$!
	sample_poll "$pid" "$K6_PID"
	wait "$K6_PID" || rc=$?
	K6_PID=
	sample_end "$label" "$pid" k6 "$rc"
	printf 'script=%s\nmode=%s\n' "$script" "$mode" >>"$out.sample"
	# 99 is k6's "thresholds crossed": a result, reported, not a harness failure.
	if ((rc != 0 && rc != 99)); then
		log "k6 $label exited $rc; see $out.log"
		tail -n 20 "$out.log" >&2 || true
	fi
	log "$(printf '%-28s %s' "$label" "$(grep -E '^ +http_reqs' "$out.log" | head -n1 | awk '{print $2, $3}') k6=$rc")"
}

# ---------------------------------------------------------------------------------------

if [[ $USE_K6 == 1 ]]; then
	find_k6
	log "k6: $K6 ($("$K6" version 2>/dev/null | head -n1))"
else
	K6=true
fi

log "the test stack"
stack_up
command -v wrk >/dev/null 2>&1 || die "wrk is missing (scripts/devstack.sh install test installs it)"

log "building the service, the baseline and the seeder"
$GO build -o "$BIN/userservice" ./cmd/userservice
$GO build -o "$BIN/baseline" ./bench/baseline
$GO build -o "$BIN/seed" ./cmd/seed

JWT_SECRET="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export JWT_SECRET
TOKENS=$WORK/tokens.json
SCHEMA=bench
log "seeding $USERS users into schema $SCHEMA"
seed_t0=$SECONDS
"$BIN/seed" -database-url "$TEST_DATABASE_URL" -schema "$SCHEMA" -reset -users "$USERS" -admins 5 -out "$TOKENS" 2>"$WORK/seed.log" ||
	{
		cat "$WORK/seed.log" >&2
		die "seeding failed"
	}
SEED_SECONDS=$((SECONDS - seed_t0))

log "starting the service on :$SERVICE_PORT"
RUN_ID=$(date -u +%s)
env PORT="$SERVICE_PORT" HOST=127.0.0.1 NODE_ENV=production \
	DATABASE_URL="$TEST_DATABASE_URL" REDIS_URL="$TEST_REDIS_URL" RABBITMQ_URL="$TEST_RABBITMQ_URL" \
	DB_SCHEMA="$SCHEMA" REDIS_KEY_PREFIX="bench:$RUN_ID:" RABBITMQ_EXCHANGE=bench.events RABBITMQ_QUEUE=bench.user-service \
	RATE_LIMIT_MAX=1000000000 LOG_LEVEL="$LOG_LEVEL_BENCH" PPROF_ADDR="127.0.0.1:$PPROF_PORT" \
	"$BIN/userservice" >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
wait_http "http://127.0.0.1:$SERVICE_PORT/health/ready" 60 || {
	tail -n 30 "$WORK/service.log" >&2
	die "the service did not become ready"
}
"$BIN/baseline" -addr "127.0.0.1:$BASELINE_PORT" 2>"$WORK/baseline.log" &
BASELINE_PID=$!
wait_http "http://127.0.0.1:$BASELINE_PORT/" 10 || die "the baseline did not start"

SERVICE_URL=http://127.0.0.1:$SERVICE_PORT
BASELINE_URL=http://127.0.0.1:$BASELINE_PORT
IDLE_RSS_KB=$(rss_kb "$SERVICE_PID")
log "warm-up: every user's actor once"
if [[ $USE_K6 == 1 ]]; then
	run_k6 warmup get_me warmup "$SERVICE_URL" "$SERVICE_PID"
else
	# wrk's threads walk the users from evenly spread offsets, one per request.
	WRK_DURATION=$((USERS / 1000 + 3))s run_wrk warmup get_me "$SERVICE_URL" "$SERVICE_PID" "$TOKENS"
fi
ACTIVE_RSS_KB=$(rss_kb "$SERVICE_PID")

for s in $SCENARIOS; do
	[[ -f $ROOT/loadtest/$s.js ]] || die "no scenario loadtest/$s.js"
	if [[ $WRK == 1 ]]; then
		[[ -f $ROOT/loadtest/wrk/$s.lua ]] || die "no wrk scenario loadtest/wrk/$s.lua"
		prof=
		if [[ " $PROFILE_SCENARIOS " == *" $s "* ]]; then
			secs=$(($(duration_seconds "$DURATION") - 6))
			((secs >= 3)) || secs=3
			(sleep 3 && profile_start "$s" "$PPROF_PORT" "$secs" && profile_wait "$s" "$BIN/userservice") &
			prof=$!
		fi
		run_wrk "$s.wrk" "$s" "$SERVICE_URL" "$SERVICE_PID" "$TOKENS"
		if [[ -n $prof ]]; then
			wait "$prof" || log "could not take the profiles of $s"
		fi
		run_wrk "$s.wrk-baseline" "$s" "$BASELINE_URL" "$BASELINE_PID" "$TOKENS"
	fi
	[[ $USE_K6 == 1 ]] || continue
	run_k6 "$s.closed" "$s" closed "$SERVICE_URL" "$SERVICE_PID"
	run_k6 "$s.rate" "$s" rate "$SERVICE_URL" "$SERVICE_PID"
	run_k6 "$s.baseline" "$s" closed "$BASELINE_URL" "$BASELINE_PID"
	if [[ $BASELINE_RATE == 1 ]]; then
		run_k6 "$s.baseline-rate" "$s" rate "$BASELINE_URL" "$BASELINE_PID"
	fi
done
curl -fsS --max-time 5 "$SERVICE_URL/metrics" >"$WORK/metrics.txt" 2>/dev/null || true
FINAL_RSS_KB=$(rss_kb "$SERVICE_PID")

log "stopping the service (SIGTERM)"
kill -TERM "$SERVICE_PID"
SERVICE_EXIT=0
wait "$SERVICE_PID" || SERVICE_EXIT=$?
SERVICE_PID=
kill -TERM "$BASELINE_PID" 2>/dev/null || true
wait "$BASELINE_PID" 2>/dev/null || true
BASELINE_PID=

if [[ $MICRO == 1 ]]; then
	log "micro-benchmarks (-benchtime=1s)"
	export TEST_DATABASE_URL TEST_REDIS_URL TEST_RABBITMQ_URL
	$GO test -run '^$' -bench . -benchtime=1s -benchmem -timeout 10m \
		./actors/ ./http/ ./persistence/postgres/ ./persistence/redis/ ./messaging/ >"$WORK/micro.txt" 2>&1 ||
		log "some micro-benchmarks failed; see $WORK/micro.txt"
	# The cluster hop over HTTP: single-node, owner node and non-owner node, one run
	# (real services on the test stack and an etcd of its own).
	$GO test -run '^$' -bench '^BenchmarkE2EClusterHop$' -benchtime=300x -timeout 10m \
		./cmd/userservice/ >>"$WORK/micro.txt" 2>&1 ||
		log "the cluster hop benchmark failed; see $WORK/micro.txt"
	$GO test -run '^(TestIdleActorFootprint|TestActiveUserFootprint)$' -count=1 -v ./actors/ >"$WORK/footprint.txt" 2>&1 ||
		log "the footprint test failed; see $WORK/footprint.txt"
fi

cat >"$WORK/meta.env" <<EOF
date=$(date -u +%FT%TZ)
host=$HOST_NAME
cpus=$(nproc)
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
kernel=$(uname -r)
go=$($GO env GOVERSION)
k6=$([[ $USE_K6 == 1 ]] && "$K6" version 2>/dev/null | head -n1)
wrk=$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}')
wrk_threads=$WRK_THREADS
wrk_conns=$WRK_CONNS
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')
users=$USERS
duration=$DURATION
vus=$VUS
rate=$RATE
log_level=$LOG_LEVEL_BENCH
seed_seconds=$SEED_SECONDS
idle_rss_kb=$IDLE_RSS_KB
active_rss_kb=$ACTIVE_RSS_KB
final_rss_kb=$FINAL_RSS_KB
service_exit=$SERVICE_EXIT
scenarios=$SCENARIOS
total_seconds=$((SECONDS - T0))
EOF
$GO run ./bench/report -dir "$WORK" -out "$OUT"
log "wrote $OUT ($((SECONDS - T0))s; raw data in $WORK)"
