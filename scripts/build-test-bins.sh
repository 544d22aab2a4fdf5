#!/usr/bin/env bash
# Build upstream test binaries (kube-apiserver, etcd, helm, coredns) from the Go
# modules pinned in tools/*/go.mod, and cache them outside the repository.
#
#   scripts/build-test-bins.sh [kube-apiserver|etcd|helm|coredns|all]...  (default: all)
#       Builds what is missing and prints `name=path` for each binary on stdout.
#   scripts/build-test-bins.sh --print-path NAME
#       Prints the cached path of NAME; exits 1 (path still printed) if it is not built.
#   scripts/build-test-bins.sh --pin NAME VERSION
#       Regenerates the tools module of NAME (go.mod + go.sum) for VERSION.
#       `--pin kube-apiserver v1.34.12` also pins etcd to k8s's etcd client version.
#
# Cache: ${NAMEGATE_BIN_CACHE:-$HOME/.cache/namegate/bin}/<name>-<version>/<name>
# The versions come from tools/*/go.mod only. See tools/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$ROOT/tools
CACHE=${NAMEGATE_BIN_CACHE:-$HOME/.cache/namegate/bin}
ALL=(etcd kube-apiserver helm coredns kubelet kube-controller-manager kube-scheduler kube-proxy pause)
# The Kubernetes commands built from tools/k8s (one module, one k8s.io/kubernetes version).
K8S_CMDS=(kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy)
export GOWORK=off

die() { echo "build-test-bins: $*" >&2; exit 1; }
log() { echo "build-test-bins: $*" >&2; }

# spec NAME -> sets DIR (tools subdir), MOD (module whose version names the binary), PKG
spec() {
  case $1 in
    kube-apiserver | kubelet | kube-controller-manager | kube-scheduler | kube-proxy)
      DIR=k8s MOD=k8s.io/kubernetes PKG=k8s.io/kubernetes/cmd/$1 ;;
    etcd) DIR=k8s MOD=go.etcd.io/etcd/server/v3 PKG=go.etcd.io/etcd/server/v3 ;;
    helm) DIR=helm MOD=helm.sh/helm/v3 PKG=helm.sh/helm/v3/cmd/helm ;;
    coredns) DIR=coredns MOD=github.com/coredns/coredns PKG=github.com/coredns/coredns ;;
    # Not Go: the pod sandbox's pause program, C from the same k8s.io/kubernetes module.
    pause) DIR=k8s MOD=k8s.io/kubernetes PKG=k8s.io/kubernetes/build/pause/linux/pause.c ;;
    *) die "unknown binary '$1' (expected one of: ${ALL[*]} all)" ;;
  esac
}

# modversion GOMOD MODULE -> the version MODULE is required at (not replace lines).
modversion() {
  awk -v m="$2" '
    $1 == "require" && $2 == m { print $3; exit }
    $1 == m && $2 ~ /^v/ && $3 != "=>" { print $2; exit }' "$1"
}

# binpath NAME -> sets DIR MOD PKG VER OUT
binpath() {
  spec "$1"
  [[ -f $TOOLS/$DIR/go.mod ]] || die "missing $TOOLS/$DIR/go.mod"
  VER=$(modversion "$TOOLS/$DIR/go.mod" "$MOD")
  [[ -n $VER ]] || die "$MOD is not required in $TOOLS/$DIR/go.mod"
  OUT=$CACHE/$1-$VER/$1
}

# modinfo MODULE@VERSION FIELD -> a string field of `go list -m -json` (empty if absent):
# GoMod (downloaded go.mod path), Time (tag time), Hash (commit, when the proxy knows it).
modinfo() {
  { (cd "$TOOLS" && go list -m -json "$1" 2>/dev/null) || true; } |
    sed -n "/^[[:space:]]*\"$2\": \"/{s/^[[:space:]]*\"$2\": \"\(.*\)\",\{0,1\}$/\1/p;q;}"
}

