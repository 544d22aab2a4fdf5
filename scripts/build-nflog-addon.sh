#!/usr/bin/env bash
# Build the NFLOG Node-API addon (native/nflog) into build/nflog.node with g++ directly: the
# Node-API headers come from the npm package node-api-headers, the netlink ones from the kernel
# headers (linux-libc-dev), so nothing is downloaded at build time. Idempotent.
# Without g++ it warns and exits 0: the agent then reads NFLOG through tcpdump, or not at all.
set -euo pipefail
cd "$(dirname "$0")/.."

src=native/nflog/nflog.cc
out=build/nflog.node
headers=node_modules/node-api-headers/include

if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$0" ]; then exit 0; fi
if ! command -v g++ >/dev/null 2>&1 || [ ! -d "$headers" ] || [ ! -f /usr/include/linux/netfilter/nfnetlink_log.h ]; then
  echo "build-nflog-addon: g++, kernel headers or node-api-headers missing; kernel flow events will use tcpdump" >&2
  exit 0
fi
mkdir -p build
tmp="$out.tmp.$$"
g++ -std=c++17 -O2 -Wall -Wextra -shared -fPIC -pthread -DNODE_GYP_MODULE_NAME=nflog -I "$headers" "$src" -o "$tmp"
mv -f "$tmp" "$out"
echo "build-nflog-addon: built $out" >&2
