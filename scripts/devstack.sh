#!/usr/bin/env bash
# devstack.sh runs the User Service's dependencies (PostgreSQL 15, Redis, RabbitMQ) as
# plain local processes, without Docker, for development (profile "run") and for the
# test suite (profile "test"). The two profiles use different ports, data directories
# and RabbitMQ node names, so `make run` and `make test` can run side by side.
#
# Usage: scripts/devstack.sh <command> <profile>        profile: run | test | test2..test5
#
#   install                    apt-get install whatever the profile needs and is missing
#                              (etcd-server too for test profiles, or with WANT_ETCD=1)
#   up                         install, then start all three servers and wait until they answer
#   down                       stop all three servers
#   status                     show what runs (exit 0 only if all three answer)
#   env                        print `export VAR=...` lines for the profile
#   start-postgres|stop-postgres|kill-postgres
#   start-redis|stop-redis|kill-redis
#   start-rabbitmq|stop-rabbitmq|kill-rabbitmq
#                              one server: start (waits until it answers), stop (graceful,
#                              waits until gone) or kill (SIGKILL, a crash for fault tests)
#   serve                      up, then run bin/userservice in the foreground with the
#                              profile's env; INT/TERM/exit stops the service, then `down`
#   rabbitmqctl [args...]      run rabbitmqctl against the profile's node
#   destroy                    down, then delete the profile's data
#
# Everything lives under .devstack/<profile>/ in the repository (git-ignored): data,
# generated configs, pid files and logs. Servers bind 127.0.0.1 only.
#
#   profile  PostgreSQL  Redis  AMQP   Erlang dist  RabbitMQ node
#   run      5432        6379   5672   25672        userservice-run@localhost
#   test     15432       16379  15673  15674        userservice-test@localhost
#   test2    17432       17379  17673  17674        userservice-test2@localhost
#   test3    18432       18379  18673  18674        userservice-test3@localhost
#   test4    19432       19379  19673  19674        userservice-test4@localhost
#   test5    20432       20379  20673  20674        userservice-test5@localhost
#
# The test ports sit below Linux's ephemeral range (32768-60999): a client that keeps
# dialling a stopped server could otherwise connect to itself on that port and keep
# the server from binding it again.
#
# Commands that change a profile's servers take a per-profile lock, so concurrent calls
# (e.g. fault tests stopping a server while `up` runs) are serialized, not interleaved.
#
# Environment: PG_BIN (default /usr/lib/postgresql/15/bin); for serve, USERSERVICE_BIN
# (default bin/userservice), JWT_SECRET (default: the spec's development secret) and
# SERVE_STOP_TIMEOUT (seconds the service gets to exit before SIGKILL, default 30).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
DEVSTACK_SELF="$SCRIPT_DIR/$(basename -- "${BASH_SOURCE[0]}")"
STATE_ROOT="$REPO_ROOT/.devstack"

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
RABBIT_SBIN=/usr/lib/rabbitmq/bin # the real scripts; /usr/sbin's wrappers su to the rabbitmq user
DEFAULT_JWT_SECRET=your-super-secret-jwt-key-change-in-production

PG_USER=lms_user
PG_PASSWORD=lms_password

log() { printf 'devstack: %s\n' "$*" >&2; }
die() {
	printf 'devstack: error: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$DEVSTACK_SELF" >&2
	exit 2
}

# ---------------------------------------------------------------------------------------
# Profile

