#!/usr/bin/env bash
# Installs what the end-to-end tests need and starts the long-running peers.
#
#   scripts/test-deps.sh            install what is missing, start RabbitMQ (default: "up")
#   scripts/test-deps.sh status     say what is installed and running
#   scripts/test-deps.sh stop       stop the RabbitMQ (and epmd) started by this script
#   scripts/test-deps.sh restart    stop, then up
#
# Idempotent: when everything is installed and RabbitMQ already answers it only
# checks and returns within a second or so.
#
# Everything listens on 127.0.0.1 only:
#   RabbitMQ Web-STOMP   ws://127.0.0.1:15674/ws   (user guest/guest, loopback only)
#   RabbitMQ STOMP       127.0.0.1:61613
#   RabbitMQ AMQP        127.0.0.1:5672
#   Erlang distribution  127.0.0.1:25672, epmd 127.0.0.1:4369
# nginx, python3-websockets and chromium are only installed: tests start their
# own nginx instances (e2e/peers.StartNginx), python clients, and headless
# Chromium (driven by playwright-core from e2e/js, for the demo page's test).
#
# State (config, data, logs) lives in $STOMPGATE_PEERS_DIR, default
# /tmp/stompgate-peers; the RabbitMQ log is $STOMPGATE_PEERS_DIR/rabbitmq/log/rabbit.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${STOMPGATE_PEERS_DIR:-/tmp/stompgate-peers}
RMQ_DIR=$STATE/rabbitmq
JS_DIR=$ROOT/e2e/js

AMQP_PORT=5672
STOMP_PORT=61613
WS_PORT=15674
DIST_PORT=25672
RMQ_NODENAME=stompgate@localhost
RMQ_START_TIMEOUT=${RMQ_START_TIMEOUT:-90}

APT_PACKAGES=(rabbitmq-server nginx python3-websockets chromium python3-yaml file curl)

log() { printf 'test-deps: %s\n' "$*"; }
die() {
	printf 'test-deps: ERROR: %s\n' "$*" >&2
	exit 1
}

SUDO=()
if [[ $(id -u) != 0 ]]; then
	SUDO=(sudo)
fi

# retry runs a command up to 3 times, 5 s apart (a registry can hiccup).
retry() {
	local i
	for i in 1 2 3; do
		"$@" && return 0
		((i < 3)) && log "failed ($*), retrying in 5s" && sleep 5
	done
	return 1
}

