#!/usr/bin/env bash
# Creates (once) the Python environment the driver tests use: asyncpg and psycopg 3 from PyPI.
# Idempotent and quick when everything is present. Called by .ci/run and by the test suite.
# Prints the path of the environment's python on its last line.
set -euo pipefail
VENV="${PGTIDE_PY_VENV:-/var/cache/pgtide-venv}"
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "drivers: installing python3 and venv" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >&2
fi
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >&2
fi
if ! "$VENV/bin/python" -c 'import asyncpg, psycopg' >/dev/null 2>&1; then
    echo "drivers: pip install asyncpg psycopg[binary] into $VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check 'asyncpg>=0.29' 'psycopg[binary]>=3.1' >&2
fi
echo "$VENV/bin/python"
