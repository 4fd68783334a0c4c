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
import json
import logging
import queue
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sensor.alerts.book import AlertBook, AlertBookFull
from sensor.errors import VeilleuseError
from sensor.outputs.payloads import state_payload, status_payload
from sensor.outputs.topics import Topics
from sensor.workers import WorkerErrors

log = logging.getLogger(__name__)


class MqttSettingsError(VeilleuseError):
    """The broker URL or TLS settings are unusable."""


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """How to reach the broker; secrets never appear in ``repr``."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = "veilleuse"
    keepalive: int = 30
    session_expiry: int = 86_400
    max_in_flight: int = 100
    state_interval: float = 60.0
    ack_timeout: float = 60.0
    retry_backoff_max: float = 300.0
    takeover_retry: float = 300.0

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MqttSettings:
        """``mqtt://host[:port]`` or ``mqtts://host[:port]`` (user:password@ allowed)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise MqttSettingsError(f"{_mask(url)} is not a broker URL; write "
                                    "mqtt://host:1883 or mqtts://host:8883")
        tls = parts.scheme == "mqtts"
        values: dict[str, Any] = {"host": parts.hostname, "port": parts.port or
                                  (8883 if tls else 1883), "tls": tls}
        if parts.username:
            values["username"] = parts.username
        if parts.password:
            values["password"] = parts.password
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


def say_stopped_and_disconnect(client: mqtt.Client, status_topic: str, connected: bool,
                               now: float, timeout: float) -> None:
    """A clean stop: the retained status says ``offline`` (stopped), not the will's crash."""
    if connected:
        client.publish(status_topic, status_payload("offline", now, "stopped"), qos=1,
                       retain=True).wait_for_publish(timeout)
    client.disconnect()
    client.loop_stop()


