"""The core's ingest against a real Mosquitto: dedup, quarantine, JSON lines, configuration."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import load_core_config
from core.errors import CoreConfigError
from core.ingest import Ingest
from core.store import CoreStore, Received
from tests.conftest import REPO
from tests.corekit import SensorClient, alert, alert_id, config_of, write_config

# Generous: a deadline, not a speed test (CI shares two cores; apprise is slow to import).
DEADLINE = 120


@pytest.fixture
def ingest(tmp_path: Path, broker) -> Iterator[Ingest]:
    running = Ingest(config_of(write_config(tmp_path, broker.port)))
    running.start()
    assert running.wait_for(lambda c: c.connected, DEADLINE)
    yield running
    running.stop()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _ready(sensor: SensorClient, ingest: Ingest, number: int = 999) -> None:
    """Subscriptions are in place once a probe alert is stored."""
    base = ingest.counters.new_alerts
    sensor.publish("alert", alert("box1", number, severity="low"))
    assert ingest.wait_for(lambda c: c.new_alerts > base, DEADLINE)


def test_dedup_keeps_the_newest_version_whatever_the_order(ingest: Ingest, broker) -> None:
    sensor = SensorClient(broker.port, "box1")
    _ready(sensor, ingest)
    for count in (3, 1, 2, 3):
        sensor.publish("alert", alert("box1", 1, count, last_seen=1_767_261_600.0 + count))
    assert ingest.wait_for(lambda c: c.messages >= 5, DEADLINE)
    sensor.close()
    store = CoreStore(ingest.config.store.database)
    stored = store.alert("shelter-a", "box1", alert_id(1))
    assert stored is not None and stored["count"] == 3
    assert stored["last_seen"] == "2026-01-01T10:00:03.000000Z"
    assert (ingest.counters.new_alerts, ingest.counters.unchanged) == (2, 3)
    lines = [line for line in _lines(ingest.config.store.jsonl_path)
             if line.get("id") == alert_id(1)]
    assert [(line["change"], line["count"]) for line in lines] == [("new", 3)]


def test_an_update_replaces_the_alert_and_is_one_more_line(ingest: Ingest, broker) -> None:
    sensor = SensorClient(broker.port, "box1")
    _ready(sensor, ingest)
    sensor.publish("alert", alert("box1", 2, 1))
    sensor.publish("alert", alert("box1", 2, 5, last_seen=1_767_261_700.0))
    assert ingest.wait_for(lambda c: c.messages >= 3, DEADLINE)
    sensor.close()
    lines = [line for line in _lines(ingest.config.store.jsonl_path)
             if line.get("id") == alert_id(2)]
    assert [(line["change"], line["count"]) for line in lines] == [("new", 1), ("update", 5)]
    assert lines[1]["alert"]["last_seen"] == "2026-01-01T10:01:40.000000Z"


def test_invalid_payloads_are_quarantined_acknowledged_and_ingest_goes_on(
        tmp_path: Path, ingest: Ingest, broker) -> None:
    sensor = SensorClient(broker.port, "box1")
    _ready(sensor, ingest)
    broken = alert("box1", 3)
    del broken["severity"]
    sensor.publish("alert", b"{not json")
    sensor.publish("alert", broken)
    sensor.publish("alert", alert("box2", 4))  # the topic says box1
    sensor.publish("state", b"[]")
    sensor.publish("alert", alert("box1", 5))
    assert ingest.wait_for(lambda c: c.quarantined == 4 and c.new_alerts == 2, DEADLINE)
    store = CoreStore(ingest.config.store.database)
    reasons = [reason for _, reason in store.quarantined()]
    assert reasons[0].startswith("not JSON")
    assert "'severity' is a required property" in reasons[1]
    assert reasons[2] == "the topic says sensor 'box1' but the payload says 'box2'"
    assert reasons[3] == "the payload is not a JSON object"
    assert store.alert("shelter-a", "box1", alert_id(5)) is not None
    quarantine_lines = [line for line in _lines(ingest.config.store.jsonl_path)
                        if line["type"] == "quarantine"]
    assert len(quarantine_lines) == 4
    # Acknowledged and idempotent: a new process on the same session stores nothing twice
    # (the broker may deliver again what was in flight at the disconnect; that changes
    # nothing, MQTT's at-least-once).
    ingest.stop()
    again = Ingest(ingest.config)
    again.start()
    try:
        sensor.publish("alert", alert("box1", 6))
        assert again.wait_for(lambda c: c.new_alerts == 1, DEADLINE)
        assert again.counters.quarantined == 0
        assert again.counters.messages == 1 + again.counters.unchanged
    finally:
        again.stop()
        sensor.close()
    assert len(store.quarantined()) == 4


def test_schemas_are_the_documented_ones() -> None:
    for name in ("alert", "state", "status"):
        documented = (REPO / "docs" / "schemas" / f"{name}.schema.json").read_bytes()
        assert (REPO / "core" / "schemas" / f"{name}.schema.json").read_bytes() == documented


def test_config_errors_name_the_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "core.yaml"
    path.write_text("mqtt:\n  url: mqtt://127.0.0.1:1883\nnotify:\n  languge: fr\n")
    with pytest.raises(CoreConfigError) as caught:
        load_core_config(path)
    assert (caught.value.line, caught.value.key) == (4, "notify.languge")
    path.write_text("sensors:\n  silent_after_seconds: -1\n")
    with pytest.raises(CoreConfigError) as caught:
        load_core_config(path)
    assert (caught.value.line, caught.value.key) == (2, "sensors.silent_after_seconds")
    path.write_text("mqtt:\n  url: 'mqtts://core..lan:8883'\n")
    with pytest.raises(CoreConfigError, match="neither a host name nor an IP address") as caught:
        load_core_config(path)
    assert (caught.value.line, caught.value.key) == (2, "mqtt.url")


def test_the_documented_example_config_is_valid(tmp_path: Path) -> None:
    text = (REPO / "docs" / "core.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "core.yaml"
    path.write_text(example)
    config = load_core_config(path)
    assert config.notify.language == "fr" and config.mqtt.share_group == "veilleuse-core"


def test_status_lists_sensors_and_counts_and_fails_when_one_is_degraded(
        tmp_path: Path, ingest: Ingest, broker, capsys) -> None:
    import time

    from core.cli import main
    from tests.corekit import state, status

    sensor = SensorClient(broker.port, "box1")
    _ready(sensor, ingest)
    sensor.publish("status", status("online", time.time()), retain=True)
    sensor.publish("state", state("box1", time.time()), retain=True)
    assert ingest.wait_for(lambda c: c.messages >= 3, DEADLINE)
    config = str(tmp_path / "core.yaml")
    assert main(["--config", config, "status"]) == 0
    output = capsys.readouterr().out
    assert output.startswith("shelter-a/box1: OK; health ok, status online, last state ")
    assert output.endswith("alerts: high 0, medium 0, low 1, info 0\n")
    sensor.publish("state", state("box1", time.time() + 1, "degraded", ("feeds_stale",)))
    assert ingest.wait_for(lambda c: c.events >= 1, DEADLINE)
    sensor.close()
    assert main(["--config", config, "status"]) == 1
    assert "shelter-a/box1: DEGRADED (feeds_stale); health degraded" in capsys.readouterr().out
    assert main(["--config", config, "check-config"]) == 0


def test_a_redelivered_invalid_message_is_quarantined_once(tmp_path: Path) -> None:
    store = CoreStore(tmp_path / "core.sqlite3")
    broken = Received("veilleuse/shelter-a/box1/alert", b"{not json", None, "not JSON")
    first = store.store_batch([broken], 1_767_261_600.0, 900)
    again = store.store_batch([broken], 1_767_261_601.0, 900)
    assert (first.quarantined, first.unchanged) == (1, 0)
    assert (again.quarantined, again.unchanged) == (0, 1)
    assert store.quarantined() == [("veilleuse/shelter-a/box1/alert", "not JSON")]


def test_connections_opening_a_new_database_at_once_all_wait_their_turn(tmp_path: Path) -> None:
    """The ingest and its notifier open the store together at start (it was "locked")."""
    import threading

    failures = []
    for round_number in range(60):
        database = tmp_path / f"core-{round_number}.db"
        barrier = threading.Barrier(4)

        def open_store(database: Path = database, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                CoreStore(database).close()
            except Exception as error:  # noqa: BLE001 - collected for the assertion
                failures.append(error)

        threads = [threading.Thread(target=open_store) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def test_a_version_announcing_evidence_replaces_the_same_alert_without(ingest: Ingest,
                                                                       broker) -> None:
    sensor = SensorClient(broker.port, "box1")
    _ready(sensor, ingest)
    announced = {**alert("box1", 3, 4), "evidence": {"size": 30920, "sha256": "0b" * 32}}
    sensor.publish("alert", alert("box1", 3, 4))
    sensor.publish("alert", announced)
    sensor.publish("alert", alert("box1", 3, 4))  # a late redelivery of the first
    assert ingest.wait_for(lambda c: c.messages >= 4, DEADLINE)
    sensor.close()
    stored = CoreStore(ingest.config.store.database).alert("shelter-a", "box1", alert_id(3))
    assert stored is not None and stored["evidence"] == announced["evidence"]
    lines = [line for line in _lines(ingest.config.store.jsonl_path)
             if line.get("id") == alert_id(3)]
    assert [line["change"] for line in lines] == ["new", "update"]
