#!/usr/bin/env bash
# Build the SO_ORIGINAL_DST Node-API addon (native/sockopt) into build/sockopt.node with g++
# directly: the headers come from the npm package node-api-headers, so nothing is downloaded.
# Idempotent: rebuilds only when the source or this script is newer than the output.
# Without g++ it warns and exits 0: the SNI proxy then reads original destinations through the
# conntrack tool (proxy.originalDst: auto), or closes redirected connections.
set -euo pipefail
cd "$(dirname "$0")/.."

src=native/sockopt/sockopt.cc
out=build/sockopt.node
headers=node_modules/node-api-headers/include

if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$0" ]; then exit 0; fi
if ! command -v g++ >/dev/null 2>&1 || [ ! -d "$headers" ]; then
  echo "build-sockopt-addon: g++ or node-api-headers missing; the SNI proxy will use conntrack instead" >&2
  exit 0
fi
mkdir -p build
tmp="$out.tmp.$$"
g++ -std=c++17 -O2 -Wall -Wextra -shared -fPIC -DNODE_GYP_MODULE_NAME=sockopt -I "$headers" "$src" -o "$tmp"
mv -f "$tmp" "$out"
echo "build-sockopt-addon: built $out" >&2
