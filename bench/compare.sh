#!/usr/bin/env bash
# bench/compare.sh — `make bench-compare BASE=<commit> [HEAD=<commit>]` (issue 16):
# two commits of the service side by side in one run, so that a change is judged by a
# ratio measured in the same minutes on the same (possibly busy) machine.
#
# It checks out BASE and HEAD (default: HEAD, the last commit; uncommitted changes are
# not measured) into git worktrees in a temporary folder, builds each one's service and
# seeder, seeds BENCH_USERS users for each into its own schema (bench_base,
# bench_head; same seed, so the same data), starts both services and the bare fasthttp
# baseline (bench/baseline), warms every user's actor up in each, primes every
# scenario on each side (BENCH_PRIME, unmeasured), and then runs
# BENCH_ROUNDS rounds; in each round, scenario by scenario, one closed-loop wrk run
# (loadtest/wrk/<scenario>.lua) against BASE and one against HEAD, in alternating
# order (BASE first in one round, HEAD first in the next), followed by one against
# the baseline. After the rounds, the BENCH_PROFILE scenarios run once more against
# each commit with CPU and allocation profiles (pprof; not counted in the ratios,
# since profiling costs throughput).
#
# bench/report -compare turns the raw data into bench/results/<date>-compare-<base>-<head>.md:
# per scenario each side's req/s, HEAD ÷ BASE per round and overall, latency and CPU
# per request ratios, each side as a share of the baseline, RSS per activated user,
# and the profiles' top entries.
#
# Knobs (environment): BENCH_USERS=10000, BENCH_DURATION=20s (each wrk run),
# BENCH_ROUNDS=2, BENCH_PRIME=3s (an unmeasured run per scenario and side before the
# rounds; 0 for none), BENCH_SETTLE=30 and BENCH_SETTLE_BUSY=0.15 (see settle in
# bench/lib.sh; BENCH_SETTLE=0 for none), BENCH_SCENARIOS (default all eight), BENCH_PROFILE="get_me put_me"
# ("" for none), BENCH_WRK_THREADS=2, BENCH_WRK_CONNS=64, BENCH_LOG_LEVEL=warn,
# BENCH_OUT, BENCH_PORTS="3091 3092 3099" (BASE, HEAD, baseline), BENCH_PPROF_PORTS="6091 6092".
#
# Like bench/run.sh it uses the test profile's servers (started only if they are not
# all up; never stopped or restarted) with its own schemas, Redis key prefixes,
# exchanges and queues.
set -euo pipefail

cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd -P)
DEVSTACK=${DEVSTACK:-$ROOT/scripts/devstack.sh}
GO=${GO:-go}

BASE_REF=${BASE:-}
HEAD_REF=${HEAD:-HEAD}
[[ -n $BASE_REF ]] || {
	echo 'usage: make bench-compare BASE=<commit> [HEAD=<commit>]' >&2
	exit 2
}
USERS=${BENCH_USERS:-10000}
WRK_DURATION=${BENCH_DURATION:-20s}
ROUNDS=${BENCH_ROUNDS:-2}
PRIME=${BENCH_PRIME:-3s}
SCENARIOS=${BENCH_SCENARIOS:-get_me get_preferences put_me put_preference post_enrollment put_progress admin_search mix}
PROFILE_SCENARIOS=${BENCH_PROFILE-get_me put_me}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
WRK_CONNS=${BENCH_WRK_CONNS:-64}
LOG_LEVEL_BENCH=${BENCH_LOG_LEVEL:-warn}
read -r BASE_PORT HEAD_PORT BASELINE_PORT <<<"${BENCH_PORTS:-3091 3092 3099}"
read -r BASE_PPROF HEAD_PPROF <<<"${BENCH_PPROF_PORTS:-6091 6092}"
CLK_TCK=$(getconf CLK_TCK)

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

BASE_SHA=$(git rev-parse --short=10 "$BASE_REF^{commit}") || die "unknown commit $BASE_REF"
HEAD_SHA=$(git rev-parse --short=10 "$HEAD_REF^{commit}") || die "unknown commit $HEAD_REF"
STAMP=$(date -u +%Y-%m-%d)
OUT=${BENCH_OUT:-$ROOT/bench/results/$STAMP-compare-${BASE_SHA:0:7}-${HEAD_SHA:0:7}.md}
WORK=$ROOT/bench/.work/compare-$(date -u +%Y%m%dT%H%M%SZ)
BIN=$WORK/bin
TREES=$(mktemp -d "${TMPDIR:-/tmp}/bench-compare.XXXXXX")
mkdir -p "$WORK" "$BIN" "$(dirname -- "$OUT")"
T0=$SECONDS

