#!/usr/bin/env bash
# The cloud API models the sync tests validate request files against (no cloud is called):
#   - AWS: botocore's request models (EC2, Network Firewall) from Debian's python3-botocore;
#   - Google Cloud: the Compute discovery document shipped in the google-api-python-client
#     wheel (PyPI; Debian's python3-googleapi is too old to ship discovery documents), pinned.
# Idempotent; prints nothing when everything is in place.
#   scripts/cloud-models.sh             install what is missing
#   scripts/cloud-models.sh --print     print botocore=DIR and compute=FILE
set -euo pipefail

GAPI_VERSION=2.202.0
CACHE=${NAMEGATE_MODEL_CACHE:-$HOME/.cache/namegate/models}
BOTOCORE=/usr/lib/python3/dist-packages/botocore/data
COMPUTE=$CACHE/google-api-python-client-$GAPI_VERSION/compute.v1.json

if [ "${1:-}" = "--print" ]; then
  echo "botocore=$BOTOCORE"
  echo "compute=$COMPUTE"
  exit 0
fi

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ ! -d "$BOTOCORE/ec2" ] || [ ! -d "$BOTOCORE/network-firewall" ]; then
  echo "cloud-models: installing python3-botocore (Debian)" >&2
  apt_install python3-botocore
fi

if [ ! -s "$COMPUTE" ]; then
  echo "cloud-models: fetching google-api-python-client $GAPI_VERSION (PyPI) for compute.v1.json" >&2
  if ! python3 -m pip --version >/dev/null 2>&1; then apt_install python3-pip; fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "google-api-python-client==$GAPI_VERSION"
  mkdir -p "$(dirname "$COMPUTE")"
  python3 - "$tmp" "$COMPUTE" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + '/*.whl')[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read('googleapiclient/discovery_cache/documents/compute.v1.json')
with open(sys.argv[2] + '.tmp', 'wb') as f:
    f.write(data)
PY
  mv "$COMPUTE.tmp" "$COMPUTE"
fi
