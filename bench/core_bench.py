"""Core ingest benchmark: 1,000 simulated sensors into two ingest processes sharing the alerts.

A local Mosquitto (127.0.0.1, a free port), two ``veilleuse-core ingest``
processes (one SQLite file, WAL, fsync per batch), and 1,000 sensors (own
client id, QoS 1, persistent session) in 4 processes, each publishing
``--alerts`` alerts. Latency is from the alert's ``queued_at`` (set when the
simulated sensor builds it, as a real one does when it stores it) to the
core's commit (``first_stored_at``); the rate is stored alerts over the time
from the first ``queued_at`` to the last commit.

Run: ``python bench/core_bench.py [--alerts 5]``; prints counts, rate, p50/p99.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.broker import Mosquitto  # noqa: E402
from tests.conftest import until  # noqa: E402
from tests.corekit import start_fleet, start_ingest, stop_process, write_config  # noqa: E402

SENSORS = 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=5, help="alerts per sensor")
    arguments = parser.parse_args()
    expected = SENSORS * arguments.alerts
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        (directory / "broker").mkdir()
        broker = Mosquitto(directory / "broker", shutil.which("mosquitto") or "mosquitto")
        broker.start()
        config = write_config(directory, broker.port)
        database = directory / "core.db"
        members = [start_ingest(config, f"core-{index}", directory / f"ingest-{index}.log")
                   for index in range(2)]
        try:
            if not until(lambda: all("MQTT connected" in (directory / f"ingest-{i}.log")
                                     .read_text() for i in range(2)), 30):
                raise SystemExit("the ingest processes did not connect")
            if not until(lambda: all("Sending SUBACK to core-" + str(i) in broker.log()
                                     for i in range(2)), 30):
                raise SystemExit("the ingest processes did not subscribe")
            started = time.time()
            fleet = start_fleet(broker.port, SENSORS,
                                [(number, 1) for number in range(1, arguments.alerts + 1)])
            for process in fleet:
                process.join(600)
            published = time.time()
            if not until(lambda: _count(database) >= expected, 600):
                raise SystemExit(f"only {_count(database)} of {expected} alerts stored")
        finally:
            for member in members:
                stop_process(member)
            broker.stop()
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT queued_at, first_stored_at, stored_by FROM alerts "
                              "WHERE site = 'fleet'").fetchall()
    latencies = sorted(stored - queued for queued, stored, _ in rows)
    span = max(stored for _, stored, _ in rows) - min(queued for queued, _, _ in rows)
    by_member: dict[str, int] = {}
    for _, _, member in rows:
        by_member[member] = by_member.get(member, 0) + 1
    print(f"sensors {SENSORS}, alerts stored {len(rows)} of {expected} "
          f"(per ingest process: {by_member})")
    print(f"publishing took {published - started:.1f} s (connecting 1,000 clients included)")
    print(f"rate: {len(rows) / span:.0f} alerts/s (first queued_at to last commit, {span:.1f} s)")
    print(f"latency queued_at -> stored: p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms")
    return 0


def _count(database: Path) -> int:
    try:
        with sqlite3.connect(database, timeout=30) as db:
            return db.execute("SELECT count(*) FROM alerts").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
