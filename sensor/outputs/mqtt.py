"""Deliver the alert book to an MQTT broker with nothing lost (paho-mqtt 2, MQTT v5, QoS 1).

paho keeps unacknowledged messages in memory only; the alert book is our
durable outbox. paho's callbacks only hand events to a queue; one owner
thread publishes, maps each message id to its book row and retires the row
on a successful PUBACK for that id, checking the v5 reason code (a refused
publish is not a delivery). A refusal, a refused connection or a lost broker
is visible in ``health()`` and in the retained state topic. Duplicates are
possible (a PUBACK lost with the connection) and harmless: ids are stable.

A connection that fails says why (TLS certificate, host name, TLS to a plain
port, refused...), never just "not connected". Another client taking the
session over (same client id) is reported, and reconnection slows down to
``takeover_retry`` instead of fighting. A PUBACK whose retirement cannot be
written (a full disk) is remembered in memory, the alert is not published
again, and the row is retired when the disk allows. An unexpected error in
the owner thread is logged once, counted and survived (``health().errors``).
"""

from __future__ import annotations

import functools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from sensor.alerts.book import AlertBook, AlertBookFull
from sensor.errors import VeilleuseError
from sensor.outputs.broker import (
    MqttSettings,
    Will,
    connect,
    connection_error,
    make_client,
    say_stopped_and_disconnect,
)
from sensor.outputs.commands import parse_command
from sensor.outputs.link import DeliveryFacts, DeliveryOnly, Problem, ProblemKind, SensorLink
from sensor.outputs.payloads import state_payload, status_payload
from sensor.outputs.topics import Topics
from sensor.workers import WorkerErrors

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _InFlight:
    alert_id: str
    version: int
    sent_at: float


def _guarded(handler: Callable[..., None]) -> Callable[..., None]:
    """A paho callback that never raises into paho's network loop, and never fails silently."""
    @functools.wraps(handler)
    def wrapper(self: MqttPublisher, *args: Any) -> None:
        try:
            handler(self, *args)
        except Exception:
            self.callback_errors += 1
            log.exception("MQTT callback %s failed; the connection goes on", handler.__name__)
    return wrapper


