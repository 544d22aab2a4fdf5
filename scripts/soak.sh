#!/usr/bin/env bash
# `make soak-test`: the integration and Kubernetes suites SOAK_ROUNDS times in a row (default 5)
# while stress-ng keeps every core busy. Any failed test fails the run; each round prints one
# summary line, and the whole run ends with one (record it in docs/testing.md).
#
#   SOAK_ROUNDS=5        rounds
#   SOAK_FILES='...'     test files or globs instead of both suites (a short check of the target)
#   SOAK_ROUND_MAX=5400  seconds: stress-ng's own bound for one round (it never outlives a round)
#   SOAK_LOGS=build/soak each round's full test output: round-N.log
#
# Runs as root with CI=true, so a missing tool fails the round instead of skipping suites.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${SOAK_ROUNDS:-5}
files=${SOAK_FILES:-'test/integration/**/*.test.ts test/k8s/**/*.test.ts'}
round_max=${SOAK_ROUND_MAX:-5400}
logs=${SOAK_LOGS:-build/soak}
node=node_modules/node/bin/node
cores=$(nproc)

command -v stress-ng >/dev/null || { echo "soak: stress-ng missing (scripts/deps.sh installs it)" >&2; exit 2; }
mkdir -p "$logs"

stress_pid=''
stop_stress() {
  if [ -n "$stress_pid" ]; then
    kill "$stress_pid" 2>/dev/null || true
    wait "$stress_pid" 2>/dev/null || true
    stress_pid=''
  fi
}
trap stop_stress EXIT
trap 'stop_stress; exit 130' INT TERM

# The spec reporter's closing counters ("ℹ pass 12"): one number, 0 when absent.
count() { grep -aE "^ℹ $1 [0-9]+$" "$2" | tail -1 | awk '{print $3}' || true; }

failed_rounds=0
started=$(date +%s)
read -r -a globs <<<"$files"
for ((round = 1; round <= rounds; round++)); do
  log="$logs/round-$round.log"
  # Every core at full load, bounded in time by stress-ng itself as well as by this script.
  stress-ng --cpu "$cores" --cpu-load 100 --timeout "${round_max}s" --quiet &
  stress_pid=$!
  t0=$(date +%s)
  rc=0
  CI=true "$node" --test --test-concurrency=1 --test-reporter=spec "${globs[@]}" >"$log" 2>&1 || rc=$?
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  stop_stress
  pass=$(count pass "$log")
  fail=$(count fail "$log")
  skipped=$(count skipped "$log")
  [ "$rc" -ne 0 ] && failed_rounds=$((failed_rounds + 1))
  printf 'soak round %d/%d: %s pass=%s fail=%s skipped=%s seconds=%d load=%s cores=%d log=%s\n' \
    "$round" "$rounds" "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)" "${pass:-0}" "${fail:-0}" \
    "${skipped:-0}" "$(($(date +%s) - t0))" "$load" "$cores" "$log"
  if [ "$rc" -ne 0 ]; then grep -aE "^not ok|✖" "$log" | head -20 >&2 || true; fi
done
printf 'soak: %d of %d rounds failed, %d s, %s, %s, files: %s\n' "$failed_rounds" "$rounds" \
  "$(($(date +%s) - started))" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$files"
[ "$failed_rounds" -eq 0 ]
