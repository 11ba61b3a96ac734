#!/usr/bin/env bash
# Runs every test: the Rust suite (unit, integration, property and process
# tests), then the end-to-end test of the langsmith Python SDK through the
# gateway. Installs the SDK's virtual environment from PyPI on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

cargo test --all-targets

cargo build --bin portcullis
bash scripts/e2e-setup.sh
venv="${PORTCULLIS_VENV:-$CARGO_TARGET_DIR/e2e-venv}"
PORTCULLIS_BIN="$CARGO_TARGET_DIR/debug/portcullis" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/e2e
