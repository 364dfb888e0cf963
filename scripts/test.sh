#!/usr/bin/env bash
# Installs everything (runtime, test tools) and runs the full test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
exec ${PYTHON:-python3} -m pytest "$@"
