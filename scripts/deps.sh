#!/usr/bin/env bash
# Install what namegate's demo and tests need, idempotently: Debian packages that are missing,
# then npm packages (including the pinned Node.js) when package-lock.json changed.
# Usage: scripts/deps.sh [--test]   (--test also builds the upstream test binaries)
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package
declare -A PKGS=(
  [nft]=nftables [ip]=iproute2 [conntrack]=conntrack [dig]=dnsutils [kdig]=knot-dnsutils
  [knotd]=knot [nginx]=nginx-light [curl]=curl [openssl]=openssl [dnsperf]=dnsperf
  [dnsmasq]=dnsmasq-base [unbound]=unbound [iperf3]=iperf3 [ss]=iproute2 [nc]=netcat-openbsd
  [ping]=iputils-ping [haproxy]=haproxy [squid]=squid-openssl [tcpdump]=tcpdump
  # Commands the tests run themselves (the raw-socket escape case, process and sysctl checks),
  # and the load of `make soak-test`.
  [python3]=python3 [pgrep]=procps [sysctl]=procps [knsupdate]=knot-dnsutils [getent]=libc-bin
  [tar]=tar [stress-ng]=stress-ng
  # The lab's Kubernetes node (make test, make demo ARGS=--kubernetes) and the image builder.
  [containerd]=containerd [ctr]=containerd [runc]=runc [nsenter]=util-linux [unshare]=util-linux
  [dpkg-deb]=dpkg [gcc]=gcc
)
# check file -> Debian package (libraries and headers have no command to look for)
declare -A FILE_PKGS=(
  [/usr/include/nftables/libnftables.h]=libnftables-dev [/usr/bin/g++]=g++
  [/usr/lib/cni/bridge]=containernetworking-plugins [/usr/lib/x86_64-linux-gnu/libc.a]=libc6-dev
)
missing=()
for cmd in "${!PKGS[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ]; then missing+=("${PKGS[$cmd]}"); fi
done
for file in "${!FILE_PKGS[@]}"; do
  if ! [ -e "$file" ]; then missing+=("${FILE_PKGS[$file]}"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "deps: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # Packages that ship daemons must not start them: the lab and tests run their own instances.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

stamp=node_modules/.namegate-deps
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ ! -x node_modules/node/bin/node ]; then
  echo "deps: installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi

# The RE2 binding (HTTP path rules) for the pinned Node.js: npm builds it for the machine's Node.
scripts/build-re2.sh

# The libnftables addon of the datapath (build/nft.node); without it the driver spawns nft.
if [ -x scripts/build-addon.sh ]; then scripts/build-addon.sh; fi
# The SO_ORIGINAL_DST addon of the SNI proxy (build/sockopt.node); without it the proxy uses conntrack.
if [ -x scripts/build-sockopt-addon.sh ]; then scripts/build-sockopt-addon.sh; fi
# The NFLOG addon of kernel flow events (build/nflog.node); without it the agent reads them through tcpdump.
if [ -x scripts/build-nflog-addon.sh ]; then scripts/build-nflog-addon.sh; fi
# The dashboard page (build/dashboard), bundled with esbuild from web/dashboard; served by the agent.
node_modules/node/bin/node scripts/build-dashboard.ts

if [ "${1:-}" = "--test" ] && ! [ -x /usr/bin/chromium ]; then
  # The dashboard's browser tests drive Debian's Chromium (playwright-core never downloads one).
  echo "deps: installing Debian packages: chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if [ "${1:-}" = "--test" ] && [ -x scripts/build-test-bins.sh ]; then
  # kube-apiserver, etcd and helm for the Kubernetes tests; the node's binaries, CoreDNS (its
  # cluster DNS, and `make bench`'s peer) and pause for the lab's Kubernetes node (test/cluster).
  scripts/build-test-bins.sh kube-apiserver etcd helm kubelet kube-controller-manager kube-scheduler \
    kube-proxy coredns pause >/dev/null
  # AWS and Google request models for the sync tests (botocore, the Compute discovery document).
  scripts/cloud-models.sh
fi
