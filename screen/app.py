"""The screen process: MQTT in, pages out, button and LED in between.

One owner thread handles every event (MQTT messages, connection changes,
gestures, a one-second tick) in order; paho's and gpiozero's threads only
hand events over. Rendering is a pure function of (state, view).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import paho.mqtt.client as mqtt
from luma.core.render import canvas

from screen.controls import Controls, Gesture, led_pattern
from screen.model import ScreenState, apply_message
from screen.pages import Fonts, NetworkInfo, Page, View, render
from sensor.messages import Catalogue
from sensor.wire.broker import MqttSettings, Will, connect, make_client
from sensor.wire.payloads import SELFTEST, command_payload, screen_payload
from sensor.wire.topics import Topics

log = logging.getLogger(__name__)

SHIFTS = ((0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (0, 1))


@dataclass(frozen=True, slots=True)
class ScreenSettings:
    reveal_seconds: float = 60.0
    blank_after_seconds: float = 300.0
    shift_every_seconds: float = 120.0


def local_network() -> NetworkInfo:
    """This box's hostname and the address it would use to reach others (nothing is sent)."""
    addresses = []
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                udp.connect((probe, 9))
                addresses.append(udp.getsockname()[0])
        except OSError:
            continue
    return NetworkInfo(socket.gethostname(), tuple(addresses))


class ScreenApp:
    """Owns the state, the view, the display (or none) and the controls."""

    def __init__(self, topics: Topics, texts: Catalogue, fonts: Fonts, display: Any,
                 settings: ScreenSettings | None = None, *, follow_site: bool = False,
                 network: Callable[[], NetworkInfo] = local_network,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 timezone: tzinfo | None = None) -> None:
        self.topics, self.texts, self.fonts, self.display = topics, texts, fonts, display
        source = f"{topics.prefix}/{topics.site}/+" if follow_site else topics.base
        self.subscriptions = [(f"{source}/{leaf}", 1) for leaf in ("state", "status", "alert")]
        self.settings = settings or ScreenSettings()
        self._network, self._clock, self._wall_clock = network, clock, wall_clock
        self.state = ScreenState()
        self.view = View(timezone=timezone or datetime.now().astimezone().tzinfo or UTC)
        self.controls: Controls | None = None
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.blanked = False
        self._acknowledged_ids: frozenset[str] = frozenset()
        self._last_input = clock()
        self._started = clock()
        self._client: mqtt.Client | None = None
        self.selftest_requests = 0
        self._changed = threading.Condition()

    def wait_for_state(self, predicate: Callable[[ScreenState], bool], timeout: float) -> bool:
        """Block until ``predicate(state)`` holds (re-checked after every event) or timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.state), timeout)

    # -- events -------------------------------------------------------------------

    def gesture(self, gesture: Gesture) -> None:
        """From gpiozero's thread: hand over."""
        self.events.put(("gesture", gesture))

    def handle(self, kind: str, value: Any) -> None:
        if kind == "message":
            topic, payload = value
            self.state = apply_message(self.state, topic, payload)
        elif kind == "connected":
            self.state = dataclasses.replace(self.state, broker_connected=value)
        elif kind == "gesture":
            self._on_gesture(value)
        self._tick()

    def _on_gesture(self, gesture: Gesture) -> None:
        self._last_input = self._clock()
        if self.blanked:
            self.blanked = False  # the first touch only wakes the screen
            self.view = dataclasses.replace(self.view, revealed=True)
            return
        if gesture is Gesture.PRESS:
            self.view = dataclasses.replace(self.view, page=self.view.page.next(), revealed=True)
        elif gesture is Gesture.HOLD:
            self._acknowledged_ids = frozenset(line.id for line in self.state.recent)
            log.info("alerts acknowledged on the screen (%d)", len(self._acknowledged_ids))
        elif gesture is Gesture.LONG_HOLD:
            self.selftest_requests += 1
            self._publish(f"{self.topics.base}/command",
                          command_payload(SELFTEST, self._wall_clock()), retain=False)
            log.info("self-test requested from the screen")

    def _tick(self) -> None:
        now = self._clock()
        idle = now - self._last_input
        acknowledged = bool(self._acknowledged_ids) and \
            {line.id for line in self.state.recent} <= self._acknowledged_ids
        view = dataclasses.replace(
            self.view, acknowledged=acknowledged,
            shift=SHIFTS[int((now - self._started) // self.settings.shift_every_seconds)
                         % len(SHIFTS)])
        if idle > self.settings.reveal_seconds:
            view = dataclasses.replace(view, revealed=False, page=Page.STATUS)
        self.view = view
        health = self.state.shown_health
        self.blanked = health == "ok" and idle > self.settings.blank_after_seconds
        if self.controls is not None:
            self.controls.show(led_pattern(health, acknowledged))
        self.draw()

    # -- output ---------------------------------------------------------------------

    def draw(self) -> None:
        if self.display is None:
            return
        if self.blanked:
            self.display.hide()
            return
        self.display.show()
        with canvas(self.display) as draw:
            render(draw, self.state, self.view, self.texts, self.fonts, self._network())

    def _publish(self, topic: str, payload: str, retain: bool) -> None:
        if self._client is not None:
            self._client.publish(topic, payload, qos=1, retain=retain)

    # -- MQTT and the loop ----------------------------------------------------------------

    def connect(self, settings: MqttSettings, display_problem: str | None) -> None:
        topic = f"{self.topics.base}/screen"
        health = screen_payload("missing" if display_problem else "ok", display_problem)
        client = make_client(settings, will=Will(topic, screen_payload("offline",
                                                                       display_problem)))

        def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
            if reason.is_failure:
                log.error("the broker refused the screen: %s", reason)
                self.events.put(("connected", False))
                return
            client.subscribe(self.subscriptions)
            client.publish(topic, health, qos=1, retain=True)
            self.events.put(("connected", True))

        client.on_connect = on_connect
        client.on_disconnect = lambda *args: self.events.put(("connected", False))
        client.on_message = lambda c, u, message: self.events.put(
            ("message", (message.topic, message.payload)))
        client.reconnect_delay_set(1, 30)
        connect(client, settings, persistent=True)
        self._client = client

    def run(self, stop: threading.Event) -> None:
        """Handle events until ``stop`` is set; a tick every second keeps timers honest."""
        self.draw()
        while not stop.is_set():
            try:
                kind, value = self.events.get(timeout=1.0)
            except queue.Empty:
                kind, value = "tick", None
            try:
                self.handle(kind, value)
            except Exception:
                log.exception("the screen failed on a %s event; it goes on", kind)
            with self._changed:
                self._changed.notify_all()

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self.controls is not None:
            self.controls.close()
