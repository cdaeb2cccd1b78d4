#!/usr/bin/env bash
# The checks behind docs/deploy/README.md, without a cluster:
#
#   bash docs/deploy/check.sh
#
# 1. The manifests parse (python3-yaml) and say what the README says: native
#    sidecar, probes on the admin port, preStop POST /drain + sleep ==
#    SHUTDOWN_TIMEOUT, grace period budget, Service -> 8090, ingress timeouts
#    >= STOMPGATE_IDLE_TIMEOUT; sockjs-affinity.yaml pins sessions by cookie
#    and turns buffering off.
# 2. The sidecar's STOMPGATE_* environment, exactly as written in the
#    manifest, passes `stompgate config validate`.
# 3. nginx -t accepts nginx-stompgate.conf as written (inside an http block).
# 4. A STOMP session goes through that server block: nginx -> stompgate demo
#    (stompgate in front of its embedded Spring-semantics broker), CONNECT ->
#    CONNECTED, and nginx logged a 101.
# 5. The stop order, replayed with short durations: a client in session
#    through stompgate, POST /drain (the app's preStop) -> the client gets
#    STOMP ERROR "server restarting, reconnect" + close 1012; the SIGTERM that
#    follows (the kubelet's, once the app has exited) ends stompgate at once.
#
# Needs: go, nginx, curl, /usr/bin/python3 with python3-yaml and
# python3-websockets (apt). Everything listens on 127.0.0.1, ephemeral ports.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
DIR=docs/deploy
PY=/usr/bin/python3

fail() { echo "deploy-check: FAIL: $*" >&2; exit 1; }
ok() { echo "ok   $*"; }

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || fail "nginx is not installed"
$PY -c 'import yaml, websockets' 2>/dev/null || fail "$PY lacks yaml or websockets (apt-get install python3-yaml python3-websockets)"

T=$(mktemp -d /tmp/stompgate-deploy-check.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		if [[ -n $p ]]; then kill -TERM "$p" 2>/dev/null || true; fi
	done
	for p in "${PIDS[@]}"; do
		[[ -n $p ]] || continue
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	rm -rf "$T"
}
trap cleanup EXIT

# ---------------------------------------------------------------- 1. manifests
$PY - "$DIR/spring-sidecar.yaml" "$DIR/ingress-nginx.yaml" >"$T/env.txt" 2>"$T/manifest.txt" <<'EOF' || { cat "$T/manifest.txt" >&2; fail "manifest checks"; }
import re, sys, yaml

def say(msg):
    print("ok   " + msg, file=sys.stderr)

def secs(v):
    m = re.fullmatch(r"(\d+)(s|m)?", str(v))
    assert m, f"not a duration in seconds/minutes: {v!r}"
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)

docs = []
for path in sys.argv[1:]:
    with open(path) as f:
        docs += [d for d in yaml.safe_load_all(f) if d]
by_kind = {d["kind"]: d for d in docs}
assert set(by_kind) == {"Deployment", "Service", "NetworkPolicy", "Ingress"}, sorted(by_kind)
say("manifests parse: " + ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs))

dep = by_kind["Deployment"]
pod = dep["spec"]["template"]["spec"]
labels = dep["spec"]["template"]["metadata"]["labels"]
assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()

(sg,) = [c for c in pod.get("initContainers", []) if c["name"] == "stompgate"]
assert sg.get("restartPolicy") == "Always", "stompgate must be a native sidecar"
assert not any(c["name"] == "stompgate" for c in pod["containers"])
env = {e["name"]: e["value"] for e in sg["env"]}
assert env["STOMPGATE_UPSTREAM_URL"] == "ws://127.0.0.1:8080"
assert env["STOMPGATE_LISTEN_ADDR"] == ":8090" and env["STOMPGATE_ADMIN_ADDR"] == ":9095"
assert env["STOMPGATE_READY_CHECKS_UPSTREAM"] == "false"
assert {p["containerPort"] for p in sg["ports"]} == {8090, 9095}
say("stompgate is an initContainer with restartPolicy: Always, ports 8090/9095, upstream ws://127.0.0.1:8080")

for probe, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
    g = sg[probe]["httpGet"]
    assert (g["path"], g["port"]) == (path, 9095), (probe, g)
say("stompgate probes: startup and liveness GET /livez, readiness GET /readyz, all on 9095")

