#!/usr/bin/env bash
# Installs what the real-world MCP tests need, at pinned versions:
#   tests/mcp/node_modules  <- package.json + package-lock.json (npm ci)
#   target/venv-mcp         <- requirements.txt (the Python `mcp` client)
# Idempotent: re-running only reinstalls when the pins changed.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.warden-lock-stamp; then
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.warden-lock-stamp
fi

venv="$root/target/venv-mcp"
if [ ! -x "$venv/bin/python" ] || ! cmp -s requirements.txt "$venv/.warden-requirements-stamp"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
  cp requirements.txt "$venv/.warden-requirements-stamp"
fi
