"""Subscribe to every sensor, store each message durably, and only then acknowledge it.

Alerts come through an MQTT v5 shared subscription
(``$share/<group>/<prefix>/+/+/alert``): ingest processes in one group share
them. A broker does not hand retained messages to shared subscriptions, so
each process also subscribes, unshared, to every ``state`` and ``status``
topic: every process learns every sensor's last word, and the store's
upserts make the repetition harmless. The session is persistent
(``clean_start=False``, a session expiry) and acknowledgement is manual:
paho's callback only queues; one owner thread parses a batch, commits it in
one transaction (one fsync), acknowledges it in the order received, then
exports the SIEM journal and hands news to the notifier. A process killed
before its commit loses nothing: the broker delivers again what was not
acknowledged. An invalid payload is quarantined and acknowledged (it would
come back forever otherwise). Not the job of this module: what a payload
means (``payloads``) or how it is stored (``store``).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from core.config import CoreConfig
from core.errors import CoreError
from core.notify import Notifier
from core.payloads import InvalidPayload, parse_message
from core.store import BatchOutcome, CoreStore, Received
from sensor.wire.broker import MqttSettings, MqttSettingsError, connect, make_client

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestCounters:
    messages: int = 0
    new_alerts: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    events: int = 0
    batches: int = 0
    errors: int = 0
    connected: bool = False


@dataclass(frozen=True, slots=True)
class _Delivery:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retained: bool


def subscriptions(config: CoreConfig) -> list[tuple[str, int]]:
    """The shared alert topic, and the unshared state and status topics."""
    prefix, group = config.mqtt.topic_prefix, config.mqtt.share_group
    return [(f"$share/{group}/{prefix}/+/+/alert", 1), (f"{prefix}/+/+/state", 1),
            (f"{prefix}/+/+/status", 1)]


class Ingest:
    """One ingest process's client, owner thread and database connection."""

    def __init__(self, config: CoreConfig, notifier: Notifier | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.notifier = notifier
        self._clock = clock
        self.counters = IngestCounters()
        self._deliveries: queue.Queue[_Delivery | None] = queue.Queue()
        self._changed = threading.Condition()
        self._check_now = threading.Event()
        self._disconnected = threading.Event()
        self._owner: threading.Thread | None = None
        self._settings = _settings(config)
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        try:
            client = make_client(self._settings, manual_ack=True)
        except MqttSettingsError as error:
            raise CoreError(f"mqtt: {error}") from None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        return client

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        """Open the store, start the owner thread, and connect in the background."""
        self._owner = threading.Thread(target=self._run, name="ingest-owner", daemon=True)
        self._owner.start()
        connect(self._client, self._settings, persistent=True,
                receive_maximum=self.config.mqtt.receive_maximum)

    def stop(self, timeout: float = 10.0) -> None:
        """Store and acknowledge what already arrived, then disconnect (the session stays).

        The owner thread drains first so that its acknowledgements are queued before the
        DISCONNECT, and the network loop stops only once paho reports the DISCONNECT
        written: stopping it earlier can drop queued acknowledgements, and the broker
        would deliver those messages again to the next process.
        """
        self._deliveries.put(None)
        if self._owner is not None:
            self._owner.join(timeout)
            self._owner = None
        self._disconnected.clear()
        if self._client.disconnect() == mqtt.MQTT_ERR_SUCCESS:
            self._disconnected.wait(timeout)
        self._client.loop_stop()

    def check_sensors_now(self) -> None:
        """Look for silent sensors now rather than at the next interval."""
        self._check_now.set()
        self._deliveries.put(_WAKE)

    def wait_for(self, predicate: Callable[[IngestCounters], bool], timeout: float) -> bool:
        """Block until ``predicate(counters)`` holds (re-checked after every batch) or timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.counters), timeout)

    # -- paho callbacks (network thread): hand over, nothing else -------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("the broker refused the connection: %s", reason)
            return
        log.info("MQTT connected as %s (session present: %s)", self.config.mqtt.client_id,
                 flags.session_present)
        client.subscribe(subscriptions(self.config))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[Any], properties: Any) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("the broker refused a subscription: %s", ", ".join(refused))
        # Connected means "receiving": a message published before the SUBACK may go nowhere.
        self._set(connected=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        log.warning("MQTT disconnected: %s; reconnecting", reason)
        self._set(connected=False)
        self._disconnected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        self._deliveries.put(_Delivery(message.topic, bytes(message.payload), message.mid,
                                       message.qos, message.retain))

    def _set(self, **values: Any) -> None:
        with self._changed:
            for key, value in values.items():
                setattr(self.counters, key, value)
            self._changed.notify_all()

    # -- the owner thread ------------------------------------------------------------

    def _run(self) -> None:
        store = CoreStore(self.config.store.database, writer=self.config.mqtt.client_id)
        next_check = time.monotonic()
        pending: list[_Delivery] = []
        stopping = False
        try:
            while not (stopping and not pending):
                wait = max(0.0, next_check - time.monotonic())
                if not pending:
                    stopping = self._collect(pending, wait)
                if pending:
                    if self._store(store, pending):
                        pending = []
                    elif not stopping:
                        threading.Event().wait(1.0)  # the database is busy or full: retry
                    else:
                        break
                if self._check_now.is_set() or time.monotonic() >= next_check:
                    self._check_now.clear()
                    next_check = time.monotonic() + self.config.sensors.check_interval_seconds
                    self._check(store)
        finally:
            store.close()

    def _collect(self, pending: list[_Delivery], wait: float) -> bool:
        """Fill ``pending`` with what arrived (waiting up to ``wait``); True when asked to stop."""
        try:
            first = self._deliveries.get(timeout=wait)
        except queue.Empty:
            return False
        items = [first]
        while len(items) < self.config.store.batch_max:
            try:
                items.append(self._deliveries.get_nowait())
            except queue.Empty:
                break
        pending.extend(item for item in items if item is not None and item is not _WAKE)
        return None in items

    def _store(self, store: CoreStore, pending: list[_Delivery]) -> bool:
        """Commit, acknowledge, export, notify; False if the batch could not be stored."""
        batch = [self._parse(delivery) for delivery in pending]
        try:
            outcome = store.store_batch(batch, self._clock(),
                                        self.config.sensors.silent_after_seconds)
        except (sqlite3.Error, OSError) as error:
            self._set(errors=self.counters.errors + 1)
            log.error("could not store %d message(s): %s; they stay unacknowledged and are "
                      "retried", len(pending), error)
            return False
        for delivery in pending:
            if delivery.qos > 0:
                self._client.ack(delivery.mid, delivery.qos)
        self._after_commit(store, outcome, len(pending))
        return True

    def _parse(self, delivery: _Delivery) -> Received:
        try:
            message = parse_message(delivery.topic, delivery.payload,
                                    self.config.mqtt.topic_prefix)
        except InvalidPayload as error:
            log.warning("quarantined a message on %s: %s", delivery.topic, error.reason)
            return Received(delivery.topic, delivery.payload, None, error.reason)
        return Received(delivery.topic, delivery.payload, message, retained=delivery.retained)

    def _after_commit(self, store: CoreStore, outcome: BatchOutcome, messages: int) -> None:
        self._export(store)
        if self.notifier is not None:
            for alert in outcome.new_alerts:
                self.notifier.alert(alert)
            for event in outcome.events:
                self.notifier.event(event)
        for event in outcome.events:
            log.warning("sensor %s/%s: %s (%s)", event.site, event.sensor, event.event,
                        ", ".join(event.reasons) or "-")
        counters = self.counters
        log.debug("stored %d message(s): %d new alert(s), %d updated, %d unchanged, %d "
                  "quarantined", messages, len(outcome.new_alerts), outcome.updated,
                  outcome.unchanged, outcome.quarantined)
        self._set(messages=counters.messages + messages, batches=counters.batches + 1,
                  new_alerts=counters.new_alerts + len(outcome.new_alerts),
                  updated=counters.updated + outcome.updated,
                  unchanged=counters.unchanged + outcome.unchanged,
                  quarantined=counters.quarantined + outcome.quarantined,
                  events=counters.events + len(outcome.events))

    def _export(self, store: CoreStore) -> None:
        """The SIEM lines; a failure is retried after the next batch (the journal keeps them)."""
        try:
            store.export_journal(self.config.store.jsonl_path)
        except (sqlite3.Error, OSError) as error:
            self._set(errors=self.counters.errors + 1)
            log.error("could not append to %s: %s; the lines wait in the database",
                      self.config.store.jsonl_path, error)

    def _check(self, store: CoreStore) -> None:
        try:
            events = store.check_sensors(self._clock(),
                                         self.config.sensors.silent_after_seconds)
        except sqlite3.Error as error:
            log.error("could not check for silent sensors: %s", error)
            return
        self._after_commit(store, BatchOutcome(events=events), 0)


_WAKE = _Delivery("", b"", 0, 0, False)


def _optional(path: Any) -> str | None:
    return None if path is None else str(path)


def _settings(config: CoreConfig) -> MqttSettings:
    """The broker's settings from the core's configuration (a password only with a user)."""
    mqtt_config = config.mqtt
    password = None
    if mqtt_config.username and mqtt_config.password_file is not None:
        password = _read_secret(mqtt_config.password_file)
    try:
        return MqttSettings.from_url(
            mqtt_config.url, username=mqtt_config.username, password=password,
            ca_file=_optional(mqtt_config.ca_file), cert_file=_optional(mqtt_config.cert_file),
            key_file=_optional(mqtt_config.key_file), client_id=mqtt_config.client_id,
            keepalive=mqtt_config.keepalive_seconds,
            session_expiry=mqtt_config.session_expiry_seconds)
    except MqttSettingsError as error:
        raise CoreError(f"mqtt.url: {error}") from None


def _read_secret(path: Any) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise CoreError(f"cannot read mqtt.password_file {path}: {error}") from None
