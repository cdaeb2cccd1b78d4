#!/usr/bin/env bash
# What `make bench` needs besides Go: nginx from Debian (the reference proxy)
# and taskset (util-linux, to pin processes to CPUs). Idempotent: installs
# only what is missing, without starting the system nginx service.
set -euo pipefail

log() { printf 'bench/deps.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

SUDO=()
((EUID == 0)) || SUDO=(sudo)

pkg_installed() {
	[[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

PACKAGES=(nginx util-linux)
missing=()
for p in "${PACKAGES[@]}"; do
	pkg_installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
	command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
	log "installing ${missing[*]}"
	# Keep the package from starting nginx on :80.
	policy=/usr/sbin/policy-rc.d
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
		"${SUDO[@]}" chmod 755 "$policy"
		trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	"${SUDO[@]}" apt-get update -qq
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for bin in /usr/sbin/nginx taskset getconf; do
	command -v "$bin" >/dev/null || die "$bin not found"
done
command -v go >/dev/null || die "go not found"
((${#missing[@]})) || log "present: nginx $(dpkg-query -W -f='${Version}' nginx), taskset ($(dpkg-query -W -f='${Version}' util-linux))"
nproc=$(nproc)
((nproc >= 2)) || die "the benchmark pins the proxy and the client to two different CPUs: nproc is $nproc"
nofile=$(ulimit -n)
[[ $nofile == unlimited ]] || ((nofile >= 20000)) || log "warning: ulimit -n is $nofile; 9,900 idle sessions need 20,000 (or pass BENCH_FLAGS=-idle=N)"
