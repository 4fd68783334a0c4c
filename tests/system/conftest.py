"""Fixtures for the installed-system tests: the built packages and root file systems."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tests.system.booted import REPO


def _require_root_and_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        unavailable("the installed-system tests need root (nspawn, mmdebstrap)")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed (scripts/setup.sh installs them)")


@functools.cache
def built_package(arch: str) -> Path:
    """dist/veilleuse_*_ARCH.deb: $VEILLEUSE_DEB_<ARCH> if set, else built now (once a run)."""
    given = os.environ.get(f"VEILLEUSE_DEB_{arch.upper()}")
    if given:
        return Path(given)
    _require_root_and_tools("mmdebstrap", "systemd-nspawn", "dpkg-deb")
    result = subprocess.run([str(REPO / "scripts" / "build-deb.sh"), arch],
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        pytest.fail(f"scripts/build-deb.sh {arch} failed:\n{result.stdout[-3000:]}\n"
                    f"{result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def system_tools() -> None:
    _require_root_and_tools("mmdebstrap", "systemd-nspawn", "nsenter", "tcpreplay", "tcpdump")
