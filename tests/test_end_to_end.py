"""Alerts are acknowledged by the core itself; the screen reads the box's own broker.

The shipped topology: the sensor publishes alerts (and its state and status)
to the core's Mosquitto, and a best-effort copy to the box's local Mosquitto,
run here with config/mosquitto/veilleuse.conf as the package installs it
(persistence, autosave_interval 60, password file, ACL); only its port and
file paths change. The core's broker has a per-box ACL like the one in
docs/mqtt.md, with user names and passwords (TLS is in test_tls_core.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from screen.app import ScreenApp
from screen.controls import Gesture
from screen.pages import load_fonts
from sensor.alerts.book import AlertBook
from sensor.config import Config
from sensor.messages import load_catalogue
from sensor.outputs.commands import Command
from sensor.outputs.delivery import AlertQueue
from sensor.outputs.link import DeliveryOnly
from sensor.wire.broker import core_is_local, local_settings
from sensor.wiring import pseudonymizer, sensor_outputs, topics
from tests.broker import Core, Mosquitto
from tests.conftest import until
from tests.test_mqtt import _assert_only_redeliveries, synthetic_alerts

DEADLINE = 30.0
REPO = Path(__file__).resolve().parent.parent
SHIPPED_LOCAL = REPO / "config" / "mosquitto" / "veilleuse.conf"
LOCAL_PASSWORD = "local-secret"
CORE_ACL = (REPO / "config" / "mosquitto" / "core.acl.example").read_text()
CORE_USERS = {"shelter-a/box1": "box1-secret", "shelter-a/box2": "box2-secret",
              "veilleuse-core": "ingest-secret", "veilleuse-operator": "operator-secret"}


def _secret(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value)
    path.chmod(0o600)
    return path


@pytest.fixture
def local_broker(tmp_path, mosquitto_binary):
    directory = tmp_path / "local"
    directory.mkdir()
    server = Mosquitto(directory, mosquitto_binary, shipped=SHIPPED_LOCAL,
                       passwords={"veilleuse": LOCAL_PASSWORD})
    server.start()
    yield server
    server.kill()


@pytest.fixture
def core_broker(tmp_path, mosquitto_binary):
    """The core's broker, not started: each test decides when the core is up."""
    directory = tmp_path / "core"
    directory.mkdir()
    server = Mosquitto(directory, mosquitto_binary, acl=CORE_ACL, passwords=CORE_USERS)
    yield server
    server.stop()


def box_config(tmp_path: Path, core: Mosquitto, local: Mosquitto, sensor: str = "box1") -> Config:
    return Config.model_validate({
        "site": "shelter-a", "sensor": sensor,
        "alerts": {"database": str(tmp_path / f"{sensor}.sqlite")},
        "mqtt": {"url": core.url, "username": f"shelter-a/{sensor}",
                 "password_file": str(_secret(tmp_path, f"{sensor}.pass",
                                              CORE_USERS[f"shelter-a/{sensor}"]))},
        "local_broker": {"url": local.url, "username": "veilleuse",
                         "password_file": str(_secret(tmp_path, "local.pass", LOCAL_PASSWORD))},
        "privacy": {"secret_file": str(tmp_path / "pseudonym.key")}})


def ingest(core: Mosquitto) -> Core:
    """The core's ingest account: reads every box."""
    return Core(core, username="veilleuse-core", password=CORE_USERS["veilleuse-core"])


def screen_reader(local: Mosquitto) -> Core:
    """What the screen subscribes to, on the box's broker, with the box's account."""
    return Core(local, username="veilleuse", password=LOCAL_PASSWORD, client_id="test-screen")


class _CommandsTaken(DeliveryOnly):
    """A sensor that takes commands, and notes their names."""

    takes_commands = True

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def command(self, command: Command) -> None:
        self.names.append(command.name)


class Sensor:
    """The live sensor's outputs, wired as `veilleuse run` wires them."""

    def __init__(self, config: Config) -> None:
        self.book = AlertBook(config.alerts.database)
        self.alerts = AlertQueue(self.book, config, pseudonymizer(config), time.time)
        link = _CommandsTaken()
        self.outputs = sensor_outputs(config, self.book, link)
        self.commands = link.names
        self.outputs.connect(self.alerts)
        self.pseudonyms = pseudonymizer(config)
        self.outputs.start()

    def add(self, count: int) -> list[str]:
        alerts = synthetic_alerts(count)
        self.alerts.add_all(alerts)
        self.outputs.core.notify()
        return [self.pseudonyms.alert_id(a.id) for a in alerts]

    def close(self) -> None:
        self.outputs.stop()
        self.book.close()