build() {
  local name=$1
  binpath "$name"
  if [[ -x $OUT ]]; then
    echo "$name=$OUT"
    return
  fi
  command -v go >/dev/null || die "go is not on PATH"
  mkdir -p "${OUT%/*}"
  # Serialise concurrent callers building the same binary, then re-check.
  local lockfd
  exec {lockfd}>"${OUT%/*}/.lock"
  flock "$lockfd"
  if [[ -x $OUT ]]; then
    exec {lockfd}>&-
    echo "$name=$OUT"
    return
  fi

  if [[ $name == pause ]]; then
    build_pause
    exec {lockfd}>&-
    echo "$name=$OUT"
    return
  fi
  log "building $name $VER (first time takes several minutes)…"
  local start=$SECONDS commit date
  local -a ldflags=(-s -w) tags=()
  commit=$(modinfo "$MOD@$VER" Hash)
  case $name in
    kube-apiserver | kubelet | kube-controller-manager | kube-scheduler | kube-proxy)
      # Same -X variables as kubernetes hack/lib/version.sh; buildDate is the tag's
      # commit time so the build is reproducible.
      local minor=${VER#v1.}
      minor=${minor%%.*}
      date=$(modinfo "$MOD@$VER" Time)
      local pkgv
      for pkgv in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=(-X "$pkgv.gitVersion=$VER" -X "$pkgv.gitMajor=1" -X "$pkgv.gitMinor=$minor"
          -X "$pkgv.buildDate=${date:-1970-01-01T00:00:00Z}" -X "$pkgv.gitTreeState=clean")
        [[ -z $commit ]] || ldflags+=(-X "$pkgv.gitCommit=$commit")
      done
      tags=("-tags=selinux,notest,grpcnotrace")
      ;;
    etcd)
      [[ -z $commit ]] || ldflags+=(-X "go.etcd.io/etcd/api/v3/version.GitSHA=${commit:0:7}")
      ;;
    helm)
      # As helm's Makefile: version, and the default Capabilities.KubeVersion from client-go.
      local cg kmaj kmin
      cg=$(modversion "$TOOLS/$DIR/go.mod" k8s.io/client-go)
      cg=${cg#v}
      kmaj=$((${cg%%.*} + 1))
      kmin=${cg#*.}
      kmin=${kmin%%.*}
      ldflags+=(-X "helm.sh/helm/v3/internal/version.version=$VER"
        -X "helm.sh/helm/v3/internal/version.gitTreeState=clean"
        -X "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$kmaj"
        -X "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kmin"
        -X "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$kmaj"
        -X "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kmin")
      [[ -z $commit ]] || ldflags+=(-X "helm.sh/helm/v3/internal/version.gitCommit=$commit")
      ;;
    coredns)
      [[ -z $commit ]] || ldflags+=(-X "github.com/coredns/coredns/coremain.GitCommit=$commit")
      ;;
  esac

  local tmp
  tmp=$(mktemp "$OUT.tmp.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -f '$tmp'" EXIT
  (cd "$TOOLS/$DIR" &&
    CGO_ENABLED=0 go build -mod=readonly -trimpath "${tags[@]}" -ldflags "${ldflags[*]}" -o "$tmp" "$PKG")
  chmod 0755 "$tmp"
  mv -f "$tmp" "$OUT"
  trap - EXIT
  exec {lockfd}>&-
  log "built $name $VER in $((SECONDS - start)) s"
  echo "$name=$OUT"
}

# build_pause: pause.c of the k8s.io/kubernetes module, as its build/pause/Makefile builds it
# (static, -Os, VERSION from the Makefile's TAG), into $OUT. Needs gcc and libc6-dev (libc.a).
build_pause() {
  local dir tag tmp
  command -v gcc >/dev/null || die "gcc is not installed (Debian: gcc, libc6-dev)"
  dir=$(cd "$TOOLS/k8s" && go mod download -json "$MOD@$VER" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f $dir/build/pause/linux/pause.c ]] || die "no build/pause/linux/pause.c in $MOD@$VER"
  tag=$(awk '$1 == "TAG" && $2 == "?=" { print $3; exit }' "$dir/build/pause/Makefile")
  [[ -n $tag ]] || die "no TAG in $dir/build/pause/Makefile"
  tmp=$(mktemp "$OUT.tmp.XXXXXX")
  gcc -Os -Wall -Werror -static "-DVERSION=v$tag" -o "$tmp" "$dir/build/pause/linux/pause.c"
  strip "$tmp"
  chmod 0755 "$tmp"
  mv -f "$tmp" "$OUT"
  echo "$tag" >"${OUT%/*}/pause.version"
  log "built pause v$tag from $MOD@$VER"
}

