"""Copy the sensor's state, status and alerts to the box's own broker, for the screen.

Best effort, on purpose: the alert book and the core's PUBACK are the
delivery (``sensor.outputs.mqtt``); nothing here is durable, retried from
disk or counted as delivered. What the screen needs is the retained state
(health, reasons, counters), the retained status with its last will, and
the alerts as they are stored, for its recent list. The screen keeps working
when the core is unreachable, because none of this goes through the core.
It also carries the screen's self-test requests back (the command topic).

Not the job of this module: deciding what the state says (the publisher's
``state_message``), or publishing to the core.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from sensor.outputs.announce import StateThrottle
from sensor.outputs.commands import parse_command
from sensor.outputs.link import SensorLink
from sensor.wire.broker import (
    MqttSettings,
    MqttSettingsError,
    Will,
    connect,
    connection_error,
    make_client,
    say_stopped_and_disconnect,
)
from sensor.wire.payloads import status_payload
from sensor.wire.topics import Topics

log = logging.getLogger(__name__)

MAX_QUEUED = 1000
"""Alerts paho keeps in memory while the local broker is away; older ones are dropped."""


class LocalMirror:
    """The box's broker as the screen sees it: state and status retained, alerts as they come.

    ``state_message()`` returns (fingerprint, payload); the state is published
    when the fingerprint changes, or every ``state_interval`` seconds.
    """

    def __init__(self, settings: MqttSettings, topics: Topics,
                 state_message: Callable[[], tuple[object, str]], link: SensorLink,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if settings.tls:
            raise MqttSettingsError("the local broker is on loopback: write mqtt://, not mqtts://")
        self.settings, self.topics = settings, topics
        self._state_message = state_message
        self._wall_clock = wall_clock
        self._link = link
        self._connected = False
        self._problem: str | None = "not connected yet"
        self._state = StateThrottle(settings.state_interval, clock)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self.alerts_published = 0
        self.alerts_dropped = 0
        self._client = make_client(settings, will=Will(topics.status, status_payload(
            "offline", wall_clock(), "connection lost")))
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.max_queued_messages_set(MAX_QUEUED)

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def problem(self) -> str | None:
        """Why the local broker is not reachable, or None."""
        return self._problem

    def wait_for_connection(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._connected, timeout)

    def start(self) -> None:
        """Connect in the background; a thread keeps the retained state current."""
        # No persistent session: nothing here is worth keeping for the sensor.
        connect(self._client, self.settings, persistent=False)
        self._thread = threading.Thread(target=self._run, name="mqtt-local", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """``offline`` (stopped) on the status topic, then disconnect."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        say_stopped_and_disconnect(self._client, Will(self.topics.status, status_payload(
            "offline", self._wall_clock(), "stopped")), self._connected, timeout)
        self._thread = None

    def publish_alert(self, payload: str) -> None:
        """An alert just stored in the book, for the screen's recent list (never retained)."""
        info = self._client.publish(self.topics.alert, payload, qos=1)
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self.alerts_published += 1  # NO_CONN: paho sends it on reconnection
            return
        self.alerts_dropped += 1
        if self.alerts_dropped == 1:
            log.warning("the local broker is away and %d alerts already wait in memory: this "
                        "one is not copied to the screen (it is in the alert book and goes to "
                        "the core as usual)", MAX_QUEUED)

    def state_changed(self) -> None:
        """Publish the state now rather than at the next second."""
        self._wake.set()

    # -- paho's thread: small and guarded by paho's own logging -------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            self._set(False, f"the local broker refused the connection: {reason}")
            return
        client.publish(self.topics.status, status_payload("online", self._wall_clock()),
                       qos=1, retain=True)
        if self._link.takes_commands:
            client.subscribe(f"{self.topics.base}/command", qos=1)
        self._state.forget()  # a restarted broker without persistence lost it
        self._set(True, None)
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._set(False, f"cannot connect to the local broker {self.settings.host}:"
                  f"{self.settings.port}: {connection_error(sys.exception(), False)}")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Any) -> None:
        self._set(False, f"local broker unreachable ({reason})")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        command = parse_command(bytes(message.payload))  # paho types it bytes | bytearray
        if command is None or not self._link.takes_commands:
            log.warning("ignored a malformed command on %s", message.topic)
            return
        self._link.command(command)

    def _set(self, connected: bool, problem: str | None) -> None:
        if problem and problem != self._problem:
            log.warning("%s; the screen shows nothing new until it is back (alerts still go "
                        "to the core)", problem)
        with self._changed:
            self._connected, self._problem = connected, problem
            self._changed.notify_all()

    # -- the state thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set() or not self._connected:
                continue
            try:
                self._publish_state()
            except Exception:  # best effort: logged, the next second retries
                log.exception("the state for the local broker could not be published")

    def _publish_state(self) -> None:
        fingerprint, payload = self._state_message()
        if self._state.is_due(fingerprint):
            self._client.publish(self.topics.state, payload, qos=1, retain=True)
            self._state.sent(fingerprint)
