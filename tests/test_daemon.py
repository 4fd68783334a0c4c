"""`veilleuse run`: live alerts, a Suricata crash seen as DEGRADED then recovered, sd_notify."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sensor.config import load_config
from sensor.daemon.health import HealthInputs, assess
from sensor.daemon.mirror_direction import MIN_FLOWS
from sensor.demo.traffic import Traffic
from sensor.observations import Endpoints, Flow
from tests.broker import Core, Mosquitto
from tests.conftest import require_tool, until
from tests.daemons import daemon_in_thread, health_of, sensor_config


def _inputs(**changes: object) -> HealthInputs:
    values = {"capture_running": True, "capture_problem": None, "drop_ratio": 0.0,
              "seconds_since_traffic": 5.0, "feeds_age_days": 1.0, "delivery_problem": None,
              "serious_alerts": 0}
    values.update(changes)
    return HealthInputs(**values)


@pytest.mark.parametrize(("changes", "state", "reasons"), [
    ({}, "ok", ()),
    ({"serious_alerts": 2}, "alert", ()),
    ({"capture_running": False, "capture_problem": "exited"}, "degraded", ("suricata_down",)),
    ({"capture_running": False, "starting": True}, "starting", ()),
    ({"drop_ratio": 0.2}, "degraded", ("packet_drops",)),
    ({"seconds_since_traffic": 3600.0}, "degraded", ("no_traffic",)),
    ({"mirror_one_way": "41 of 43 connections", "serious_alerts": 1}, "degraded",
     ("mirror_one_way",)),
    ({"mirror_one_way": "41 of 43", "drop_ratio": 0.2, "feeds_age_days": None}, "degraded",
     ("packet_drops", "mirror_one_way", "feeds_stale")),
    ({"feeds_age_days": 30.0, "serious_alerts": 1}, "degraded", ("feeds_stale",)),
    ({"feeds_age_days": None}, "degraded", ("feeds_stale",)),
    ({"delivery_problem": "refused", "broker_unreachable": "down"}, "degraded",
     ("broker_refused_alert", "broker_unreachable")),
    ({"clock_synchronised": False, "seconds_since_start": 60.0}, "ok", ()),
    ({"clock_synchronised": False, "seconds_since_start": 600.0}, "degraded",
     ("clock_unsynchronised",)),
    ({"disk_full": "full", "serious_alerts": 1}, "degraded", ("disk_full",)),
    ({"alert_book_problem": "refused", "starting": True}, "degraded", ("alert_book_error",)),
    ({"worker_problems": ("a", "b")}, "degraded", ("worker_error",)),
    ({"quarantined": "1 row"}, "degraded", ("alerts_quarantined",)),
    ({"capture_running": False, "capture_problem": "exited", "disk_full": "full",
      "worker_problems": ("x",), "quarantined": "1 row"}, "degraded",
     ("suricata_down", "disk_full", "worker_error", "alerts_quarantined")),
])
def test_health_rules(changes, state, reasons) -> None:
    health = assess(_inputs(**changes))
    assert (health.state, health.reasons) == (state, reasons)
    assert len(health.details) == len(health.reasons)


def _broker(tmp_path: Path) -> Mosquitto:
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker", require_tool("mosquitto"))
    broker.start()
    return broker


def test_the_live_sensor_end_to_end(tmp_path, veth, suricata, echap_files) -> None:
    host, namespace = veth
    broker = _broker(tmp_path)
    config = sensor_config(tmp_path, broker.url, host, feeds_check_seconds=1)
    feeds = []
    for path in echap_files:
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        feeds.append(copy)
    health_file = tmp_path / "run" / "health.json"
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(0.5)
    core = Core(broker)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "sensor", "--config", str(config), "run",
         *(arg for path in feeds for arg in ("--feed", str(path)))],
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path)}, stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "daemon.log").open("w"), umask=0o077)  # as the unit runs it

    def log_tail() -> str:
        return (tmp_path / "daemon.log").read_text()[-3000:]

    def replay(name: str) -> None:
        traffic = Traffic()
        traffic.dns(time.time(), "192.168.1.10", "192.168.1.1", name,
                    [(name, "A", "203.0.113.50")])
        subprocess.run(["ip", "netns", "exec", namespace, require_tool("tcpreplay"), "-q",
                        "-i", host.replace("vlh", "vli"), str(traffic.write(tmp_path / "x.pcap"))],
                       check=True, capture_output=True)

    def suricata_pid() -> int:
        return int(subprocess.run(["pgrep", "-f", f"suricata -c {tmp_path}/run/suricata"],
                                  capture_output=True, text=True).stdout.split()[0])

    def health() -> dict:
        try:
            return json.loads(health_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    try:
        assert until(lambda: health().get("capture") == "running", 90), log_tail()
        # Admins in the veilleuse group read the health; Suricata's files stay private
        # and in RAM (runtime_directory), nothing under the state directory.
        assert (_mode(health_file), _mode(health_file.parent)) == (0o640, 0o750)
        assert _mode(tmp_path / "run" / "suricata") == 0o700
        assert set(health()) == {"state", "reasons", "details", "time", "pid", "capture",
                                 "capturing", "observations", "drop_ratio", "pending_alerts",
                                 "feeds"}, "no secret and no device data in the health file"
        before = _datagrams(notify, until=lambda m: m.startswith("READY=1"), timeout=20)
        assert before and before[-1].startswith("READY=1"), before
        after = _datagrams(notify, until=lambda m: "WATCHDOG=1" in m, timeout=20)
        assert after and after[-1] == "WATCHDOG=1", "the health-checked loop pings the watchdog"
        # From here on, drain the socket as systemd does: a full datagram queue would
        # block the daemon's sd_notify calls.
        draining = threading.Thread(target=_datagrams, args=(notify, lambda m: False, 600),
                                    daemon=True)
        draining.start()

        replay("api.copy9.com")
        assert core.wait_for(lambda c: any(p["indicator"] == "copy9.com" for p in c.received),
                             60)
        assert until(lambda: health().get("state") == "alert", 30)
        runtime = {p.name for p in (tmp_path / "run" / "suricata").iterdir()}
        assert {"eve.json", "eve.offset", "suricata.yaml"} <= runtime
        assert not any(name.endswith(".rules") for name in runtime), "no rules in the live path"
        assert not (tmp_path / "state").exists()

        os.kill(suricata_pid(), signal.SIGKILL)
        assert until(lambda: "suricata_down" in health().get("reasons", ()), 30)
        assert until(lambda: health().get("state") == "alert" and
                      health().get("capture") == "running", 90)
        status = subprocess.run([sys.executable, "-m", "sensor", "--config", str(config),
                                 "status"], capture_output=True, text=True)
        assert status.returncode == 0 and status.stdout.startswith("health: ALERT")

        selftest = subprocess.run([sys.executable, "-m", "sensor", "--config", str(config),
                                   "selftest", "--timeout", "30"], capture_output=True, text=True)
        assert selftest.returncode == 0, selftest.stdout + selftest.stderr + log_tail()
        assert selftest.stdout.startswith("self-test passed")
        assert core.wait_for(lambda c: any(p["kind"] == "selftest" for p in c.received), 30)
        assert health().get("state") == "alert", "a self-test is info, it changes nothing"
        selftests = sum(p["kind"] == "selftest" for p in core.received)
        core.client.publish("veilleuse/shelter-a/box1/command", json.dumps(
            {"schema": "veilleuse.command/1", "command": "selftest", "time": "now"}), qos=1)
        assert core.wait_for(lambda c: sum(p["kind"] == "selftest" for p in c.received) >
                             selftests, 60), "the screen's request runs a self-test"

        # A feed update: new detection, without restarting the capture.
        before = (suricata_pid(), dict(health()["feeds"]))
        with feeds[0].open("a") as feed:
            feed.write("\n- name: FreshSpy\n  type: stalkerware\n  c2:\n    domains:\n"
                       "    - fresh-c2.example\n")
        assert until(lambda: health().get("feeds") != before[1], 30)
        assert suricata_pid() == before[0], "the capture must not restart for new feeds"
        replay("beacon.fresh-c2.example")
        assert core.wait_for(lambda c: any(p["indicator"] == "fresh-c2.example"
                                           for p in c.received), 60), log_tail()
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        core.close()
        notify.close()
        broker.stop()
    assert code == 0
    leftovers = subprocess.run(["pgrep", "-f", f"suricata -c {tmp_path}/run/suricata"],
                               capture_output=True, text=True).stdout
    assert leftovers == "", "Suricata must stop with the daemon"


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _datagrams(sock: socket.socket, until: Callable[[str], bool], timeout: float) -> list[str]:
    received: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            continue
        except OSError:
            break  # the test closed the socket
        received.append(message)
        if until(message):
            break
    return received


def test_the_lite_sensor_without_suricata(tmp_path, veth, echap_files) -> None:
    host, namespace = veth
    broker = _broker(tmp_path)
    config = sensor_config(tmp_path, broker.url, host)
    health_file = tmp_path / "run" / "health.json"
    core = Core(broker)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "sensor", "--config", str(config), "run", "--source", "scapy",
         *(arg for path in echap_files for arg in ("--feed", str(path)))],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "daemon.log").open("w"))
    try:
        assert until(lambda: health_file.exists() and
                      json.loads(health_file.read_text()).get("capture") == "running", 60), \
            (tmp_path / "daemon.log").read_text()[-2000:]
        traffic = Traffic()
        traffic.dns(time.time(), "192.168.1.10", "192.168.1.1", "api.copy9.com",
                    [("api.copy9.com", "A", "203.0.113.50")])
        subprocess.run(["ip", "netns", "exec", namespace, require_tool("tcpreplay"), "-q",
                        "-i", host.replace("vlh", "vli"), str(traffic.write(tmp_path / "c.pcap"))],
                       check=True, capture_output=True)
        assert core.wait_for(lambda c: any(p["indicator"] == "copy9.com" for p in c.received),
                             60), (tmp_path / "daemon.log").read_text()[-2000:]
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        core.close()
        broker.stop()
    assert code == 0


def test_a_sensor_that_never_captures_says_so_after_the_start_deadline(tmp_path, suricata,
                                                                        echap_files) -> None:
    """A wrong interface name: DEGRADED with Suricata's error, READY=1 anyway, status exits 1."""
    config = sensor_config(tmp_path, "mqtt://127.0.0.1:9", f"vlnone{os.getpid() % 10**6}",
                           start_deadline_seconds=3)
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(0.5)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "sensor", "--config", str(config), "run",
         *(arg for path in echap_files for arg in ("--feed", str(path)))],
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path)}, stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "daemon.log").open("w"))
    loaded = load_config(config)
    try:
        ready = _datagrams(notify, until=lambda m: m.startswith("READY=1"), timeout=60)
        assert ready and ready[-1].startswith("READY=1\nSTATUS=degraded: "), ready
        draining = threading.Thread(target=_datagrams, args=(notify, lambda m: False, 120),
                                    daemon=True)
        draining.start()
        assert until(lambda: "No such device" in " ".join(health_of(loaded).get("details", ())),
                     60), (tmp_path / "daemon.log").read_text()[-2000:]
        assert health_of(loaded)["reasons"][0] == "suricata_down"
        assert health_of(loaded)["capturing"] is False
        status = subprocess.run([sys.executable, "-m", "sensor", "--config", str(config),
                                 "status"], capture_output=True, text=True)
        assert status.returncode == 1, status.stdout
        assert status.stdout.startswith("health: DEGRADED\n  - suricata_down: ")
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        notify.close()
    assert code == 0


