"""Talk to a running Suricata over its unix command socket (uptime, drops, rule reload).

Uses Suricata's own client library (``suricatasc``, shipped by Debian's
suricata package); its errors become ``SuricataControlError`` with a plain
message.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensor.errors import VeilleuseError

SURICATASC_PATH = "/usr/lib/suricata/python"


class SuricataControlError(VeilleuseError):
    """The command socket did not answer, or refused the command."""


@dataclass(frozen=True, slots=True)
class InterfaceStats:
    """Packets seen and dropped by the kernel/capture on one interface since start."""

    packets: int
    drops: int

    @property
    def drop_ratio(self) -> float:
        return self.drops / self.packets if self.packets else 0.0


def _client_class() -> Any:
    if SURICATASC_PATH not in sys.path:
        sys.path.append(SURICATASC_PATH)
    try:
        from suricata.sc.suricatasc import SuricataSC
    except ImportError:
        raise SuricataControlError("Suricata's client library (suricatasc) was not found in "
                                   f"{SURICATASC_PATH}; install the suricata package") from None
    return SuricataSC


class SuricataControl:
    """One short connection per command: robust to Suricata restarting in between."""

    def __init__(self, socket_path: Path, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def command(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        """The ``message`` of a successful answer; SuricataControlError otherwise."""
        client = _client_class()(str(self.socket_path), verbose=False)
        try:
            client.connect()
            answer = client.send_command(name, arguments)
        except Exception as error:  # noqa: BLE001 - suricatasc raises its own and socket errors
            raise SuricataControlError(f"Suricata's command socket {self.socket_path} did not "
                                       f"answer {name!r}: {_plain(error)}") from None
        finally:
            client.close()
        if not isinstance(answer, dict) or answer.get("return") != "OK":
            raise SuricataControlError(f"Suricata refused {name!r}: {answer!r}")
        return answer.get("message")

    def uptime(self) -> int:
        return int(self.command("uptime"))

    def interface_stats(self, interface: str) -> InterfaceStats:
        message = self.command("iface-stat", {"iface": interface})
        return InterfaceStats(packets=int(message["pkts"]), drops=int(message["drop"]))

    def reload_rules(self) -> None:
        """Reload the rule files without a restart; raises if Suricata did not say OK."""
        self.command("reload-rules")


def _plain(error: Exception) -> str:
    """suricatasc prefixes messages with its own source line ("L123: "); drop it."""
    text = str(error)
    if text.startswith("L") and ": " in text and text[1:text.index(": ")].isdigit():
        return text[text.index(": ") + 2:]
    return text or type(error).__name__
