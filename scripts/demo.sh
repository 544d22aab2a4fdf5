#!/usr/bin/env bash
# The demo: build the lab (pods, a node running the namegate agent, a fake internet with a real
# authoritative DNS server and TLS web servers, all in network namespaces), run the tour with
# the example policies, then follow the agent's DNS decisions until Ctrl-C.
#   scripts/demo.sh            tour, then follow the flow log; Ctrl-C removes the lab
#   scripts/demo.sh --once     tour only, then remove the lab (exit code: did every check match?)
#   scripts/demo.sh --keep     like the default, but leave the lab up afterwards
#   scripts/demo.sh --kubernetes  the node is a real one-node Kubernetes cluster: namegate is
#                              installed with helm from its image, the pods are real pods
#                              (combines with --once and --keep)
set -euo pipefail
cd "$(dirname "$0")/.."
once=false
keep=false
kubernetes=()
for arg in "$@"; do
  case "$arg" in
    --once) once=true ;;
    --keep) keep=true ;;
    --kubernetes) kubernetes=(--kubernetes) ;;
    *) echo "demo: unknown option $arg (use --once, --keep or --kubernetes)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (it creates network namespaces and nftables tables inside them)" >&2
  exit 2
fi
N=bin/namegate
NAME=demo

cleanup() {
  if ! $keep; then
    echo
    $N lab down --name "$NAME" >/dev/null 2>&1 || true
    echo "lab $NAME removed"
  else
    echo "lab $NAME is still up: 'bin/namegate lab exec --name $NAME payments-api -- curl ...', 'bin/namegate lab down --name $NAME'"
  fi
}
trap cleanup EXIT

echo "== namegate demo: the policies"
$N validate examples/
echo
if [ ${#kubernetes[@]} -gt 0 ]; then
  echo "== building the lab as a Kubernetes node; helm install namegate; the workloads and policies"
  scripts/build-test-bins.sh etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns pause helm >/dev/null
else
  echo "== building the lab and starting the agent"
fi
$N lab up --name "$NAME" --agent --policies examples/ "${kubernetes[@]}"
echo
echo "== the tour: each pod tries to reach names its policies allow and deny"
status=0
$N lab tour --name "$NAME" || status=$?
if $once; then
  exit "$status"
fi
echo
echo "== the agent's DNS decisions so far, then new ones as they happen (Ctrl-C ends the demo)"
echo "   try: bin/namegate lab exec --name $NAME payments-api -- curl -s https://api.stripe.com/"
$N lab flows --name "$NAME" --follow || true