class MqttPublisher:
    """Publishes every pending alert of ``book`` and keeps the status topic honest."""

    def __init__(self, settings: MqttSettings, topics: Topics, book: AlertBook,
                 link: SensorLink | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.topics = topics
        self.book = book
        self.link: SensorLink = link or DeliveryOnly()
        self._clock = clock
        self._wall_clock = wall_clock
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._in_flight: dict[int, _InFlight] = {}
        self._retry_after: dict[str, float] = {}
        self._refusals: dict[str, int] = {}
        self._acknowledged_batch: list[tuple[str, int]] = []
        self._unretired: dict[str, int] = {}
        self._disk_full = False
        self.errors = WorkerErrors("MQTT publisher")
        self._stopping = threading.Event()
        self._connected_at = float("-inf")
        self._short_sessions = 0
        self._connected = False
        self._problem: Problem | None = Problem(ProblemKind.NOT_CONNECTED_YET,
                                                "not connected yet")
        self._delivered = 0
        self._refused = 0
        self._last_refusal: str | None = None
        self._changed = threading.Condition()
        self._owner: threading.Thread | None = None
        self.callback_errors = 0
        self._state_sent: tuple[str, tuple[str, ...], tuple[tuple[str, int], ...]] | None = None
        self._state_sent_at = float("-inf")
        self._client = self._make_client()

    # -- set-up -----------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = make_client(self.settings, will=Will(self.topics.status, status_payload(
            "offline", self._wall_clock(), "connection lost")))
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(self.settings.max_in_flight)
        return client

    def start(self) -> None:
        """Connect in the background (never blocks start-up) and start the owner thread."""
        connect(self._client, self.settings, persistent=True)
        self._owner = threading.Thread(target=self._run, name="mqtt-owner", daemon=True)
        self._owner.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say ``offline`` (stopped) on the status topic, then disconnect."""
        if self._owner is None:
            return
        self._stopping.set()
        self._events.put(("stop", None))
        self._owner.join(timeout)
        say_stopped_and_disconnect(self._client, Will(self.topics.status, status_payload(
            "offline", self._wall_clock(), "stopped")), self._connected, timeout)
        self._owner = None

    @property
    def is_alive(self) -> bool:
        """The owner thread and paho's network thread run (False before ``start``, after
        ``stop``, or if either died: paho clears its ``_thread`` when its loop ends)."""
        return self._owner is not None and self._owner.is_alive() and \
            self._client._thread is not None

    def notify(self) -> None:
        """New rows are in the book: publish them now rather than at the next tick."""
        self._events.put(("wake", None))

    def wait_until_delivered(self, timeout: float) -> bool:
        """True once the book's outbox is empty (re-checked after every owner-thread pass)."""
        self.notify()
        return self.wait_for_facts(lambda facts: facts.pending == 0, timeout)

    def wait_for_facts(self, predicate: Callable[[DeliveryFacts], bool],
                       timeout: float) -> bool:
        """Block until ``predicate(facts())`` holds (re-checked after every event) or timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.facts()), timeout)

    def facts(self) -> DeliveryFacts:
        """Delivery as it stands; what it means for the health is the link's to say."""
        problem = self._problem
        return DeliveryFacts(connected=self._connected,
                             problem=self.errors.problem or (problem and problem.text),
                             problem_kind=problem and problem.kind,
                             pending=self.book.pending_count(), in_flight=len(self._in_flight),
                             delivered=self._delivered, refused=self._refused,
                             last_refusal=self._last_refusal, errors=self.errors.count,
                             quarantined=self.book.quarantined_count(),
                             disk_full=self._disk_full, unretired=len(self._unretired))

    # -- paho callbacks (network thread): hand over, nothing else ----------------

    @_guarded
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        self._connected_at = self._clock()
        self._events.put(("connect", (reason, flags.session_present)))

    @_guarded
    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        """paho calls this inside its ``except OSError``: the exception is the real reason."""
        self._events.put(("connect_failed", connection_error(sys.exception(),
                                                             self.settings.tls)))

    @_guarded
    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Any) -> None:
        short = self._clock() - self._connected_at < _SHORT_SESSION
        self._short_sessions = self._short_sessions + 1 if short else 0
        taken_over = getattr(reason, "value", None) == _SESSION_TAKEN_OVER or \
            self._short_sessions >= _SHORT_SESSIONS_FOR_TAKEOVER
        if taken_over:
            # Here, before paho computes its reconnect wait: do not take the session back.
            retry = int(self.settings.takeover_retry)
            client.reconnect_delay_set(min_delay=retry, max_delay=retry)
        self._events.put(("disconnect", (reason, taken_over)))

    @_guarded
    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._events.put(("command", message.payload))

    @_guarded
    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        self._events.put(("puback", (mid, reason)))

    # -- the owner thread ---------------------------------------------------------

    def _next_events(self) -> list[tuple[str, Any]]:
        """The next event (or a tick after a second), plus all those already waiting."""
        try:
            events = [self._events.get(timeout=1.0)]
        except queue.Empty:
            return [("tick", None)]
        while len(events) < 1000:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        return events

    def _run(self) -> None:
        while True:
            events = self._next_events()
            if any(kind == "stop" for kind, _ in events):
                return
            pause = 0.0
            try:
                self._pass(events)
            except VeilleuseError as error:
                self._problem = Problem(ProblemKind.BOOK_ERROR, str(error))
                log.error("alert delivery paused: %s", error)
            except Exception as error:  # noqa: BLE001 - the worker boundary: report, go on
                pause = self.errors.record(error)
            else:
                self.errors.succeeded()
            with self._changed:
                self._changed.notify_all()
            if pause and self._stopping.wait(pause):
                return

    def _pass(self, events: list[tuple[str, Any]]) -> None:
        for kind, value in events:
            self._handle(kind, value)
        self._retire_acknowledged()
        self._expire_in_flight()
        if self._connected:
            self._fill()
            self._publish_state()

    def _handle(self, kind: str, value: Any) -> None:
        if kind == "connect":
            reason, session_present = value
            if reason.is_failure:
                self._connected = False
                self._problem = Problem(ProblemKind.CONNECTION_REFUSED,
                                        f"the broker refused the connection: {reason}")
                log.error("MQTT %s:%d: %s", self.settings.host, self.settings.port,
                          self._problem.text)
                return
            self._connected, self._problem = True, None
            self._client.reconnect_delay_set(min_delay=1, max_delay=30)
            log.info("MQTT connected to %s:%d (session present: %s)", self.settings.host,
                     self.settings.port, session_present)
            self._client.publish(self.topics.status, status_payload(
                "online", self._wall_clock()), qos=1, retain=True)
            if self.link.takes_commands:
                self._client.subscribe(f"{self.topics.base}/command", qos=1)
        elif kind == "connect_failed":
            self._connected = False
            self._report(Problem(ProblemKind.CANNOT_CONNECT, f"cannot connect to "
                                 f"{self.settings.host}:{self.settings.port}: {value}"))
        elif kind == "disconnect":
            self._disconnected(*value)
        elif kind == "puback":
            self._acknowledged(*value)
        elif kind == "command":
            self._command(value)

    def _disconnected(self, reason: ReasonCode, taken_over: bool) -> None:
        """A lost connection; a taken-over session (the broker says so, or the connection
        keeps closing right after it opens) is not fought for: reconnection slows down."""
        was_connected, self._connected = self._connected, False
        if not was_connected and self.settings.tls and not taken_over:
            # TLS 1.3: a client certificate the broker refuses only shows after the handshake.
            self._report(Problem(ProblemKind.CANNOT_CONNECT, (
                f"cannot connect to {self.settings.host}:{self.settings.port}: TLS failed: the "
                f"broker closed the connection before accepting it ({reason}); does it require "
                "a client certificate it trusts? check mqtt.cert_file and mqtt.key_file")))
            return
        if taken_over:
            retry = self.settings.takeover_retry
            self._problem = Problem(ProblemKind.SESSION_TAKEN_OVER, (
                f"another client with the same client id ({self.settings.client_id}) took "
                f"over the MQTT session, or the broker keeps closing it right after it opens "
                f"({reason}); trying again in {retry:.0f} s. Give each process its own client "
                "id, or stop the other one"))
            log.error("MQTT %s:%d: %s", self.settings.host, self.settings.port,
                      self._problem.text)
            return
        self._problem = Problem(ProblemKind.BROKER_UNREACHABLE, f"broker unreachable ({reason})")
        log.warning("MQTT disconnected from %s:%d (%s); alerts wait in the book",
                    self.settings.host, self.settings.port, reason)

    def _report(self, problem: Problem) -> None:
        """A connection problem, logged when it changes (a retry loop logs it once)."""
        if problem != self._problem:
            log.error("MQTT %s; alerts wait in the book", problem.text)
        self._problem = problem

    def _command(self, payload: bytes) -> None:
        """A request (``veilleuse.command/1``) from whoever the broker's ACL lets write it."""
        command = parse_command(payload)
        if command is None or not self.link.takes_commands:
            log.warning("ignored a malformed command on %s/command", self.topics.base)
            return
        self.link.command(command)

    def _acknowledged(self, mid: int, reason: ReasonCode) -> None:
        entry = self._in_flight.pop(mid, None)
        if entry is None:
            return  # the status or state topic, or an alert already retried
        if reason.is_failure:
            self._refused += 1
            self._last_refusal = f"{self.topics.alert}: {reason}"
            self._problem = Problem(ProblemKind.ALERT_REFUSED,
                                    f"the broker refused an alert ({reason})")
            tries = self._refusals[entry.alert_id] = self._refusals.get(entry.alert_id, 0) + 1
            self.book.mark_failed(entry.alert_id, str(reason))
            delay = min(self.settings.retry_backoff_max, 2.0 ** min(tries, 16))
            self._retry_after[entry.alert_id] = self._clock() + delay
            if tries == 1:
                log.error("the broker refused alert %s on %s: %s; it stays in the book and is "
                          "retried in %.0f s (check the broker's ACL for this sensor)",
                          entry.alert_id, self.topics.alert, reason, delay)
            return
        self._retry_after.pop(entry.alert_id, None)
        self._refusals.pop(entry.alert_id, None)
        self._acknowledged_batch.append((entry.alert_id, entry.version))
        if self._problem and self._problem.kind is ProblemKind.ALERT_REFUSED:
            self._problem = None

    def _retire_acknowledged(self) -> None:
        """One transaction (one fsync) for every PUBACK of this batch of events.

        If the book cannot be written (a full disk), the acknowledged versions
        stay in memory, are not published again, and are retired on a later pass.
        """
        if not self._acknowledged_batch and not self._unretired:
            return
        self._unretired.update(self._acknowledged_batch)
        self._acknowledged_batch = []
        try:
            self._delivered += self.book.mark_all_delivered(list(self._unretired.items()),
                                                            self._wall_clock())
        except AlertBookFull as error:
            if not self._disk_full:
                log.error("%s; %d acknowledged alert(s) are remembered in memory and retired "
                          "once space is freed (they are not sent again)", error,
                          len(self._unretired))
            self._disk_full = True
            return
        if self._disk_full:
            log.info("alert book writable again: %d acknowledged alert(s) retired",
                     len(self._unretired))
        self._unretired.clear()
        self._disk_full = False

    def state(self) -> tuple[str, list[str], list[str], dict[str, int]]:
        """Health (ok / alert / degraded), reason codes, their details, and counters.

        The health is the link's (the live daemon's, or delivery's own view
        without one); the counters are the book's and delivery's.
        """
        severities = self.book.severity_counts()
        counters = state_counters(severities, self.book.pending_count(), self._delivered,
                                  self._refused)
        health = self.link.health(self.facts(), severities)
        return health.state, list(health.reasons), list(health.details), counters

    def state_message(self) -> tuple[tuple, str]:
        """(what changed, the state payload): the same state for the core and the local broker."""
        health, reasons, details, counters = self.state()
        fingerprint = (health, tuple(reasons), tuple(sorted(counters.items())))
        return fingerprint, state_payload(
            site=self.topics.site, sensor=self.topics.sensor, time=self._wall_clock(),
            health=health, reasons=reasons, details=details, counters=counters,
            feeds=self.link.feed_versions())

    def _publish_state(self) -> None:
        fingerprint, payload = self.state_message()
        now = self._clock()
        if fingerprint == self._state_sent and now - self._state_sent_at < \
                self.settings.state_interval:
            return
        self._client.publish(self.topics.state, payload, qos=1, retain=True)
        self._state_sent, self._state_sent_at = fingerprint, now

    def _expire_in_flight(self) -> None:
        """Forget copies never acknowledged; they are published again (same id)."""
        now = self._clock()
        stale = [mid for mid, entry in self._in_flight.items()
                 if now - entry.sent_at > self.settings.ack_timeout]
        for mid in stale:
            del self._in_flight[mid]

    def _fill(self) -> None:
        room = self.settings.max_in_flight - len(self._in_flight)
        if room <= 0:
            return
        busy = frozenset(entry.alert_id for entry in self._in_flight.values())
        now = self._clock()
        waiting = frozenset(a for a, when in self._retry_after.items() if when > now)
        acknowledged = frozenset(self._unretired)
        for entry in self.book.pending(limit=room, exclude=busy | waiting | acknowledged):
            info = self._client.publish(self.topics.alert, entry.payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.debug("publish of %s deferred (%s)", entry.alert_id, info.rc)
                break
            self._in_flight[info.mid] = _InFlight(entry.alert_id, entry.version, now)


_SESSION_TAKEN_OVER = 0x8E
_SHORT_SESSION = 10.0  # seconds; Mosquitto 2.0 closes a taken-over session without a reason
_SHORT_SESSIONS_FOR_TAKEOVER = 3


def state_counters(severities: Mapping[str, int], pending: int, delivered: int,
                   refused: int) -> dict[str, int]:
    """The state topic's counters: alerts by severity, then delivery's."""
    counters = {f"alerts_{severity}": severities.get(severity, 0)
                for severity in ("info", "low", "medium", "high")}
    counters.update(pending=pending, delivered=delivered, refused=refused)
    return counters
