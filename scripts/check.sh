#!/usr/bin/env bash
# Run every check CI runs: lint, then the test suite (real Suricata, tshark; doctests).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check sensor screen core tests bench
.venv/bin/python -m pytest "$@"
