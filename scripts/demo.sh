#!/usr/bin/env bash
# The guided demo. Until the lab exists it walks through `namegate check` on examples/.
set -euo pipefail
cd "$(dirname "$0")/.."
N=bin/namegate
run() { echo; echo "\$ namegate $*"; $N "$@" || true; }
run validate examples/
run check --policy examples --namespace payments --labels app=payments-api --name api.stripe.com --port 443
run check --policy examples --namespace payments --labels app=payments-api --name api.stripe.com --port 80 --explain
run check --policy examples --namespace payments --labels app=payments-api --name evil.example.com
run check --policy examples --namespace ci --labels role=runner --name objects.githubusercontent.com --explain
run check --policy examples --namespace web --namespace-labels egress-audit=on --name example.org --json
