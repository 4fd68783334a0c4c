"""The documented MQTT interface: what the code sends to a real broker is what AsyncAPI says."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import threading
from importlib import resources
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.payloads import LEAVES
from screen.app import ScreenApp
from screen.controls import Gesture
from screen.pages import load_fonts
from sensor.alerts.book import AlertBook
from sensor.messages import load_catalogue
from sensor.outputs.tail import follow, format_message
from sensor.wire.broker import mqtt_settings
from sensor.wire.topics import Topics
from sensor.wiring import publisher
from tests.conftest import REPO
from tests.test_mqtt import make_config, queue, synthetic_alerts

SCHEMAS = REPO / "docs" / "schemas"


def _asyncapi() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docs" / "asyncapi.yaml").read_text())


def _channel_of(topic: str, channels: dict[str, Any]) -> str | None:
    """The AsyncAPI channel whose address (``veilleuse/{site}/{sensor}/alert``) ``topic`` is."""
    for name, channel in channels.items():
        pattern = re.sub(r"\\{[a-z]+\\}", "[^/]+", re.escape(channel["address"]))
        if re.fullmatch(pattern, topic):
            return name
    return None


def _payload_validator(channel: dict[str, Any]) -> jsonschema.protocols.Validator:
    """The channel's one message payload schema, a docs/schemas file or written inline."""
    (message,) = channel["messages"].values()
    schema = message["payload"]
    if "$ref" in schema:
        schema = json.loads((REPO / "docs" / schema["$ref"]).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


class _Wiretap:
    """Every message under ``veilleuse/#`` as published: QoS 2 and retain-as-published."""

    def __init__(self, broker) -> None:
        self.messages: list[tuple[str, bytes, int, bool]] = []
        self._changed = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-wiretap",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        options = SubscribeOptions(qos=2, retainAsPublished=True)
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe("veilleuse/#", options=options)
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "the wiretap could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append((message.topic, message.payload, message.qos, message.retain))
            self._changed.notify_all()

    def wait_for_topics(self, suffixes: set[str], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: suffixes <= {
                topic.rsplit("/", 1)[1] for topic, *_ in self.messages}, timeout)

    def wait_for_status(self, status: str, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: any(
                topic.endswith("/status") and json.loads(payload)["status"] == status
                for topic, payload, *_ in self.messages), timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish_everything(tmp_path, broker) -> list[tuple[str, bytes, int, bool]]:
    """What the real sensor publisher and the real screen send to a real broker."""
    config = make_config(tmp_path, broker)
    wiretap = _Wiretap(broker)
    queue(config, synthetic_alerts(3))
    sender = publisher(config, AlertBook(config.alerts.database))
    screen = ScreenApp(Topics(config.site, config.sensor), load_catalogue("en", "screen.locales"),
                       load_fonts(), None)
    stop = threading.Event()
    loop = threading.Thread(target=screen.run, args=(stop,))
    sender.start()
    screen.connect(dataclasses.replace(mqtt_settings(config), client_id="test-screen"), None)
    loop.start()
    try:
        assert sender.wait_until_delivered(30)
        assert screen.wait_for_state(lambda s: s.counter("alerts_high") == 3, 30)
        screen.gesture(Gesture.LONG_HOLD)  # the self-test request
        assert wiretap.wait_for_topics({"alert", "state", "status", "screen", "command"}, 30)
    finally:
        stop.set()
        loop.join(10)
        screen.close()
        sender.stop()
    assert wiretap.wait_for_status("offline", 30)  # the clean stop's status is documented too
    wiretap.close()
    return wiretap.messages


def test_the_contract_carries_the_documented_schemas() -> None:
    """The sensor package's schemas (what the screen reads through) are docs/schemas."""
    for documented in SCHEMAS.glob("*.schema.json"):
        packaged = REPO / "sensor" / "wire" / "schemas" / documented.name
        assert packaged.read_bytes() == documented.read_bytes(), documented.name
    assert {path.name for path in (REPO / "sensor" / "wire" / "schemas").iterdir()} == \
        {path.name for path in SCHEMAS.glob("*.schema.json")}


def test_what_the_code_publishes_is_what_asyncapi_documents(tmp_path, broker) -> None:
    """Each message a real publisher and screen send: its channel, schema, QoS and retain flag.

    A topic the code sends but asyncapi.yaml does not list fails here, and so
    does a documented channel nothing sends.
    """
    channels = _asyncapi()["channels"]
    seen: set[str] = set()
    for topic, payload, qos, retain in _publish_everything(tmp_path, broker):
        name = _channel_of(topic, channels)
        assert name is not None, f"{topic} is published but not in docs/asyncapi.yaml"
        seen.add(name)
        _payload_validator(channels[name]).validate(json.loads(payload))
        binding = channels[name]["bindings"]["mqtt"]
        assert (qos, retain) == (binding["qos"], binding["retain"]), topic
    assert seen == set(channels), "documented channels that nothing publishes"


def test_topics_and_core_schemas_are_the_documented_ones() -> None:
    """Every topic ``Topics`` builds is a channel; the core checks the documented schema files."""
    document = _asyncapi()
    channels = document["channels"]
    topics = Topics("site-x", "box-y")
    built = {name: getattr(topics, name) for name, value in vars(Topics).items()
             if isinstance(value, property) and name != "base"}
    assert set(built) >= {"alert", "state", "status"}
    for name, topic in built.items():
        assert _channel_of(topic, channels) == name, f"Topics.{name} ({topic}) is not documented"
    referenced = {leaf: channel["messages"][leaf]["payload"]["$ref"]
                  for leaf, channel in channels.items()
                  if "$ref" in channel["messages"][leaf]["payload"]}
    assert set(referenced) == set(channels), "every payload has its schema file"
    for leaf in LEAVES:  # what the core receives, it validates against the documented file
        reference = referenced[leaf]
        assert (REPO / "docs" / reference).read_bytes() == \
            resources.files("core").joinpath("schemas", f"{leaf}.schema.json").read_bytes()
    operated = {operation["channel"]["$ref"].rsplit("/", 1)[1]
                for operation in document["operations"].values()}
    assert operated == set(channels), "each channel has its operation (send or receive)"


class _Lines(io.StringIO):
    """A stream that says when it holds ``wanted`` alert lines."""

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.wanted = wanted
        self.ready = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if self.getvalue().count("] shelter-a/box1 ") >= self.wanted:
            self.ready.set()
        return written


def test_tail_prints_alerts_state_and_status_readably(tmp_path, broker) -> None:
    config = make_config(tmp_path, broker)
    queue(config, synthetic_alerts(2))
    output, subscribed, stop = _Lines(wanted=2), threading.Event(), threading.Event()
    reader = threading.Thread(target=follow, args=(mqtt_settings(config), "veilleuse", output,
                                                   "en"),
                              kwargs={"stop": stop, "on_subscribed": subscribed.set})
    reader.start()
    try:
        assert subscribed.wait(10)
        sender = publisher(config, AlertBook(config.alerts.database))
        sender.start()
        assert sender.wait_until_delivered(30)
        assert output.ready.wait(30)
        sender.stop()
    finally:
        stop.set()
        reader.join(30)
    lines = output.getvalue().splitlines()
    alert_lines = [line for line in lines if "[HIGH] shelter-a/box1" in line]
    assert len(alert_lines) == 2
    assert all("Contact with a stalkerware server (TheTruthSpy): Device dev-" in line
               for line in alert_lines)
    assert any(" status box1: online" in line for line in lines)
    assert any(" state shelter-a/box1: alert (-)" in line for line in lines)


def test_tail_speaks_french_and_shows_unknown_payloads_as_they_are() -> None:
    payload = json.dumps({"schema": "veilleuse.alert/1", "id": "x", "site": "s", "sensor": "b",
                          "severity": "high", "last_seen": "2026-01-01T10:00:00.000000Z",
                          "title": {"fr": "Titre", "en": "Title"},
                          "summary": {"fr": "Résumé", "en": "Summary"}}).encode()
    assert format_message("veilleuse/s/b/alert", payload, "fr") == \
        "2026-01-01T10:00:00.000000Z [HIGH] s/b Titre: Résumé (id x)"
    assert format_message("other/topic", b"\xff not json", "fr") == \
        "other/topic: b'\\xff not json'"
