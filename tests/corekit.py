"""For the core's tests and bench: payloads as a sensor sends them, a fleet, a webhook, a config.

The fleet publishes with paho exactly as a sensor does (MQTT v5, QoS 1,
its own client id and a persistent session); payloads follow docs/schemas.
"""

from __future__ import annotations

import http.server
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.config import CoreConfig, load_core_config

REPO = Path(__file__).resolve().parent.parent


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alert_id(number: int) -> str:
    return f"{number:020x}"


def alert(sensor: str, number: int, count: int = 1, *, site: str = "shelter-a",
          severity: str = "high", kind: str = "domain", last_seen: float = 1_767_261_600.0,
          queued_at: float | None = None, app: str | None = "DemoSpy") -> dict[str, Any]:
    """An alert payload valid against alert.schema.json."""
    texts = {"fr": "Contact avec DemoSpy", "en": "Contact with DemoSpy"}
    return {"schema": "veilleuse.alert/1", "id": alert_id(number), "site": site,
            "sensor": sensor, "kind": kind, "severity": severity, "device": "dev-3f1c0a9b2e41",
            "device_is_pseudonym": True, "indicator": "api.demospy.example",
            "observed": "api.demospy.example", "app": app, "protocol": "dns",
            "protocols": ["dns"], "first_seen": iso(1_767_261_000.0),
            "last_seen": iso(last_seen), "count": count, "details": {},
            "clock_synchronised": True, "title": texts,
            "summary": {"fr": "dev-3f1c0a9b2e41 a contacté DemoSpy",
                        "en": "dev-3f1c0a9b2e41 contacted DemoSpy"},
            "advice": texts, "queued_at": iso(time.time() if queued_at is None else queued_at)}


def state(sensor: str, time_: float, health: str = "ok", reasons: tuple[str, ...] = (),
          site: str = "shelter-a") -> dict[str, Any]:
    return {"schema": "veilleuse.state/1", "site": site, "sensor": sensor, "time": iso(time_),
            "health": health, "reasons": list(reasons), "details": [], "counters": {},
            "feeds": {}}


def status(value: str, time_: float, reason: str | None = None) -> dict[str, Any]:
    payload = {"schema": "veilleuse.status/1", "status": value, "time": iso(time_)}
    if reason:
        payload["reason"] = reason
    return payload


def write_config(directory: Path, port: int, **sections: dict[str, Any]) -> Path:
    """A core.yaml for a broker on 127.0.0.1:``port``; ``sections`` override whole keys."""
    data: dict[str, Any] = {"mqtt": {"url": f"mqtt://127.0.0.1:{port}"},
                            "store": {"database": str(directory / "core.db")}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path = directory / "core.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def config_of(path: Path) -> CoreConfig:
    return load_core_config(path)


class SensorClient:
    """One simulated sensor: its own client id, a persistent session, a retained last will."""

    def __init__(self, port: int, sensor: str, site: str = "shelter-a") -> None:
        self.base = f"veilleuse/{site}/{sensor}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"veilleuse-{site}-{sensor}-sensor",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.will_set(f"{self.base}/status",
                             json.dumps(status("offline", time.time(), "connection lost")),
                             qos=1, retain=True)
        self.connected = threading.Event()
        self.client.on_connect = lambda *args: self.connected.set()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self.client.max_inflight_messages_set(100)
        self.client.connect("127.0.0.1", port, clean_start=False, properties=properties)
        self.client.loop_start()

    def publish(self, leaf: str, payload: dict[str, Any] | bytes,
                retain: bool = False) -> mqtt.MQTTMessageInfo:
        data = payload if isinstance(payload, bytes) else json.dumps(payload)
        return self.client.publish(f"{self.base}/{leaf}", data, qos=1, retain=retain)

    def vanish(self) -> None:
        """Disconnect with reason 0x04, "with will message": the broker publishes the will."""
        from paho.mqtt.reasoncodes import ReasonCode

        self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT,
                                                     "Disconnect with will message"))
        self.client.loop_stop()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _fleet_worker(port: int, names: list[str], rounds: list[tuple[int, int]],
                  timeout: float) -> None:
    """Each sensor publishes ``rounds`` of (alert number, count), waiting for every PUBACK."""
    sensors = [SensorClient(port, name, site="fleet") for name in names]
    for sensor in sensors:
        if not sensor.connected.wait(timeout):
            raise SystemExit(f"{sensor.base} could not connect")
    infos = []
    for number, count in rounds:
        for sensor, name in zip(sensors, names, strict=True):
            infos.append(sensor.publish("alert", alert(name, number, count, site="fleet",
                                                       last_seen=1_767_261_600.0 + count)))
    for info in infos:
        info.wait_for_publish(timeout)
    for sensor in sensors:
        sensor.close()
    if not all(info.is_published() for info in infos):
        raise SystemExit("some alerts were not acknowledged by the broker")


def fleet_names(count: int) -> list[str]:
    return [f"box{index:04d}" for index in range(count)]


def start_fleet(port: int, sensors: int, rounds: list[tuple[int, int]], workers: int = 4,
                timeout: float = 120.0) -> list[multiprocessing.Process]:
    """``sensors`` simulated sensors in ``workers`` processes; join them to wait for the end."""
    names = fleet_names(sensors)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_fleet_worker, args=(port, names[index::workers],
                                                             rounds, timeout))
                 for index in range(workers)]
    for process in processes:
        process.start()
    return processes


def start_ingest(config: Path, client_id: str, log: Path) -> subprocess.Popen[bytes]:
    """``veilleuse-core ingest`` as its own process."""
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", "core", "--config", str(config),
                                 "ingest", "--client-id", client_id], cwd=REPO,
                                stdout=output, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.kill(process.pid, sig)
    process.wait(timeout=30)


class Webhook:
    """A local HTTP server that records every JSON body posted (Apprise's ``json://``)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with hook._changed:
                    hook.bodies.append(body)
                    hook._changed.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.bodies) >= count, timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.close()