sc = sg["securityContext"]
assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532 and sc["readOnlyRootFilesystem"] is True
assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
assert pod["securityContext"]["runAsNonRoot"] is True
assert "memory" in sg["resources"]["limits"] and "cpu" in sg["resources"]["requests"]
say("stompgate securityContext: runAsNonRoot, 65532, readOnlyRootFilesystem, no privilege escalation, drop ALL")

(app,) = pod["containers"]
assert any(p["containerPort"] == 8080 for p in app["ports"])
cmd = " ".join(app["lifecycle"]["preStop"]["exec"]["command"])
assert "-X POST" in cmd and "http://127.0.0.1:9095/drain" in cmd, cmd
sleep = int(re.search(r"sleep (\d+)", cmd).group(1))
delay, period, timeout = (secs(env[k]) for k in ("STOMPGATE_SHUTDOWN_DELAY", "STOMPGATE_DRAIN_PERIOD", "STOMPGATE_SHUTDOWN_TIMEOUT"))
assert timeout > delay + period, (timeout, delay, period)
assert sleep == timeout, f"preStop sleeps {sleep}s, SHUTDOWN_TIMEOUT is {timeout}s"
app_env = {e["name"]: e["value"] for e in app.get("env", [])}
app_stop = secs(app_env["SPRING_LIFECYCLE_TIMEOUT_PER_SHUTDOWN_PHASE"])
grace = pod["terminationGracePeriodSeconds"]
assert grace > sleep + app_stop, (grace, sleep, app_stop)
say(f"app preStop: POST /drain, then sleep {sleep}s (= SHUTDOWN_TIMEOUT {timeout}s > SHUTDOWN_DELAY {delay}s + DRAIN_PERIOD {period}s); "
    f"terminationGracePeriodSeconds {grace} > {sleep} + app stop phase {app_stop}")

svc = by_kind["Service"]
assert svc["spec"]["selector"].items() <= labels.items()
assert [p["targetPort"] for p in svc["spec"]["ports"]] == [8090]
say("Service selects the pods and targets 8090 (stompgate), not 8080")

np = by_kind["NetworkPolicy"]
assert np["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
allowed = {p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"]}
assert allowed == {8090, 9095}, allowed
say("NetworkPolicy admits only 8090 and 9095")

ing = by_kind["Ingress"]
ann = ing["metadata"]["annotations"]
idle = secs(env["STOMPGATE_IDLE_TIMEOUT"])
for k in ("proxy-read-timeout", "proxy-send-timeout"):
    v = int(ann["nginx.ingress.kubernetes.io/" + k])
    assert v >= idle, (k, v, idle)
backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
assert backend["name"] == svc["metadata"]["name"]
assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
say(f"Ingress: proxy-read/send-timeout {ann['nginx.ingress.kubernetes.io/proxy-read-timeout']}s >= STOMPGATE_IDLE_TIMEOUT {idle}s, backend = Service {backend['name']}:{backend['port']['name']}")

for k, v in env.items():
    if k.startswith("STOMPGATE_"):
        print(f"{k}={v}")
EOF

cat "$T/manifest.txt"
# SockJS affinity (sockjs-affinity.yaml): what README.md's "SockJS" section says.
$PY - "$DIR/sockjs-affinity.yaml" <<'EOF' || fail "sockjs-affinity.yaml checks"
import sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1]))}
a = docs["Ingress"]["metadata"]["annotations"]
p = "nginx.ingress.kubernetes.io/"
assert a[p + "affinity"] == "cookie" and a[p + "session-cookie-path"] == "/ws", a
assert a[p + "proxy-buffering"] == "off", a
for k in ("proxy-read-timeout", "proxy-send-timeout"):
    assert int(a[p + k]) >= 60, (k, a[p + k])  # >= STOMPGATE_IDLE_TIMEOUT's default