set_profile() {
	PROFILE=$1
	case $PROFILE in
	run)
		PG_PORT=5432 REDIS_PORT=6379 AMQP_PORT=5672 DIST_PORT=25672
		PG_DB=lms_users PG_ROLE_ATTRS="LOGIN CREATEDB NOSUPERUSER"
		;;
	test)
		PG_PORT=15432 REDIS_PORT=16379 AMQP_PORT=15673 DIST_PORT=15674
		# SUPERUSER so tests can create extensions, schemas and databases freely.
		PG_DB=userservice_test PG_ROLE_ATTRS="LOGIN CREATEDB SUPERUSER"
		;;
	test2)
		# A second test stack, so fault tests that stop servers can run beside `make test`.
		PG_PORT=17432 REDIS_PORT=17379 AMQP_PORT=17673 DIST_PORT=17674
		PG_DB=userservice_test PG_ROLE_ATTRS="LOGIN CREATEDB SUPERUSER"
		;;
	test3 | test4 | test5)
		# More test stacks, for work in several checkouts on one machine at once
		# (`make test TEST_PROFILE=test3`).
		local n=${PROFILE#test}
		PG_PORT=$((n + 15))432 REDIS_PORT=$((n + 15))379 AMQP_PORT=$((n + 15))673 DIST_PORT=$((n + 15))674
		PG_DB=userservice_test PG_ROLE_ATTRS="LOGIN CREATEDB SUPERUSER"
		;;
	*) die "unknown profile '$PROFILE' (want run, test or test2..test5)" ;;
	esac
	STATE="$STATE_ROOT/$PROFILE"
	REDIS_DIR="$STATE/redis"
	RABBIT_DIR="$STATE/rabbitmq"
	RABBIT_NODE="userservice-$PROFILE@localhost"
	RABBIT_PID_FILE="$RABBIT_DIR/rabbitmq.pid"
	REDIS_PID_FILE="$REDIS_DIR/redis.pid"
	# Erlang nodes and the CLI must share a cookie. Pinning HOME for every RabbitMQ
	# command makes that independent of who calls us and what their HOME is.
	ERLANG_HOME="$STATE_ROOT/erlang"
}