pkg_installed() {
	[[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

# ---------------------------------------------------------------- apt packages
install_apt_packages() {
	local missing=() p
	for p in "${APT_PACKAGES[@]}"; do
		pkg_installed "$p" || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		log "apt packages present: ${APT_PACKAGES[*]}"
		return
	fi
	command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
	if ((${#SUDO[@]})) && ! command -v sudo >/dev/null; then
		die "missing ${missing[*]}: run this script as root (or install sudo) to install them"
	fi
	log "installing apt packages: ${missing[*]}"

	# Keep package maintainer scripts from starting system services (a RabbitMQ
	# on 0.0.0.0:5672, nginx on :80): we start our own peers on loopback.
	local policy=/usr/sbin/policy-rc.d made_policy=""
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
		"${SUDO[@]}" chmod 755 "$policy"
		made_policy=1
		trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
	fi

	log "apt-get update"
	retry "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
	log "apt-get install ${missing[*]}"
	retry "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"

	if [[ -n $made_policy ]]; then
		"${SUDO[@]}" rm -f "$policy"
		trap - EXIT
	fi
	# Belt and braces: if a package started its system service anyway, stop it.
	if [[ -s /run/nginx.pid ]] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
		log "stopping the system nginx started by the package"
		"${SUDO[@]}" nginx -s stop || true
	fi
	for p in "${missing[@]}"; do
		log "installed $p $(dpkg-query -W -f='${Version}' "$p")"
	done
}

# ---------------------------------------------------------------- node modules
install_node_modules() {
	command -v node >/dev/null || die "node is not installed (need Node.js 20+ and npm)"
	command -v npm >/dev/null || die "npm is not installed"
	local stamp=$JS_DIR/node_modules/.package-lock.json
	if [[ -f $stamp && ! $JS_DIR/package-lock.json -nt $stamp && ! $JS_DIR/package.json -nt $stamp ]]; then
		log "node modules up to date in e2e/js"
		return
	fi
	log "npm ci in e2e/js (node $(node --version), npm $(npm --version 2>/dev/null))"
	(cd "$JS_DIR" && retry npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in $JS_DIR"
}

# ---------------------------------------------------------------- RabbitMQ
# ws_ready succeeds when ws://127.0.0.1:$WS_PORT/ws answers a WebSocket upgrade
# for subprotocol v12.stomp with 101. Plain bash, so it needs no client tools.
ws_ready() {
	timeout 5 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n" "$1" >&3
		IFS= read -r line <&3 || exit 1
		[[ $line == "HTTP/1.1 101"* ]]
	' _ "$WS_PORT" 2>/dev/null
}

# rmq_server_pid prints the pid of the RabbitMQ session this script started:
# the process recorded in server.pid, if it is alive, leads its own session
# (setsid below) and is rabbitmq-server. So a stale or reused pid is never
# taken for ours, and signalling its process group reaches only RabbitMQ.
rmq_server_pid() {
	local pid sid args
	[[ -s $RMQ_DIR/server.pid ]] || return 1
	pid=$(<"$RMQ_DIR/server.pid")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	sid=$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ') || return 1
	[[ $sid == "$pid" ]] || return 1
	args=$(ps -o args= -p "$pid" 2>/dev/null) || return 1
	[[ $args == *rabbitmq-server* ]] || return 1
	echo "$pid"
}

# rmq_beam_pid prints the pid of the Erlang VM of our node, from the pid file
# RabbitMQ writes, if that process is alive and runs with our state dir.
rmq_beam_pid() {
	local pid args
	[[ -s $RMQ_DIR/rabbitmq.pid ]] || return 1
	pid=$(<"$RMQ_DIR/rabbitmq.pid")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	args=$(ps -o args= -p "$pid" 2>/dev/null) || return 1
	[[ $args == *"-home $RMQ_DIR/home "* ]] || return 1
	echo "$pid"
}

write_rabbitmq_config() {
	mkdir -p "$RMQ_DIR/mnesia" "$RMQ_DIR/log" "$RMQ_DIR/home"
	cat >"$RMQ_DIR/rabbitmq.conf" <<EOF
# Generated by scripts/test-deps.sh: every listener on loopback.
listeners.tcp.1 = 127.0.0.1:$AMQP_PORT
stomp.listeners.tcp.1 = 127.0.0.1:$STOMP_PORT
web_stomp.tcp.ip = 127.0.0.1
web_stomp.tcp.port = $WS_PORT
loopback_users.guest = true
log.console = false
log.file.level = info
EOF
	echo '[rabbitmq_stomp,rabbitmq_web_stomp].' >"$RMQ_DIR/enabled_plugins"
	# Our own (empty) env file and advanced.config, so nothing from
	# /etc/rabbitmq changes the setup.
	: >"$RMQ_DIR/rabbitmq-env.conf"
	echo '[].' >"$RMQ_DIR/advanced.config"
}

rmq_env() {
	env \
		HOME="$RMQ_DIR/home" \
		ERL_EPMD_ADDRESS=127.0.0.1 \
		RABBITMQ_NODENAME="$RMQ_NODENAME" \
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		RABBITMQ_DIST_PORT="$DIST_PORT" \
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}' \
		RABBITMQ_CONF_ENV_FILE="$RMQ_DIR/rabbitmq-env.conf" \
		RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq.conf" \
		RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ_DIR/advanced.config" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins" \
		RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia" \
		RABBITMQ_LOG_BASE="$RMQ_DIR/log" \
		RABBITMQ_LOGS="$RMQ_DIR/log/rabbit.log" \
		RABBITMQ_PID_FILE="$RMQ_DIR/rabbitmq.pid" \
		"$@"
}

# start_rabbitmq starts the broker in the background (it is waited for by
# wait_rabbitmq). It does nothing when Web-STOMP already answers.
RMQ_STARTED=""
start_rabbitmq() {
	if ws_ready; then
		log "RabbitMQ Web-STOMP already answers on ws://127.0.0.1:$WS_PORT/ws"
		return
	fi
	if rmq_server_pid >/dev/null; then
		log "RabbitMQ (pid $(rmq_server_pid)) is still starting"
		RMQ_STARTED=1
		return
	fi
	local server=/usr/lib/rabbitmq/bin/rabbitmq-server
	[[ -x $server ]] || die "$server not found (is rabbitmq-server installed?)"
	write_rabbitmq_config

	# epmd: make sure ours listens on loopback only. One already listening is
	# reused (with a warning if it is not on loopback only).
	local epmd_addrs
	epmd_addrs=$(ss -Hltn 'sport = :4369' | awk '{print $4}')
	if [[ -z $epmd_addrs ]]; then
		log "starting epmd on 127.0.0.1:4369"
		ERL_EPMD_ADDRESS=127.0.0.1 setsid epmd -daemon </dev/null >/dev/null 2>&1
	elif grep -qvE '^(127\.0\.0\.1|\[::1\]):' <<<"$epmd_addrs"; then
		log "WARNING: an epmd not started by this script listens beyond loopback:" $epmd_addrs
	else
		log "epmd already listening on loopback"
	fi

	log "starting RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server) as $RMQ_NODENAME (state in $RMQ_DIR)"
	: >"$RMQ_DIR/log/stdout.log"
	# setsid: own session and process group, so neither make nor CI waits for
	# it and stop can signal the whole group.
	# The process that setsid runs records its own pid (a session leader, so
	# also the process group id), then becomes rabbitmq-server.
	rm -f "$RMQ_DIR/server.pid" "$RMQ_DIR/rabbitmq.pid"
	rmq_env setsid bash -c 'echo $$ >"$1" && shift && exec "$@"' _ "$RMQ_DIR/server.pid" "$server" \
		>>"$RMQ_DIR/log/stdout.log" 2>&1 </dev/null &
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -s $RMQ_DIR/server.pid ]] && break
		sleep 0.1
	done
	RMQ_STARTED=1
}

rmq_log_tail() {
	local f
	for f in "$RMQ_DIR/log/stdout.log" "$RMQ_DIR/log/rabbit.log"; do
		[[ -s $f ]] || continue
		echo "----- tail of $f" >&2
		tail -n 40 "$f" >&2
	done
}

wait_rabbitmq() {
	[[ -n $RMQ_STARTED ]] || return 0
	local start=$SECONDS
	while ! ws_ready; do
		if ! rmq_server_pid >/dev/null; then
			rmq_log_tail
			die "RabbitMQ exited during start-up"
		fi
		if ((SECONDS - start >= RMQ_START_TIMEOUT)); then
			rmq_log_tail
			die "RabbitMQ Web-STOMP did not answer on ws://127.0.0.1:$WS_PORT/ws within ${RMQ_START_TIMEOUT}s"
		fi
		sleep 0.5
	done
	log "RabbitMQ Web-STOMP answers on ws://127.0.0.1:$WS_PORT/ws after $((SECONDS - start))s"
}

stop_rabbitmq() {
	local pid="" beam="" i what
	if pid=$(rmq_server_pid); then
		what="process group $pid"
	elif beam=$(rmq_beam_pid); then
		what="Erlang VM pid $beam"
	else
		log "no RabbitMQ started by this script is running"
		rm -f "$RMQ_DIR/server.pid"
		return
	fi
	log "stopping RabbitMQ ($what)"
	if [[ -n $pid ]]; then
		kill -TERM -- "-$pid" 2>/dev/null || true
	else
		kill -TERM "$beam" 2>/dev/null || true # the VM shuts RabbitMQ down cleanly on SIGTERM
	fi
	for ((i = 0; i < 60; i++)); do
		! rmq_server_pid >/dev/null && ! rmq_beam_pid >/dev/null && break
		sleep 0.5
	done
	if pid=$(rmq_server_pid) || beam=$(rmq_beam_pid); then
		log "RabbitMQ did not stop within 30s, killing it"
		if [[ -n $pid ]]; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
		if [[ -n ${beam:-} ]]; then kill -KILL "$beam" 2>/dev/null || true; fi
	fi
	rm -f "$RMQ_DIR/server.pid"
	# epmd exits on request only when no node is registered any more.
	if command -v epmd >/dev/null && [[ -n $(ss -Hltn 'sport = :4369') ]]; then
		if epmd -kill >/dev/null 2>&1; then log "stopped epmd"; fi
	fi
	log "stopped"
}

status() {
	local p
	for p in "${APT_PACKAGES[@]}"; do
		if pkg_installed "$p"; then
			log "$p $(dpkg-query -W -f='${Version}' "$p") installed"
		else
			log "$p not installed"
		fi
	done
	if [[ -d $JS_DIR/node_modules/@stomp/stompjs ]]; then
		log "node modules installed in e2e/js"
	else
		log "node modules not installed in e2e/js"
	fi
	if ws_ready; then
		log "RabbitMQ Web-STOMP answers on ws://127.0.0.1:$WS_PORT/ws"
	else
		log "RabbitMQ Web-STOMP does not answer"
	fi
}

up() {
	local t0=$SECONDS
	install_apt_packages
	start_rabbitmq
	install_node_modules # while RabbitMQ boots
	wait_rabbitmq
	log "ready in $((SECONDS - t0))s"
}

case ${1:-up} in
up) up ;;
status) status ;;
stop) stop_rabbitmq ;;
restart)
	stop_rabbitmq
	up
	;;
*) die "usage: $0 [up|status|stop|restart]" ;;
esac
