# bench/lib.sh — helpers shared by bench/run.sh (`make bench`) and bench/compare.sh
# (`make bench-compare`): /proc sampling, wrk runs, pprof captures, the test stack.
# Sourced, not run. The caller sets ROOT, WORK, DEVSTACK, GO and CLK_TCK.

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
	printf 'bench: error: %s\n' "$*" >&2
	exit 1
}

pid_alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# cpu_ticks PID: user+system clock ticks the process used so far.
cpu_ticks() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || {
		echo 0
		return
	}
	stat=${stat##*) }
	local -a f
	read -r -a f <<<"$stat"
	echo $((f[11] + f[12]))
}

# box_ticks: "busy total" clock ticks of the whole machine so far (/proc/stat).
box_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit}' /proc/stat; }

# proc_ticks: "pid<TAB>comm<TAB>ticks" of every process (user+system clock ticks).
proc_ticks() {
	awk '{
		if (!match($0, /\(.*\)/)) next
		comm = substr($0, RSTART + 1, RLENGTH - 2)
		n = split(substr($0, RSTART + RLENGTH + 1), f, " ")
		if (n >= 13) printf "%s\t%s\t%d\n", $1, comm, f[12] + f[13]
	}' /proc/[0-9]*/stat 2>/dev/null || true # a process that ended mid-read makes awk fail
}

# top_cpu BEFORE AFTER SECONDS: the processes that used the most CPU between two
# proc_ticks snapshots, grouped by name, as "name=cores" (processes that started
# and ended in between are missed).
top_cpu() {
	awk -F'\t' -v hz="$CLK_TCK" -v wall="$3" 'NR == FNR { a[$1] = $3; next }
		{ d = $3 - (($1 in a) ? a[$1] : 0); if (d > 0) c[$2] += d }
		END { for (k in c) printf "%.3f %s\n", c[k] / hz / wall, k }' "$1" "$2" |
		sort -rn | head -n 8 | awk '$1 >= 0.01 { printf "%s%s=%.2f", sep, $2, $1; sep = " " } END { print "" }'
}

rss_kb() { awk '/^VmRSS:/ {print $2; exit}' "/proc/$1/status" 2>/dev/null || echo 0; }

wait_http() {
	local url=$1 deadline=$((SECONDS + $2))
	until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# duration_seconds 20s|2m|90: whole seconds of a duration (s or m, else seconds).
duration_seconds() {
	local d=$1
	case $d in
	*m) echo $((${d%m} * 60)) ;;
	*s) echo "${d%s}" ;;
	*) echo "$d" ;;
	esac
}

# stack_up: the test profile's servers. When all three already answer on the
# profile's ports (the shared stack of a machine running `make test`, whichever
# checkout started it), nothing is started, stopped or restarted; only the packages
# the profile needs (wrk among them) are installed if missing.
stack_up() {
	"$DEVSTACK" install test
	eval "$("$DEVSTACK" env test)"
	if stack_answers; then
		log "the test stack answers; using it as it is"
		return
	fi
	"$DEVSTACK" up test
}

