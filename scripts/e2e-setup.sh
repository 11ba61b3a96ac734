#!/usr/bin/env bash
# Create or update the Python virtualenv for the end-to-end test in tests/e2e.
#
# The venv goes to $PORTCULLIS_VENV, by default ${CARGO_TARGET_DIR:-target}/e2e-venv
# (a relative path is taken from the repository root). Packages come from PyPI
# through pip, pinned in tests/e2e/requirements.txt. A stamp file in the venv
# stores the SHA-256 of the requirements file and the Python version, so a
# second run with nothing changed skips pip and returns in well under a second.
#
# Environment:
#   PORTCULLIS_VENV  venv directory (default: ${CARGO_TARGET_DIR:-target}/e2e-venv)
#   PYTHON           interpreter that creates the venv (default: python3)
#
# Prints the venv's absolute path, and nothing else, on stdout.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

venv="${PORTCULLIS_VENV:-${CARGO_TARGET_DIR:-target}/e2e-venv}"
python="${PYTHON:-python3}"
requirements="tests/e2e/requirements.txt"
stamp="$venv/.requirements.sha256"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "e2e-setup: Python interpreter '$python' not found; install CPython 3.11 or set PYTHON" >&2
    exit 1
fi

python_version="$("$python" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))')"
wanted_stamp="$(sha256sum "$requirements" | cut -d' ' -f1) python-$python_version"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted_stamp" ]]; then
    echo "e2e-setup: $venv is up to date" >&2
    (cd "$venv" && pwd)
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "e2e-setup: creating virtualenv $venv with Python $python_version" >&2
    "$python" -m venv "$venv" >&2
fi

echo "e2e-setup: installing $requirements into $venv" >&2
rm -f "$stamp"
# pip's output goes to stderr so that stdout carries only the venv path.
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet -r "$requirements" >&2
"$venv/bin/python" -m pip check >&2

echo "$wanted_stamp" >"$stamp"
(cd "$venv" && pwd)
