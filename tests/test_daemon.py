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

import pytest

from sensor.daemon.health import HealthInputs, assess
from sensor.demo.traffic import Traffic
from tests.broker import Core, Mosquitto
from tests.conftest import require_tool


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
    ({"feeds_age_days": 30.0, "serious_alerts": 1}, "degraded", ("feeds_stale",)),
    ({"feeds_age_days": None}, "degraded", ("feeds_stale",)),
    ({"delivery_problem": "refused", "broker_unreachable": "down"}, "degraded",
     ("broker_refused_alert", "broker_unreachable")),
])
def test_health_rules(changes, state, reasons) -> None:
    health = assess(_inputs(**changes))
    assert (health.state, health.reasons) == (state, reasons)
    assert len(health.details) == len(health.reasons)


def _until(condition: Callable[[], bool], timeout: float) -> bool:
    ticker = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        ticker.wait(0.25)
    return False


def test_the_live_sensor_end_to_end(tmp_path, veth, suricata, echap_files) -> None:
    host, namespace = veth
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker", require_tool("mosquitto"))
    broker.start()
    config = tmp_path / "veilleuse.yaml"
    config.write_text(json.dumps({
        "site": "shelter-a", "sensor": "box1", "network": {"interface": host},
        "alerts": {"database": str(tmp_path / "alerts.sqlite")}, "mqtt": {"url": broker.url},
        "privacy": {"secret_file": str(tmp_path / "key")},
        "daemon": {"state_directory": str(tmp_path / "state"),
                   "runtime_directory": str(tmp_path / "run")}}))
    health_file = tmp_path / "run" / "health.json"
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(0.5)
    core = Core(broker)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "sensor", "--config", str(config), "run",
         *(arg for path in echap_files for arg in ("--feed", str(path)))],
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)

    def health() -> dict:
        try:
            return json.loads(health_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    try:
        assert _until(lambda: health().get("capture") == "running", 90), daemon.stderr
        before = _datagrams(notify, until=lambda m: m.startswith("READY=1"), timeout=20)
        assert before and before[-1].startswith("READY=1"), before
        after = _datagrams(notify, until=lambda m: "WATCHDOG=1" in m, timeout=20)
        assert after and after[-1] == "WATCHDOG=1", "the health-checked loop pings the watchdog"

        traffic = Traffic()
        now = time.time()
        traffic.dns(now, "192.168.1.10", "192.168.1.1", "api.copy9.com",
                    [("api.copy9.com", "A", "203.0.113.50")])
        replayed = traffic.write(tmp_path / "c2.pcap")
        subprocess.run(["ip", "netns", "exec", namespace, require_tool("tcpreplay"), "-q",
                        "-i", host.replace("vlh", "vli"), str(replayed)], check=True,
                       capture_output=True)
        assert core.wait_for(lambda c: any(p["indicator"] == "copy9.com" for p in c.received),
                             60)
        assert _until(lambda: health().get("state") == "alert", 30)

        suricata_pid = int(subprocess.run(
            ["pgrep", "-f", f"suricata -c {tmp_path}/state/suricata"], capture_output=True,
            text=True).stdout.split()[0])
        os.kill(suricata_pid, signal.SIGKILL)
        assert _until(lambda: "suricata_down" in health().get("reasons", ()), 30)
        assert _until(lambda: health().get("state") == "alert" and
                      health().get("capture") == "running", 90)
        status = subprocess.run([sys.executable, "-m", "sensor", "--config", str(config),
                                 "status"], capture_output=True, text=True)
        assert status.returncode == 0 and status.stdout.startswith("health: ALERT")
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        core.close()
        notify.close()
        broker.stop()
    assert code == 0
    leftovers = subprocess.run(["pgrep", "-f", f"suricata -c {tmp_path}/state/suricata"],
                               capture_output=True, text=True).stdout
    assert leftovers == "", "Suricata must stop with the daemon"


def _datagrams(sock: socket.socket, until: Callable[[str], bool], timeout: float) -> list[str]:
    received: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            continue
        received.append(message)
        if until(message):
            break
    return received
