"""The shipped systemd units stay hardened: `systemd-analyze security` exposure at most 2.0."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO, require_tool

UNITS = sorted((REPO / "config" / "systemd").glob("*.service"))


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_unit_exposure_is_at_most_2(unit) -> None:
    analyze = require_tool("systemd-analyze")
    result = subprocess.run([analyze, "security", "--offline=true", str(unit)],
                            capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout


def test_the_sensor_unit_is_a_notify_service_with_a_watchdog() -> None:
    text = (REPO / "config" / "systemd" / "veilleuse.service").read_text()
    for line in ("Type=notify", "WatchdogSec=30", "User=veilleuse",
                 "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN", "ProtectSystem=strict"):
        assert line in text