def test_the_book_keeps_alerts_until_the_core_acknowledges_while_the_screen_sees_them(
        tmp_path, local_broker, core_broker) -> None:
    config = box_config(tmp_path, core_broker, local_broker)
    screen = ScreenApp(topics(config), load_catalogue("en", "screen.locales"), load_fonts(), None)
    screen.connect(local_settings(config, "screen"), None)
    stop = threading.Event()
    threading.Thread(target=screen.run, args=(stop,), daemon=True).start()
    sensor = Sensor(config)
    try:
        expected = sensor.add(5)
        # The core is down: the screen shows the alerts and the state, the book keeps all.
        assert screen.wait_for_state(lambda s: len(s.recent) == 5 and s.health == "alert" and
                                     s.sensor_online is True, DEADLINE), screen.state
        assert sensor.outputs.core.wait_for_facts(
            lambda h: (h.problem or "").startswith("cannot connect"), DEADLINE)
        assert sensor.book.pending_count() == 5, "the local broker's PUBACK is no delivery"

        core_broker.start()
        core = ingest(core_broker)
        assert sensor.outputs.core.wait_until_delivered(DEADLINE)
        assert core.wait_for(lambda c: c.ids() >= set(expected), DEADLINE)
        assert core.wait_for(lambda c: c.retained.get("status", {}).get("status") == "online",
                             DEADLINE)
        core.close()
    finally:
        sensor.close()
        stop.set()
        screen.close()


def test_a_box_without_a_core_uses_one_connection_for_both(tmp_path, local_broker) -> None:
    config = box_config(tmp_path, local_broker, local_broker)
    # The shipped default: mqtt is the box's broker, with the box's account.
    config = Config.model_validate({**config.model_dump(mode="json"), "mqtt": {
        "url": local_broker.url.replace("127.0.0.1", "localhost"), "username": "veilleuse",
        "password_file": str(tmp_path / "local.pass")}})
    assert core_is_local(config)
    reader = screen_reader(local_broker)
    sensor = Sensor(config)
    try:
        assert sensor.outputs.local is None
        expected = sensor.add(3)
        assert reader.wait_for(lambda c: c.ids() >= set(expected), DEADLINE)
        assert sensor.outputs.core.wait_until_delivered(DEADLINE)
        assert reader.wait_for(lambda c: "state" in c.retained, DEADLINE)
    finally:
        sensor.close()
    reader.close()
    assert sorted(c["id"] for c in reader.received) == sorted(expected), "published once"
    connects = [line for line in local_broker.log().splitlines() if "New client connected" in
                line and "veilleuse-shelter-a-box1" in line]
    assert len(connects) == 1, connects


def test_self_tests_come_from_the_screen_or_the_cores_operator_and_nobody_else(
        tmp_path, local_broker, core_broker) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    core_broker.start()
    config = box_config(tmp_path, core_broker, local_broker)
    sensor = Sensor(config)
    command = json.dumps({"schema": "veilleuse.command/1", "command": "selftest"})
    topic = "veilleuse/shelter-a/box1/command"

    def publish(broker: Mosquitto, user: str | None, password: str | None) -> str:
        """The outcome of one QoS 1 publish: the PUBACK's reason, or the refused connection."""
        outcome: list[str] = []
        done = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        if user:
            client.username_pw_set(user, password)

        def on_connect(c, u, f, reason, p):
            if reason.is_failure:
                outcome.append(f"refused: {reason}")
                done.set()
            else:
                c.publish(topic, command, qos=1)

        client.on_connect = on_connect
        client.on_publish = lambda c, u, mid, reason, p: (outcome.append(str(reason)),
                                                           done.set())
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            assert done.wait(DEADLINE)
        finally:
            client.disconnect()
            client.loop_stop()
        return outcome[0]

    try:
        assert until(lambda: sensor.outputs.core.facts().connected and
                     sensor.outputs.local.is_connected, DEADLINE)
        # The screen's long hold, through the box's broker.
        screen = ScreenApp(topics(config), load_catalogue("en", "screen.locales"),
                           load_fonts(), None)
        screen.connect(local_settings(config, "screen"), None)
        stop = threading.Event()
        threading.Thread(target=screen.run, args=(stop,), daemon=True).start()
        assert screen.wait_for_state(lambda s: s.broker_connected is True, DEADLINE)
        screen.gesture(Gesture.LONG_HOLD)
        assert until(lambda: sensor.commands == ["selftest"], DEADLINE)
        stop.set()
        screen.close()
        # The core's operator, through the core's broker.
        assert publish(core_broker, "veilleuse-operator", CORE_USERS["veilleuse-operator"]) \
            == "Success"
        assert until(lambda: sensor.commands == ["selftest"] * 2, DEADLINE)
        # Nobody else: another box on the core, anonymous or guessing on the box's broker.
        assert publish(core_broker, "shelter-a/box2", CORE_USERS["shelter-a/box2"]) == \
            "Not authorized"
        assert publish(core_broker, None, None).startswith("refused")
        assert publish(local_broker, None, None).startswith("refused")
        assert publish(local_broker, "veilleuse", "guess").startswith("refused")
        # A marker published by the operator after them arrives: nothing else was taken.
        assert publish(core_broker, "veilleuse-operator", CORE_USERS["veilleuse-operator"]) \
            == "Success"
        assert until(lambda: len(sensor.commands) == 3, DEADLINE)
        assert sensor.commands == ["selftest"] * 3
    finally:
        sensor.close()


