#!/usr/bin/env bash
# The test command: sets up a fresh machine (scripts/bootstrap.sh), then runs
# the whole suite. Extra arguments go to pytest (e.g. -k wire, -m "not netns").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
