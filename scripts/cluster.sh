#!/usr/bin/env bash
# cluster.sh runs the User Service in cluster mode on this machine: one etcd on
# 127.0.0.1:2379 and three nodes on 127.0.0.1 (HTTP :3002-:3004, remoting
# :8090-:8092), sharing the run profile's PostgreSQL, Redis and RabbitMQ.
#
# Usage: scripts/cluster.sh up|down|status
#
#   up      start the run stack (devstack), install etcd-server if missing, start etcd
#           and the three nodes (bin/userservice; build it first), wait until each
#           answers /health/ready
#   down    SIGTERM the nodes (each hands its users off and leaves), then stop etcd;
#           the run stack itself is stopped by `devstack.sh down run` (make stop)
#   status  show what runs
#
# State (data, pid files, logs) lives under .devstack/cluster/. Environment:
# USERSERVICE_BIN (default bin/userservice), JWT_SECRET (default: the spec's
# development secret), CLUSTER_NAME (default userservice).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
DEVSTACK="$SCRIPT_DIR/devstack.sh"
STATE="$REPO_ROOT/.devstack/cluster"
BIN=${USERSERVICE_BIN:-$REPO_ROOT/bin/userservice}
NODES=(3002 3003 3004)
ETCD_CLIENT=2379
ETCD_PEER=2380

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
	printf 'cluster: error: %s\n' "$*" >&2
	exit 1
}

pid_of() { # pid file → pid when alive
	local f=$1 pid
	[[ -f $f ]] || return 1
	pid=$(<"$f")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

wait_gone() { # pid seconds
	local pid=$1 i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

etcd_up() {
	mkdir -p "$STATE"
	if pid_of "$STATE/etcd.pid" >/dev/null; then
		return 0
	fi
	local url=http://127.0.0.1:$ETCD_CLIENT peer=http://127.0.0.1:$ETCD_PEER
	log "starting etcd on 127.0.0.1:$ETCD_CLIENT"
	etcd --name userservice --data-dir "$STATE/etcd" \
		--listen-client-urls "$url" --advertise-client-urls "$url" \
		--listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
		--initial-cluster "userservice=$peer" >"$STATE/etcd.log" 2>&1 &
	echo $! >"$STATE/etcd.pid"
	local i
	for ((i = 0; i < 150; i++)); do
		if (exec 3<>/dev/tcp/127.0.0.1/$ETCD_CLIENT) 2>/dev/null; then
			return 0
		fi
		pid_of "$STATE/etcd.pid" >/dev/null || die "etcd exited; see $STATE/etcd.log"
		sleep 0.1
	done
	die "etcd did not answer on 127.0.0.1:$ETCD_CLIENT"
}

node_up() { # index port
	local i=$1 port=$2
	if pid_of "$STATE/node-$port.pid" >/dev/null; then
		return 0
	fi
	log "starting node $i on 127.0.0.1:$port (remoting 127.0.0.1:$((8090 + i)))"
	(
		eval "$("$DEVSTACK" env run)"
		export JWT_SECRET=${JWT_SECRET:-your-super-secret-jwt-key-change-in-production}
		export HOST=127.0.0.1 PORT=$port
		export CLUSTER_PROVIDER=etcd CLUSTER_NAME=${CLUSTER_NAME:-userservice} CLUSTER_ADVERTISE_HOST=127.0.0.1
		export CLUSTER_PORT=$((8090 + i)) ETCD_ENDPOINTS=127.0.0.1:$ETCD_CLIENT
		exec "$BIN" >"$STATE/node-$port.log" 2>&1
	) &
	echo $! >"$STATE/node-$port.pid"
}

node_ready() { # port
	local i
	for ((i = 0; i < 600; i++)); do
		if curl -fsS -o /dev/null "http://127.0.0.1:$1/health/ready" 2>/dev/null; then
			return 0
		fi
		pid_of "$STATE/node-$1.pid" >/dev/null || die "node :$1 exited; see $STATE/node-$1.log"
		sleep 0.1
	done
	die "node :$1 did not become ready; see $STATE/node-$1.log"
}

cmd_up() {
	[[ -x $BIN ]] || die "$BIN not found; build it first (make build)"
	"$DEVSTACK" up run
	WANT_ETCD=1 "$DEVSTACK" install run
	etcd_up
	local i
	for i in "${!NODES[@]}"; do
		node_up "$i" "${NODES[$i]}"
	done
	for i in "${NODES[@]}"; do
		node_ready "$i"
	done
	log "up: http://127.0.0.1:3002 http://127.0.0.1:3003 http://127.0.0.1:3004 (logs in $STATE)"
}

cmd_down() {
	local port pid rc=0
	for port in "${NODES[@]}"; do
		if pid=$(pid_of "$STATE/node-$port.pid"); then
			log "stopping node :$port (SIGTERM: hand off, leave)"
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done
	for port in "${NODES[@]}"; do
		if pid=$(pid_of "$STATE/node-$port.pid"); then
			wait_gone "$pid" 40 || {
				log "node :$port did not exit; SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				rc=1
			}
		fi
		rm -f "$STATE/node-$port.pid"
	done
	if pid=$(pid_of "$STATE/etcd.pid"); then
		log "stopping etcd"
		kill -TERM "$pid" 2>/dev/null || true
		wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$STATE/etcd.pid"
	return "$rc"
}

cmd_status() {
	local port pid
	if pid=$(pid_of "$STATE/etcd.pid"); then
		printf '  %-10s up    pid %-7s 127.0.0.1:%s\n' etcd "$pid" "$ETCD_CLIENT"
	else
		printf '  %-10s down\n' etcd
	fi
	for port in "${NODES[@]}"; do
		if pid=$(pid_of "$STATE/node-$port.pid"); then
			printf '  %-10s up    pid %-7s 127.0.0.1:%s\n' "node:$port" "$pid" "$port"
		else
			printf '  %-10s down\n' "node:$port"
		fi
	done
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*) die "usage: $0 up|down|status" ;;
esac
