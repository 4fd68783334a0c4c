"""TLS to the core for real: client certificates as identities, the per-box ACL, bad certificates.

The core's broker here is a Mosquitto whose only listener is TLS, with
``require_certificate`` and ``use_identity_as_username`` as in
config/mosquitto/core.conf.example, and config/mosquitto/core.acl.example.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from sensor.alerts.book import AlertBook
from sensor.config import Config
from sensor.outputs.delivery import AlertQueue
from sensor.wiring import pseudonymizer, publisher
from tests.broker import Mosquitto
from tests.test_mqtt import synthetic_alerts
from tests.tls import DAY, HOUR, make_authority, make_client_certificate, make_server_certificate

DEADLINE = 30.0
REPO = Path(__file__).resolve().parent.parent
CORE_ACL = (REPO / "config" / "mosquitto" / "core.acl.example").read_text()


@pytest.fixture
def pki(tmp_path):
    directory = tmp_path / "pki"
    directory.mkdir()
    authority = make_authority(directory, "Core CA")
    clients = {name: make_client_certificate(authority, directory, name)
               for name in ("shelter-a/box1", "shelter-a/box2", "veilleuse-core",
                                 "veilleuse-operator")}
    return directory, authority, clients


def core_broker(tmp_path: Path, binary: str, authority, valid=(-HOUR, DAY)) -> Mosquitto:
    directory = tmp_path / "core"
    directory.mkdir(exist_ok=True)
    certificate, key = make_server_certificate(authority, directory, ["127.0.0.1"], valid)
    server = Mosquitto(directory, binary, acl=CORE_ACL, tls=(authority.path, certificate, key),
                       extra=("require_certificate true", "use_identity_as_username true"))
    server.start()
    return server


def box_config(tmp_path: Path, url: str, authority, clients, sensor: str = "box1") -> Config:
    certificate, key = clients[f"shelter-a/{sensor}"]
    return Config.model_validate({
        "site": "shelter-a", "sensor": sensor,
        "alerts": {"database": str(tmp_path / f"{sensor}.sqlite")},
        "mqtt": {"url": url, "ca_file": str(authority.path), "cert_file": str(certificate),
                 "key_file": str(key)},
        "privacy": {"secret_file": str(tmp_path / "pseudonym.key")}})


class Client:
    """A bare MQTT v5 client with a certificate: records messages and PUBACK reasons."""

    def __init__(self, server: Mosquitto, authority, certificate: tuple[Path, Path],
                 subscribe: str | None = None) -> None:
        self.messages: list[str] = []
        self.acks: list[str] = []
        self._changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.tls_set(ca_certs=str(authority.path), certfile=str(certificate[0]),
                            keyfile=str(certificate[1]))
        self.client.on_message = lambda c, u, m: self._add(self.messages, m.topic)
        self.client.on_publish = lambda c, u, mid, reason, p: self._add(self.acks, str(reason))
        self.client.on_subscribe = lambda *args: self._add(self.acks, "subscribed")
        self.client.connect("127.0.0.1", server.port)
        self.client.loop_start()
        if subscribe:
            self.client.subscribe(subscribe, qos=1)
            assert self.wait_for(lambda: "subscribed" in self.acks)

    def _add(self, into: list[str], value: str) -> None:
        with self._changed:
            into.append(value)
            self._changed.notify_all()

    def wait_for(self, predicate, timeout: float = DEADLINE) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_boxes_are_their_certificates_and_stay_in_their_own_topics(
        tmp_path, mosquitto_binary, pki) -> None:
    _, authority, clients = pki
    server = core_broker(tmp_path, mosquitto_binary, authority)
    ingest = Client(server, authority, clients["veilleuse-core"], "veilleuse/+/+/alert")
    snoop = Client(server, authority, clients["shelter-a/box2"], "veilleuse/#")
    config = box_config(tmp_path, server.url, authority, clients)
    book = AlertBook(config.alerts.database)
    AlertQueue(book, config, pseudonymizer(config), time.time).add_all(synthetic_alerts(10))
    sender = publisher(config, book)
    sender.start()
    try:
        assert sender.wait_until_delivered(DEADLINE), sender.facts()
        assert ingest.wait_for(lambda: len(ingest.messages) >= 10)
        assert set(ingest.messages) == {"veilleuse/shelter-a/box1/alert"}
        # box2 cannot publish as box1 ...
        snoop.client.publish("veilleuse/shelter-a/box1/alert", "{}", qos=1)
        assert snoop.wait_for(lambda: "Not authorized" in snoop.acks)
        # ... nor read box1's alerts: a marker on its own command topic (which it may read)
        # arrives, box1's ten alerts, published before it, never did.
        marker = Client(server, authority, clients["veilleuse-operator"])
        marker.client.publish("veilleuse/shelter-a/box2/command", "marker", qos=1)
        assert snoop.wait_for(lambda: "veilleuse/shelter-a/box2/command" in snoop.messages)
        marker.close()
        assert snoop.messages == ["veilleuse/shelter-a/box2/command"]
        assert len(ingest.messages) == 10, "the core's ingest reads every box"
    finally:
        sender.stop()
        ingest.close()
        snoop.close()
        server.stop()


def _problem(config: Config) -> tuple[bool, str]:
    book = AlertBook(config.alerts.database)
    AlertQueue(book, config, pseudonymizer(config), time.time).add_all(synthetic_alerts(1))
    sender = publisher(config, book)
    sender.start()
    try:
        sender.wait_for_facts(lambda h: h.connected or
                               (h.problem or "").startswith("cannot connect"), DEADLINE)
        health = sender.facts()
    finally:
        sender.stop()
        book.close()
    assert health.pending == 1 or health.connected
    return health.connected, health.problem or ""


@pytest.mark.parametrize(("valid", "words"), [
    ((-2 * DAY, -DAY), "certificate has expired"),
    ((DAY, 2 * DAY), "certificate is not yet valid")])
def test_a_server_certificate_out_of_its_dates_is_refused_and_said(
        tmp_path, mosquitto_binary, pki, valid, words) -> None:
    _, authority, clients = pki
    server = core_broker(tmp_path, mosquitto_binary, authority, valid)
    try:
        connected, problem = _problem(box_config(tmp_path, server.url, authority, clients))
    finally:
        server.stop()
    assert not connected
    assert "TLS certificate verify failed" in problem and words in problem, problem


def test_a_box_without_a_client_certificate_is_refused_and_said(
        tmp_path, mosquitto_binary, pki) -> None:
    _, authority, clients = pki
    server = core_broker(tmp_path, mosquitto_binary, authority)
    config = box_config(tmp_path, server.url, authority, clients)
    config = Config.model_validate({**config.model_dump(mode="json"), "mqtt": {
        "url": server.url, "ca_file": str(authority.path)}})
    try:
        connected, problem = _problem(config)
    finally:
        server.stop()
    assert not connected
    assert problem.startswith("cannot connect") and "client certificate" in problem, problem