def test_status_exits_1_while_the_sensor_is_not_capturing_yet(tmp_path) -> None:
    config_path = sensor_config(tmp_path, "mqtt://127.0.0.1:9", "eth0")
    (tmp_path / "run").mkdir()

    def status_with(state: str, capturing: bool) -> int:
        (tmp_path / "run" / "health.json").write_text(json.dumps({
            "state": state, "reasons": [], "details": [], "time": time.time(), "pid": 1,
            "capture": "running" if capturing else "starting", "capturing": capturing,
            "observations": 0, "drop_ratio": 0.0, "pending_alerts": 0, "feeds": {}}))
        return subprocess.run([sys.executable, "-m", "sensor", "--config", str(config_path),
                               "status"], capture_output=True).returncode

    assert status_with("starting", capturing=False) == 1
    assert status_with("ok", capturing=True) == 0
    assert status_with("alert", capturing=True) == 0
    assert status_with("degraded", capturing=True) == 1


def test_a_one_way_mirror_is_reported_and_clears(tmp_path, veth, broker, echap_files) -> None:
    """Connections the sniffer saw one way only, as its queue hands them to the loop."""
    host, _ = veth
    config = sensor_config(tmp_path, broker.url, host)

    def connections(answered: bool, start: float) -> None:
        for index in range(MIN_FLOWS + 5):
            endpoints = Endpoints("192.168.1.10", "203.0.113.9", 40000 + index, 443, "tcp")
            to_client = (6, 5_000) if answered else (0, 0)
            daemon.capture._queue.put(Flow(start + index, endpoints, start + index + 1,
                                           8 + to_client[0], 3_000 + to_client[1], *to_client))
        daemon.capture._arrived.set()

    def reasons() -> tuple[str, ...]:
        return tuple(health_of(daemon.config).get("reasons", ()))

    with daemon_in_thread(config, echap_files) as daemon:
        assert until(daemon.capture.running, 60)
        connections(answered=False, start=time.time())
        assert until(lambda: "mirror_one_way" in reasons(), 30), health_of(daemon.config)
        detail = dict(zip(daemon.health.reasons, daemon.health.details, strict=True))
        assert detail["mirror_one_way"].startswith(
            f"{MIN_FLOWS + 5} of {MIN_FLOWS + 5} TCP connections in the last 10 min")
        assert "the lite sniffer still reads TLS server names" in detail["mirror_one_way"]
        connections(answered=True, start=time.time())
        assert until(lambda: "mirror_one_way" not in reasons(), 30), health_of(daemon.config)
