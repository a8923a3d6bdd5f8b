#!/usr/bin/env bash
# Cross-implementation check of Warden's identity layer against Python's
# `cryptography` (pinned in requirements.txt), both directions, through the
# `warden` CLI. Creates a venv in target/venv-crossimpl on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/venv-crossimpl
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/crossimpl/requirements.txt

cargo build --locked -p warden-cli
"$venv/bin/python" scripts/crossimpl/identity_check.py target/debug/warden
