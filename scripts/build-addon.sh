#!/usr/bin/env bash
# Build the libnftables Node-API addon (native/nft) into build/nft.node with g++ directly: the
# headers come from the npm package node-api-headers, so nothing is downloaded at build time.
# Idempotent: rebuilds only when the source or this script is newer than the output.
# Without libnftables-dev or g++ it warns and exits 0: the datapath then falls back to `nft -f -`.
set -euo pipefail
cd "$(dirname "$0")/.."

src=native/nft/nft.cc
out=build/nft.node
headers=node_modules/node-api-headers/include

if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$0" ]; then exit 0; fi
if ! command -v g++ >/dev/null 2>&1 || [ ! -f /usr/include/nftables/libnftables.h ] || [ ! -d "$headers" ]; then
  echo "build-addon: g++, libnftables-dev or node-api-headers missing; the datapath will spawn nft instead" >&2
  exit 0
fi
mkdir -p build
tmp="$out.tmp.$$"
g++ -std=c++17 -O2 -Wall -Wextra -shared -fPIC -DNODE_GYP_MODULE_NAME=nft -I "$headers" "$src" -lnftables -o "$tmp"
mv -f "$tmp" "$out"
echo "build-addon: built $out" >&2
