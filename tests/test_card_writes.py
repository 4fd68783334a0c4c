"""The SD card is spared: a new alert is written at once, more sightings of it together later.

And with few bytes: the new alerts of a turn in one transaction, PUBACKs
retired in batches, commits not fsync'd one by one (``AlertBook.sync`` is);
none of it loses an alert to a crash of the sensor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

from sensor.alerts.book import PAGE_SIZE, AlertBook, AlertBookError
from sensor.config import Config
from sensor.detect.model import Alert, AlertKind, Severity
from sensor.outputs.delivery import AlertQueue
from sensor.wiring import publisher
from tests.broker import Core
from tests.conftest import until
from tests.daemons import daemon_running, sensor_config
from tests.test_daemon_faults import DEADLINE, READY, _replay
from tests.test_mqtt import _assert_only_redeliveries, make_config, queue, synthetic_alerts

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
            # ... and synced to the card within a second (a plug pulled now keeps it).
            assert until(lambda: not running.daemon._new_unsynced, 10), \
                "new alerts are fsync'd by the 1 s chore, not left for the 60 s one"

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


def _commits(book: AlertBook) -> list[str]:
    commits: list[str] = []
    book._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    return commits


def test_new_alerts_of_one_turn_are_one_transaction_that_outlives_a_killed_sensor(
        tmp_path) -> None:
    database = tmp_path / "alerts.sqlite"
    # A sensor that stores a turn's new alerts, then dies before it closes the book.
    writer = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from sensor.alerts.book import AlertBook
        from sensor.config import Config
        from sensor.outputs.delivery import AlertQueue
        from tests.test_card_writes import _alert, _commits
        book = AlertBook(Path({str(database)!r}))
        commits = _commits(book)
        AlertQueue(book, Config(), None, lambda: 1.0).add_batch(
            {{f"a{{n}}": _alert(n, 1) for n in range(30)}})
        print(len(commits), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", writer], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert killed.stdout.split() == ["1"], "30 new alerts, one commit"
    book = AlertBook(database)
    assert len(book.alerts()) == 30 and book.pending_count() == 30, \
        "committed without an fsync, kept when the process dies"
    book.close()


def test_sync_writes_only_after_a_commit(tmp_path) -> None:
    book = AlertBook(tmp_path / "alerts.sqlite")
    book.sync()
    assert not book.sync(), "nothing committed since: nothing to write"
    AlertQueue(book, Config(), None, lambda: 1.0).add(_alert(1, 1))
    assert book.sync()
    assert not book.sync()
    book.close()


def test_an_older_book_gets_small_pages_and_no_outbox_index_with_its_alerts(tmp_path) -> None:
    database = tmp_path / "alerts.sqlite"
    with contextlib.closing(sqlite3.connect(database)) as db:  # as an older version made it
        db.execute("PRAGMA page_size=4096")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE outbox (alert_id TEXT PRIMARY KEY, version INTEGER NOT NULL, "
                   "payload TEXT NOT NULL, queued_at REAL NOT NULL, attempts INTEGER NOT NULL "
                   "DEFAULT 0, last_error TEXT)")
        db.execute("CREATE INDEX outbox_queued ON outbox (queued_at)")
        db.execute("INSERT INTO outbox (alert_id, version, payload, queued_at) VALUES "
                   "('older', 1, '{\"id\": \"older\"}', 0)")  # its payload as text
        db.commit()
    book = AlertBook(database)
    AlertQueue(book, Config(), None, lambda: 1.0).add_all([_alert(n, 1) for n in range(5)])
    book.close()
    book = AlertBook(database)
    assert book._db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    assert book._db.execute("SELECT count(*) FROM sqlite_master WHERE name='outbox_queued'"
                            ).fetchone()[0] == 0
    pending = book.pending()
    assert [e.alert_id for e in pending] == ["older"] + [f"a{n}" for n in range(5)], \
        "oldest first, without the index"
    assert pending[0].payload == '{"id": "older"}', "a text payload is still read"
    assert json.loads(pending[1].payload)["id"] == "a0", "a compressed one too"
    assert book._db.execute("SELECT typeof(payload) FROM outbox WHERE alert_id='a0'"
                            ).fetchone()[0] == "blob"
    assert book._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    book.close()


def _slow_retirement(sender) -> None:
    """Acknowledged rows wait an hour to be retired, unless a window of them fills up."""
    outbox = sender.outbox
    outbox.limits = dataclasses.replace(outbox.limits, retire_every=3600.0)
    outbox._retire_due = time.monotonic() + 3600.0


def test_pubacks_are_retired_in_batches_and_at_stop(tmp_path, broker) -> None:
    config = make_config(tmp_path, broker)
    window = 100  # max_in_flight: a full window of acknowledgements is retired at once
    alerts = synthetic_alerts(20 + 2 * window + 50)
    expected = queue(config, alerts[:20])
    book = AlertBook(config.alerts.database)
    commits = _commits(book)
    core = Core(broker)
    sender = publisher(config, book)
    _slow_retirement(sender)
    sender.start()
    try:
        assert core.wait_for(lambda c: c.ids() >= set(expected), DEADLINE)
        assert sender.wait_for_facts(lambda f: f.pending == 0, DEADLINE), \
            "acknowledged: delivered, not pending"
        assert book.pending_count() == 20, "the PUBACKs wait for their batch"
        assert not core.wait_for(lambda c: len(c.received) > len(expected), 1.0), \
            "an acknowledged alert is not offered again while its retirement waits"
        expected += queue(config, alerts[20:])
        sender.notify()
        assert core.wait_for(lambda c: c.ids() >= set(expected), DEADLINE)
        assert sender.wait_for_facts(lambda f: f.pending == 0, DEADLINE)
        assert book.pending_count() < window, "a full window of PUBACKs is retired at once"
    finally:
        sender.stop()
    assert book.pending_count() == 0, "stopping retires what the core acknowledged"
    assert sender.facts().delivered == len(alerts)
    assert len(commits) <= len(alerts) // window + 1, "PUBACKs retired in batches"
    _assert_only_redeliveries(core)
    book.close()
    core.close()


def test_a_crash_before_the_puback_batch_is_written_sends_the_alerts_again(tmp_path,
                                                                           broker) -> None:
    config = make_config(tmp_path, broker)
    config_path = tmp_path / "veilleuse.yaml"
    config_path.write_text(json.dumps(config.model_dump(mode="json")))
    expected = queue(config, synthetic_alerts(10))
    core = Core(broker)
    publishing = textwrap.dedent(f"""
        import time
        from sensor.alerts.book import AlertBook
        from sensor.config import load_config
        from sensor.wiring import publisher
        from tests.test_card_writes import _slow_retirement
        config = load_config({str(config_path)!r})
        sender = publisher(config, AlertBook(config.alerts.database))
        _slow_retirement(sender)
        sender.start()
        time.sleep(600)  # killed by the test
    """)
    crashing = subprocess.Popen([sys.executable, "-c", publishing],
                                cwd=Path(__file__).resolve().parent.parent,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert core.wait_for(lambda c: c.ids() >= set(expected), DEADLINE)
    finally:
        os.kill(crashing.pid, signal.SIGKILL)
        crashing.wait()
    book = AlertBook(config.alerts.database)
    assert book.pending_count() == 10, "acknowledged, but the batch was never written"
    again = subprocess.run([sys.executable, "-m", "sensor", "--config", str(config_path),
                            "publish", "--timeout", "60"], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert book.pending_count() == 0
    assert core.wait_for(lambda c: len(c.received) == 20, DEADLINE), "each sent again"
    _assert_only_redeliveries(core)
    book.close()
    core.close()
