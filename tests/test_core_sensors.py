"""Silent and degraded sensors, and notifications to a local Apprise ``json://`` endpoint."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from core.ingest import Ingest
from core.notify import Notifier
from core.store import CoreStore
from core.texts import TEXTS
from tests.conftest import until
from tests.corekit import (
    SensorClient,
    Webhook,
    alert,
    config_of,
    state,
    status,
    webhook,
    write_config,
)

# Generous: a deadline, not a speed test (CI shares two cores with emulated builds).
DEADLINE = 90


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def _start(tmp_path: Path, broker, hook: Webhook, clock: FakeClock, **notify: object):
    config = config_of(write_config(
        tmp_path, broker.port, sensors={"silent_after_seconds": 300,
                                        "check_interval_seconds": 3600},
        notify={"urls": [hook.url], "language": "en", **notify}))
    notifier = Notifier(config.notify, config.store.database, clock=clock)
    ingest = Ingest(config, notifier, clock=clock)
    notifier.start()
    ingest.start()
    assert ingest.wait_for(lambda c: c.connected, DEADLINE)
    return ingest, notifier


def _stop(ingest: Ingest, notifier: Notifier) -> None:
    ingest.stop()
    notifier.stop()


def _events(ingest: Ingest) -> list[tuple[str, str, tuple[str, ...]]]:
    store = CoreStore(ingest.config.store.database)
    try:
        return [(event.sensor, event.event, event.reasons) for event in store.events()]
    finally:
        store.close()


def test_offline_silent_degraded_and_recovered_are_events_and_notified(tmp_path, broker) -> None:
    clock = FakeClock(1_767_261_600.0)
    with webhook() as hook:
        ingest, notifier = _start(tmp_path, broker, hook, clock,
                                  per_sensor={"count": 10, "window_seconds": 3600})
        try:
            box1, box2 = SensorClient(broker.port, "box1"), SensorClient(broker.port, "box2")
            for sensor, name in ((box1, "box1"), (box2, "box2")):
                sensor.publish("status", status("online", clock()), retain=True)
                sensor.publish("state", state(name, clock()), retain=True)
            assert ingest.wait_for(lambda c: c.messages >= 4, DEADLINE)
            assert _events(ingest) == []  # first heard of, and well

            box1.vanish()  # its last will: offline, connection lost
            assert ingest.wait_for(lambda c: c.events >= 1, DEADLINE)
            box2.publish("state", state("box2", clock() + 1, "degraded", ("packet_drops",)))
            assert ingest.wait_for(lambda c: c.events >= 2, DEADLINE)
            box2.publish("state", state("box2", clock() + 2))
            assert ingest.wait_for(lambda c: c.events >= 3, DEADLINE)
            clock.advance(301)  # box2 says nothing more for longer than silent_after
            ingest.check_sensors_now()
            assert ingest.wait_for(lambda c: c.events >= 4, DEADLINE)
            assert _events(ingest) == [
                ("box1", "silent", ("offline: connection lost",)),
                ("box2", "degraded", ("packet_drops",)),
                ("box2", "recovered", ()),
                ("box2", "silent", ("no_state",))]
            assert hook.wait_for(4, DEADLINE)
            titles = [body["title"] for body in hook.bodies]
            assert titles == [TEXTS["en"]["silent_title"].format(site="shelter-a", sensor="box1"),
                              TEXTS["en"]["degraded_title"].format(site="shelter-a",
                                                                   sensor="box2"),
                              TEXTS["en"]["recovered_title"].format(site="shelter-a",
                                                                    sensor="box2"),
                              TEXTS["en"]["silent_title"].format(site="shelter-a",
                                                                 sensor="box2")]
            lines = [json.loads(line) for line in
                     ingest.config.store.jsonl_path.read_text().splitlines()]
            assert [(line["sensor"], line["event"], line["severity"]) for line in lines
                    if line["type"] == "sensor_event"] == [
                ("box1", "silent", "high"), ("box2", "degraded", "medium"),
                ("box2", "recovered", "info"), ("box2", "silent", "high")]
            box2.close()
        finally:
            _stop(ingest, notifier)


def test_alert_notifications_high_only_no_identity_and_rate_limited(tmp_path, broker) -> None:
    clock = FakeClock(1_767_261_600.0)
    with webhook() as hook:
        ingest, notifier = _start(tmp_path, broker, hook, clock,
                                  per_sensor={"count": 2, "window_seconds": 3600},
                                  overall={"count": 3, "window_seconds": 3600})
        try:
            box1, box2 = SensorClient(broker.port, "box1"), SensorClient(broker.port, "box2")
            box1.publish("alert", alert("box1", 1, severity="info"))
            box1.publish("alert", alert("box1", 2, severity="high", kind="selftest"))
            box1.publish("alert", alert("box1", 3, severity="medium"))
            for number in (4, 5, 6):  # the third is over box1's limit
                box1.publish("alert", alert("box1", number))
            box1.publish("alert", alert("box1", 4, count=2))  # an update: not news
            assert ingest.wait_for(lambda c: c.messages >= 7, DEADLINE)
            for number in (7, 8):  # the second is over the overall limit
                box2.publish("alert", alert("box2", number))
            assert ingest.wait_for(lambda c: c.messages >= 9, DEADLINE)
            assert until(lambda: notifier.sent + notifier.suppressed >= 5, 30)
            assert (notifier.sent, notifier.suppressed, notifier.failed) == (3, 2, 0)
            assert hook.wait_for(3, DEADLINE)
            bodies = hook.bodies
            assert [body["title"] for body in bodies] == [
                "Veilleuse: high alert on shelter-a/box1",
                "Veilleuse: high alert on shelter-a/box1",
                "Veilleuse: high alert on shelter-a/box2"]
            for body in bodies:
                assert "dev-" not in body["message"] and "DemoSpy" not in body["message"]
            box1.close()
            box2.close()
        finally:
            _stop(ingest, notifier)


def test_identity_only_when_the_site_opts_in_and_in_french(tmp_path, broker) -> None:
    clock = FakeClock(1_767_261_600.0)
    with webhook() as hook:
        ingest, notifier = _start(tmp_path, broker, hook, clock, include_identity=True,
                                  language="fr")
        try:
            box1 = SensorClient(broker.port, "box1")
            box1.publish("alert", alert("box1", 1))
            assert hook.wait_for(1, DEADLINE)
            body = hook.bodies[0]
            assert body["title"] == "Veilleuse\u00a0: alerte élevée sur shelter-a/box1"
            assert "dev-3f1c0a9b2e41" in body["message"] and "DemoSpy" in body["message"]
            box1.close()
        finally:
            _stop(ingest, notifier)


def test_texts_have_the_same_keys_and_placeholders_in_both_languages() -> None:
    import string

    def placeholders(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    assert TEXTS["fr"].keys() == TEXTS["en"].keys()
    for key, text in TEXTS["fr"].items():
        assert placeholders(text) == placeholders(TEXTS["en"][key]), key