# pin_module SUBDIR MODULE@VERSION TOOLPKG... : regenerate tools/SUBDIR from scratch,
# with the go/godebug lines of MODULE's go.mod and, for k8s, the staging replaces.
pin_module() {
  local sub=$1 modver=$2
  shift 2
  local mod=${modver%@*} ver=${modver#*@} work upstream goline godebug
  work=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  upstream=$(modinfo "$modver" GoMod)
  [[ -n $upstream && -f $upstream ]] || die "cannot download $modver from the Go module proxy"
  goline=$(awk '$1 == "go" { print $2; exit }' "$upstream")
  godebug=$(awk '$1 == "godebug" && $2 != "(" { print $2; exit }' "$upstream")
  {
    echo "// Generated by: scripts/build-test-bins.sh --pin ... ($modver). See tools/README.md."
    echo "module namegate.invalid/tools/$sub"
    echo
    echo "go $goline"
    [[ -z $godebug ]] || printf '\ngodebug %s\n' "$godebug"
    if [[ $mod == k8s.io/kubernetes ]]; then
      # k8s.io/kubernetes requires its staging repos at v0.0.0 and replaces them with
      # ./staging/...; consumers ignore that replace, so map each to its published v0.Y.Z.
      local m staging
      staging=$(awk '$1 ~ /^k8s\.io\/[a-z0-9-]+$/ && $2 == "v0.0.0" && NF == 2 { print $1 }' "$upstream" | sort -u)
      [[ -n $staging ]] || die "no v0.0.0 staging requirements found in $upstream"
      printf '\n// Staging modules of k8s.io/kubernetes %s, generated from its go.mod.\nreplace (\n' "$ver"
      for m in $staging; do printf '\t%s => %s v0.%s\n' "$m" "$m" "${ver#v1.}"; done
      echo ")"
    fi
  } >"$work/go.mod"
  local -a gets=()
  local p
  for p in "$@"; do gets+=("$p"); done
  (cd "$work" && go get -tool "${gets[@]}" >&2 && go mod tidy >&2 && go mod verify >&2)
  mkdir -p "$TOOLS/$sub"
  cp "$work/go.mod" "$TOOLS/$sub/go.mod"
  cp "$work/go.sum" "$TOOLS/$sub/go.sum"
  rm -rf "$work"
  trap - EXIT
  log "wrote $TOOLS/$sub/go.mod and go.sum"
}

pin() {
  local name=$1 ver=$2 etcdver
  [[ $ver == v* ]] || ver=v$ver
  case $name in
    kube-apiserver)
      local kmod
      kmod=$(modinfo "k8s.io/kubernetes@$ver" GoMod)
      [[ -n $kmod ]] || die "cannot download k8s.io/kubernetes@$ver"
      # etcd server = the etcd client version kube-apiserver compiles against. k8s.io/kubernetes
      # itself requires this server version, so sharing the module changes nothing for kube-apiserver.
      etcdver=$(modversion "$kmod" go.etcd.io/etcd/client/v3)
      local -a cmds=()
      local c
      for c in "${K8S_CMDS[@]}"; do cmds+=("k8s.io/kubernetes/cmd/$c@$ver"); done
      pin_module k8s "k8s.io/kubernetes@$ver" "${cmds[@]}" "go.etcd.io/etcd/server/v3@$etcdver"
      local got
      got=$(modversion "$TOOLS/k8s/go.mod" go.etcd.io/etcd/client/v3)
      [[ $got == "$etcdver" ]] || die "etcd client moved from $etcdver to $got; put etcd in its own module"
      ;;
    etcd) die "etcd follows kube-apiserver (same module, k8s's etcd client version); pin kube-apiserver" ;;
    helm) pin_module helm "helm.sh/helm/v3@$ver" "helm.sh/helm/v3/cmd/helm@$ver" ;;
    coredns) pin_module coredns "github.com/coredns/coredns@$ver" "github.com/coredns/coredns@$ver" ;;
    *) spec "$name" ;;
  esac
}

main() {
  case ${1:-} in
    --print-path)
      [[ $# -eq 2 ]] || die "usage: $0 --print-path NAME"
      binpath "$2"
      echo "$OUT"
      [[ -x $OUT ]] || { log "$2 $VER is not built; run $0 $2"; exit 1; }
      return
      ;;
    --pin)
      [[ $# -eq 3 ]] || die "usage: $0 --pin NAME VERSION"
      pin "$2" "$3"
      return
      ;;
    -h | --help)
      sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
      return
      ;;
  esac
  local -a names=()
  local a
  [[ $# -gt 0 ]] || set -- all
  for a in "$@"; do
    if [[ $a == all ]]; then names+=("${ALL[@]}"); else spec "$a" && names+=("$a"); fi
  done
  # One at a time: these builds need all the cores and 1-3 GB each.
  for a in "${names[@]}"; do build "$a"; done
}

main "$@"
