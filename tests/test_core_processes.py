"""``veilleuse-core ingest`` as real processes: SIGKILL mid-stream loses nothing; two share work."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import until
from tests.corekit import (
    SensorClient,
    alert,
    fleet_names,
    start_fleet,
    start_ingest,
    stop_process,
    write_config,
)

pytestmark = pytest.mark.timeout(300)

# Generous: a deadline, not a speed test (CI shares two cores; apprise is slow to import).
DEADLINE = 120


def _rows(database: Path, query: str) -> list[tuple]:
    if not database.exists():
        return []
    with sqlite3.connect(database, timeout=30) as db:
        try:
            return db.execute(query).fetchall()
        except sqlite3.OperationalError:  # the tables are not there yet
            return []


def _stored(database: Path) -> int:
    return _rows(database, "SELECT count(*) FROM alerts WHERE site = 'fleet'")[0][0] \
        if database.exists() and _rows(database, "SELECT 1 FROM alerts LIMIT 1") else 0


def _subscribed(config: Path, database: Path, broker, number: int) -> bool:
    """A probe alert, sent again until it is stored: the ingest's subscription is in place."""
    probe = SensorClient(broker.port, f"probe{number}")
    attempts = iter(range(1000))

    def stored() -> bool:
        probe.publish("alert", alert(f"probe{number}", next(attempts)))
        return bool(_rows(database, f"SELECT 1 FROM alerts WHERE sensor = 'probe{number}'"))

    try:
        return until(stored, 30, every=0.5)
    finally:
        probe.close()


def test_sigkill_while_1000_sensors_publish_loses_nothing(tmp_path: Path, broker) -> None:
    config = write_config(tmp_path, broker.port, store={"batch_max": 50})
    database = tmp_path / "core.db"
    ingest = start_ingest(config, "core-a", tmp_path / "ingest.log")
    try:
        assert _subscribed(config, database, broker, 1)
        rounds = [(1, 1), (2, 1), (1, 2)]  # alert 1 is seen again with a higher count
        fleet = start_fleet(broker.port, 1000, rounds)
        assert until(lambda: _stored(database) >= 300, 120)
        stop_process(ingest, signal.SIGKILL)
        ingest = start_ingest(config, "core-a", tmp_path / "ingest.log")
        assert until(lambda: "session present: True" in (tmp_path / "ingest.log").read_text(),
                     30)
        for process in fleet:
            process.join(180)
            assert process.exitcode == 0
        assert until(lambda: _stored(database) == 2000 and not _rows(
            database, "SELECT 1 FROM alerts WHERE site = 'fleet' AND id = "
                      "'00000000000000000001' AND count < 2"), 120), _stored(database)
    finally:
        stop_process(ingest)
    counts = dict(((sensor, alert_id), count) for sensor, alert_id, count in _rows(
        database, "SELECT sensor, id, count FROM alerts WHERE site = 'fleet'"))
    expected = {(name, f"{number:020x}"): 2 if number == 1 else 1
                for name in fleet_names(1000) for number in (1, 2)}
    assert counts == expected
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    fleet_lines = {(line["sensor"], line["id"], line["count"]) for line in lines
                   if line["type"] == "alert" and line["site"] == "fleet"}
    assert {(sensor, alert_id, count) for (sensor, alert_id), count in expected.items()} \
        <= fleet_lines


def test_two_ingest_processes_share_the_work_and_store_everything_once(tmp_path: Path,
                                                                       broker) -> None:
    config = write_config(tmp_path, broker.port, store={"batch_max": 20})
    database = tmp_path / "core.db"
    first = start_ingest(config, "core-a", tmp_path / "a.log")
    second = start_ingest(config, "core-b", tmp_path / "b.log")
    try:
        assert until(lambda: "ingest started" in (tmp_path / "a.log").read_text() and
                     "ingest started" in (tmp_path / "b.log").read_text(), DEADLINE)
        # Both members subscribed: probes until each has stored one.
        number = 10
        while len(_rows(database, "SELECT DISTINCT stored_by FROM alerts")) < 2:
            assert number < 60, "the two ingest processes did not both receive probes"
            assert _subscribed(config, database, broker, number)
            number += 1
        fleet = start_fleet(broker.port, 200, [(1, 1), (2, 1), (3, 1)], workers=2)
        for process in fleet:
            process.join(180)
            assert process.exitcode == 0
        assert until(lambda: _stored(database) == 600, 120), _stored(database)
    finally:
        stop_process(first)
        stop_process(second)
    by_writer = dict(_rows(database, "SELECT stored_by, count(*) FROM alerts WHERE site = "
                                     "'fleet' GROUP BY stored_by"))
    assert set(by_writer) == {"core-a", "core-b"}, by_writer
    assert _rows(database, "SELECT max(versions) FROM alerts")[0][0] == 1
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    fleet_lines = [(line["sensor"], line["id"]) for line in lines
                   if line["type"] == "alert" and line["site"] == "fleet"]
    assert len(fleet_lines) == len(set(fleet_lines)) == 600
