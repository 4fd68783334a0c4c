"""Sample states for the documentation pictures and the golden-image tests.

Fictitious data (the demo app, pseudonymous devices, documentation addresses).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from screen.model import AlertLine, ScreenState, SensorReport
from screen.pages import NetworkInfo, Page, View

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp()
NETWORK = NetworkInfo("veilleuse-box1", ("192.168.10.2", "fd00::2"))
RECENT = (
    AlertLine("a1", "high", "domain", "DemoSpy", "dev-3f1c0a9b2e41", NOON - 600),
    AlertLine("a2", "medium", "watchware", "KidWatch Demo", "dev-77d20e5a11c3", NOON - 3000),
)
_COUNTERS = (("alerts_high", 1), ("alerts_medium", 1), ("delivered", 2), ("pending", 0))
_FEEDS = (("echap-stalkerware", "6052636f093dce2d"), ("echap-watchware", "e1e54f8bcd762aa6"))
_OK = SensorReport(health="ok", online=True, time=NOON,
                   counters=(("delivered", 0), ("pending", 0)), feeds=_FEEDS)
_BASE = ScreenState(sensors=(("shelter-a/box1", _OK),), broker_connected=True)
_ALERT = dataclasses.replace(
    _BASE, sensors=(("shelter-a/box1", dataclasses.replace(_OK, health="alert",
                                                           counters=_COUNTERS)),),
    recent=RECENT, alert_since=NOON - 3000)


def _one(report: SensorReport) -> ScreenState:
    return dataclasses.replace(_BASE, sensors=(("shelter-a/box1", report),))


def samples() -> dict[str, tuple[ScreenState, View]]:
    """name -> (state, view) for every state and page a person may see."""
    return {
        "starting": (ScreenState(), View()),
        "all-clear": (_BASE, View()),
        "alert": (_ALERT, View()),
        "alert-acknowledged": (_ALERT, View(acknowledged=True)),
        "degraded": (_one(dataclasses.replace(_OK, health="degraded",
                                              reasons=("broker_refused_alert",))), View()),
        "sensor-offline": (_one(dataclasses.replace(_OK, online=False)), View()),
        "recent-hidden": (_ALERT, View(page=Page.RECENT)),
        "recent-revealed": (_ALERT, View(page=Page.RECENT, revealed=True)),
        "counters": (_ALERT, View(page=Page.COUNTERS)),
        "network": (_ALERT, View(page=Page.NETWORK)),
        "feeds": (_ALERT, View(page=Page.FEEDS)),
    }
