"""Deliver the alert book to an MQTT broker with nothing lost (paho-mqtt 2, MQTT v5, QoS 1).

paho keeps unacknowledged messages in memory only; the alert book is our
durable outbox. paho's callbacks only hand events to a queue; one owner
thread publishes, maps each message id to its book row and retires the row
on a successful PUBACK for that id, checking the v5 reason code (a refused
publish is not a delivery). A refusal, a refused connection or a lost broker
is a typed fact in ``facts()``, and the retained state topic carries the
health the sensor behind the publisher (its ``SensorLink``) decides. Duplicates are
possible (a PUBACK lost with the connection) and harmless: ids are stable.

A connection that fails says why (TLS certificate, host name, TLS to a plain
port, refused...), never just "not connected". Another client taking the
session over (same client id) is reported, and reconnection slows down to
``takeover_retry`` instead of fighting. A PUBACK whose retirement cannot be
written (a full disk) is remembered in memory, the alert is not published
again, and the row is retired when the disk allows. An unexpected error in
the owner thread is logged once, counted and survived (``facts().errors``).

Not the job of this module: making the client (``broker``), tracking the
book's rows (``outbox``), naming connection problems (``session``), deciding
a health (``sensor.daemon.health``) or reading commands (``commands``).
"""

from __future__ import annotations

import functools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from sensor.alerts.book import AlertBook
from sensor.errors import VeilleuseError
from sensor.outputs import session
from sensor.outputs.announce import StateThrottle, state_counters
from sensor.outputs.commands import parse_command
from sensor.outputs.link import DeliveryFacts, DeliveryOnly, Problem, ProblemKind, SensorLink
from sensor.outputs.outbox import Outbox, OutboxLimits
from sensor.outputs.session import TakeoverWatch
from sensor.wire.broker import (
    MqttSettings,
    Will,
    connect,
    connection_error,
    make_client,
    say_stopped_and_disconnect,
)
from sensor.wire.payloads import state_payload, status_payload
from sensor.wire.topics import Topics
from sensor.workers import WorkerErrors

log = logging.getLogger(__name__)


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
        self.outbox = Outbox(book, OutboxLimits(settings.max_in_flight, settings.ack_timeout,
                                                settings.retry_backoff_max),
                             topics.alert, clock, wall_clock)
        self.errors = WorkerErrors("MQTT publisher")
        self._stopping = threading.Event()
        self._takeovers = TakeoverWatch(clock)
        self._connected = False
        self._problem: Problem | None = Problem(ProblemKind.NOT_CONNECTED_YET,
                                                "not connected yet")
        self._refused = 0
        self._changed = threading.Condition()
        self._retire_now = threading.Event()  # someone waits for the book's outbox to empty
        self._owner: threading.Thread | None = None
        self.callback_errors = 0
        self._state = StateThrottle(settings.state_interval, clock)
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
        """True once the book's outbox is empty (re-checked after every owner-thread pass).

        Meanwhile every PUBACK is retired at once, not in the next batch: who
        waits (``veilleuse publish``, a test) reads the book next.
        """
        self._retire_now.set()
        self.notify()
        try:
            return self.wait_for_facts(lambda facts: facts.pending == 0 and
                                       not self.outbox.retiring, timeout)
        finally:
            self._retire_now.clear()

    def wait_for_facts(self, predicate: Callable[[DeliveryFacts], bool],
                       timeout: float) -> bool:
        """Block until ``predicate(facts())`` holds (re-checked after every event) or timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.facts()), timeout)

    def facts(self) -> DeliveryFacts:
        """Delivery as it stands; what it means for the health is the link's to say."""
        problem = self._problem
        return DeliveryFacts(connected=self._connected,
                             problem=self.errors.problem or (problem.text if problem else None),
                             problem_kind=problem.kind if problem else None,
                             pending=self.outbox.pending_count(),
                             in_flight=self.outbox.in_flight, delivered=self.outbox.delivered,
                             refused=self._refused, last_refusal=self.outbox.last_refusal,
                             errors=self.errors.count, quarantined=self.book.quarantined_count(),
                             disk_full=self.outbox.disk_full, unretired=self.outbox.unretired)

    # -- paho callbacks (network thread): hand over, nothing else ----------------

    @_guarded
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        self._takeovers.opened()
        self._events.put(("connect", (reason, flags.session_present)))

    @_guarded
    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        """paho calls this inside its ``except OSError``: the exception is the real reason."""
        self._events.put(("connect_failed", connection_error(sys.exception(),
                                                             self.settings.tls)))

    @_guarded
    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Any) -> None:
        taken_over = self._takeovers.closed(reason)
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
                self._retire_at_stop(events)
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

    def _retire_at_stop(self, events: list[tuple[str, Any]]) -> None:
        """Write the PUBACKs received so far: what the core has is not sent again."""
        try:
            for kind, value in events:
                if kind == "puback":
                    self._acknowledged(*value)
            self.outbox.retire(now=True)
        except VeilleuseError as error:
            log.error("alert delivery: %s; alerts the core acknowledged last are sent again "
                      "at the next start (same ids)", error)

    def _pass(self, events: list[tuple[str, Any]]) -> None:
        for kind, value in events:
            self._handle(kind, value)
        self.outbox.retire(now=self._retire_now.is_set())
        self.outbox.expire()
        if self._connected:
            self._fill()
            self._publish_state()

    def _handle(self, kind: str, value: Any) -> None:
        if kind == "connect":
            reason, session_present = value
            if reason.is_failure:
                self._connected = False
                self._problem = session.refused(reason)
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
            self._report(session.cannot_connect(self.settings, value))
        elif kind == "disconnect":
            self._disconnected(*value)
        elif kind == "puback":
            self._acknowledged(*value)
        elif kind == "command":
            self._command(value)

    def _disconnected(self, reason: ReasonCode, taken_over: bool) -> None:
        """A lost connection; a taken-over session (the broker says so, or the connection
        keeps closing right after it opens) is not fought for: reconnection slows down."""
        problem = session.lost(self.settings, reason, was_connected=self._connected,
                               taken_over=taken_over)
        self._connected = False
        if problem.kind is ProblemKind.CANNOT_CONNECT:
            self._report(problem)
        elif problem.kind is ProblemKind.SESSION_TAKEN_OVER:
            self._problem = problem
            log.error("MQTT %s:%d: %s", self.settings.host, self.settings.port, problem.text)
        else:
            self._problem = problem
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
        delivered = self.outbox.acknowledged(mid, reason)
        if delivered is False:
            self._problem = Problem(ProblemKind.ALERT_REFUSED,
                                    f"the broker refused an alert ({reason})")
            self._refused += 1  # after the problem: who waits on the count sees both
        elif delivered and self._problem and self._problem.kind is ProblemKind.ALERT_REFUSED:
            self._problem = None

    def state(self) -> tuple[str, list[str], list[str], dict[str, int]]:
        """Health (ok / alert / degraded), reason codes, their details, and counters.

        The health is the link's (the live daemon's, or delivery's own view
        without one); the counters are the book's and delivery's.
        """
        severities = self.book.severity_counts()
        counters = state_counters(severities, self.outbox.pending_count(),
                                  self.outbox.delivered, self._refused)
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
        if self._state.is_due(fingerprint):
            self._client.publish(self.topics.state, payload, qos=1, retain=True)
            self._state.sent(fingerprint)

    def _fill(self) -> None:
        for row in self.outbox.sendable():
            info = self._client.publish(self.topics.alert, row.payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.debug("publish of %s deferred (%s)", row.alert_id, info.rc)
                break
            self.outbox.sent(info.mid, row)
