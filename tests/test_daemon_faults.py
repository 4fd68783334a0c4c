"""Never blind in silence: every fault of the live sensor is a health reason, none kills the loop.

Faults are made for real where they can be (a filled tmpfs, a rule file
Suricata refuses, Suricata killed); errors that need a bug are injected into
a real daemon (an exception in a chore, a BaseException that kills a worker
thread), with real Suricata or scapy on a veth pair and a real Mosquitto.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sensor import wiring
from sensor.alerts.book import AlertBook, AlertBookError
from sensor.config import Config, load_config
from sensor.daemon.faults import DaemonFailure, LoopFaults
from sensor.daemon.notify import SystemdNotifier
from sensor.demo.traffic import Traffic
from sensor.outputs import mqtt
from tests.broker import Core
from tests.conftest import require_tool, until
from tests.daemons import daemon_running, health_of, sensor_config

READY = 90.0
DEADLINE = 60.0


class _Killed(BaseException):
    """What no ``except Exception`` boundary catches: the thread it is raised in dies."""


def _replay(tmp_path: Path, host: str, namespace: str, name: str = "api.copy9.com") -> None:
    traffic = Traffic()
    traffic.dns(time.time(), "192.168.1.10", "192.168.1.1", name,
                [(name, "A", "203.0.113.50")])
    subprocess.run(["ip", "netns", "exec", namespace, require_tool("tcpreplay"), "-q", "-i",
                    host.replace("vlh", "vli"), str(traffic.write(tmp_path / "replay.pcap"))],
                   check=True, capture_output=True)


def _reasons(daemon) -> tuple[str, ...]:
    return daemon.health.reasons


def _detail(daemon, reason: str) -> str:
    health = daemon.health
    return dict(zip(health.reasons, health.details, strict=True)).get(reason, "")


def _fail(faults: LoopFaults, chore: str, error: Exception) -> None:
    """Raise and record ``error`` from one place, as a chore of the loop does."""
    try:
        raise error
    except Exception as raised:  # noqa: BLE001 - as the loop's boundary does
        faults.record(chore, raised)


# -- the loop's own errors ------------------------------------------------------------


def test_a_loop_error_is_logged_once_and_ends_the_daemon_only_if_it_persists(caplog) -> None:
    now = [0.0]
    faults = LoopFaults(lambda: now[0], give_up_after=60.0, report_seconds=30.0)
    with caplog.at_level(logging.ERROR):
        for second in range(0, 61, 1):
            now[0] = float(second)
            _fail(faults, "records", RuntimeError("injected"))
            faults.check()  # 60 s of the same error: not past the limit yet
        assert "RuntimeError: injected" in (faults.problem() or "")
        now[0] = 61.5
        _fail(faults, "records", RuntimeError("injected"))
        with pytest.raises(DaemonFailure, match=r"\(records\).*for 62 s.*systemd restarts"):
            faults.check()
    assert caplog.text.count("Traceback") == 1, "one traceback per distinct error"
    assert faults.count == 62
    now[0] = 100.0
    assert faults.problem() is None, "reported for report_seconds after the last error"


def test_an_error_that_comes_back_rarely_never_ends_the_daemon() -> None:
    now = [0.0]
    faults = LoopFaults(lambda: now[0], give_up_after=60.0)
    for hour in range(5):  # retention fails once an hour: reported each time, never fatal
        now[0] = hour * 3600.0
        _fail(faults, "retention", OSError("injected"))
        faults.check()
    assert faults.count == 5


def test_a_chore_that_keeps_failing_is_reported_then_the_daemon_exits_non_zero(
        tmp_path, veth, broker, echap_files, caplog) -> None:
    host, _ = veth
    # Past two health periods (2 s each), so that a ping after the first report of the
    # error comes before the daemon gives up, whatever the phase of the fault.
    config = sensor_config(tmp_path, broker.url, host, error_limit_seconds=5)
    notes: list[str] = []
    with caplog.at_level(logging.ERROR), daemon_running(
            config, echap_files, notifier=SystemdNotifier(notes.append)) as running:
        daemon = running.daemon
        assert until(lambda: daemon.capture.running(), READY)

        def broken() -> list:
            raise RuntimeError("injected records fault")

        daemon.capture.records = broken
        assert until(lambda: "worker_error" in _reasons(daemon), DEADLINE)
        assert "RuntimeError: injected records fault" in _detail(daemon, "worker_error")
        pinged = notes.count("WATCHDOG=1")
        assert until(lambda: notes.count("WATCHDOG=1") > pinged or running.ended(), DEADLINE)
        assert notes.count("WATCHDOG=1") > pinged, "the loop goes on while the error lasts"
        assert until(running.ended, DEADLINE), "past error_limit_seconds the daemon gives up"
    assert isinstance(running.error, DaemonFailure), running.error
    assert "injected records fault" in str(running.error)
    assert caplog.text.count("Traceback") == 1


# -- worker threads ---------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_sniffer_thread_is_restarted_and_a_dead_publisher_exits_non_zero(
        tmp_path, veth, broker, echap_files, monkeypatch) -> None:
    host, namespace = veth
    config = sensor_config(tmp_path, broker.url, host)
    senders: list[mqtt.MqttPublisher] = []
    real_publisher = wiring.publisher

    def recorded_publisher(*args, **kwargs):
        senders.append(real_publisher(*args, **kwargs))
        return senders[-1]

    monkeypatch.setattr(wiring, "publisher", recorded_publisher)  # SensorOutputs' core
    core = Core(broker)
    try:
        with daemon_running(config, echap_files) as running:
            daemon = running.daemon
            assert until(lambda: daemon.capture.running(), READY)
            real_put, kills = daemon.capture._queue.put, []

            def put_dying_once(observation) -> None:
                if not kills:
                    kills.append(observation)
                    raise _Killed("injected: the sniffer thread dies")
                real_put(observation)

            daemon.capture._queue.put = put_dying_once
            _replay(tmp_path, host, namespace)
            assert until(lambda: kills and "scapy-live thread stopped" in
                         _detail(daemon, "worker_error"), DEADLINE), daemon.health
            assert until(lambda: daemon.capture.running(), READY), daemon.health
            _replay(tmp_path, host, namespace)
            assert core.wait_for(lambda c: any(p["indicator"] == "copy9.com"
                                               for p in c.received), DEADLINE), daemon.health
            assert daemon.capture.workers()[0].restarts == 1

            def pass_dying(events) -> None:
                raise _Killed("injected: the publisher's owner thread dies")

            senders[0]._pass = pass_dying
            assert until(running.ended, DEADLINE), "a dead publisher must end the daemon"
    finally:
        core.close()
    assert isinstance(running.error, DaemonFailure)
    assert "MQTT publisher's thread stopped" in str(running.error)


def test_suricata_faults_a_dead_supervisor_and_a_failing_alert_book(
        tmp_path, veth, suricata, broker, echap_files, monkeypatch) -> None:
    host, namespace = veth
    config_path = sensor_config(tmp_path, broker.url, host)
    config = load_config(config_path)
    workdir = config.daemon.runtime_directory / "suricata"
    core = Core(broker)
    failing = [True]
    real_record = AlertBook.record

    def record_failing(self, *args, **kwargs):
        if failing[0]:
            raise AlertBookError(f"{self.path}: injected: disk I/O error")
        return real_record(self, *args, **kwargs)

    try:
        with daemon_running(config_path, echap_files, source="suricata") as running:
            daemon = running.daemon
            assert until(lambda: health_of(config).get("capture") == "running", READY), \
                (workdir / "suricata.out").read_text()[-2000:]

            # The book refuses alerts: a reason, the EVE position is not saved, nothing lost.
            monkeypatch.setattr(AlertBook, "record", record_failing)
            _replay(tmp_path, host, namespace)
            assert until(lambda: "alert_book_error" in health_of(config).get("reasons", ()),
                         DEADLINE), daemon.health
            assert "injected: disk I/O error" in _detail(daemon, "alert_book_error")
            offset = (workdir / "eve.offset").read_text()
            assert not until(lambda: (workdir / "eve.offset").read_text() != offset, 3.0), \
                "the EVE position must not move past alerts the book has not stored"
            status = subprocess.run([sys.executable, "-m", "sensor", "--config",
                                     str(config_path), "status"], capture_output=True, text=True)
            assert status.returncode == 1 and "  - alert_book_error: " in status.stdout
            assert not running.ended()
            failing[0] = False
            assert core.wait_for(lambda c: any(p["indicator"] == "copy9.com"
                                               for p in c.received), DEADLINE), daemon.health
            assert until(lambda: "alert_book_error" not in _reasons(daemon), DEADLINE)
            assert until(lambda: (workdir / "eve.offset").read_text() != offset, DEADLINE)

            # The supervising thread dies: restarted, capture comes back, the reason says so.
            real_poll = daemon.capture.supervisor.poll

            def poll_dying_once():
                daemon.capture.supervisor.poll = real_poll
                raise _Killed("injected: the supervisor thread dies")

            daemon.capture.supervisor.poll = poll_dying_once
            assert until(lambda: "suricata-supervisor thread stopped and was restarted" in
                         _detail(daemon, "worker_error"), READY), daemon.health
            assert until(lambda: health_of(config).get("capture") == "running", READY), \
                daemon.health
        assert running.error is None
    finally:
        core.close()


# -- full disks ---------------------------------------------------------------------


def test_a_full_runtime_directory_and_book_are_reported_and_survived(
        tmp_path, veth, broker, echap_files, small_disk) -> None:
    host, namespace = veth
    config_path = sensor_config(tmp_path, broker.url, host, database=small_disk.path / "a.db",
                                runtime_directory=str(small_disk.path / "run"))
    config = load_config(config_path)
    core = Core(broker)

    def state_reasons() -> list[str]:
        with core._changed:
            return list(core.retained.get("state", {}).get("reasons", ()))

    try:
        with daemon_running(config_path, echap_files) as running:
            daemon = running.daemon
            assert until(lambda: health_of(config).get("capture") == "running", READY)
            small_disk.fill()
            assert until(lambda: "disk_full" in state_reasons(), DEADLINE), daemon.health
            assert "cannot write" in _detail(daemon, "disk_full")
            assert "health.json" in _detail(daemon, "disk_full")
            _replay(tmp_path, host, namespace)
            assert until(lambda: "alert(s) wait in memory" in _detail(daemon, "disk_full"),
                         DEADLINE), daemon.health
            assert not running.ended()
            small_disk.free()
            assert core.wait_for(lambda c: any(p["indicator"] == "copy9.com"
                                               for p in c.received), DEADLINE), daemon.health
            assert until(lambda: "disk_full" not in state_reasons() and
                         "disk_full" not in health_of(config).get("reasons", ()), DEADLINE)
        assert running.error is None
    finally:
        core.close()


def test_a_full_disk_at_start_does_not_stop_the_daemon_from_being_built(
        tmp_path, small_disk) -> None:
    small_disk.fill()
    capture = wiring.live_capture(Config.model_validate(
        {"daemon": {"runtime_directory": str(small_disk.path)}}), "suricata")
    assert capture.position.disk_problem is None  # nothing written before Suricata starts


def test_the_health_file_reasons_are_the_schema_reasons() -> None:
    schema = json.loads((Path(__file__).parent.parent / "docs" / "schemas" /
                         "state.schema.json").read_text())
    enumerated = set(schema["properties"]["reasons"]["items"]["enum"])
    from sensor.daemon.health import HealthInputs, HealthThresholds, _problems

    produced = {code for code, _ in _problems(HealthInputs(True, None, 0, 0, 0, None, 0),
                                              HealthThresholds())}
    assert produced == enumerated
