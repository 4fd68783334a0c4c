"""The SD card is spared: a new alert is written at once, more sightings of it together later."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from sensor.alerts.book import AlertBook, AlertBookError
from sensor.config import Config
from sensor.detect.model import Alert, AlertKind, Severity
from sensor.outputs.delivery import AlertQueue
from tests.broker import Core
from tests.conftest import until
from tests.daemons import daemon_running, sensor_config
from tests.test_daemon_faults import DEADLINE, READY, _replay

SIGHTINGS_PER_REPLAY = 2  # the query and its answer


def _count(database) -> int | None:
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT count FROM alerts WHERE kind = 'domain'").fetchone()
    return None if row is None else row[0]


def test_sightings_of_a_stored_alert_wait_and_are_written_at_stop(tmp_path, veth, broker,
                                                                   echap_files) -> None:
    host, namespace = veth
    config = sensor_config(tmp_path, broker.url, host, alert_update_seconds=3600)
    database = tmp_path / "alerts.sqlite"
    core = Core(broker)
    try:
        with daemon_running(config, echap_files) as running:
            assert until(lambda: running.daemon.capture.running(), READY)
            # Until the sniffer takes the first one (it may start a moment after it says so).
            assert until(lambda: _count(database) or _replay(tmp_path, host, namespace),
                         DEADLINE, every=5), "a new alert: written at once"
            # A replay is two sightings, the query and its answer; the daemon may read them
            # in one turn or two, so the first write holds one or both.
            first = _count(database)

            def waiting() -> list[int]:
                return [a.count for a in running.daemon._updates.values()
                        if a.kind == "domain"]

            _replay(tmp_path, host, namespace)
            _replay(tmp_path, host, namespace)
            # Only the sightings not yet written wait, merged into one update.
            assert until(lambda: waiting() == [3 * SIGHTINGS_PER_REPLAY - first], DEADLINE), \
                waiting()
            assert _count(database) == first, "more sightings wait for the next batch"
        assert _count(database) == 3 * SIGHTINGS_PER_REPLAY, \
            "stopping writes the waiting sightings"
    finally:
        core.close()


def _alert(number: int, count: int) -> Alert:
    return Alert(id=f"a{number}", kind=AlertKind.DOMAIN, severity=Severity.HIGH,
                 device="192.168.1.10", indicator="copy9.com", observed="copy9.com",
                 app="TheTruthSpy", protocols=("dns",), first_seen=1.0, last_seen=float(count),
                 count=count)


def test_a_batch_is_one_transaction_and_falls_back_to_one_by_one(tmp_path) -> None:
    book = AlertBook(tmp_path / "alerts.sqlite")
    queue = AlertQueue(book, Config(), None, lambda: 1.0)
    queue.add_all([_alert(n, 1) for n in range(20)])
    commits = []
    book._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    queue.add_batch({f"a{n}": _alert(n, 3) for n in range(20)})  # 3 more sightings each
    assert len(commits) == 1
    assert {row.count for row in book.alerts()} == {4}

    @contextlib.contextmanager
    def refused() -> Iterator[None]:
        raise AlertBookError("injected: the batch is refused")
        yield

    book.batch = refused
    pending = {f"a{n}": _alert(n, 5) for n in range(20)}
    queue.add_batch(pending)
    assert {row.count for row in book.alerts()} == {9}, "one by one, nothing counted twice"
    assert pending == {}, "each written sighting leaves the mapping"
