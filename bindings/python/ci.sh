#!/usr/bin/env bash
# Python bindings CI: a venv under target/venv-py with the pinned test
# dependencies, the `warden` wheel built by maturin, then pytest.
#
# Cargo artefacts of the wheel build go to target/py (CARGO_TARGET_DIR), so
# they neither fight other builds over the shared target lock nor get rebuilt
# when the workspace's debug builds change. The scripted-framework tests need
# no network and no LLM; tests/test_remote.py starts the `warden` binary
# (WARDEN_BIN, default target/debug/warden, built here if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
venv="$root/target/venv-py"
export CARGO_TARGET_DIR="$root/target/py"
build_profile=(--release)
# Under CI nothing competes for the target lock: build the wheel in the
# workspace's own target dir with the dev profile, reusing the dependencies
# `cargo test --workspace` just compiled instead of building them all again
# in release (the tests do not time anything; bench.py wants --release).
if [ "${CI:-}" = true ]; then
  export CARGO_TARGET_DIR="$root/target"
  build_profile=()
fi
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# Reinstall only when the pins changed (the pip cache makes a cold install a few minutes).
stamp="$venv/.requirements-test.sha256"
want=$(sha256sum bindings/python/requirements-test.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r bindings/python/requirements-test.txt
  echo "$want" > "$stamp"
fi

echo "== maturin build (bindings/python)"
rm -rf "$CARGO_TARGET_DIR/wheels"
"$venv/bin/maturin" build "${build_profile[@]}" --locked -m bindings/python/Cargo.toml -o "$CARGO_TARGET_DIR/wheels"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$CARGO_TARGET_DIR"/wheels/warden-*.whl

export WARDEN_BIN=${WARDEN_BIN:-$root/target/debug/warden}
if [ ! -x "$WARDEN_BIN" ]; then
  cargo build --locked -p warden-cli --target-dir "$root/target"
fi
WARDEN_BIN=$(realpath "$WARDEN_BIN")  # pytest runs from bindings/python
export WARDEN_REQUIRE_SERVER=1

echo "== pytest (bindings/python)"
cd bindings/python
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
