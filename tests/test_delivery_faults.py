"""Delivery under faults, for real: a corrupt book row, a full disk, TLS mistakes, two clients.

Each fault is made for real (a sqlite UPDATE, a filled tmpfs, a Mosquitto TLS
listener with certificates made here) and each must end in a reported
problem, with every alert that could be read delivered and none resent in a loop.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from sensor.alerts.book import AlertBook
from sensor.outputs.delivery import AlertQueue
from sensor.outputs.mqtt import MqttPublisher
from sensor.wire.broker import MqttSettings, mqtt_settings
from sensor.wiring import pseudonymizer, publisher, topics
from tests.broker import Core, Mosquitto
from tests.conftest import until
from tests.test_mqtt import make_config, queue, synthetic_alerts
from tests.tls import make_authority, make_server_certificate

DEADLINE = 30.0


def test_a_corrupt_outbox_row_is_quarantined_named_and_the_rest_delivered(
        tmp_path, broker, caplog) -> None:
    config = make_config(tmp_path, broker)
    expected = queue(config, synthetic_alerts(5))
    database = sqlite3.connect(config.alerts.database)
    with database:  # a damaged payload: bytes that are not UTF-8 text
        damaged = database.execute("SELECT rowid, alert_id FROM outbox ORDER BY rowid "
                                   "LIMIT 1 OFFSET 2").fetchone()
        database.execute("UPDATE outbox SET payload = CAST(X'80FFFE00' AS TEXT) WHERE rowid=?",
                         (damaged[0],))
    database.close()
    core = Core(broker)
    book = AlertBook(config.alerts.database)
    sender = publisher(config, book)
    with caplog.at_level(logging.ERROR):
        sender.start()
        try:
            assert sender.wait_until_delivered(DEADLINE), sender.facts()
            assert core.wait_for(lambda c: len(c.ids()) == 4, DEADLINE)
            health = sender.facts()
        finally:
            sender.stop()
    assert damaged[1] == synthetic_alerts(5)[2].id
    assert core.ids() == set(expected) - {expected[2]}  # the core sees pseudonymous ids
    assert health.quarantined == 1 and health.errors == 0
    assert f"outbox row {damaged[0]} (alert {damaged[1]}) is unreadable" in caplog.text
    assert "SELECT * FROM quarantine" in caplog.text
    quarantined = sqlite3.connect(config.alerts.database).execute(
        "SELECT alert_id, payload FROM quarantine").fetchall()
    assert quarantined == [(damaged[1].encode(), b"\x80\xff\xfe\x00")]
    book.close()
    core.close()


def test_an_unexpected_error_in_the_owner_thread_is_reported_and_survived(
        tmp_path, broker, caplog) -> None:
    config = make_config(tmp_path, broker)
    expected = queue(config, synthetic_alerts(3))
    book = AlertBook(config.alerts.database)
    real_pending, calls = book.pending, []

    def pending_failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected fault")
        return real_pending(*args, **kwargs)

    book.pending = pending_failing_once
    core = Core(broker)
    sender = publisher(config, book)
    with caplog.at_level(logging.ERROR):
        sender.start()
        try:
            assert sender.wait_for_facts(lambda h: h.errors == 1, DEADLINE)
            assert sender.wait_until_delivered(DEADLINE), sender.facts()
            health = sender.facts()
        finally:
            sender.stop()
    assert core.wait_for(lambda c: c.ids() == set(expected), DEADLINE)
    assert health.errors == 1 and health.problem is None  # over, still counted
    assert caplog.text.count("Traceback") == 1 and "RuntimeError: injected fault" in caplog.text
    book.close()
    core.close()


def test_a_full_disk_keeps_alerts_in_memory_and_resends_nothing(
        tmp_path, broker, small_disk) -> None:
    config = make_config(tmp_path, broker)
    config = config.model_copy(update={"alerts": config.alerts.model_copy(
        update={"database": small_disk.path / "alerts.sqlite"})})
    alerts = synthetic_alerts(400)
    acknowledged_while_full, written_after = alerts[:300], alerts[300:]
    expected = queue(config, acknowledged_while_full)
    book = AlertBook(config.alerts.database)
    pseudonyms = pseudonymizer(config)
    writer = AlertQueue(book, config, pseudonyms, time.time)
    core = Core(broker)
    sender = publisher(config, book)
    small_disk.fill()
    sender.start()
    try:
        # Acknowledged, but the retirement cannot be written: remembered, not resent.
        assert sender.wait_for_facts(lambda h: h.unretired == 300 and h.disk_full, DEADLINE), \
            sender.facts()
        assert core.wait_for(lambda c: len(c.received) == 300, DEADLINE)
        writer.add_all(written_after)
        assert writer.disk_full and writer.held == 100 and writer.dropped == 0
        sender.notify()
        assert not core.wait_for(lambda c: len(c.received) > 300, 3.0), "resent while full"
        small_disk.free()
        writer.add_all([])  # the daemon calls it every turn: held alerts are written now
        assert not writer.disk_full and writer.held == 0
        sender.notify()
        assert sender.wait_until_delivered(DEADLINE), sender.facts()
        assert not sender.facts().disk_full and sender.facts().unretired == 0
    finally:
        sender.stop()
    expected += [pseudonyms.alert_id(a.id) for a in written_after]
    assert core.wait_for(lambda c: c.ids() == set(expected), DEADLINE)
    assert len(core.received) == 400, "no alert delivered twice"
    book.close()
    core.close()


def test_past_the_memory_bound_alerts_are_dropped_loudly_then_kept_again(
        tmp_path, small_disk, caplog) -> None:
    from sensor.config import Config

    config = Config.model_validate({"alerts": {"database": str(small_disk.path / "a.sqlite")},
                                    "privacy": {"device_ids": "address"}})
    book = AlertBook(config.alerts.database)
    writer = AlertQueue(book, config, None, time.time, max_held=2)
    small_disk.fill()
    alerts = synthetic_alerts(3)
    with caplog.at_level(logging.ERROR):
        writer.add_all(alerts)
    assert (writer.held, writer.dropped) == (2, 1)
    assert f"DISK FULL: alert {alerts[2].id}" in caplog.text and "NOT KEPT" in caplog.text
    small_disk.free()
    writer.add_all([dataclasses.replace(alerts[2], count=2)])  # seen again: all sightings
    assert writer.held == 0
    assert {a.id: a.count for a in book.alerts()} == {alerts[0].id: 1, alerts[1].id: 1,
                                                      alerts[2].id: 2}
    book.close()


# -- TLS ----------------------------------------------------------------------------


@pytest.fixture
def tls_broker(tmp_path, mosquitto_binary):
    """A Mosquitto whose only listener is TLS, with a certificate for 127.0.0.1."""
    directory = tmp_path / "tls-broker"
    directory.mkdir()
    authority = make_authority(directory)
    certificate, key = make_server_certificate(authority, directory, ["127.0.0.1"])
    server = Mosquitto(directory, mosquitto_binary, tls=(authority.path, certificate, key))
    server.start()
    yield server, authority
    server.stop()


def _problem_of(tmp_path: Path, settings: MqttSettings) -> tuple[bool, str]:
    """Whether a publisher with ``settings`` connects, else its reported problem."""
    book = AlertBook(tmp_path / "tls.sqlite")
    sender = MqttPublisher(settings, topics(make_config(tmp_path, _NoBroker())), book)
    sender.start()
    try:
        sender.wait_for_facts(lambda h: h.connected or
                               (h.problem or "").startswith("cannot connect"), DEADLINE)
        health = sender.facts()
    finally:
        sender.stop()
        book.close()
    return health.connected, health.problem or ""


@dataclasses.dataclass
class _NoBroker:
    url: str = "mqtt://127.0.0.1:1"


def test_tls_with_the_right_ca_connects(tmp_path, tls_broker) -> None:
    server, authority = tls_broker
    connected, problem = _problem_of(tmp_path, MqttSettings.from_url(
        server.url, ca_file=str(authority.path)))
    assert connected, problem


def test_tls_with_the_wrong_ca_says_certificate_verify_failed(tmp_path, tls_broker) -> None:
    server, _ = tls_broker
    other = make_authority(tmp_path, "Other CA")
    connected, problem = _problem_of(tmp_path, MqttSettings.from_url(
        server.url, ca_file=str(other.path)))
    assert not connected
    assert "TLS certificate verify failed" in problem and "mqtt.ca_file" in problem, problem


def test_tls_to_the_wrong_host_name_says_hostname_mismatch(tmp_path, tls_broker) -> None:
    server, authority = tls_broker
    connected, problem = _problem_of(tmp_path, MqttSettings.from_url(
        f"mqtts://localhost:{server.port}", ca_file=str(authority.path)))
    assert not connected
    assert "Hostname mismatch" in problem, problem


def test_tls_to_a_plain_port_says_so_and_never_falls_back(tmp_path, broker) -> None:
    connected, problem = _problem_of(tmp_path, MqttSettings.from_url(
        f"mqtts://127.0.0.1:{broker.port}"))
    assert not connected
    assert "TLS failed" in problem and "TLS listener" in problem, problem
    assert "New client connected" not in broker.log(), "never a fallback to plain text"


# -- client ids ---------------------------------------------------------------------


def test_each_process_role_has_its_own_client_id(tmp_path, broker) -> None:
    config = make_config(tmp_path, broker)
    ids = {role: mqtt_settings(config, role=role).client_id
           for role in ("sensor", "publish", "tail")}
    assert ids == {"sensor": "veilleuse-shelter-a-box1-sensor",
                   "publish": "veilleuse-shelter-a-box1-publish",
                   "tail": "veilleuse-shelter-a-box1-tail"}


def test_a_session_taken_over_is_reported_and_not_fought_for(tmp_path, broker) -> None:
    config = make_config(tmp_path, broker)
    books = [AlertBook(tmp_path / f"{index}.sqlite") for index in range(2)]
    senders = [publisher(config, book) for book in books]  # the same role: the same client id
    for sender in senders:
        sender.start()

    def taken_over(sender: MqttPublisher) -> bool:
        return "took over the MQTT session" in (sender.facts().problem or "")

    try:
        assert until(lambda: any(taken_over(sender) for sender in senders), DEADLINE), \
            [sender.facts() for sender in senders]
        loser = next(sender for sender in senders if taken_over(sender))
        winner = next(sender for sender in senders if sender is not loser)
        assert "veilleuse-shelter-a-box1-sensor" in loser.facts().problem
        # The loser waits (takeover_retry, 5 min) instead of taking the session back.
        assert winner.wait_for_facts(lambda h: h.connected, DEADLINE)
        assert not winner.wait_for_facts(lambda h: not h.connected, 3.0)
    finally:
        for sender, book in zip(senders, books, strict=True):
            sender.stop()
            book.close()
