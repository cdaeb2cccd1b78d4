#!/usr/bin/env bash
# image-check: prove the container image's binary without a Docker engine.
#
#   make image-check            (or: bash scripts/image-check.sh)
#   VERSION=v1.2.3 make image-check
#
# 1. Reads the Dockerfile and refuses anything it cannot vouch for: exactly one
#    `RUN ... go build` with the required flags, a golang:<minor> builder that
#    matches the local Go and go.mod, and a final distroless stage made only of
#    ARG/LABEL/USER 65532:65532/EXPOSE 8090 9095/ENTRYPOINT ["/stompgate"] and
#    one COPY of the build's output.
# 2. Builds a copy of the repository filtered by .dockerignore (the Docker build
#    context) by running that RUN line verbatim under /bin/sh -c (only its
#    /out/stompgate pointed at a temporary file), with the same
#    ARG values (VERSION, TARGETOS, TARGETARCH) and an environment as bare as the
#    golang image's. It builds the same line in the repository too and requires
#    both binaries to be byte-identical (so .dockerignore hides nothing the build
#    reads, and -trimpath makes the output independent of the build directory).
# 3. Proves the binary is static (file, ldd, readelf, go version -m), stripped
#    and free of build paths.
# 4. Runs it the way the image does: a root directory holding only /stompgate
#    (no shell, no libc, no /etc), as UID/GID 65532, with an empty environment
#    apart from STOMPGATE_UPSTREAM_URL: --version, config validate, bad
#    configuration (exit 78), then a real start with /livez, /readyz,
#    /metrics, POST /drain and SIGTERM (exit 0).
#
# Needs: go, curl, file, ldd, readelf; root for the chroot (otherwise setpriv
# or the current user, with a note). Talks to 127.0.0.1 only; binds the
# image's default ports :8090/:9095 when they are free, else (or with
# IMAGE_CHECK_EPHEMERAL=1) ephemeral loopback ports.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

fail() { echo "image-check: FAIL: $*" >&2; exit 1; }
ok() { echo "ok   $*"; }
note() { echo "note $*"; }

for tool in go curl file ldd readelf; do
	command -v "$tool" >/dev/null || fail "$tool is not installed"
done

