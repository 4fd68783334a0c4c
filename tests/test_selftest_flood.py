"""A flood of self-test requests on the command topic: one self-test, the loop keeps going."""

from __future__ import annotations

import json
import logging
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from sensor.config import load_config
from sensor.daemon.notify import SystemdNotifier
from tests.broker import Mosquitto
from tests.conftest import require_tool, until
from tests.daemons import daemon_in_thread, health_of, sensor_config

FLOOD = 1000


def test_a_command_flood_runs_one_selftest_and_the_watchdog_keeps_beating(
        tmp_path, veth, echap_files, caplog) -> None:
    host, _ = veth
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker", require_tool("mosquitto"))
    broker.start()
    config_path = sensor_config(tmp_path, broker.url, host)
    config = load_config(config_path)
    pings = threading.Semaphore(0)
    notifier = SystemdNotifier(send=lambda m: pings.release() if "WATCHDOG=1" in m else None)
    most_selftest_threads = 0
    screen = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    try:
        with caplog.at_level(logging.INFO), \
                daemon_in_thread(config_path, echap_files, notifier=notifier) as daemon:
            assert until(lambda: health_of(config).get("capture") == "running", 30)
            earlier = set(threading.enumerate())  # e.g. another test's self-test, still waiting
            screen.connect("127.0.0.1", broker.port)
            screen.loop_start()
            command = json.dumps({"schema": "veilleuse.command/1", "command": "selftest",
                                  "time": "now"})
            for _ in range(FLOOD):
                screen.publish("veilleuse/shelter-a/box1/command", command, qos=1)

            def all_handled() -> bool:
                nonlocal most_selftest_threads
                most_selftest_threads = max(most_selftest_threads, sum(
                    t.name == "selftest" for t in set(threading.enumerate()) - earlier))
                return daemon.selftests.requested == FLOOD

            assert until(all_handled, 60, every=0.01), daemon.selftests.requested
            assert (daemon.selftests.started, most_selftest_threads) == (1, 1)
            drops = [r for r in caplog.records if "self-test request dropped" in r.message]
            assert len(drops) == 1, "extra requests are logged once"
            while pings.acquire(blocking=False):
                pass  # count only the pings after the flood
            for _ in range(3):  # the loop still runs its health check and pings
                assert pings.acquire(timeout=10)
    finally:
        screen.loop_stop()
        screen.disconnect()
        broker.stop()
