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

cargo build --locked -p warden-cli
warden=target/debug/warden
for suite in policies/default docs/examples examples/agt; do
  if [ -d "$suite" ]; then
    echo "== warden policy test $suite"
    "$warden" policy test "$suite"
  fi
done
