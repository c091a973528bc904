#!/usr/bin/env bash
# The main job: sets up a fresh machine (scripts/bootstrap.sh), then runs the
# handover demo in a network-namespace PMIPv6 testbed on the embedded default
# scenario. Needs root. Extra arguments go to `mcproxy-pmip-testbed run`
# (e.g. --mode static|plugin|context, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "demo: the testbed builds network namespaces and needs root (try: sudo bash scripts/demo.sh)" >&2
  exit 1
fi
bash scripts/bootstrap.sh
exec .venv/bin/mcproxy-pmip-testbed run "$@"
