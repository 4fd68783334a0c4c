"""`veilleuse tail`: follow a broker's alert, state and status topics, readably.

For the SOC analyst or the technical volunteer: one line per message, in
French or English, or the raw JSON with ``--json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from typing import IO, Any

import paho.mqtt.client as mqtt

from sensor.wire.broker import MqttSettings, connect, make_client

log = logging.getLogger(__name__)


def format_message(topic: str, payload: bytes, language: str) -> str:
    """One readable line for a Veilleuse message; unknown payloads are shown as they are."""
    try:
        message = json.loads(payload)
        schema = message["schema"]
    except (ValueError, KeyError, TypeError):
        return f"{topic}: {payload[:200]!r}"
    if schema.startswith("veilleuse.alert/"):
        return (f"{message['last_seen']} [{message['severity'].upper()}] "
                f"{message['site']}/{message['sensor']} {message['title'][language]}: "
                f"{message['summary'][language]} (id {message['id']})")
    if schema.startswith("veilleuse.state/"):
        reasons = ", ".join(message.get("reasons", [])) or "-"
        return (f"{message['time']} state {message['site']}/{message['sensor']}: "
                f"{message['health']} ({reasons})")
    if schema.startswith("veilleuse.status/"):
        reason = f" ({message['reason']})" if message.get("reason") else ""
        return f"{message['time']} status {topic.rsplit('/', 2)[-2]}: {message['status']}{reason}"
    return f"{topic}: {payload[:200]!r}"


def follow(settings: MqttSettings, prefix: str, stream: IO[str], language: str, *,
           raw: bool = False, limit: int | None = None,
           stop: threading.Event | None = None,
           on_subscribed: Callable[[], None] | None = None) -> int:
    """Print messages until ``limit`` messages or ``stop``; returns how many were printed."""
    stop = stop or threading.Event()
    printed = 0
    lock = threading.Lock()

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        if reason.is_failure:
            log.error("the broker refused the connection: %s", reason)
            stop.set()
            return
        client.subscribe([(f"{prefix}/+/+/alert", 1), (f"{prefix}/+/+/state", 1),
                          (f"{prefix}/+/+/status", 1)])

    def on_subscribe(client: mqtt.Client, *args: Any) -> None:
        if on_subscribed:
            on_subscribed()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        nonlocal printed
        with lock:
            if stop.is_set():
                return
            line = message.payload.decode("utf-8", "replace") if raw else \
                format_message(message.topic, bytes(message.payload), language)
            stream.write(line + "\n")
            stream.flush()
            printed += 1
            if limit is not None and printed >= limit:
                stop.set()

    # The broker names this reader: several may follow at once without taking over each other.
    client = make_client(dataclasses.replace(settings, client_id=""))
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    connect(client, settings, persistent=False)
    try:
        stop.wait()
    finally:
        client.disconnect()
        client.loop_stop()
    return printed
