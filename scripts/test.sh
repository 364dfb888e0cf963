#!/usr/bin/env bash
# Installs everything (runtime, test tools) and runs the full test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
# Two workers (pytest-xdist) on the 2-core CI machine: much of the suite waits on subprocesses (the app, scan
# readers, DDP); tests that share a session fixture run on one worker (xdist_group marks, --dist loadgroup).
exec ${PYTHON:-python3} -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadgroup -p no:benchmark "$@"
