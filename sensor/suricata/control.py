"""Talk to a running Suricata over its unix command socket (uptime, drops, rule reload).

Suricata's own client (suricatasc) waits up to 600 s for an answer whatever
its socket timeout says, which would freeze a supervisor behind a Suricata
that stopped answering; this client speaks the same small protocol (a
version handshake, then one newline-terminated JSON command and one JSON
answer) with a real timeout on every call.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensor.errors import VeilleuseError

PROTOCOL_VERSION = "0.2"


class SuricataControlError(VeilleuseError):
    """The command socket did not answer in time, or refused the command."""


@dataclass(frozen=True, slots=True)
class InterfaceStats:
    """Packets seen and dropped by the kernel/capture on one interface since start."""

    packets: int
    drops: int

    @property
    def drop_ratio(self) -> float:
        return self.drops / self.packets if self.packets else 0.0


def _receive(connection: socket.socket) -> Any:
    buffer = b""
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            raise SuricataControlError("Suricata closed the command socket mid-answer")
        buffer += chunk
        try:
            return json.loads(buffer)
        except ValueError:
            continue  # an answer larger than one read


class SuricataControl:
    """One short connection per command: robust to Suricata restarting in between."""

    def __init__(self, socket_path: Path, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def command(self, name: str, arguments: dict[str, Any] | None = None,
                timeout: float | None = None) -> Any:
        """The ``message`` of a successful answer; SuricataControlError otherwise."""
        request: dict[str, Any] = {"command": name}
        if arguments:
            request["arguments"] = arguments
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(timeout or self.timeout)
                connection.connect(str(self.socket_path))
                connection.sendall(json.dumps({"version": PROTOCOL_VERSION}).encode())
                hello = _receive(connection)
                if not isinstance(hello, dict) or hello.get("return") != "OK":
                    raise SuricataControlError(f"Suricata refused the handshake: {hello!r}")
                connection.sendall(json.dumps(request).encode() + b"\n")  # commands end a line
                answer = _receive(connection)
        except TimeoutError:
            raise SuricataControlError(f"Suricata did not answer {name!r} within "
                                       f"{timeout or self.timeout:.0f} s") from None
        except OSError as error:
            raise SuricataControlError(f"Suricata's command socket {self.socket_path}: "
                                       f"{error.strerror or error}") from None
        if not isinstance(answer, dict) or answer.get("return") != "OK":
            raise SuricataControlError(f"Suricata refused {name!r}: {answer!r}")
        return answer.get("message")

    def uptime(self) -> int:
        return int(self.command("uptime"))

    def interface_stats(self, interface: str) -> InterfaceStats:
        message = self.command("iface-stat", {"iface": interface})
        return InterfaceStats(packets=int(message["pkts"]), drops=int(message["drop"]))
