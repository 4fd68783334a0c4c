#!/usr/bin/env bash
# Run every check CI runs: lint (ruff, shellcheck), the layering contracts (import-linter,
# [tool.importlinter] in pyproject.toml), types (mypy), then the test suite: real Suricata,
# tshark and Mosquitto, doctests, and tests/system, which builds the Debian packages
# (amd64, and arm64 under qemu-user) and installs them on booted containers.
# `./scripts/check.sh -m "not system"` skips the latter (minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check sensor screen core tests bench image
shellcheck scripts/*.sh packaging/*.sh image/*.sh image/pi-gen/stage-veilleuse/prerun.sh image/pi-gen/stage-veilleuse/*/*.sh debian/veilleuse.postinst debian/veilleuse.postrm .ci/run
.venv/bin/lint-imports
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
