"""Run the live sensor in tests: its configuration, and the daemon in a thread of the test."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sensor.config import Config, load_config
from sensor.daemon.service import SensorDaemon
from sensor.wiring import sensor_daemon


def sensor_config(tmp_path: Path, mqtt_url: str, interface: str, *,
                  database: Path | None = None, **daemon: object) -> Path:
    """A configuration file whose every path is under ``tmp_path`` (unless overridden)."""
    config = tmp_path / "veilleuse.yaml"
    config.write_text(json.dumps({
        "site": "shelter-a", "sensor": "box1", "network": {"interface": interface},
        "alerts": {"database": str(database or tmp_path / "alerts.sqlite")},
        "mqtt": {"url": mqtt_url},
        "privacy": {"secret_file": str(tmp_path / "key")},
        "daemon": {"state_directory": str(tmp_path / "state"),
                   "runtime_directory": str(tmp_path / "run"), **daemon}}))
    return config


def health_of(config: Config) -> dict:
    """The health file as the daemon last wrote it ({} before the first one)."""
    try:
        return json.loads((config.daemon.runtime_directory / "health.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


@dataclass
class RunningDaemon:
    """A daemon running in a thread of the test; ``error`` is what ended ``run``, if anything."""

    daemon: SensorDaemon
    thread: threading.Thread
    error: BaseException | None = None

    def ended(self) -> bool:
        return not self.thread.is_alive()


@contextmanager
def daemon_running(config_path: Path, feeds: Sequence[Path], *, source: str = "scapy",
                   **options: object) -> Iterator[RunningDaemon]:
    """``veilleuse run`` in this process (options: injected clocks, probe, notifier)."""
    daemon = sensor_daemon(load_config(config_path), source=source, feed_files=feeds, **options)
    stop = threading.Event()
    running = RunningDaemon(daemon, threading.Thread())

    def run() -> None:
        try:
            daemon.run(stop)
        except BaseException as error:  # noqa: BLE001 - kept for the test to assert on
            running.error = error

    running.thread = threading.Thread(target=run, name="test-daemon")
    running.thread.start()
    try:
        yield running
    finally:
        stop.set()
        running.thread.join(60)
        assert not running.thread.is_alive(), "the daemon did not stop"


@contextmanager
def daemon_in_thread(config_path: Path, feeds: Sequence[Path], *, source: str = "scapy",
                     **options: object) -> Iterator[SensorDaemon]:
    """``veilleuse run`` in this process, expected to run until the test stops it."""
    with daemon_running(config_path, feeds, source=source, **options) as running:
        yield running.daemon
    assert running.error is None, running.error
