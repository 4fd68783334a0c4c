"""The documented MQTT interface: real payloads validate against docs/schemas, `tail` reads them."""

from __future__ import annotations

import io
import json
import threading

import jsonschema

from sensor.alerts.book import AlertBook
from sensor.outputs.broker import mqtt_settings
from sensor.outputs.delivery import publisher
from sensor.outputs.tail import follow, format_message
from tests.broker import Core
from tests.conftest import REPO
from tests.test_mqtt import make_config, queue, synthetic_alerts

SCHEMAS = REPO / "docs" / "schemas"


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_published_payloads_match_the_documented_schemas(tmp_path, broker) -> None:
    config = make_config(tmp_path, broker)
    core = Core(broker)
    expected = queue(config, synthetic_alerts(3))
    book = AlertBook(config.alerts.database)
    sender = publisher(config, book)
    sender.start()
    try:
        assert core.wait_for(lambda c: c.ids() >= set(expected) and "state" in c.retained
                             and c.retained["state"]["counters"]["pending"] == 0, 30)
    finally:
        sender.stop()
    assert core.wait_for(lambda c: c.retained["status"]["status"] == "offline", 30)
    core.close()
    for payload in core.received:
        _validator("alert").validate(payload)
    _validator("state").validate(core.retained["state"])
    _validator("status").validate(core.retained["status"])
    assert core.retained["state"]["health"] == "alert"
    assert core.retained["state"]["counters"]["alerts_high"] == 3


def test_the_contract_carries_the_documented_schemas() -> None:
    """The sensor package's schemas (what the screen reads through) are docs/schemas."""
    for documented in SCHEMAS.glob("*.schema.json"):
        packaged = REPO / "sensor" / "outputs" / "schemas" / documented.name
        assert packaged.read_bytes() == documented.read_bytes(), documented.name
    assert {path.name for path in (REPO / "sensor" / "outputs" / "schemas").iterdir()} == \
        {path.name for path in SCHEMAS.glob("*.schema.json")}


def test_asyncapi_file_names_every_channel_we_publish() -> None:
    import yaml

    document = yaml.safe_load((REPO / "docs" / "asyncapi.yaml").read_text())
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == {f"veilleuse/{{site}}/{{sensor}}/{leaf}" for leaf in
                         ("alert", "state", "status", "screen", "command")}
    for channel in document["channels"].values():
        for message in channel["messages"].values():
            reference = message["payload"].get("$ref")
            assert reference is None or (REPO / "docs" / reference).exists()


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
