#!/usr/bin/env bash
# Set up .venv if needed, then lint and run the whole test suite (real Chroma, real model).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