# -- the power cut -----------------------------------------------------------------------


def test_a_power_cut_of_the_local_broker_loses_nothing_on_the_way_to_the_core(
        tmp_path, local_broker, core_broker) -> None:
    """Core down, 500 alerts, the box's broker SIGKILLed and restarted, core back."""
    total = 500
    core_broker.start()
    core = ingest(core_broker)  # its persistent session waits on the core's broker
    core.close()
    core_broker.stop()
    config = box_config(tmp_path, core_broker, local_broker)
    screen = screen_reader(local_broker)
    sensor = Sensor(config)
    try:
        expected = sensor.add(total)
        assert screen.wait_for(lambda c: len(c.ids()) == total, DEADLINE)
        assert sensor.book.pending_count() == total
        local_broker.kill()
        local_broker.start()
        assert until(lambda: sensor.outputs.local.is_connected, DEADLINE)
        core_broker.start()
        core = ingest(core_broker)
        assert sensor.outputs.core.wait_until_delivered(60.0), sensor.outputs.core.facts()
        retired = {sensor.pseudonyms.alert_id(a.id) for a in sensor.book.alerts() if a.delivered}
        assert len(retired) == total
        # Every alert the book retired is at the core (retired only on the core's PUBACK).
        assert core.wait_for(lambda c: c.ids() >= retired, DEADLINE)
        assert core.ids() == set(expected)
        core.close()
        _assert_only_redeliveries(core)
    finally:
        sensor.close()
        screen.close()


_SENSOR_PROCESS = """
import sys, threading
from sensor.alerts.book import AlertBook
from sensor.config import load_config
from sensor.wiring import sensor_outputs
config = load_config(sys.argv[1])
book = AlertBook(config.alerts.database)
outputs = sensor_outputs(config, book)
outputs.start()
ok = outputs.core.wait_until_delivered(120)
outputs.stop()
sys.exit(0 if ok else 1)
"""


def test_a_sensor_killed_mid_delivery_loses_nothing(tmp_path, local_broker, core_broker) -> None:
    total = 5000
    core_broker.start()
    config = box_config(tmp_path, core_broker, local_broker)
    config_path = tmp_path / "veilleuse.yaml"
    config_path.write_text(json.dumps(config.model_dump(mode="json")))
    book = AlertBook(config.alerts.database)
    pseudonyms = pseudonymizer(config)
    AlertQueue(book, config, pseudonyms, time.time).add_all(synthetic_alerts(total))
    expected = {pseudonyms.alert_id(a.id) for a in synthetic_alerts(total)}
    core = ingest(core_broker)
    command = [sys.executable, "-c", _SENSOR_PROCESS, str(config_path)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert core.wait_for(lambda c: len(c.ids()) >= 1 and book.pending_count() < total, DEADLINE)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    left = book.pending_count()
    assert 0 < left < total, "the kill should land in the middle of delivery"
    second = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr
    assert core.wait_for(lambda c: c.ids() >= expected, DEADLINE)
    core.close()
    assert book.pending_count() == 0
    _assert_only_redeliveries(core)
    book.close()