def _mask(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url


@dataclass(frozen=True, slots=True)
class PublisherHealth:
    """What an operator needs to know about delivery."""

    connected: bool
    problem: str | None
    pending: int
    in_flight: int
    delivered: int
    refused: int
    last_refusal: str | None
    errors: int = 0
    """Unexpected errors the owner thread survived."""
    quarantined: int = 0
    """Outbox rows moved aside as unreadable (see the book's quarantine table)."""
    disk_full: bool = False
    """The book's disk is full: acknowledged alerts wait in memory to be retired."""
    unretired: int = 0
    """Acknowledged alerts whose retirement is not written yet (kept in memory)."""


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
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.topics = topics
        self.book = book
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
        self.feed_versions: dict[str, str] = {}
        self.on_command: Callable[[str], None] | None = None
        self.health_source: Callable[[], tuple[str, tuple[str, ...], tuple[str, ...]]] | None = \
            None
        self._connected = False
        self._problem: str | None = "not connected yet"
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
        settings = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                             protocol=MQTTProtocolVersion.MQTTv5)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(settings.max_in_flight)
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            try:
                client.tls_set(ca_certs=settings.ca_file, certfile=settings.cert_file,
                               keyfile=settings.key_file, cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError) as error:
                raise MqttSettingsError(f"TLS set-up failed: {error}; check ca_file, cert_file "
                                        "and key_file") from None
        client.will_set(self.topics.status, status_payload("offline", self._wall_clock(),
                                                           "connection lost"),
                        qos=1, retain=True)
        return client

    def start(self) -> None:
        """Connect in the background (never blocks start-up) and start the owner thread."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.session_expiry
        self._client.connect_async(self.settings.host, self.settings.port,
                                   keepalive=self.settings.keepalive, clean_start=False,
                                   properties=properties)
        self._client.loop_start()
        self._owner = threading.Thread(target=self._run, name="mqtt-owner", daemon=True)
        self._owner.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say ``offline`` (stopped) on the status topic, then disconnect."""
        if self._owner is None:
            return
        self._stopping.set()
        self._events.put(("stop", None))
        self._owner.join(timeout)
        say_stopped_and_disconnect(self._client, self.topics.status, self._connected,
                                   self._wall_clock(), timeout)
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
        return self.wait_for_health(lambda health: health.pending == 0, timeout)

    def wait_for_health(self, predicate: Callable[[PublisherHealth], bool],
                        timeout: float) -> bool:
        """Block until ``predicate(health())`` holds (re-checked after every event) or timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.health()), timeout)

    def health(self) -> PublisherHealth:
        return PublisherHealth(connected=self._connected,
                               problem=self.errors.problem or self._problem,
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
                self._problem = str(error)
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
                self._problem = f"the broker refused the connection: {reason}"
                log.error("MQTT %s:%d: %s", self.settings.host, self.settings.port, self._problem)
                return
            self._connected, self._problem = True, None
            self._client.reconnect_delay_set(min_delay=1, max_delay=30)
            log.info("MQTT connected to %s:%d (session present: %s)", self.settings.host,
                     self.settings.port, session_present)
            self._client.publish(self.topics.status, status_payload(
                "online", self._wall_clock()), qos=1, retain=True)
            if self.on_command is not None:
                self._client.subscribe(f"{self.topics.base}/command", qos=1)
        elif kind == "connect_failed":
            problem = f"cannot connect to {self.settings.host}:{self.settings.port}: {value}"
            if problem != self._problem:
                log.error("MQTT %s; alerts wait in the book", problem)
            self._connected, self._problem = False, problem
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
            problem = (f"cannot connect to {self.settings.host}:{self.settings.port}: TLS "
                       f"failed: the broker closed the connection before accepting it "
                       f"({reason}); does it require a client certificate it trusts? check "
                       "mqtt.cert_file and mqtt.key_file")
            if problem != self._problem:
                log.error("MQTT %s; alerts wait in the book", problem)
            self._problem = problem
            return
        if taken_over:
            retry = self.settings.takeover_retry
            self._problem = (f"another client with the same client id ({self.settings.client_id}) "
                             f"took over the MQTT session, or the broker keeps closing it right "
                             f"after it opens ({reason}); trying again in {retry:.0f} s. Give "
                             "each process its own client id, or stop the other one")
            log.error("MQTT %s:%d: %s", self.settings.host, self.settings.port, self._problem)
            return
        self._problem = f"broker unreachable ({reason})"
        log.warning("MQTT disconnected from %s:%d (%s); alerts wait in the book",
                    self.settings.host, self.settings.port, reason)

    def _command(self, payload: bytes) -> None:
        """A request (``veilleuse.command/1``) from whoever the broker's ACL lets write it."""
        command = parse_command(payload)
        if command is None or self.on_command is None:
            log.warning("ignored a malformed command on %s/command", self.topics.base)
            return
        self.on_command(command)

    def _acknowledged(self, mid: int, reason: ReasonCode) -> None:
        entry = self._in_flight.pop(mid, None)
        if entry is None:
            return  # the status or state topic, or an alert already retried
        if reason.is_failure:
            self._refused += 1
            self._last_refusal = f"{self.topics.alert}: {reason}"
            self._problem = f"the broker refused an alert ({reason})"
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
        if self._problem and self._problem.startswith("the broker refused an alert"):
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

        With ``health_source`` (the live daemon) the health is the daemon's;
        without, delivery's own view: a medium or high alert in the book means
        ``alert``, a broker refusing alerts means ``degraded``.
        """
        severities = self.book.severity_counts()
        counters = {f"alerts_{severity}": severities.get(severity, 0)
                    for severity in ("info", "low", "medium", "high")}
        counters.update(pending=self.book.pending_count(), delivered=self._delivered,
                        refused=self._refused)
        if self.health_source is not None:
            health, reasons, details = self.health_source()
            return health, list(reasons), list(details), counters
        if self.refusing:
            return "degraded", ["broker_refused_alert"], [self._problem or ""], counters
        if counters["alerts_medium"] or counters["alerts_high"]:
            return "alert", [], [], counters
        return "ok", [], [], counters

    @property
    def refusing(self) -> bool:
        """The broker refused the last alert it was offered."""
        return bool(self._problem and self._problem.startswith("the broker refused an alert"))

    def state_message(self) -> tuple[tuple, str]:
        """(what changed, the state payload): the same state for the core and the local broker."""
        health, reasons, details, counters = self.state()
        fingerprint = (health, tuple(reasons), tuple(sorted(counters.items())))
        return fingerprint, state_payload(
            site=self.topics.site, sensor=self.topics.sensor, time=self._wall_clock(),
            health=health, reasons=reasons, details=details, counters=counters,
            feeds=self.feed_versions)

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


def parse_command(payload: bytes) -> str | None:
    """The command of a ``veilleuse.command/1`` message, or None if it is not one.

    >>> parse_command(b'{"schema": "veilleuse.command/1", "command": "selftest"}')
    'selftest'
    >>> parse_command(b'selftest') is None
    True
    """
    try:
        message = json.loads(payload)
        if str(message.get("schema", "")).startswith("veilleuse.command/"):
            return str(message["command"])
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


_SESSION_TAKEN_OVER = 0x8E
_SHORT_SESSION = 10.0  # seconds; Mosquitto 2.0 closes a taken-over session without a reason
_SHORT_SESSIONS_FOR_TAKEOVER = 3


def connection_error(error: BaseException | None, tls: bool) -> str:
    """The reason a connection attempt failed, in the words an operator can act on."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return (f"TLS certificate verify failed: {error.verify_message} (check mqtt.ca_file "
                "and that the URL's host name is in the broker's certificate)")
    if isinstance(error, ssl.SSLError):
        return (f"TLS failed: {error.reason or error} (is this port a TLS listener? check "
                "the URL's scheme and port)")
    if tls and isinstance(error, ConnectionResetError | BrokenPipeError | ssl.SSLEOFError):
        return (f"TLS failed: the server closed the connection during the handshake "
                f"({error.strerror or error}); is this port a TLS listener? check the URL's "
                "scheme and port")
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return "the connection failed for an unknown reason"
