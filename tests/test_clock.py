"""The clock probe; retention waits for a synchronised clock; alerts say whether it was."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time

import pytest

from sensor.alerts.book import AlertBook
from sensor.alerts.retention import apply_retention
from sensor.config import Config, load_config
from sensor.daemon.clock import SystemClock, kernel_synchronised, timedated_synchronised
from sensor.detect.model import Alert, AlertKind, Severity
from sensor.outputs.delivery import AlertQueue
from tests.conftest import sighting, until
from tests.daemons import daemon_in_thread, health_of, sensor_config

FOUR_HUNDRED_DAYS = 400 * 86_400


def test_the_timesyncd_flag_says_synchronised_whatever_the_kernel_says(tmp_path) -> None:
    flag = tmp_path / "synchronized"
    probe = SystemClock(flag_file=flag, kernel=lambda: False, cache_seconds=0)
    assert not probe()
    flag.touch()
    assert probe()
    assert SystemClock(flag_file=tmp_path / "absent", kernel=lambda: True)()


def test_the_answer_is_kept_a_while_then_asked_again(tmp_path) -> None:
    asked = []
    probe = SystemClock(flag_file=tmp_path / "absent", kernel=lambda: asked.append(1) or True,
                        cache_seconds=3600)
    assert probe() and probe()
    assert len(asked) == 1
    probe.cache_seconds = 0
    assert probe()
    assert len(asked) == 2


def test_timedated_and_the_kernel_agree() -> None:
    # Where timedated answers (a booted system) it reads the same adjtimex state; where it
    # cannot (no systemd here), the direct read is used.
    assert timedated_synchronised() == kernel_synchronised()


def test_the_kernel_state_is_read_without_changing_the_clock() -> None:
    before = time.time()
    assert isinstance(kernel_synchronised(), bool)
    assert abs(time.time() - before) < 60


def _delivered_alert(path) -> AlertBook:
    book = AlertBook(path)
    now = time.time()
    book.record(sighting("a1", first_seen=now, last_seen=now), payload=lambda merged: "{}",
                now=now)
    assert book.mark_delivered("a1", 1, now)
    return book


@pytest.mark.parametrize(("synchronised", "left"), [(False, 1), (True, 0)])
def test_retention_needs_a_synchronised_clock(tmp_path, synchronised, left) -> None:
    book = _delivered_alert(tmp_path / "a.sqlite")
    purged = apply_retention(book, 90, time.time() + FOUR_HUNDRED_DAYS, synchronised)
    assert (purged, len(book.alerts())) == (None if not synchronised else 1, left)


@pytest.mark.parametrize(("synchronised", "left"), [(False, 1), (True, 0)])
def test_the_daemon_purges_at_start_only_on_a_synchronised_clock(
        tmp_path, veth, echap_files, synchronised, left) -> None:
    host, _ = veth
    config_path = sensor_config(tmp_path, "mqtt://127.0.0.1:9", host)
    config = load_config(config_path)
    _delivered_alert(config.alerts.database).close()
    with daemon_in_thread(config_path, echap_files,
                          wall_clock=lambda: time.time() + FOUR_HUNDRED_DAYS,
                          clock_synchronised=lambda: synchronised):
        # The purge at start comes before the first health file.
        assert until(lambda: health_of(config).get("capture") == "running", 30)
    book = AlertBook(config.alerts.database)
    assert len(book.alerts()) == left


def test_an_alert_says_whether_the_clock_was_synchronised_for_every_sighting(tmp_path) -> None:
    config = Config.model_validate({"alerts": {"database": str(tmp_path / "a.sqlite")},
                                    "privacy": {"device_ids": "address"}})
    book = AlertBook(config.alerts.database)
    synchronised = [False]
    queue = AlertQueue(book, config, None, time.time, lambda: synchronised[0])
    alert = Alert(id="0" * 20, kind=AlertKind.DOMAIN, severity=Severity.HIGH,
                  device="192.168.1.10", indicator="copy9.com", observed="api.copy9.com",
                  app="Copy9", protocols=("dns",), first_seen=1.0, last_seen=1.0, count=1)

    def published() -> bool | None:
        return json.loads(book.pending()[0].payload)["clock_synchronised"]

    queue.add(alert)
    assert (book.alerts()[0].clock_synchronised, published()) == (False, False)
    synchronised[0] = True
    queue.add(dataclasses.replace(alert, count=2))
    assert published() is False, "an earlier sighting's time may still be wrong"
    offline = AlertQueue(book, config, None, time.time)
    offline.add(dataclasses.replace(alert, id="1" * 20, indicator="other.example"))
    assert json.loads(book.pending(exclude=frozenset({"0" * 20}))[0].payload)[
        "clock_synchronised"] is None, "a capture file's times are the packets'"
    queue.add(dataclasses.replace(alert, id="2" * 20, indicator="third.example"))
    assert [a.clock_synchronised for a in book.alerts() if a.id == "2" * 20] == [True]


def test_a_book_from_an_older_version_gets_the_clock_column(tmp_path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE alerts (id TEXT PRIMARY KEY, kind TEXT NOT NULL, severity TEXT "
            "NOT NULL, device TEXT NOT NULL, indicator TEXT NOT NULL, first_seen REAL NOT NULL, "
            "last_seen REAL NOT NULL, count INTEGER NOT NULL, record TEXT NOT NULL, "
            "updated_at REAL NOT NULL, delivered_at REAL);"
            "INSERT INTO alerts VALUES ('old', 'domain', 'high', 'd', 'i', 1, 1, 1, '{}', 1, 2);")
    old.close()
    book = AlertBook(path)
    (stored,) = book.alerts()
    assert (stored.id, stored.clock_synchronised) == ("old", None)
    book.record(sighting("new", clock_synchronised=True), payload=lambda merged: "{}", now=1)
    assert {a.id: a.clock_synchronised for a in book.alerts()} == {"old": None, "new": True}