b = docs["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
assert b == {"name": "chat", "port": {"name": "ws"}}, b
r = docs["HTTPRoute"]["spec"]["rules"][0]
assert r["sessionPersistence"]["type"] == "Cookie", r
assert r["backendRefs"] == [{"name": "chat", "port": 8090}], r
print("ok   sockjs-affinity.yaml: Ingress cookie affinity on /ws, proxy-buffering off, timeouts >= 60s; HTTPRoute sessionPersistence Cookie -> chat:8090")
EOF

# ---------------------------------------------------------------- 2. config
go build -o "$T/stompgate" ./cmd/stompgate
mapfile -t sidecar_env <"$T/env.txt"
out=$(env -i "${sidecar_env[@]}" "$T/stompgate" config validate 2>&1) || fail "the manifest's environment is invalid: $out"
ok "the sidecar's ${#sidecar_env[@]} STOMPGATE_* variables pass 'stompgate config validate': $out"

# ---------------------------------------------------------------- 3. nginx -t
nginx_main() { # dir http-include
	cat <<EOF
daemon off;
master_process off;
pid $1/nginx.pid;
error_log $1/error.log info;
events { worker_connections 64; }
http {
    access_log $1/access.log;
    client_body_temp_path $1/client_body_temp;
    proxy_temp_path $1/proxy_temp;
    fastcgi_temp_path $1/fastcgi_temp;
    uwsgi_temp_path $1/uwsgi_temp;
    scgi_temp_path $1/scgi_temp;
    include $2;
}
EOF
}
mkdir -p "$T/syntax" "$T/run"
nginx_main "$T/syntax" "$ROOT/$DIR/nginx-stompgate.conf" >"$T/syntax/nginx.conf"
out=$("$NGINX" -t -e "$T/syntax/error.log" -p "$T/syntax/" -c "$T/syntax/nginx.conf" 2>&1) || fail "nginx -t: $out"
ok "nginx -t ($("$NGINX" -v 2>&1 | sed 's/.*version: //')) accepts $DIR/nginx-stompgate.conf: $(tail -n1 <<<"$out" | sed 's/^nginx: //')"

# ---------------------------------------------------------------- 4. a session
free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
env -i STOMPGATE_LISTEN_ADDR=127.0.0.1:0 STOMPGATE_ADMIN_ADDR=127.0.0.1:0 "$T/stompgate" demo >"$T/demo.out" 2>"$T/demo.log" &
PIDS+=($!)
demo=
for _ in $(seq 1 100); do
	demo=$(sed -n 's|.*open http://\([0-9.]*:[0-9]*\)/ .*|\1|p' "$T/demo.out")
	[[ -n $demo ]] && break
	sleep 0.1
done
[[ -n $demo ]] || fail "stompgate demo did not start: $(cat "$T/demo.out" "$T/demo.log")"
nport=$(free_port)
# The snippet as written, with only its two addresses pointed at this machine.
sed -e "s|^\(    listen \)80;|\1127.0.0.1:$nport;|" -e "s|^\(    server \)127\.0\.0\.1:8090;|\1$demo;|" \
	"$DIR/nginx-stompgate.conf" >"$T/run/snippet.conf"
[[ $(diff "$DIR/nginx-stompgate.conf" "$T/run/snippet.conf" | grep -c '^>') == 2 ]] ||
	fail "could not point the snippet's listen/server lines at the test addresses"
nginx_main "$T/run" "$T/run/snippet.conf" >"$T/run/nginx.conf"
"$NGINX" -e "$T/run/error.log" -p "$T/run/" -c "$T/run/nginx.conf" >"$T/run/stdout" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$nport/ws" || true)
	[[ $code != 000 ]] && break
	sleep 0.1
done
[[ $code != 000 ]] || fail "nginx did not answer on 127.0.0.1:$nport: $(cat "$T/run/stdout" "$T/run/error.log")"
got=$($PY - "ws://127.0.0.1:$nport/ws" <<'EOF'
import asyncio, sys, websockets

async def main(uri):
    async with websockets.connect(uri, subprotocols=["v12.stomp"], open_timeout=10) as ws:
        await ws.send("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\x00")
        frame = await asyncio.wait_for(ws.recv(), 10)
        assert frame.startswith("CONNECTED\n"), repr(frame)
        print(f"subprotocol {ws.subprotocol}, " + ", ".join(frame.split("\n")[:3]))

asyncio.run(main(sys.argv[1]))
EOF
) || fail "STOMP through nginx failed; nginx: $(tail -n3 "$T/run/error.log"); stompgate: $(tail -n3 "$T/demo.log")"
grep -q '"GET /ws HTTP/1.1" 101 ' "$T/run/access.log" || fail "nginx did not log a 101 for /ws: $(cat "$T/run/access.log")"
ok "STOMP over WebSocket through nginx-stompgate.conf -> stompgate demo: $got; nginx logged 101"

# ---------------------------------------------------------------- 5. stop order
# The pod's stop sequence, replayed with short durations: a client in session
# through stompgate (the manifest's environment, on loopback, in front of the
# demo's embedded broker); the app's preStop POSTs /drain; the client gets
# STOMP ERROR + 1012 within SHUTDOWN_DELAY + DRAIN_PERIOD; then the SIGTERM the
# kubelet sends once the app has exited ends stompgate at once, exit 0.
broker=$(sed -n 's|.*embedded broker on \([0-9.]*:[0-9]*\)).*|\1|p' "$T/demo.out")
[[ -n $broker ]] || fail "no embedded broker address in: $(cat "$T/demo.out")"
env -i "${sidecar_env[@]}" STOMPGATE_UPSTREAM_URL="ws://$broker" \
	STOMPGATE_LISTEN_ADDR=127.0.0.1:0 STOMPGATE_ADMIN_ADDR=127.0.0.1:0 \
	STOMPGATE_SHUTDOWN_DELAY=500ms STOMPGATE_DRAIN_PERIOD=1s STOMPGATE_SHUTDOWN_TIMEOUT=3s \
	"$T/stompgate" >/dev/null 2>"$T/sg.log" &
sg=$!
PIDS+=("$sg")
listen='' admin=''
for _ in $(seq 1 100); do
	listen=$(sed -n 's|.*"msg":"stompgate listening".*"listen":"ws://\([^"]*\)".*|\1|p' "$T/sg.log")
	admin=$(sed -n 's|.*"msg":"stompgate listening".*"admin":"\([^"]*\)".*|\1|p' "$T/sg.log")
	[[ -n $listen && -n $admin ]] && break
	sleep 0.1
done
[[ -n $listen && -n $admin ]] || fail "stompgate did not start: $(cat "$T/sg.log")"
cat >"$T/client.py" <<'EOF'
import asyncio, sys, websockets

async def main(uri):
    async with websockets.connect(uri, subprotocols=["v12.stomp"], open_timeout=10) as ws:
        await ws.send("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\x00")
        frame = await asyncio.wait_for(ws.recv(), 10)
        assert frame.startswith("CONNECTED\n"), repr(frame)
        print("CONNECTED", flush=True)
        error = None
        try:
            while True:
                frame = await asyncio.wait_for(ws.recv(), 10)
                if frame.startswith("ERROR\n"):
                    error = [l for l in frame.split("\n") if l.startswith("message:")]
        except websockets.ConnectionClosed as e:
            print(f"ERROR {error}, close {e.code}", flush=True)

asyncio.run(main(sys.argv[1]))
EOF
$PY "$T/client.py" "ws://$listen/ws" >"$T/client.txt" 2>&1 &
client=$!
PIDS+=("$client")
for _ in $(seq 1 100); do grep -q CONNECTED "$T/client.txt" && break; sleep 0.1; done
grep -q CONNECTED "$T/client.txt" || fail "client did not connect through stompgate: $(cat "$T/client.txt")"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 3 -X POST "http://$admin/drain")
[[ $code == 202 ]] || fail "POST /drain: $code"
for _ in $(seq 1 50); do kill -0 "$client" 2>/dev/null || break; sleep 0.1; done
kill -0 "$client" 2>/dev/null && fail "the client was not closed within 5s of POST /drain"
wait "$client" || fail "client: $(cat "$T/client.txt")"
PIDS=("${PIDS[@]/#$client/}")
grep -qF "ERROR ['message:server restarting, reconnect'], close 1012" "$T/client.txt" ||
	fail "the client did not get ERROR 'server restarting, reconnect' + 1012: $(cat "$T/client.txt")"
ok "after POST /drain the client got STOMP $(tail -n1 "$T/client.txt")"
t0=$(date +%s%N)
kill -TERM "$sg"
rc=0
wait "$sg" || rc=$?
PIDS=("${PIDS[@]/#$sg/}")
ms=$((($(date +%s%N) - t0) / 1000000))
[[ $rc == 0 ]] || fail "stompgate exited $rc after SIGTERM: $(tail -n3 "$T/sg.log")"
((ms < 1000)) || fail "stompgate took ${ms}ms to exit after SIGTERM although its drain was over"
ok "SIGTERM after the drain: stompgate exited 0 in ${ms}ms"

echo "deploy-check: PASS"
