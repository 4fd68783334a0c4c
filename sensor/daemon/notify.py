"""Tell systemd how the daemon is doing: READY, STATUS and WATCHDOG pings.

Uses systemd-python when the service runs under systemd (NOTIFY_SOCKET set);
otherwise every call does nothing, so the daemon runs the same by hand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)


def _systemd_notify() -> Callable[[str], object] | None:
    if not os.environ.get("NOTIFY_SOCKET"):
        return None
    try:
        from systemd import daemon
    except ImportError:
        log.warning("NOTIFY_SOCKET is set but systemd-python is missing; no READY/WATCHDOG")
        return None
    return daemon.notify


class SystemdNotifier:
    def __init__(self, send: Callable[[str], object] | None = None) -> None:
        self._send = send if send is not None else _systemd_notify()

    @property
    def active(self) -> bool:
        return self._send is not None

    def _notify(self, message: str) -> None:
        if self._send is None:
            return
        try:
            self._send(message)
        except OSError as error:  # systemd went away (or a test closed its socket)
            log.warning("systemd notification failed (%s); the sensor goes on", error)

    def ready(self, status: str) -> None:
        self._notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._notify(f"STATUS={status}")

    def watchdog(self) -> None:
        """Only from the health-checked loop: a stuck loop stops the pings."""
        self._notify("WATCHDOG=1")

    def stopping(self) -> None:
        self._notify("STOPPING=1")
