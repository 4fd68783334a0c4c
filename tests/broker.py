"""A real Mosquitto for tests (127.0.0.1, a free port) and a "core" that collects alerts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Mosquitto:
    """Start, stop, restart and reconfigure one broker; its sessions persist across restarts."""

    def __init__(self, directory: Path, binary: str, acl: str | None = None,
                 tls: tuple[Path, Path, Path] | None = None, *,
                 passwords: dict[str, str] | None = None, extra: tuple[str, ...] = (),
                 shipped: Path | None = None) -> None:
        """``tls``: (CA, certificate, key) PEM files make the listener a TLS one.

        ``passwords``: user -> password, and anonymous clients are refused.
        ``extra``: more configuration lines (e.g. ``require_certificate true``).
        ``shipped``: a configuration file as the package installs it; only its
        listener port and file paths are changed (persistence, autosave and
        the rest stay as shipped).
        """
        self.directory = directory
        self.binary = binary
        self.port = free_port()
        self.acl = acl
        self.tls = tls
        self.passwords = passwords
        self.extra = extra
        self.shipped = shipped
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def _write_password_file(self) -> Path:
        path = self.directory / "passwd"
        path.write_text("")
        for user, password in (self.passwords or {}).items():
            subprocess.run(["mosquitto_passwd", "-b", str(path), user, password], check=True,
                           capture_output=True)
        return path

    def _shipped_lines(self) -> list[str]:
        assert self.shipped is not None
        lines = [f"persistence_location {self.directory}/",
                 f"log_dest file {self.directory}/mosquitto.log", "log_type all"]
        for line in self.shipped.read_text().splitlines():
            key = line.split(" ", 1)[0]
            if key == "listener":
                line = f"listener {self.port} 127.0.0.1"
            elif key == "password_file":
                line = f"password_file {self._write_password_file()}"
            elif key == "acl_file":
                (self.directory / "acl").write_text(
                    self.acl or self.shipped.with_suffix(".acl").read_text())
                line = f"acl_file {self.directory}/acl"
            lines.append(line)
        return lines

    def _write_config(self) -> Path:
        if self.shipped is not None:
            lines = self._shipped_lines()
            if os.geteuid() == 0:
                lines.append("user root")
            config = self.directory / "mosquitto.conf"
            config.write_text("\n".join(lines) + "\n")
            return config
        lines = [f"listener {self.port} 127.0.0.1",
                 f"allow_anonymous {'false' if self.passwords is not None else 'true'}",
                 "persistence true", f"persistence_location {self.directory}/",
                 f"log_dest file {self.directory}/mosquitto.log", "log_type all",
                 "max_queued_messages 100000", *self.extra]
        if self.passwords is not None:
            lines.append(f"password_file {self._write_password_file()}")
        if self.tls is not None:
            ca, certificate, key = self.tls
            lines += [f"cafile {ca}", f"certfile {certificate}", f"keyfile {key}"]
        if os.geteuid() == 0:
            lines.append("user root")
        if self.acl is not None:
            (self.directory / "acl").write_text(self.acl)
            lines.append(f"acl_file {self.directory}/acl")
        config = self.directory / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen([self.binary, "-c", str(self._write_config())],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                threading.Event().wait(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL, as a power cut: nothing is saved that was not saved already."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def set_acl(self, acl: str) -> None:
        """Rewrite the ACL file and make the broker reload it (SIGHUP)."""
        self.acl = acl
        (self.directory / "acl").write_text(acl)
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Core:
    """A subscriber like the SOC core: persistent session, QoS 1, records every alert id."""

    def __init__(self, broker: Mosquitto, topic: str = "veilleuse/+/+/alert",
                 username: str | None = None, password: str | None = None,
                 client_id: str = "test-core") -> None:
        self.received: list[dict] = []
        self.subscribed = False
        self.retained: dict[str, dict] = {}
        self._changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(topic, 1), ("veilleuse/+/+/status", 1), ("veilleuse/+/+/state", 1)])
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self.client.connect_async("127.0.0.1", broker.port, clean_start=False,
                                  properties=properties)
        self.client.loop_start()
        if not self.wait_for(lambda core: core.subscribed, 10.0):
            raise RuntimeError("the test core could not subscribe")

    def _on_subscribe(self, *args: object) -> None:
        with self._changed:
            self.subscribed = True
            self._changed.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        payload = json.loads(message.payload)
        with self._changed:
            if message.topic.endswith("/alert"):
                self.received.append(payload)
            else:
                self.retained[message.topic.rsplit("/", 1)[1]] = payload
            self._changed.notify_all()

    def ids(self) -> set[str]:
        with self._changed:
            return {payload["id"] for payload in self.received}

    def wait_for(self, predicate, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
