#!/usr/bin/env bash
# Create .venv/ in the repository root and install pointcanon with the pinned tested environment
# (requirements.lock; pyproject.toml declares only lower bounds).
# Idempotent: re-runs pip only when pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Open3D (the "mesh" extra) loads the system library libusb-1.0 at import: install it when missing.
# Failure is only a warning: everything but the Open3D code paths works without it (their tests skip).
if ! "$PY" -c 'import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library("usb-1.0") else 1)' 2>/dev/null; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
    export DEBIAN_FRONTEND=noninteractive
    if ! { $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 \
           || { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1; }; }; then
      echo "warning: could not install libusb-1.0-0 (needed by Open3D): run 'apt-get install libusb-1.0-0' as root;" \
           "Open3D features and tests are skipped until then" >&2
    fi
  else
    echo "warning: libusb-1.0 not found and no apt-get: install libusb-1.0 with your package manager for Open3D" >&2
  fi
fi
stamp=.venv/.pointcanon-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # the tested environment, pinned; then pointcanon itself (its declared ranges are checked, nothing changes)
  .venv/bin/python -m pip install --quiet -r requirements.lock
  .venv/bin/python -m pip install --quiet -e ".[dev,sam,mesh,pyg,docs]"
  echo "$want" > "$stamp"
fi