# stack_answers: PostgreSQL, Redis and RabbitMQ of TEST_*_URL all accept connections.
stack_answers() {
	local hp
	for url in "$TEST_DATABASE_URL" "$TEST_REDIS_URL" "$TEST_RABBITMQ_URL"; do
		hp=${url#*://}
		hp=${hp#*@}
		hp=${hp%%/*}
		timeout 2 bash -c "exec 3<>/dev/tcp/${hp%%:*}/${hp##*:}" 2>/dev/null || return 1
	done
	pg_isready -q -d "$TEST_DATABASE_URL" -t 2 2>/dev/null &&
		[[ $(redis-cli -u "$TEST_REDIS_URL" ping 2>/dev/null) == PONG ]]
}

# settle [LABEL]: before a measured run, waits for what the previous one left
# behind to finish, so that it is not paid by whichever run comes next: it forces
# PostgreSQL's checkpoint now (the previous run's WAL), then waits until no
# autovacuum worker runs and the machine is quiet (below BENCH_SETTLE_BUSY, 0.15,
# of the CPUs busy over half a second), at most BENCH_SETTLE seconds (30; 0: no
# settling). Writes the seconds it waited to WORK/LABEL.settle.
settle() {
	local limit=${BENCH_SETTLE:-30} start=$SECONDS b0 b1 busy vacuums
	((limit > 0)) || return 0
	psql "$TEST_DATABASE_URL" -X -q -At -c 'CHECKPOINT' >/dev/null 2>&1 || true
	while ((SECONDS - start < limit)); do
		b0=$(box_ticks)
		sleep 0.5
		b1=$(box_ticks)
		busy=$(awk -v b0="$b0" -v b1="$b1" 'BEGIN { split(b0, x, " "); split(b1, y, " "); print (y[2] > x[2]) ? (y[1] - x[1]) / (y[2] - x[2]) : 1 }')
		vacuums=$(psql "$TEST_DATABASE_URL" -X -q -At -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'" 2>/dev/null || echo 0)
		if [[ $vacuums == 0 ]] && awk -v b="$busy" -v max="${BENCH_SETTLE_BUSY:-0.15}" 'BEGIN { exit !(b < max) }'; then
			break
		fi
	done
	[[ -z ${1:-} ]] || echo "$((SECONDS - start))" >"$WORK/$1.settle"
}

# sample_start / sample_end LABEL PID GEN_PID RC: /proc samples of the process under
# test (PID) and of the load generator (GEN_PID) around one run, written to
# WORK/LABEL.sample as key=value lines (bench/report reads them).
sample_start() {
	S_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
	S_B0=$(box_ticks)
	proc_ticks >"$WORK/$1.procs0"
	S_C0=$(cpu_ticks "$2")
	S_T0=$(date +%s%N)
	S_RSS_MAX=0 S_GEN_TICKS=0
}

# sample_poll PID GEN_PID: samples until GEN_PID ends.
sample_poll() {
	local rss ticks
	while pid_alive "$2"; do
		rss=$(rss_kb "$1")
		((rss > S_RSS_MAX)) && S_RSS_MAX=$rss
		ticks=$(cpu_ticks "$2")
		((ticks > S_GEN_TICKS)) && S_GEN_TICKS=$ticks
		sleep 0.5
	done
}

sample_end() {
	local label=$1 pid=$2 gen=$3 rc=$4 out=$WORK/$1
	local t1 c1 b1 top
	t1=$(date +%s%N)
	c1=$(cpu_ticks "$pid")
	b1=$(box_ticks)
	proc_ticks >"$out.procs1"
	top=$(top_cpu "$out.procs0" "$out.procs1" "$(awk -v ns="$((t1 - S_T0))" 'BEGIN { print ns / 1e9 }')")
	rm -f "$out.procs0" "$out.procs1"
	awk -v b0="$S_B0" -v b1="$b1" -v c="$((c1 - S_C0))" -v k="$S_GEN_TICKS" -v ns="$((t1 - S_T0))" -v hz="$CLK_TCK" \
		-v rss="$S_RSS_MAX" -v rc="$rc" -v load="$S_LOAD" -v gen="$gen" 'BEGIN {
		wall = ns / 1e9
		printf "wall_seconds=%.3f\ncpu_seconds=%.3f\ncpu_cores=%.3f\n", wall, c / hz, c / hz / wall
		printf "%s_cpu_cores=%.3f\nrss_max_kb=%d\n%s_exit=%d\nloadavg=%s\n", gen, k / hz / wall, rss, gen, rc, load
		split(b0, x, " "); split(b1, y, " ")
		if (y[2] > x[2]) printf "box_busy=%.3f\n", (y[1] - x[1]) / (y[2] - x[2])
	}' >"$out.sample"
	printf 'top_cpu=%s\n' "$top" >>"$out.sample"
}

# run_wrk LABEL SCRIPT URL PID TOKENS: one closed-loop wrk run of
# loadtest/wrk/SCRIPT.lua against URL (WRK_THREADS threads, WRK_CONNS connections,
# WRK_DURATION) while sampling process PID. Writes WORK/LABEL.wrk (wrk's output with
# its `wrk-json` line) and WORK/LABEL.sample.
WRK_PID=
run_wrk() {
	local label=$1 script=$2 url=$3 pid=$4 tokens=$5 rc=0
	local secs
	secs=$(duration_seconds "$WRK_DURATION")
	printf 'script=%s\nmode=wrk\n' "$script" >"$WORK/$label.info"
	sample_start "$label" "$pid"
	TOKENS=$tokens WRK_THREADS=$WRK_THREADS wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${secs}s" --timeout 10s \
		-s "$ROOT/loadtest/wrk/$script.lua" "$url" >"$WORK/$label.wrk" 2>&1 &
	WRK_PID=$!
	sample_poll "$pid" "$WRK_PID"
	wait "$WRK_PID" || rc=$?
	WRK_PID=
	sample_end "$label" "$pid" wrk "$rc"
	cat "$WORK/$label.info" >>"$WORK/$label.sample"
	rm -f "$WORK/$label.info"
	((rc == 0)) || {
		log "wrk $label exited $rc; see $WORK/$label.wrk"
		tail -n 5 "$WORK/$label.wrk" >&2 || true
	}
	log "$(printf '%-34s %s req/s, %s' "$label" "$(awk '/^Requests\/sec:/ {print $2}' "$WORK/$label.wrk")" \
		"$(grep -o '"status_errors":[0-9]*' "$WORK/$label.wrk" | tr -d '"')")"
}

# profile_start LABEL PPROF_PORT SECS: in the background, a CPU profile and an
# allocation profile (a delta over the same SECS) of the process serving pprof on
# PPROF_PORT, into WORK/LABEL.cpu.pprof and WORK/LABEL.allocs.pprof. profile_wait
# waits for both and writes the `pprof -top` listings next to them.
PROFILE_PIDS=
profile_start() {
	local label=$1 port=$2 secs=$3
	PROFILE_PIDS=
	curl -fsS --max-time $((secs + 15)) -o "$WORK/$label.cpu.pprof" \
		"http://127.0.0.1:$port/debug/pprof/profile?seconds=$secs" &
	PROFILE_PIDS+=" $!"
	curl -fsS --max-time $((secs + 15)) -o "$WORK/$label.allocs.pprof" \
		"http://127.0.0.1:$port/debug/pprof/allocs?seconds=$secs" &
	PROFILE_PIDS+=" $!"
}

# profile_wait LABEL BINARY
profile_wait() {
	local label=$1 bin=$2 pid
	for pid in $PROFILE_PIDS; do
		wait "$pid" || log "could not take a profile of $label"
	done
	PROFILE_PIDS=
	local f=$WORK/$label
	if [[ -s $f.cpu.pprof ]]; then
		$GO tool pprof -top -nodecount=20 "$bin" "$f.cpu.pprof" >"$f.cpu.txt" 2>/dev/null || true
		$GO tool pprof -top -cum -nodecount=60 "$bin" "$f.cpu.pprof" >"$f.cpu-cum.txt" 2>/dev/null || true
	fi
	if [[ -s $f.allocs.pprof ]]; then
		$GO tool pprof -sample_index=alloc_space -top -nodecount=15 "$bin" "$f.allocs.pprof" >"$f.alloc-space.txt" 2>/dev/null || true
		$GO tool pprof -sample_index=alloc_objects -top -nodecount=15 "$bin" "$f.allocs.pprof" >"$f.alloc-objects.txt" 2>/dev/null || true
	fi
}
