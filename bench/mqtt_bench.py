"""MQTT delivery benchmarks against a local Mosquitto (127.0.0.1, a free port).

1. Sustained rate: one sensor drains 5,000 alerts from its book (each
   acknowledgement retires a row with an fsync'd SQLite transaction).
2. Fleet: 200 simulated sensors (each its own book and MQTT session) queue
   alerts over 10 s; a core consumes through a shared subscription with two
   members. Latency is from the sensor's book write to the core's receipt.

Run: `python bench/mqtt_bench.py`; prints counts, rates and latency p50/p99.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402

from sensor.alerts.book import AlertBook  # noqa: E402
from sensor.config import Config  # noqa: E402
from sensor.outputs.delivery import AlertQueue  # noqa: E402
from sensor.wiring import publisher  # noqa: E402
from tests.broker import Mosquitto  # noqa: E402
from tests.test_mqtt import synthetic_alerts  # noqa: E402


class SharedCore:
    """Two members of one shared subscription; records arrival time per alert."""

    def __init__(self, port: int, members: int = 2) -> None:
        self.arrivals: list[tuple[str, float, float]] = []
        self.lock = threading.Lock()
        self.clients = []
        ready = threading.Barrier(members + 1)
        for index in range(members):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"core-{index}",
                                 protocol=MQTTProtocolVersion.MQTTv5)
            client.on_connect = lambda c, *a: c.subscribe("$share/core/veilleuse/+/+/alert", 1)
            client.on_subscribe = lambda *a: ready.wait()
            client.on_message = self._on_message
            client.connect("127.0.0.1", port)
            client.loop_start()
            self.clients.append(client)
        ready.wait(timeout=10)

    def _on_message(self, client: mqtt.Client, userdata: object, message) -> None:
        received = time.time()
        payload = json.loads(message.payload)
        queued = datetime.fromisoformat(payload["queued_at"].replace("Z", "+00:00")).timestamp()
        with self.lock:
            self.arrivals.append((f"{payload['sensor']}/{payload['id']}", queued, received))

    def count(self) -> int:
        with self.lock:
            return len({key for key, _, _ in self.arrivals})

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


def sensor_config(directory: Path, port: int, name: str) -> Config:
    return Config.model_validate({
        "site": "bench", "sensor": name, "alerts": {"database": str(directory / f"{name}.db")},
        "mqtt": {"url": f"mqtt://127.0.0.1:{port}"},
        "privacy": {"secret_file": str(directory / "secret.key")}})


def sustained(directory: Path, broker: Mosquitto, count: int = 5000) -> None:
    config = sensor_config(directory, broker.port, "solo")
    core = SharedCore(broker.port)
    book = AlertBook(config.alerts.database)
    AlertQueue(book, config, None, time.time).add_all(synthetic_alerts(count))
    sender = publisher(config, book)
    started = time.perf_counter()
    sender.start()
    delivered = sender.wait_until_delivered(300)
    seconds = time.perf_counter() - started
    sender.stop()
    deadline = time.monotonic() + 30
    while core.count() < count and time.monotonic() < deadline:
        time.sleep(0.1)
    core.close()
    print(f"sustained: {count} alerts acknowledged in {seconds:.2f} s = {count / seconds:,.0f} "
          f"alerts/s (book drained: {delivered}; core received {core.count()} distinct)")


def _fleet_worker(arguments: tuple[str, int, int, int, int, float]) -> int:
    """One process simulating a slice of the fleet; returns alerts left in its books.

    A slice per process: paho waits on its sockets with select(), which
    cannot watch descriptors above 1024, and each simulated sensor holds
    about six (its SQLite files, its socket, paho's wake-up pair).
    """
    logging.basicConfig(level=logging.ERROR)
    directory, port, first, count, per_sensor, seconds = arguments
    members = []
    for index in range(first, first + count):
        config = sensor_config(Path(directory), port, f"s{index:03d}")
        book = AlertBook(config.alerts.database)
        sender = publisher(config, book)
        sender.start()
        members.append((AlertQueue(book, config, None, time.time), sender))
    alerts = synthetic_alerts(per_sensor)
    started = time.monotonic()
    for step in range(per_sensor):
        for queue_, sender in members:
            queue_.add(alerts[step])
            sender.notify()
        time.sleep(max(0.0, started + (step + 1) * seconds / per_sensor - time.monotonic()))
    for _, sender in members:
        sender.wait_until_delivered(60)
    left = sum(sender.facts().pending for _, sender in members)
    for _, sender in members:
        sender.stop(timeout=1)
    return left


def fleet(directory: Path, broker: Mosquitto, sensors: int = 200, per_sensor: int = 20,
          seconds: float = 10.0, processes: int = 4) -> None:
    core = SharedCore(broker.port)
    share = sensors // processes
    jobs = [(str(directory), broker.port, p * share, share, per_sensor, seconds)
            for p in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        left = sum(pool.map(_fleet_worker, jobs))
    expected = sensors * per_sensor
    deadline = time.monotonic() + 30
    while core.count() < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    core.close()
    latencies = sorted(received - queued for _, queued, received in core.arrivals)
    p50 = statistics.median(latencies)
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    print(f"fleet: {sensors} sensors ({processes} processes) x {per_sensor} alerts over "
          f"{seconds:.0f} s -> core received {core.count()}/{expected} distinct "
          f"({len(core.arrivals)} messages), {left} left in books; latency p50 "
          f"{p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (goal p99 < 1000 ms)")


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        (directory / "broker").mkdir()
        broker = Mosquitto(directory / "broker", "mosquitto")
        broker.start()
        try:
            sustained(directory, broker)
            fleet(directory, broker)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
