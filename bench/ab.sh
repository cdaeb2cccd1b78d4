#!/usr/bin/env bash
# ab.sh: compare proxy builds on one workload, interleaved, for quick A/B
# measurements of a change (make bench is the reference; this is the
# bench/cmd/stompbench load generator on its own, without the report).
#
#   bench/ab.sh SIZE INFLIGHT ROUNDS TARGET...
#
# TARGET is a stompgate binary (build one with
# `go build -o /tmp/sg-new ./cmd/stompgate`) or the word nginx. Each round
# runs every target once for 3 s (after a 1 s warm-up) with 50 connections
# (CONNS=500 in the environment for another count); the proxy is pinned to
# CPU 0 with GOMAXPROCS=1, the echo and the load generator to CPU 1, as in
# make bench. It prints each cell's proxy CPU per round trip (µs), round
# trips/s and proxy CPU use, then the mean CPU per round trip of each
# target. Everything is on 127.0.0.1 and stops by itself.
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,16p' "$0"; exit 2; }
size=$1 inflight=$2 rounds=$3 conns=${CONNS:-50}
shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/stompgate-ab.XXXXXX)
(cd "$root/bench" && go build -o "$dir/stompbench" ./cmd/stompbench)
port=$((20000 + RANDOM % 20000))
echo_addr=127.0.0.1:$port proxy_addr=127.0.0.1:$((port + 1)) admin_addr=127.0.0.1:$((port + 2))

mkdir -p "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/nginx; proxy_temp_path $dir/nginx;
    fastcgi_temp_path $dir/nginx; uwsgi_temp_path $dir/nginx; scgi_temp_path $dir/nginx;
    server {
        listen $proxy_addr;
        location / {
            proxy_pass http://$echo_addr;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 3600s;
        }
    }
}
CONF

# The echo exits when its stdin closes: hold it open with a bounded sleep.
sleep 3600 | taskset -c 1 "$dir/stompbench" echo -addr "$echo_addr" >"$dir/echo.log" 2>&1 &
echo_pid=$!
trap 'kill $echo_pid 2>/dev/null; pkill -f "sleep 3600" -P $$ 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening "$dir/echo.log" 2>/dev/null && break; sleep 0.1; done
echo_pid=$(pgrep -f "stompbench echo -addr $echo_addr")

cell() { # target
	local target=$1 pid
	if [ "$target" = nginx ]; then
		taskset -c 0 /usr/sbin/nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" >"$dir/proxy.log" 2>&1 &
	else
		GOMAXPROCS=1 STOMPGATE_UPSTREAM_URL=ws://$echo_addr STOMPGATE_LISTEN_ADDR=$proxy_addr \
			STOMPGATE_ADMIN_ADDR=$admin_addr STOMPGATE_LOG_LEVEL=warn STOMPGATE_MAX_CONNECTIONS=0 \
			taskset -c 0 "$target" >"$dir/proxy.log" 2>&1 &
	fi
	local launched=$!
	for _ in $(seq 50); do ss -ltn | grep -q " $proxy_addr " && break; sleep 0.1; done
	if [ "$target" = nginx ]; then pid=$(pgrep -f "nginx: worker" -P "$(cat "$dir/nginx/nginx.pid")"); else pid=$launched; fi
	taskset -c 1 "$dir/stompbench" load -url "ws://$proxy_addr/" -conns "$conns" -inflight "$inflight" -size "$size" \
		-duration 3s -warmup 1s -pids "$pid" -proxy-cpu 0 -client-cpu 1 -client-pids "$echo_pid" >"$dir/load.out" 2>&1 || true
	if [ "$target" = nginx ]; then kill "$(cat "$dir/nginx/nginx.pid")"; else kill "$launched"; fi
	wait "$launched" 2>/dev/null || true
	for _ in $(seq 50); do ss -ltn | grep -q " $proxy_addr " || break; sleep 0.1; done
	python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(sys.argv[2], "%.3f" % r["proxy_us_rt"], "%.0f" % r["rate"], "%.2f" % r["proxy_util"])' "$dir/load.out" "$target"
}

for _ in $(seq "$rounds"); do
	for t in "$@"; do cell "$t"; done
done | awk '{print; s[$1]+=$2; n[$1]++} END {for (t in s) printf "mean %s %.3f µs/rt\n", t, s[t]/n[t]}'
rm -rf "$dir"