# PostgreSQL refuses to run as root, so as root we run it as the postgres user. That
# user must be able to reach its data directory; when the checkout sits somewhere it
# cannot traverse (e.g. under /root), the data goes to /var/tmp and .devstack/<p>/pg
# becomes a symlink to it.
resolve_pg_paths() {
	local create=${1:-}
	if [[ -L $STATE/pg ]]; then
		PG_BASE=$(readlink -f -- "$STATE/pg")
	elif [[ -d $STATE/pg || -z $create ]]; then
		PG_BASE="$STATE/pg"
	elif ((EUID == 0)) && ! runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
		PG_BASE="/var/tmp/userservice-devstack-$(path_hash "$STATE")/pg"
		log "postgres cannot reach $STATE; keeping PostgreSQL data in $PG_BASE"
		mkdir -p "$PG_BASE"
		ln -sfn "$PG_BASE" "$STATE/pg"
	else
		PG_BASE="$STATE/pg"
	fi
	PG_DATA="$PG_BASE/data"
	PG_LOG="$PG_BASE/postgres.log"
	PG_SOCK="$PG_BASE/sock"
	# A Unix socket path must fit in 107 bytes.
	if ((${#PG_SOCK} + 20 > 107)); then
		PG_SOCK="/tmp/userservice-devstack-$(path_hash "$STATE")"
	fi
}

path_hash() { printf '%s' "$1" | md5sum | cut -c1-10; }

as_pg() {
	if ((EUID == 0)); then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# ---------------------------------------------------------------------------------------
# Helpers

# pid_alive PID: the process exists and is not a zombie (containers whose PID 1 does not
# reap orphans keep zombies around, and kill -0 succeeds on them).
pid_alive() {
	local stat
	[[ $1 =~ ^[0-9]+$ ]] || return 1
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

read_pid() { [[ -f $1 ]] && head -n1 -- "$1" 2>/dev/null | tr -dc '0-9'; }

cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds.
wait_for() {
	local secs=$1 what=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@"; do
		if ((SECONDS >= deadline)); then
			log "timed out after ${secs}s waiting for $what"
			return 1
		fi
		sleep 0.1
	done
}

pid_gone() { ! pid_alive "$1"; }

# children_of PID: the pids whose parent is PID.
children_of() {
	local f stat state ppid
	for f in /proc/[0-9]*/stat; do
		read -r stat 2>/dev/null <"$f" || continue
		read -r state ppid _ <<<"${stat##*) }"
		[[ $ppid == "$1" && $state != Z ]] || continue
		f=${f#/proc/}
		printf '%s\n' "${f%/stat}"
	done
}

# stop_pid PID NAME SECONDS: SIGTERM, wait, then SIGKILL.
stop_pid() {
	local pid=$1 name=$2 secs=${3:-60}
	kill -TERM "$pid" 2>/dev/null || return 0
	if ! wait_for "$secs" "$name (pid $pid) to exit" pid_gone "$pid"; then
		log "$name did not stop in ${secs}s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		wait_for 10 "$name (pid $pid) to die" pid_gone "$pid"
	fi
}

port_busy_die() {
	local port=$1 what=$2 who=""
	port_open "$port" || return 0
	if command -v ss >/dev/null 2>&1; then
		who=$(ss -Htlnp "sport = :$port" 2>/dev/null | grep -o 'users:.*' | head -n1 || true)
	fi
	die "port $port (for $what, profile $PROFILE) is taken by a process devstack did not start${who:+: $who}. Stop it, or run 'scripts/devstack.sh status $PROFILE'."
}

tail_log() {
	local f
	for f in "$@"; do
		[[ -f $f ]] || continue
		log "---- last lines of $f"
		tail -n 25 -- "$f" >&2 || true
	done
}

# Per-profile lock on fd 9. Every server we launch gets 9>&- so that it does not inherit
# (and hold) the lock forever.
lock_profile() {
	mkdir -p "$STATE_ROOT"
	exec 9>"$STATE_ROOT/$PROFILE.lock"
	flock -w 600 9 || die "could not lock profile $PROFILE (another devstack command hangs?)"
}
unlock_profile() { exec 9>&-; }

prepare_dirs() {
	mkdir -p "$STATE" "$REDIS_DIR" "$RABBIT_DIR/mnesia" "$RABBIT_DIR/log" "$ERLANG_HOME"
	# Other users (postgres) must be able to traverse to their directories.
	chmod 755 "$STATE_ROOT" "$STATE"
	resolve_pg_paths create
	mkdir -p "$PG_BASE" "$PG_SOCK"
	if ((EUID == 0)); then
		chown postgres:postgres "$PG_BASE" "$PG_SOCK"
	fi
	chmod 755 "$PG_BASE" "$PG_SOCK"
}

# ---------------------------------------------------------------------------------------
# install

# missing_packages PROFILE: the Debian packages providing what the profile needs but is
# not installed.
missing_packages() {
	local -a pkgs=()
	[[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] || pkgs+=(postgresql-15)
	command -v psql >/dev/null 2>&1 || pkgs+=(postgresql-client-15)
	command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
	command -v redis-cli >/dev/null 2>&1 || pkgs+=(redis-tools)
	[[ -x $RABBIT_SBIN/rabbitmq-server ]] || pkgs+=(rabbitmq-server)
	# etcd: the cluster tests (profile test) and `make cluster` (WANT_ETCD=1).
	if [[ $1 == test* || ${WANT_ETCD:-} == 1 ]]; then
		command -v etcd >/dev/null 2>&1 || pkgs+=(etcd-server)
	fi
	if [[ $1 == test ]]; then
		command -v promtool >/dev/null 2>&1 || pkgs+=(prometheus)
		command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
		command -v chromedriver >/dev/null 2>&1 || pkgs+=(chromium-driver)
		command -v gcc >/dev/null 2>&1 || pkgs+=(gcc libc6-dev) # go test -race needs cgo
		command -v make >/dev/null 2>&1 || pkgs+=(make)
		command -v wrk >/dev/null 2>&1 || pkgs+=(wrk) # make bench's closed loops (bench/run.sh)
	fi
	printf '%s\n' "${pkgs[@]}" | awk 'NF && !seen[$0]++'
}

cmd_install() {
	local -a missing sudo=() apt
	mapfile -t missing < <(missing_packages "$PROFILE")
	((${#missing[@]})) || return 0
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${missing[*]}"
		sudo=(sudo)
	fi
	mkdir -p "$STATE_ROOT"
	# One apt at a time, even when `make run` and `make test` start together.
	exec 8>"$STATE_ROOT/install.lock"
	flock -w 900 8 || die "could not take the install lock"
	mapfile -t missing < <(missing_packages "$PROFILE")
	if ((${#missing[@]} == 0)); then
		exec 8>&-
		return 0
	fi
	log "installing: ${missing[*]}"
	# Keep the distribution's own service instances (postgresql@15-main, redis-server,
	# rabbitmq-server on the default ports) from starting: we run our own.
	local policy=/usr/sbin/policy-rc.d made_policy=
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		made_policy=1
	fi
	apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q)
	local rc=0
	"${apt[@]}" update 9>&- 8>&- >&2 || rc=$?
	if ((rc == 0)); then
		"${apt[@]}" install -y --no-install-recommends "${missing[@]}" 9>&- 8>&- >&2 || rc=$?
	fi
	if [[ -n $made_policy ]]; then
		"${sudo[@]}" rm -f "$policy"
	fi
	exec 8>&-
	((rc == 0)) || die "apt-get failed (exit $rc)"
	mapfile -t missing < <(missing_packages "$PROFILE")
	((${#missing[@]} == 0)) || die "still missing after apt-get: ${missing[*]}"
}

# ---------------------------------------------------------------------------------------
# PostgreSQL

pg_pid() {
	local pid
	pid=$(read_pid "$PG_DATA/postmaster.pid") || return 1
	pid_alive "$pid" || return 1
	[[ $(cmdline_of "$pid") == *"$PG_DATA"* ]] || return 1
	printf '%s\n' "$pid"
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

pg_write_config() {
	as_pg tee "$PG_DATA/devstack.conf" >/dev/null <<EOF
# Written by scripts/devstack.sh on every start; edits are lost.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 200
shared_buffers = 256MB
# Durability stays on: the service is tested with kill -9.
fsync = on
synchronous_commit = on
full_page_writes = on
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
# Per-statement timings for profiling the write path (CREATE EXTENSION pg_stat_statements
# in a database to read them); costs a hash lookup per statement.
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = top
EOF
	if ! grep -q "^include_if_exists = 'devstack.conf'" "$PG_DATA/postgresql.conf"; then
		printf "\ninclude_if_exists = 'devstack.conf'\n" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
	fi
}

pg_initdb() {
	log "postgres: initdb $PG_DATA"
	# Trust over the Unix socket (only reachable from this machine, used for setup);
	# passwords over TCP, which is how the service and the tests connect.
	(cd / && as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
		--auth-local=trust --auth-host=scram-sha-256 >"$STATE/initdb.log" 2>&1 9>&-) ||
		{
			tail_log "$STATE/initdb.log"
			die "initdb failed"
		}
}

pg_ensure_role_and_db() {
	local out
	out=$("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres 2>&1 <<EOF
SELECT 'CREATE ROLE $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER')
\gexec
ALTER ROLE $PG_USER WITH $PG_ROLE_ATTRS PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')
\gexec
EOF
	) || die "postgres: cannot create role/database: $out"
}

start_postgres() {
	prepare_dirs
	if pg_pid >/dev/null; then
		wait_for 60 "postgres on :$PG_PORT" pg_ready || die "postgres runs but does not answer; see $PG_LOG"
		pg_ensure_role_and_db
		log "postgres: already running on 127.0.0.1:$PG_PORT"
		return 0
	fi
	port_busy_die "$PG_PORT" PostgreSQL
	if [[ ! -f $PG_DATA/PG_VERSION ]]; then
		rm -rf "$PG_DATA"
		pg_initdb
	fi
	local version
	version=$(cat "$PG_DATA/PG_VERSION")
	[[ $version == 15 ]] || die "$PG_DATA holds a PostgreSQL $version cluster; run 'scripts/devstack.sh destroy $PROFILE'"
	if [[ -f $PG_DATA/postmaster.pid ]]; then
		log "postgres: removing stale postmaster.pid"
		rm -f "$PG_DATA/postmaster.pid"
	fi
	pg_write_config
	# After a kill -9 the old backends can take a moment to notice and release the
	# shared memory; postgres refuses to start until they have, so retry briefly.
	local try
	for try in 1 2 3; do
		if (cd / && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" \
			-w -t 90 -s start </dev/null >/dev/null 2>&1 9>&-); then
			break
		fi
		if ((try == 3)); then
			tail_log "$PG_LOG"
			die "postgres did not start"
		fi
		sleep 1
	done
	wait_for 30 "postgres on :$PG_PORT" pg_ready || {
		tail_log "$PG_LOG"
		die "postgres does not answer"
	}
	pg_ensure_role_and_db
	log "postgres: started on 127.0.0.1:$PG_PORT (data $PG_DATA)"
}

stop_postgres() {
	resolve_pg_paths
	local pid
	if ! pid=$(pg_pid); then
		[[ -f $PG_DATA/postmaster.pid ]] && rm -f "$PG_DATA/postmaster.pid" && log "postgres: removed stale postmaster.pid"
		log "postgres: not running"
		return 0
	fi
	if ! (cd / && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 -s stop >/dev/null 2>&1 9>&-); then
		log "postgres: fast shutdown failed; trying immediate"
		(cd / && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 -s stop >/dev/null 2>&1 9>&-) ||
			stop_pid "$pid" postgres 10
	fi
	log "postgres: stopped"
}

kill_postgres() {
	resolve_pg_paths
	local pid
	if pid=$(pg_pid); then
		# The postmaster and its backends together, like a crash of the machine would.
		# (Backends sit in sessions of their own, so a process-group kill misses them.)
		local -a victims
		mapfile -t victims < <(children_of "$pid")
		kill -KILL "$pid" "${victims[@]}" 2>/dev/null || true
		wait_for 10 "postgres to die" pid_gone "$pid" || true
		log "postgres: killed (pid $pid and ${#victims[@]} children)"
	else
		log "postgres: not running"
	fi
}

# ---------------------------------------------------------------------------------------
# Redis

redis_pid() {
	local pid
	pid=$(read_pid "$REDIS_PID_FILE") || return 1
	pid_alive "$pid" || return 1
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]] || return 1
	[[ $(cmdline_of "$pid") == *":$REDIS_PORT"* ]] || return 1
	printf '%s\n' "$pid"
}

redis_ready() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

start_redis() {
	prepare_dirs
	if redis_pid >/dev/null; then
		wait_for 30 "redis on :$REDIS_PORT" redis_ready || die "redis runs but does not answer; see $REDIS_DIR/redis.log"
		log "redis: already running on 127.0.0.1:$REDIS_PORT"
		return 0
	fi
	port_busy_die "$REDIS_PORT" Redis
	if [[ -f $REDIS_PID_FILE ]]; then
		log "redis: removing stale pid file"
		rm -f "$REDIS_PID_FILE"
	fi
	local save='save ""'
	# The run profile keeps its data across restarts; tests start from whatever is there
	# and do not need snapshots.
	[[ $PROFILE == run ]] && save='save 3600 1 300 100 60 10000'
	cat >"$REDIS_DIR/redis.conf" <<EOF
# Written by scripts/devstack.sh on every start; edits are lost.
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
pidfile $REDIS_PID_FILE
logfile $REDIS_DIR/redis.log
dir $REDIS_DIR
$save
appendonly no
loglevel notice
EOF
	(cd "$REDIS_DIR" && redis-server "$REDIS_DIR/redis.conf" </dev/null >>"$REDIS_DIR/redis.log" 2>&1 9>&-) || {
		tail_log "$REDIS_DIR/redis.log"
		die "redis did not start"
	}
	wait_for 30 "redis on :$REDIS_PORT" redis_ready || {
		tail_log "$REDIS_DIR/redis.log"
		die "redis does not answer"
	}
	log "redis: started on 127.0.0.1:$REDIS_PORT"
}

stop_redis() {
	local pid
	if pid=$(redis_pid); then
		stop_pid "$pid" redis 60
		log "redis: stopped"
	else
		[[ -f $REDIS_PID_FILE ]] && rm -f "$REDIS_PID_FILE"
		log "redis: not running"
	fi
}

# kill_server NAME PID_FUNCTION: SIGKILL a single-process server, as a crash would.
kill_server() {
	local name=$1 pid
	if pid=$("$2"); then
		kill -KILL "$pid"
		wait_for 10 "$name to die" pid_gone "$pid" || true
		log "$name: killed (pid $pid)"
	else
		log "$name: not running"
	fi
}

kill_redis() { kill_server redis redis_pid; }

# ---------------------------------------------------------------------------------------
# RabbitMQ

# rabbit_env exports, in the calling subshell, everything that makes the RabbitMQ
# scripts use our node, ports and directories instead of /etc/rabbitmq and /var/lib.
rabbit_env() {
	export HOME="$ERLANG_HOME"
	unset XDG_CONFIG_HOME
	export RABBITMQ_NODENAME="$RABBIT_NODE"
	export RABBITMQ_DIST_PORT="$DIST_PORT"
	export RABBITMQ_MNESIA_BASE="$RABBIT_DIR/mnesia"
	export RABBITMQ_LOG_BASE="$RABBIT_DIR/log"
	export RABBITMQ_LOGS="$RABBIT_DIR/log/rabbit.log"
	export RABBITMQ_PID_FILE="$RABBIT_PID_FILE"
	export RABBITMQ_CONFIG_FILE="$RABBIT_DIR/rabbitmq.conf"
	export RABBITMQ_ADVANCED_CONFIG_FILE="$RABBIT_DIR/advanced.config"
	export RABBITMQ_ENABLED_PLUGINS_FILE="$RABBIT_DIR/enabled_plugins"
	export RABBITMQ_CONF_ENV_FILE="$RABBIT_DIR/rabbitmq-env.conf"
	# +sbwt none …: Erlang schedulers spin while waiting for work by default, which on a
	# small shared machine takes CPU from the service and PostgreSQL; sleeping costs a
	# little latency inside RabbitMQ only.
	export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none"
	# epmd (port 4369) is shared by both nodes; whoever starts it first binds it to loopback.
	export ERL_EPMD_ADDRESS=127.0.0.1
}

ensure_erlang_cookie() {
	local cookie="$ERLANG_HOME/.erlang.cookie"
	[[ -s $cookie ]] && return 0
	mkdir -p "$ERLANG_HOME"
	(
		flock -w 60 7 || exit 1
		[[ -s $cookie ]] && exit 0
		umask 077
		od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F' >"$cookie.tmp"
		chmod 400 "$cookie.tmp"
		mv -f "$cookie.tmp" "$cookie"
	) 7>"$ERLANG_HOME/.cookie.lock"
}

rabbit_pid() {
	local pid
	pid=$(read_pid "$RABBIT_PID_FILE") || return 1
	pid_alive "$pid" || return 1
	# The node name is not on the beam's command line (RabbitMQ starts distribution
	# itself), but it is in its environment.
	local environ
	environ=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null) || return 1
	[[ $'\n'$environ$'\n' == *$'\n'"RABBITMQ_NODENAME=$RABBIT_NODE"$'\n'* ]] || return 1
	printf '%s\n' "$pid"
}

# amqp_ready: the broker answers an AMQP 0-9-1 protocol header with a Connection.Start
# frame (frame type 1), which only happens once it accepts clients.
amqp_ready() {
	local reply
	# shellcheck disable=SC2016 # $1 expands in the inner shell
	reply=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "AMQP\000\000\011\001" >&3
		head -c 1 <&3 | od -An -tx1' _ "$AMQP_PORT" 2>/dev/null) || return 1
	[[ $reply == *01* ]]
}

launch_rabbitmq() {
	prepare_dirs
	if rabbit_pid >/dev/null; then
		RABBIT_LAUNCHED=
		return 0
	fi
	port_busy_die "$AMQP_PORT" "RabbitMQ AMQP"
	port_busy_die "$DIST_PORT" "RabbitMQ distribution"
	ensure_erlang_cookie
	rm -f "$RABBIT_PID_FILE"
	cat >"$RABBIT_DIR/rabbitmq.conf" <<EOF
# Written by scripts/devstack.sh on every start; edits are lost.
listeners.tcp.1 = 127.0.0.1:$AMQP_PORT
# A dev box or CI runner can be short of disk; the default limit would block publishers.
disk_free_limit.absolute = 50MB
log.console = false
log.file.level = info
EOF
	printf '[].\n' >"$RABBIT_DIR/enabled_plugins"
	: >"$RABBIT_DIR/rabbitmq-env.conf"
	printf '\n==== %s start\n' "$(date -u +%FT%TZ)" >>"$RABBIT_DIR/log/startup.log"
	(
		rabbit_env
		cd "$RABBIT_DIR"
		exec setsid -f "$RABBIT_SBIN/rabbitmq-server" </dev/null >>"$RABBIT_DIR/log/startup.log" 2>&1 9>&-
	)
	RABBIT_LAUNCHED=1
}

wait_rabbitmq() {
	local deadline=$((SECONDS + 120)) pid
	until amqp_ready; do
		pid=$(read_pid "$RABBIT_PID_FILE" || true)
		if [[ -n $pid ]] && ! pid_alive "$pid"; then
			tail_log "$RABBIT_DIR/log/startup.log" "$RABBIT_DIR/log/rabbit.log"
			die "rabbitmq exited during startup"
		fi
		if ((SECONDS >= deadline)); then
			tail_log "$RABBIT_DIR/log/startup.log" "$RABBIT_DIR/log/rabbit.log"
			die "rabbitmq did not answer on :$AMQP_PORT within 120s"
		fi
		sleep 0.2
	done
	if [[ -n ${RABBIT_LAUNCHED:-} ]]; then
		log "rabbitmq: started on 127.0.0.1:$AMQP_PORT (node $RABBIT_NODE)"
	else
		log "rabbitmq: already running on 127.0.0.1:$AMQP_PORT"
	fi
}

start_rabbitmq() {
	launch_rabbitmq
	wait_rabbitmq
}

stop_rabbitmq() {
	local pid
	if pid=$(rabbit_pid); then
		# SIGTERM makes the node shut down cleanly (like `rabbitmqctl stop`) without
		# paying for a CLI start.
		stop_pid "$pid" rabbitmq 90
		rm -f "$RABBIT_PID_FILE"
		log "rabbitmq: stopped"
	else
		[[ -f $RABBIT_PID_FILE ]] && rm -f "$RABBIT_PID_FILE"
		log "rabbitmq: not running"
	fi
}

kill_rabbitmq() { kill_server rabbitmq rabbit_pid; }

cmd_rabbitmqctl() {
	ensure_erlang_cookie
	(
		rabbit_env
		exec "$RABBIT_SBIN/rabbitmqctl" -n "$RABBIT_NODE" "$@"
	)
}

# ---------------------------------------------------------------------------------------
# Stack commands

cmd_up() {
	local t0=$SECONDS
	cmd_install
	lock_profile
	# RabbitMQ boots slowest, so it boots while the others start.
	launch_rabbitmq
	start_postgres
	start_redis
	wait_rabbitmq
	unlock_profile
	log "profile $PROFILE is up ($((SECONDS - t0))s); env: eval \"\$(scripts/devstack.sh env $PROFILE)\""
}

cmd_down() {
	lock_profile
	local rc=0
	stop_rabbitmq || rc=1
	stop_redis || rc=1
	stop_postgres || rc=1
	unlock_profile
	return "$rc"
}

cmd_env() {
	local db="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB?sslmode=disable"
	local redis="redis://127.0.0.1:$REDIS_PORT/0"
	local amqp="amqp://guest:guest@127.0.0.1:$AMQP_PORT/"
	local prefix=""
	[[ $PROFILE == test* ]] && prefix=TEST_
	printf "export %sDATABASE_URL='%s'\n" "$prefix" "$db"
	printf "export %sREDIS_URL='%s'\n" "$prefix" "$redis"
	printf "export %sRABBITMQ_URL='%s'\n" "$prefix" "$amqp"
	printf "export DEVSTACK='%s'\n" "$DEVSTACK_SELF"
	printf "export DEVSTACK_PROFILE='%s'\n" "$PROFILE"
}

cmd_status() {
	resolve_pg_paths
	local pid all=0
	printf 'profile %s (%s)\n' "$PROFILE" "$STATE"
	if pid=$(pg_pid) && pg_ready; then
		printf '  %-9s up    pid %-7s 127.0.0.1:%s db %s\n' postgres "$pid" "$PG_PORT" "$PG_DB"
	else
		printf '  %-9s down\n' postgres
		all=3
	fi
	if pid=$(redis_pid) && redis_ready; then
		printf '  %-9s up    pid %-7s 127.0.0.1:%s\n' redis "$pid" "$REDIS_PORT"
	else
		printf '  %-9s down\n' redis
		all=3
	fi
	if pid=$(rabbit_pid) && amqp_ready; then
		printf '  %-9s up    pid %-7s 127.0.0.1:%s node %s\n' rabbitmq "$pid" "$AMQP_PORT" "$RABBIT_NODE"
	else
		printf '  %-9s down\n' rabbitmq
		all=3
	fi
	return "$all"
}

cmd_destroy() {
	cmd_down
	resolve_pg_paths
	if [[ -L $STATE/pg ]]; then
		rm -rf -- "$PG_BASE"
		rmdir -- "$(dirname -- "$PG_BASE")" 2>/dev/null || true
	fi
	if [[ $PG_SOCK == /tmp/userservice-devstack-* ]]; then
		rm -rf -- "$PG_SOCK"
	fi
	rm -rf -- "$STATE" "$STATE_ROOT/$PROFILE.lock"
	log "profile $PROFILE: data removed"
}

# cmd_serve runs the built service in the foreground against the profile's stack and
# takes the stack down again when the service ends or we are told to stop.
cmd_serve() {
	local bin=${USERSERVICE_BIN:-$REPO_ROOT/bin/userservice}
	[[ -x $bin ]] || die "$bin not found; build it first (make build)"
	cmd_up
	eval "$(cmd_env | sed 's/^export TEST_/export /')"
	export JWT_SECRET=${JWT_SECRET:-$DEFAULT_JWT_SECRET}

	SERVE_CHILD=
	SERVE_DONE=
	trap 'serve_cleanup INT; exit 130' INT
	trap 'serve_cleanup TERM; exit 143' TERM
	trap 'serve_cleanup EXIT' EXIT

	log "starting $bin (DATABASE_URL=$DATABASE_URL)"
	"$bin" "$@" &
	SERVE_CHILD=$!
	# Poll instead of `wait`: during `wait`, bash holds back an INT trap until the child
	# exits (assuming the child handles the interrupt), which hangs when it does not.
	while pid_alive "$SERVE_CHILD"; do
		sleep 0.2
	done
	local rc=0
	wait "$SERVE_CHILD" || rc=$?
	SERVE_CHILD=
	log "service exited with status $rc"
	serve_cleanup EXIT
	trap - EXIT
	return "$rc"
}

serve_cleanup() {
	local why=$1
	[[ -n ${SERVE_DONE:-} ]] && return 0
	SERVE_DONE=1
	trap '' INT TERM # a second Ctrl-C must not leave the stack half stopped
	local pid=${SERVE_CHILD:-}
	if [[ -n $pid ]] && pid_alive "$pid"; then
		# A terminal's Ctrl-C reaches the service too (same process group). If it
		# handles SIGINT itself, a second signal could cut its graceful shutdown short,
		# so only signal it when it did not get (or does not catch) the first one.
		local caught
		caught=$(awk '/^SigCgt:/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
		if [[ $why != INT ]] || ((!(16#${caught:-0} & 2))); then
			kill -TERM "$pid" 2>/dev/null || true
		fi
		if ! wait_for "${SERVE_STOP_TIMEOUT:-30}" "the service to exit" pid_gone "$pid"; then
			log "service still running; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	fi
	log "stopping the $PROFILE stack"
	cmd_down || true
}

# ---------------------------------------------------------------------------------------

main() {
	(($# >= 2)) || usage
	local cmd=$1
	set_profile "$2"
	shift 2
	case $cmd in
	install) cmd_install ;;
	up) cmd_up ;;
	down) cmd_down ;;
	status) cmd_status ;;
	env) cmd_env ;;
	serve) cmd_serve "$@" ;;
	destroy) cmd_destroy ;;
	rabbitmqctl) cmd_rabbitmqctl "$@" ;;
	start-postgres | stop-postgres | kill-postgres | start-redis | stop-redis | kill-redis | start-rabbitmq | stop-rabbitmq | kill-rabbitmq)
		[[ $cmd != start-* ]] || cmd_install
		lock_profile
		"${cmd//-/_}"
		unlock_profile
		;;
	*) usage ;;
	esac
}

main "$@"