# ---------------------------------------------------------------------------------------
# Processes and worktrees we create, removed on exit (processes by pid).

declare -A PID=()
BASELINE_PID=
cleanup() {
	local pid
	for pid in $WRK_PID $PROFILE_PIDS "${PID[@]}" $BASELINE_PID; do
		[[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in $WRK_PID $PROFILE_PIDS "${PID[@]}" $BASELINE_PID; do
		[[ -n $pid ]] && wait "$pid" 2>/dev/null || true
	done
	local side
	for side in base head; do
		[[ -d $TREES/$side ]] && git -C "$ROOT" worktree remove --force "$TREES/$side" 2>/dev/null || true
	done
	rm -rf -- "$TREES"
	git -C "$ROOT" worktree prune 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "BASE $BASE_SHA ($(git log -1 --format=%s "$BASE_SHA" | cut -c1-60)), HEAD $HEAD_SHA ($(git log -1 --format=%s "$HEAD_SHA" | cut -c1-60))"
stack_up
command -v wrk >/dev/null 2>&1 || die "wrk is missing (scripts/devstack.sh install test installs it)"

declare -A SHA=([base]=$BASE_SHA [head]=$HEAD_SHA) PORT=([base]=$BASE_PORT [head]=$HEAD_PORT)
declare -A PPROF=([base]=$BASE_PPROF [head]=$HEAD_PPROF) IDLE_RSS=() ACTIVE_RSS=()

for side in base head; do
	log "building $side (${SHA[$side]})"
	git -C "$ROOT" worktree add --quiet --detach "$TREES/$side" "${SHA[$side]}"
	mkdir -p "$BIN/$side"
	(cd "$TREES/$side" && $GO build -o "$BIN/$side/userservice" ./cmd/userservice && $GO build -o "$BIN/$side/seed" ./cmd/seed)
done
$GO build -o "$BIN/baseline" ./bench/baseline

JWT_SECRET="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export JWT_SECRET
RUN_ID=$(date -u +%s)
for side in base head; do
	log "seeding $USERS users into schema bench_$side"
	"$BIN/$side/seed" -database-url "$TEST_DATABASE_URL" -schema "bench_$side" -reset -users "$USERS" -admins 5 \
		-out "$WORK/$side.tokens.json" 2>"$WORK/$side.seed.log" || {
		cat "$WORK/$side.seed.log" >&2
		die "seeding $side failed"
	}
	env PORT="${PORT[$side]}" HOST=127.0.0.1 NODE_ENV=production \
		DATABASE_URL="$TEST_DATABASE_URL" REDIS_URL="$TEST_REDIS_URL" RABBITMQ_URL="$TEST_RABBITMQ_URL" \
		DB_SCHEMA="bench_$side" REDIS_KEY_PREFIX="bench-$side:$RUN_ID:" \
		RABBITMQ_EXCHANGE="bench-$side.events" RABBITMQ_QUEUE="bench-$side.user-service" \
		RATE_LIMIT_MAX=1000000000 LOG_LEVEL="$LOG_LEVEL_BENCH" PPROF_ADDR="127.0.0.1:${PPROF[$side]}" \
		"$BIN/$side/userservice" >"$WORK/$side.service.log" 2>&1 &
	PID[$side]=$!
	wait_http "http://127.0.0.1:${PORT[$side]}/health/ready" 60 || {
		tail -n 30 "$WORK/$side.service.log" >&2
		die "the $side service did not become ready"
	}
done
"$BIN/baseline" -addr "127.0.0.1:$BASELINE_PORT" 2>"$WORK/baseline.log" &
BASELINE_PID=$!
wait_http "http://127.0.0.1:$BASELINE_PORT/" 10 || die "the baseline did not start"

for side in base head; do
	IDLE_RSS[$side]=$(rss_kb "${PID[$side]}")
	log "warm-up of $side: every user's actor once"
	WRK_DURATION=$((USERS / 1000 + 3))s run_wrk "$side.warmup" get_me "http://127.0.0.1:${PORT[$side]}" "${PID[$side]}" "$WORK/$side.tokens.json"
	ACTIVE_RSS[$side]=$(rss_kb "${PID[$side]}")
done

run_side() { # LABEL SCENARIO SIDE
	run_wrk "$1" "$2" "http://127.0.0.1:${PORT[$3]}" "${PID[$3]}" "$WORK/$3.tokens.json"
}

# A short unmeasured run of every scenario on each side first: the first seconds
# against a fresh schema (cold PostgreSQL buffers and plans, an empty search cache)
# would otherwise count against whichever side runs first.
if [[ $PRIME != 0 && $PRIME != 0s ]]; then
	for s in $SCENARIOS; do
		for side in base head; do
			WRK_DURATION=$PRIME run_side "$s.prime.$side" "$s" "$side"
		done
	done
fi

# Which side goes first alternates from round to round for every scenario (and
# from scenario to scenario within a round): the side measured second in a pair
# tends to be the slower one (the first one's writes leave WAL, checkpoints and
# vacuum behind), so with an even number of rounds each side goes first equally
# often in every scenario. Before each measured run, settle lets that aftermath
# finish first: without it the order alone moved a round's ratio by a quarter
# (POST enrollment 1.56× and 1.46× with BASE first, 2.04× with HEAD first, in
# bench/results/2026-12-07-compare-a082b94-f387a0a.md).
for ((round = 1; round <= ROUNDS; round++)); do
	i=0
	for s in $SCENARIOS; do
		[[ -f $ROOT/loadtest/wrk/$s.lua ]] || die "no wrk scenario loadtest/wrk/$s.lua"
		if (((round + i) % 2)); then order="base head"; else order="head base"; fi
		i=$((i + 1))
		for side in $order; do
			settle "$s.$round.$side"
			run_side "$s.$round.$side" "$s" "$side"
		done
		settle "$s.$round.baseline"
		run_wrk "$s.$round.baseline" "$s" "http://127.0.0.1:$BASELINE_PORT" "$BASELINE_PID" "$WORK/head.tokens.json"
	done
done

secs=$(($(duration_seconds "$WRK_DURATION") - 6))
((secs >= 3)) || secs=3
for s in $PROFILE_SCENARIOS; do
	for side in head base; do
		(sleep 3 && profile_start "$s.$side" "${PPROF[$side]}" "$secs" && profile_wait "$s.$side" "$BIN/$side/userservice") &
		prof=$!
		run_side "$s.prof.$side" "$s" "$side"
		wait "$prof" || log "could not take the profiles of $s on $side"
	done
done

for side in base head; do
	curl -fsS --max-time 5 "http://127.0.0.1:${PORT[$side]}/metrics" >"$WORK/$side.metrics.txt" 2>/dev/null || true
	FINAL_RSS=$(rss_kb "${PID[$side]}")
	kill -TERM "${PID[$side]}"
	rc=0
	wait "${PID[$side]}" || rc=$?
	unset "PID[$side]"
	cat >"$WORK/$side.env" <<EOF
commit=${SHA[$side]}
subject=$(git log -1 --format=%s "${SHA[$side]}")
idle_rss_kb=${IDLE_RSS[$side]}
active_rss_kb=${ACTIVE_RSS[$side]}
final_rss_kb=$FINAL_RSS
service_exit=$rc
EOF
done

cat >"$WORK/meta.env" <<EOF
date=$(date -u +%FT%TZ)
host=$(hostname -s 2>/dev/null || hostname)
cpus=$(nproc)
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
kernel=$(uname -r)
go=$($GO env GOVERSION)
wrk=$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}')
wrk_threads=$WRK_THREADS
wrk_conns=$WRK_CONNS
users=$USERS
duration=$WRK_DURATION
rounds=$ROUNDS
log_level=$LOG_LEVEL_BENCH
scenarios=$SCENARIOS
profiles=$PROFILE_SCENARIOS
loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)
total_seconds=$((SECONDS - T0))
command=make bench-compare BASE=$BASE_REF HEAD=$HEAD_REF (BENCH_USERS=$USERS BENCH_DURATION=$WRK_DURATION BENCH_ROUNDS=$ROUNDS BENCH_PRIME=$PRIME)
EOF
$GO run ./bench/report -compare -dir "$WORK" -out "$OUT"
log "wrote $OUT ($((SECONDS - T0))s; raw data in $WORK)"