TMP=$(mktemp -d /tmp/stompgate-image-check.XXXXXX)
PID=
cleanup() {
	if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
		kill -KILL "$PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

# ---------------------------------------------------------------- Dockerfile
# Logical lines: comments dropped, backslash continuations joined. Each line
# is prefixed with the index of its stage (FROM count).
awk '
	/^[[:space:]]*#/ { next }
	{
		line = cont $0
		if (line ~ /\\[[:space:]]*$/) { sub(/\\[[:space:]]*$/, " ", line); cont = line; next }
		cont = ""
		gsub(/[[:space:]]+/, " ", line); sub(/^ /, "", line); sub(/ $/, "", line)
		if (line == "") next
		if (toupper(line) ~ /^FROM /) stage++
		print stage "\t" line
	}' Dockerfile >"$TMP/dockerfile.lines"
stages=$(tail -n1 "$TMP/dockerfile.lines" | cut -f1)
[[ $stages == 2 ]] || fail "Dockerfile: expected 2 stages (build, final), found $stages"
stage() { awk -F'\t' -v s="$1" '$1 == s { print $2 }' "$TMP/dockerfile.lines"; }

# Build stage.
build_from=$(stage 1 | head -n1)
[[ $build_from =~ ^FROM\ (--platform=[^ ]+\ )?golang:([0-9]+\.[0-9]+)(-[a-z0-9]+)?(@sha256:[0-9a-f]{64})?\ AS\ build$ ]] ||
	fail "Dockerfile: build stage must be 'FROM [--platform=...] golang:<major.minor>[-variant][@sha256:...] AS build', got: $build_from"
go_minor=${BASH_REMATCH[2]}
local_go=$(go env GOVERSION)
[[ $local_go == "go$go_minor" || $local_go == go$go_minor.* ]] ||
	fail "Dockerfile builds with golang:$go_minor but the local toolchain is $local_go"
mod_go=$(awk '$1 == "go" { print $2; exit }' go.mod)
[[ $mod_go == "$go_minor" || $mod_go == $go_minor.* ]] ||
	fail "Dockerfile builds with golang:$go_minor but go.mod says go $mod_go"
ok "builder golang:$go_minor matches the local $local_go and go.mod's go $mod_go"

mapfile -t build_runs < <(grep -E $'^[0-9]+\tRUN .*\\bgo build\\b' "$TMP/dockerfile.lines" || true)
[[ ${#build_runs[@]} == 1 ]] || fail "Dockerfile: expected exactly one RUN with 'go build', found ${#build_runs[@]}"
[[ ${build_runs[0]%%$'\t'*} == 1 ]] || fail "Dockerfile: the go build RUN must be in the build stage"
build_cmd=${build_runs[0]#*$'\t'}
build_cmd=${build_cmd#RUN }
while [[ $build_cmd == --* ]]; do build_cmd=${build_cmd#* }; done # BuildKit RUN flags (--mount=...)
# shellcheck disable=SC2016 # ${VERSION} is matched literally: the Dockerfile's shell expands it
required=(
	'CGO_ENABLED=0 '
	' go build '
	' -trimpath '
	' -buildvcs=false '
	' -ldflags "-s -w -X main.version=${VERSION}" '
	' -o /out/stompgate ./cmd/stompgate'
)
for r in "${required[@]}"; do
	[[ "$build_cmd " == *"$r"* ]] || fail "Dockerfile: the go build line lacks '$r': $build_cmd"
done
[[ $build_cmd == *' ./cmd/stompgate' ]] || fail "Dockerfile: the go build line must end with ./cmd/stompgate: $build_cmd"
[[ $(grep -o '/out/stompgate' <<<"$build_cmd" | wc -l) == 1 ]] || fail "Dockerfile: /out/stompgate must appear once in the go build line"
version_default=$(stage 1 | sed -n 's/^ARG VERSION=\([^ ]*\)$/\1/p' | tail -n1)
[[ -n $version_default ]] || fail "Dockerfile: the build stage needs 'ARG VERSION=<default>'"
ok "go build line: $build_cmd"

# Final stage: only what image-check runs.
final_from=$(stage 2 | head -n1)
[[ $final_from =~ ^FROM\ gcr\.io/distroless/static-debian12:nonroot(@sha256:[0-9a-f]{64})?$ ]] ||
	fail "Dockerfile: final stage must be FROM gcr.io/distroless/static-debian12:nonroot[@sha256:...], got: $final_from"
copies=0
while IFS= read -r line; do
	case $line in
	"$final_from" | ARG\ * | LABEL\ *) ;;
	'COPY --from=build /out/stompgate /stompgate') copies=$((copies + 1)) ;;
	'USER 65532:65532' | 'EXPOSE 8090 9095' | 'ENTRYPOINT ["/stompgate"]') ;;
	*) fail "Dockerfile: final stage line image-check does not vouch for: $line" ;;
	esac
done < <(stage 2)
[[ $copies == 1 ]] || fail "Dockerfile: final stage must COPY --from=build /out/stompgate /stompgate exactly once"
for want in 'USER 65532:65532' 'EXPOSE 8090 9095' 'ENTRYPOINT ["/stompgate"]'; do
	stage 2 | grep -qxF "$want" || fail "Dockerfile: final stage lacks '$want'"
done
ok "final stage: $final_from, only /out/stompgate copied, USER 65532:65532, EXPOSE 8090 9095, ENTRYPOINT [\"/stompgate\"]"

# ---------------------------------------------------------------- version
if [[ -z ${VERSION:-} ]]; then
	VERSION=$(git describe --tags --always --dirty 2>/dev/null || true)
	VERSION=${VERSION:-$version_default}
fi
[[ $VERSION =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || fail "VERSION '$VERSION' must match [A-Za-z0-9][A-Za-z0-9._+-]*"
note "VERSION=$VERSION (docker build --build-arg VERSION=$VERSION)"

# ---------------------------------------------------------------- context
[[ -f .dockerignore ]] || fail ".dockerignore is missing"
ignore=()
while IFS= read -r pat || [[ -n $pat ]]; do
	pat=${pat%%#*}
	pat=$(sed 's/^[[:space:]]*//; s/[[:space:]]*$//' <<<"$pat")
	[[ -z $pat ]] && continue
	[[ $pat == '!'* ]] && fail ".dockerignore: exceptions ($pat) are not supported by image-check"
	pat=${pat#/}
	pat=${pat#./}
	pat=${pat%/}
	ignore+=("$pat")
	[[ $pat == '**/'* ]] && ignore+=("${pat#'**/'}")
done <.dockerignore
# Bash [[ == ]] lets * match '/', so this excludes at least what Docker does.
ignored() {
	local p
	for p in "${ignore[@]}"; do
		# shellcheck disable=SC2053 # glob match intended
		[[ $1 == $p ]] && return 0
	done
	return 1
}
CTX=$TMP/context
mkdir -p "$CTX"
shopt -s dotglob nullglob
copy_context() {
	local src rel
	for src in "$1"/*; do
		rel=${src#"$ROOT"/}
		ignored "$rel" && continue
		if [[ -d $src && ! -L $src ]]; then
			mkdir -p "$CTX/$rel"
			copy_context "$src"
		else
			cp -P "$src" "$CTX/$rel"
		fi
	done
}
copy_context "$ROOT"
shopt -u dotglob nullglob
[[ -f $CTX/go.mod && -f $CTX/go.sum && -d $CTX/cmd/stompgate ]] || fail ".dockerignore hides go.mod, go.sum or cmd/stompgate"
ok "build context: $(find "$CTX" -type f | wc -l) files after .dockerignore ($(du -sh "$CTX" | cut -f1))"

# ---------------------------------------------------------------- build
# The Dockerfile's `go mod download` step; afterwards the build runs offline.
go mod download
goroot=$(go env GOROOT)
build_env=(
	PATH="$goroot/bin:/usr/local/bin:/usr/bin:/bin"
	HOME="$TMP/home"
	GOENV=off GOFLAGS= GOTOOLCHAIN=local GOPROXY=off
	GOCACHE="$(go env GOCACHE)" GOMODCACHE="$(go env GOMODCACHE)"
	VERSION="$VERSION" TARGETOS="$(go env GOOS)" TARGETARCH="$(go env GOARCH)"
)
mkdir -p "$TMP/home" "$TMP/out"
run_build() { # dir output
	local cmd=${build_cmd/\/out\/stompgate/$2}
	(cd "$1" && env -i "${build_env[@]}" /bin/sh -c "$cmd") ||
		fail "go build failed in $1$([[ $1 == "$CTX" ]] && echo ' (the .dockerignore filtered context: does a pattern hide a file the build reads?)')"
}
run_build "$CTX" "$TMP/out/stompgate"
run_build "$ROOT" "$TMP/out/stompgate.repo"
BIN=$TMP/out/stompgate
cmp -s "$BIN" "$TMP/out/stompgate.repo" ||
	fail "the build from the .dockerignore'd context differs from the build in the repository"
ok "built $(du -h "$BIN" | cut -f1) binary, byte-identical from the build context and from the repository (sha256 $(sha256sum "$BIN" | cut -c1-16)…)"

# ---------------------------------------------------------------- static
ftype=$(file -b "$BIN")
[[ $ftype == *"statically linked"* ]] || fail "file does not say statically linked: $ftype"
[[ $ftype == *", stripped"* ]] || fail "file does not say stripped: $ftype"
ok "file: $ftype"
lddout=$(ldd "$BIN" 2>&1 || true)
[[ $lddout == *"not a dynamic executable"* || $lddout == *"statically linked"* ]] || fail "ldd: $lddout"
ok "ldd: $(echo "$lddout" | tr -s '[:space:]' ' ')"
readelf -lW "$BIN" | grep -q 'INTERP' && fail "readelf: the binary requests a program interpreter"
readelf -dW "$BIN" | grep -q 'NEEDED' && fail "readelf: the binary needs shared libraries"
ok "readelf: no INTERP segment, no NEEDED libraries"
buildinfo=$(go version -m "$BIN")
want_info=(
	$'\tbuild\tCGO_ENABLED=0'
	$'\tbuild\t-trimpath=true'
	$'\tbuild\t-buildmode=exe'
	$'\tbuild\tGOOS='"$(go env GOOS)"
	$'\tbuild\tGOARCH='"$(go env GOARCH)"
	$'\tpath\tgithub.com/stompgate/stompgate/cmd/stompgate'
)
for w in "${want_info[@]}"; do
	grep -qxF -- "$w" <<<"$buildinfo" || fail "go version -m lacks '${w#$'\t'}':"$'\n'"$buildinfo"
done
grep -q $'\tbuild\tvcs' <<<"$buildinfo" && fail "go version -m shows VCS stamping (-buildvcs=false missing?)"
ok "go version -m: $(head -n1 <<<"$buildinfo" | cut -d' ' -f2), CGO_ENABLED=0, -trimpath=true, no vcs stamp (with -trimpath Go does not record -ldflags: -s -w is proven below, -X by --version)"
readelf -SW "$BIN" | grep -qE '\.(z)?debug_' && fail "readelf: the binary has DWARF sections (-w missing?)"
readelf -SW "$BIN" | grep -qE '\.symtab' && fail "readelf: the binary has a symbol table (-s missing?)"
ok "readelf: no .symtab (-s), no .debug_* sections (-w)"
for p in "$ROOT" "$CTX" "$goroot/src" "$(go env GOMODCACHE)"; do
	grep -qaF "$p" "$BIN" && fail "the binary contains the build path $p (-trimpath not effective)"
done
ok "no build paths in the binary ($ROOT, $goroot, module cache)"

# ---------------------------------------------------------------- run
# A root directory with nothing but the binary: no shell, no libc, no /etc,
# no /tmp. Stricter than distroless, which adds CA certs, passwd and tzdata.
RT=$TMP/root
mkdir -m 0755 "$RT"
install -m 0755 "$BIN" "$RT/stompgate"
UPSTREAM=STOMPGATE_UPSTREAM_URL=ws://127.0.0.1:1
if [[ $(id -u) == 0 ]] && [[ -x /usr/sbin/chroot ]]; then
	runner=(/usr/sbin/chroot --userspec=65532:65532 --groups=65532 "$RT" /stompgate)
	how="chroot holding only /stompgate, as 65532:65532"
elif command -v setpriv >/dev/null && setpriv --reuid=65532 --regid=65532 --clear-groups true 2>/dev/null; then
	runner=("$(command -v setpriv)" --reuid=65532 --regid=65532 --clear-groups "$RT/stompgate")
	how="setpriv as 65532:65532 (no chroot: not root)"
else
	runner=("$RT/stompgate")
	how="as $(id -u):$(id -g) (not root and no setpriv: UID 65532 not mimicked)"
	note "cannot switch to UID 65532 here; run as root for the full check"
fi
note "running the binary in a $how, environment: env -i [$UPSTREAM]"

# expect_exit code description env-assignments... -- args...
expect_exit() {
	local want=$1 what=$2 envs=() rc=0
	shift 2
	while [[ $1 != -- ]]; do envs+=("$1"); shift; done
	shift
	env -i "${envs[@]}" "${runner[@]}" "$@" >"$TMP/out.txt" 2>"$TMP/err.txt" || rc=$?
	[[ $rc == "$want" ]] || fail "$what: exit $rc, want $want; stdout: $(cat "$TMP/out.txt"); stderr: $(cat "$TMP/err.txt")"
}

expect_exit 0 "--version" $UPSTREAM -- --version
want_version="stompgate $VERSION ($local_go)"
[[ $(cat "$TMP/out.txt") == "$want_version" ]] || fail "--version printed '$(cat "$TMP/out.txt")', want '$want_version'"
ok "--version → exit 0: $want_version"
expect_exit 0 "--version with an empty environment" -- --version
ok "--version with no environment at all → exit 0"
expect_exit 0 "config validate" $UPSTREAM -- config validate
ok "config validate with only $UPSTREAM → exit 0: $(cat "$TMP/out.txt")"
expect_exit 78 "config validate without STOMPGATE_UPSTREAM_URL" -- config validate
ok "config validate with no environment → exit 78: $(tr '\n' ' ' <"$TMP/err.txt")"
expect_exit 78 "config validate with an http:// upstream" STOMPGATE_UPSTREAM_URL=http://127.0.0.1:1 -- config validate
ok "config validate with STOMPGATE_UPSTREAM_URL=http://… → exit 78: $(tr '\n' ' ' <"$TMP/err.txt")"
expect_exit 78 "start without configuration" --
ok "start (the image's ENTRYPOINT, no arguments) with no environment → exit 78"

# Start for real: the image's defaults (:8090, :9095) when free, so that
# nothing but STOMPGATE_UPSTREAM_URL is set; else ephemeral loopback ports.
run_env=("$UPSTREAM")
# IMAGE_CHECK_EPHEMERAL=1 forces the latter (e.g. while other tests use 8090).
if [[ ${IMAGE_CHECK_EPHEMERAL:-0} != 1 ]] && command -v ss >/dev/null &&
	[[ -z $(ss -Hltn 'sport = :8090 or sport = :9095') ]]; then
	note "starting with only $UPSTREAM (ports 8090 and 9095 are free)"
else
	run_env+=(STOMPGATE_LISTEN_ADDR=127.0.0.1:0 STOMPGATE_ADMIN_ADDR=127.0.0.1:0)
	note "starting on ephemeral loopback ports (8090 or 9095 taken, or IMAGE_CHECK_EPHEMERAL=1)"
fi
env -i "${run_env[@]}" "${runner[@]}" >"$TMP/run.out" 2>"$TMP/run.log" &
PID=$!
admin=
for _ in $(seq 1 100); do
	admin=$(sed -n 's/.*"msg":"stompgate listening".*"admin":"\([^"]*\)".*/\1/p' "$TMP/run.log" | head -n1)
	[[ -n $admin ]] && break
	kill -0 "$PID" 2>/dev/null || fail "stompgate exited at start: $(cat "$TMP/run.log")"
	sleep 0.1
done
[[ -n $admin ]] || fail "no 'stompgate listening' log line with an admin address within 10s: $(cat "$TMP/run.log")"
admin_port=${admin##*:}
ADMIN=http://127.0.0.1:$admin_port
uid_line=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$PID/status")
gid_line=$(awk '/^Gid:/ { print $2, $3, $4, $5 }' "/proc/$PID/status")
groups_line=$(awk '/^Groups:/ { $1 = ""; sub(/^ /, ""); print }' "/proc/$PID/status")
if [[ ${runner[0]} != "$RT/stompgate" ]]; then
	[[ $uid_line == "65532 65532 65532 65532" && $gid_line == "65532 65532 65532 65532" ]] ||
		fail "the process runs as uid [$uid_line] gid [$gid_line], want 65532"
	[[ -z $groups_line || $groups_line == 65532 ]] || fail "the process has supplementary groups [$groups_line]"
fi
ok "started (pid $PID, uid/gid $(cut -d' ' -f1 <<<"$uid_line")/$(cut -d' ' -f1 <<<"$gid_line"), groups [$groups_line]), admin on $admin"

# http_expect method path status [body-substring]
http_expect() {
	local code
	code=$(curl -sS -o "$TMP/body" -w '%{http_code}' --max-time 5 -X "$1" "$ADMIN$2") || fail "$1 $2: curl failed"
	[[ $code == "$3" ]] || fail "$1 $2: status $code, want $3: $(head -c 300 "$TMP/body")"
	[[ -z ${4:-} ]] || grep -qF -- "$4" "$TMP/body" || fail "$1 $2: body lacks '$4': $(head -c 300 "$TMP/body")"
}
http_expect GET /livez 200 ok
ok "GET /livez → 200"
http_expect GET /readyz 200 ok
ok "GET /readyz → 200 although the upstream (127.0.0.1:1) is down (STOMPGATE_READY_CHECKS_UPSTREAM defaults to false)"
http_expect GET /metrics 200 stompgate_build_info
grep -E '^stompgate_build_info\{' "$TMP/body" | grep -qF "version=\"$VERSION\"" ||
	fail "GET /metrics: no stompgate_build_info with version=\"$VERSION\": $(grep build_info "$TMP/body")"
ok "GET /metrics → 200 with $(grep -E '^stompgate_build_info\{' "$TMP/body")"

# What Kubernetes does in docs/deploy/: the app's preStop POSTs /drain, then
# (after the app has exited) the kubelet sends SIGTERM to the sidecar.
http_expect POST /drain 202
ok "POST /drain → 202"
http_expect GET /readyz 503 draining
http_expect GET /livez 200 ok
ok "while draining: /readyz → 503 draining, /livez → 200 (liveness never fails during a drain)"
kill -TERM "$PID"
t0=$SECONDS
rc=0
for _ in $(seq 1 450); do
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$PID" 2>/dev/null && fail "still running 45s after SIGTERM: $(tail -n5 "$TMP/run.log")"
wait "$PID" || rc=$?
PID=
[[ $rc == 0 ]] || fail "exit $rc after SIGTERM, want 0: $(tail -n5 "$TMP/run.log")"
ok "SIGTERM → exit 0 after $((SECONDS - t0))s"
grep -q '"msg":"stopped"' "$TMP/run.log" || fail "no 'stopped' log line: $(tail -n5 "$TMP/run.log")"

echo "image-check: PASS ($VERSION, $(go env GOOS)/$(go env GOARCH))"
