"""The wiring between the sensor, its readers and the broker: one contract, one client factory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from screen.model import ScreenState, apply_message
from sensor.daemon.health import (
    Health,
    HealthReport,
    assess_delivery,
    health_file_text,
    read_health,
)
from sensor.outputs.commands import Command, parse_command
from sensor.outputs.link import DeliveryFacts, DeliveryOnly, ProblemKind
from sensor.wire.broker import MqttSettings, MqttSettingsError, Will, make_client
from sensor.wire.payloads import (
    HEALTH_STATES,
    REASONS,
    SEVERITIES,
    InvalidPayload,
    command_payload,
    read_payload,
    screen_payload,
    state_payload,
)
from tests.conftest import REPO

_SENSOR_INSIDES = ("sensor.alerts", "sensor.detect", "sensor.daemon", "sensor.capture",
                   "sensor.report", "sensor.analysis", "sensor.outputs.delivery",
                   "sensor.outputs.mqtt", "sensor.outputs.local", "sensor.outputs.link")


def test_the_screen_loads_nothing_of_the_sensor_but_the_contract_and_generic_helpers() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, screen.cli, screen.app, screen.model\n"
         "screen.cli.run  # the live path imports its settings lazily\n"
         "from sensor.wire.broker import local_settings\n"
         "print(' '.join(m for m in sys.modules if m.startswith('sensor')))"],
        capture_output=True, text=True, check=True, cwd=REPO).stdout.split()
    assert "sensor.wire.payloads" in loaded
    assert not [m for m in loaded if m.startswith(_SENSOR_INSIDES)], loaded


def test_the_vocabulary_is_the_schemas() -> None:
    state = json.loads((REPO / "docs" / "schemas" / "state.schema.json").read_text())
    alert = json.loads((REPO / "docs" / "schemas" / "alert.schema.json").read_text())
    assert tuple(state["properties"]["health"]["enum"]) == HEALTH_STATES
    assert tuple(state["properties"]["reasons"]["items"]["enum"]) == REASONS
    assert tuple(alert["properties"]["severity"]["enum"]) == SEVERITIES


def _state(**fields: object) -> dict:
    payload = json.loads(state_payload(site="shelter-a", sensor="box1", time=0.0, health="ok",
                                       reasons=[], details=[], counters={"pending": 0},
                                       feeds={}))
    return {**payload, **fields}


def test_a_payload_that_breaks_the_contract_changes_nothing_on_the_screen() -> None:
    topic = "veilleuse/shelter-a/box1/state"
    shown = apply_message(ScreenState(broker_connected=True), topic,
                          json.dumps(_state(health="alert")).encode())
    assert shown.shown_health == "alert"
    for broken in (_state(health="ok", extra="field"), _state(health="ok", counters=[]),
                   {key: value for key, value in _state(health="ok").items() if key != "site"}):
        after = apply_message(shown, topic, json.dumps(broken).encode())
        assert after.shown_health == "alert" and after.ignored_messages == 1, broken
    with pytest.raises(InvalidPayload, match=r"state.schema.json at health"):
        read_payload("state", json.dumps(_state(health="maintenance")).encode())


def test_a_newer_word_is_read_as_unknown_never_as_all_clear() -> None:
    newer = json.dumps(_state(health="maintenance", reasons=["firmware_updating"])).encode()
    assert read_payload("state", newer, new_words=True)["health"] == "maintenance"
    state = apply_message(ScreenState(broker_connected=True), "veilleuse/shelter-a/box1/state",
                          newer)
    assert state.shown_health == "degraded"
    assert state.shown_reasons == ("unknown_health", "firmware_updating")


def test_the_screen_asks_for_a_self_test_in_words_the_sensor_reads() -> None:
    asked = command_payload("selftest", 1767261600.0).encode()
    assert read_payload("command", asked)["time"] == "2026-01-01T10:00:00.000000Z"
    assert parse_command(asked) == Command("selftest")
    assert parse_command(b'{"schema": "veilleuse.command/1", "command": ""}') is None


def test_the_screen_says_its_own_health_in_the_contract() -> None:
    for display, problem in (("ok", None), ("missing", "no I2C device at 0x3c"),
                             ("offline", None)):
        said = read_payload("screen", screen_payload(display, problem).encode())
        assert (said["display"], said["problem"]) == (display, problem)
    with pytest.raises(InvalidPayload, match=r"screen\.schema\.json at display"):
        read_payload("screen", screen_payload("asleep", None).encode())


def test_a_client_with_unreadable_tls_files_names_the_settings_to_check(tmp_path) -> None:
    settings = MqttSettings(tls=True, ca_file=str(tmp_path / "missing-ca.pem"))
    with pytest.raises(MqttSettingsError, match="check ca_file, cert_file and key_file"):
        make_client(settings)


def test_a_client_is_made_as_configured() -> None:
    client = make_client(MqttSettings(client_id="veilleuse-a-b-tail", username="u",
                                      password="secret"),
                         will=Will("veilleuse/a/b/status", '{"status": "offline"}'))
    assert client._client_id == b"veilleuse-a-b-tail"
    assert (client._username, client._password) == (b"u", b"secret")
    assert (client._will_topic, client._will_retain, client._will_qos) == \
        (b"veilleuse/a/b/status", True, 1)
    assert "secret" not in repr(MqttSettings(password="secret"))


def _facts(kind: ProblemKind | None, problem: str | None) -> DeliveryFacts:
    return DeliveryFacts(connected=True, problem=problem, problem_kind=kind, pending=0,
                         in_flight=0, delivered=0, refused=1, last_refusal=None)


def test_without_a_live_sensor_the_health_is_delivery_s_and_decided_by_the_policy() -> None:
    link = DeliveryOnly({"echap": "v1"})
    refused = _facts(ProblemKind.ALERT_REFUSED, "the broker refused an alert (Not authorized)")
    assert link.health(refused, {"high": 1}) == assess_delivery(refused.problem, 1) == Health(
        "degraded", ("broker_refused_alert",), (refused.problem,))
    lost = _facts(ProblemKind.BROKER_UNREACHABLE, "broker unreachable (Keep alive timeout)")
    assert link.health(lost, {"high": 1}).state == "alert"
    assert link.health(lost, {"low": 3}).state == "ok"
    assert not link.takes_commands and dict(link.feed_versions()) == {"echap": "v1"}


def test_the_health_file_reads_back_as_written(tmp_path) -> None:
    path = tmp_path / "health.json"
    path.write_text(health_file_text(
        Health("degraded", ("no_traffic",), ("no mirrored traffic for 12 min",)),
        HealthReport(time=1.5, pid=42, capture="running", capturing=True, observations=7,
                     drop_ratio=0.0, pending_alerts=None, feeds={"echap": "v1"})))
    assert read_health(path) == {
        "state": "degraded", "reasons": ["no_traffic"],
        "details": ["no mirrored traffic for 12 min"], "time": 1.5, "pid": 42,
        "capture": "running", "capturing": True, "observations": 7, "drop_ratio": 0.0,
        "pending_alerts": None, "feeds": {"echap": "v1"}}
    assert read_health(tmp_path / "absent.json") is None
