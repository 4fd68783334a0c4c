"""Alerts reach the core over a real Mosquitto, with nothing lost.

Each scenario ends with every alert delivered (by id), none lost, and
duplicates only as redeliveries of the same id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sensor.alerts.book import AlertBook
from sensor.analysis import analyze_capture
from sensor.config import Config
from sensor.detect.model import Alert, AlertKind, Severity
from sensor.outputs.delivery import AlertQueue, deliver_pending
from sensor.outputs.link import ProblemKind
from sensor.wiring import build_engine, open_source, pseudonymizer, publisher
from tests.broker import Core, Mosquitto
from tests.conftest import sighting
from tests.scenarios import build_everything

DEADLINE = 30.0


def make_config(tmp_path: Path, broker: Mosquitto, **privacy: str) -> Config:
    return Config.model_validate({
        "site": "shelter-a", "sensor": "box1",
        "alerts": {"database": str(tmp_path / "alerts.sqlite")},
        "mqtt": {"url": broker.url},
        "privacy": {"secret_file": str(tmp_path / "pseudonym.key"), **privacy}})


def synthetic_alerts(count: int) -> list[Alert]:
    return [Alert(id=f"{i:020d}", kind=AlertKind.DOMAIN, severity=Severity.HIGH,
                  device=f"192.168.{i // 250}.{i % 250 + 1}", indicator="copy9.com",
                  observed="api.copy9.com", app="TheTruthSpy", protocols=("dns",),
                  first_seen=1_767_261_600.0 + i, last_seen=1_767_261_600.0 + i, count=1)
            for i in range(count)]


def queue(config: Config, alerts: list[Alert]) -> list[str]:
    """Store ``alerts`` in the book; returns the ids the core must receive."""
    book = AlertBook(config.alerts.database)
    pseudonyms = pseudonymizer(config)
    AlertQueue(book, config, pseudonyms, time.time).add_all(alerts)
    book.close()
    return [pseudonyms.alert_id(a.id) if pseudonyms else a.id for a in alerts]


def test_every_alert_reaches_the_core_pseudonymized(tmp_path, broker, echap_matcher) -> None:
    capture, _ = build_everything(tmp_path / "c.pcap")
    result = analyze_capture(capture, open_source("scapy", Config()),
                             build_engine(Config(), echap_matcher))
    config = make_config(tmp_path, broker)
    core = Core(broker)
    expected = queue(config, list(result.alerts))
    book = AlertBook(config.alerts.database)
    sender = publisher(config, book)
    sender.start()
    try:
        assert core.wait_for(lambda c: c.ids() >= set(expected), DEADLINE)
        assert sender.wait_until_delivered(DEADLINE)
        assert core.wait_for(lambda c: c.retained.get("status", {}).get("status") == "online",
                             DEADLINE)
    finally:
        sender.stop()
    assert core.wait_for(lambda c: c.retained["status"].get("reason") == "stopped", DEADLINE)
    core.close()
    assert book.pending_count() == 0
    raw = json.dumps(core.received)
    for device in {a.device for a in result.alerts}:
        assert f'"{device}"' not in raw and f"{device} " not in raw, device
    first = core.received[0]
    assert first["device"].startswith("dev-") and first["device_is_pseudonym"] is True
    assert (first["site"], first["sensor"]) == ("shelter-a", "box1")


def test_alerts_produced_while_the_broker_is_down_arrive_when_it_is_back(tmp_path, broker) -> None:
    config = make_config(tmp_path, broker)
    core = Core(broker)
    book = AlertBook(config.alerts.database)
    sender = publisher(config, book)
    sender.start()
    expected = queue(config, synthetic_alerts(20))
    sender.notify()
    assert core.wait_for(lambda c: c.ids() >= set(expected), DEADLINE)

    broker.stop()
    assert sender.wait_for_facts(lambda h: not h.connected, DEADLINE)
    more = queue(config, synthetic_alerts(60)[20:])
    sender.notify()
    health = sender.facts()
    assert not health.connected and health.pending == 40
    assert "unreachable" in health.problem
    assert health.problem_kind is ProblemKind.BROKER_UNREACHABLE and not health.refusing

    broker.start()
    try:
        assert core.wait_for(lambda c: c.ids() >= set(expected + more), DEADLINE), \
            len(core.ids())
        assert sender.wait_until_delivered(DEADLINE)
    finally:
        sender.stop()
        core.close()
    assert sender.facts().problem is None
    _assert_only_redeliveries(core)


def test_sigkill_in_the_middle_of_publishing_loses_nothing(tmp_path, broker) -> None:
    config = make_config(tmp_path, broker)
    config_path = tmp_path / "veilleuse.yaml"
    config_path.write_text(json.dumps(config.model_dump(mode="json")))
    total = 5000
    expected = queue(config, synthetic_alerts(total))
    core = Core(broker)
    book = AlertBook(config.alerts.database)
    command = [sys.executable, "-m", "sensor", "--config", str(config_path), "publish",
               "--timeout", "60"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill as soon as the book shows acknowledged alerts retired: mid-way, by construction.
    assert core.wait_for(lambda c: len(c.ids()) >= 1 and book.pending_count() < total,
                         DEADLINE)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    left = book.pending_count()
    assert 0 < left < total, "the kill should land in the middle of publishing"
    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert core.wait_for(lambda c: c.ids() >= set(expected), DEADLINE)
    core.close()
    assert book.pending_count() == 0
    _assert_only_redeliveries(core)


def test_a_topic_refused_by_acl_is_visible_then_delivered_once_allowed(
        tmp_path, mosquitto_binary) -> None:
    directory = tmp_path / "broker"
    directory.mkdir()
    deny = ("user veilleuse\ntopic write veilleuse/+/+/status\ntopic write veilleuse/+/+/state\n"
            "user core\ntopic read veilleuse/#\n")
    broker = Mosquitto(directory, mosquitto_binary, acl=deny)
    broker.start()
    config = make_config(tmp_path, broker)
    config = config.model_copy(update={"mqtt": config.mqtt.model_copy(
        update={"username": "veilleuse"})})
    core = Core(broker, username="core")
    expected = queue(config, synthetic_alerts(5))
    book = AlertBook(config.alerts.database)
    sender = publisher(config, book)
    sender.start()
    try:
        assert sender.wait_for_facts(lambda h: h.refused >= 1, DEADLINE)
        health = sender.facts()
        assert "refused an alert" in health.problem and "Not authorized" in health.problem
        assert health.refusing and health.problem_kind is ProblemKind.ALERT_REFUSED
        state = core.wait_for(lambda c: c.retained.get("state", {}).get("health") ==
                              "degraded", DEADLINE)
        assert state and core.retained["state"]["reasons"] == ["broker_refused_alert"]
        assert "Not authorized" in health.last_refusal
        assert health.pending == 5 and core.ids() == set()
        broker.set_acl(deny.replace("topic write veilleuse/+/+/state",
                                    "topic write veilleuse/+/+/state\n"
                                    "topic write veilleuse/+/+/alert"))
        assert core.wait_for(lambda c: c.ids() >= set(expected), DEADLINE)
        assert sender.wait_until_delivered(DEADLINE)
        assert sender.facts().problem is None
    finally:
        sender.stop()
        core.close()
        broker.stop()


def test_a_newer_version_is_not_retired_by_an_older_acknowledgement(tmp_path) -> None:
    book = AlertBook(tmp_path / "a.sqlite")
    payload = lambda merged: f"seen {merged.count} times until {merged.last_seen}"  # noqa: E731
    first = book.record(sighting("a", last_seen=1.0, count=1), payload=payload, now=1.0)
    second = book.record(sighting("a", last_seen=2.0, count=2), payload=payload, now=1.0)
    assert (first, second) == (1, 2)
    assert not book.mark_delivered("a", first, now=3.0)
    assert [e.payload for e in book.pending()] == ["seen 3 times until 2.0"]
    assert book.mark_delivered("a", second, now=3.0)
    assert book.pending_count() == 0
    assert book.purge(older_than=10.0) == 1


def _assert_only_redeliveries(core: Core) -> None:
    """Duplicates are allowed only as the same id with the same content."""
    by_id: dict[str, dict] = {}
    for payload in core.received:
        known = by_id.setdefault(payload["id"], payload)
        assert {k: v for k, v in known.items() if k != "queued_at"} == \
               {k: v for k, v in payload.items() if k != "queued_at"}


def test_analyze_with_mqtt_keeps_alerts_until_the_broker_takes_them(tmp_path, broker,
                                                                    echap_files) -> None:
    capture, expected = build_everything(tmp_path / "c.pcap")
    config = make_config(tmp_path, broker)
    config_path = tmp_path / "veilleuse.yaml"
    config_path.write_text(json.dumps(config.model_dump(mode="json")))
    feeds = [arg for path in echap_files for arg in ("--feed", str(path))]
    broker.stop()
    down = subprocess.run([sys.executable, "-m", "sensor", "--config", str(config_path),
                           "analyze", str(capture), "--source", "scapy", "--format", "jsonl",
                           "--mqtt", broker.url, "--mqtt-timeout", "2", *feeds],
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 1
    assert len(down.stdout.splitlines()) == len(expected)
    assert f"{len(expected)} alert(s) not acknowledged by the broker within 2 s" in down.stderr
    assert "`veilleuse publish` retries" in down.stderr
    broker.start()
    core = Core(broker)
    up = subprocess.run([sys.executable, "-m", "sensor", "--config", str(config_path),
                         "publish", "--timeout", "30"], capture_output=True, text=True,
                        timeout=120)
    assert up.returncode == 0, up.stderr
    assert core.wait_for(lambda c: len(c.ids()) == len(expected), DEADLINE)
    core.close()


@pytest.mark.parametrize(("synchronised", "left"), [(True, 0), (False, 3)])
def test_publish_applies_retention_to_delivered_alerts_only(tmp_path, broker, synchronised,
                                                            left) -> None:
    config = make_config(tmp_path, broker)
    old = synthetic_alerts(3)  # last seen on 2026-01-01
    queue(config, old)
    book = AlertBook(config.alerts.database)
    broker.stop()
    retention_days = config.alerts.retention_days
    assert deliver_pending(publisher(config, book, role="publish"), book, 1,
                           retention_days=retention_days,
                           clock_synchronised=lambda: True)[0] is False
    assert len(book.alerts()) == 3, "undelivered alerts are kept whatever their age"
    broker.start()
    assert deliver_pending(publisher(config, book, role="publish"), book, 30,
                           retention_days=retention_days,
                           clock_synchronised=lambda: synchronised)[0]
    # Delivered and older than retention_days (90): deleted, unless the clock that
    # says they are old is not synchronised.
    assert len(book.alerts()) == left


def test_counts_add_up_across_engines_instead_of_overwriting(tmp_path) -> None:
    import dataclasses

    config = Config.model_validate({"alerts": {"database": str(tmp_path / "a.sqlite")},
                                    "privacy": {"device_ids": "address"}})
    book = AlertBook(config.alerts.database)
    alert = synthetic_alerts(1)[0]
    first_engine = AlertQueue(book, config, None, time.time)
    first_engine.add(dataclasses.replace(alert, count=3))
    first_engine.add(dataclasses.replace(alert, count=2))   # the same engine saw 2 more
    after_restart = AlertQueue(book, config, None, time.time)
    after_restart.add(dataclasses.replace(alert, count=1))  # a new engine saw 1
    (stored,) = book.alerts()
    assert stored.count == 6
    assert json.loads(book.pending()[0].payload)["count"] == 6
