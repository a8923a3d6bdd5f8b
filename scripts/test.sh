#!/usr/bin/env bash
# Runs every test: Rust unit/integration/doc tests, then the shipped policy
# packs' own tests and the documentation examples through the `warden` CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked

# The PostgreSQL audit store (feature-gated; needs the local PostgreSQL that
# scripts/services.sh starts).
cargo test --locked -p warden-audit --features postgres
cargo test --locked -p warden-kernel --features postgres --test pg
cargo test --locked -p warden-server --features postgres --test pg
cargo test --locked -p warden-identity --features postgres --test trust_pg
cargo test --locked -p warden-server --features postgres --test trust_pg

cargo build --locked -p warden-cli
warden=target/debug/warden
for suite in policies/default docs/examples examples/agt; do
  if [ -d "$suite" ]; then
    echo "== warden policy test $suite"
    "$warden" policy test "$suite"
  fi
done

# MCP gateway (warden-mcp; its Rust tests ran above in the workspace run):
# the npm reference servers behind `warden mcp`, driven by the Python `mcp`
# client. tests/mcp/setup.sh installs the pinned node and Python packages.
echo "== MCP gateway: real-world servers"
bash tests/mcp/setup.sh
WARDEN="$warden" target/venv-mcp/bin/python tests/mcp/test_realworld.py

# Identity (warden-identity; its Rust tests ran above in the workspace run):
# did:key ids and EdDSA JWS checked against Python `cryptography` (pinned in
# scripts/crossimpl/requirements.txt, venv in target/venv-crossimpl), both
# directions, through the `warden` CLI.
echo "== identity: cross-implementation check"
bash scripts/crossimpl/run.sh

# Python package `warden` (bindings/python; PyO3 + maturin): builds the wheel
# with CARGO_TARGET_DIR=target/py, installs it with the pinned framework
# versions (bindings/python/requirements-test.txt) in target/venv-py and runs
# pytest: kernel API, govern(), LangChain/LangGraph, OpenAI Agents SDK and
# CrewAI scenarios with scripted models, RemoteKernel against `warden serve`.
echo "== Python bindings"
WARDEN_BIN="$warden" bash bindings/python/ci.sh
