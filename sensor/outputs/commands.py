"""Requests to the sensor on ``<prefix>/<site>/<sensor>/command`` (``veilleuse.command/1``).

The screen writes them on the box's broker (a long button hold, with
``sensor.wire.payloads.command_payload``), the helpline's operator on the
core's broker; each broker's ACL decides who may. This module reads the
message into a typed record; what a command does is the daemon's business,
and an unknown command name is its to refuse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sensor.wire.payloads import SELFTEST

__all__ = ["SELFTEST", "Command", "parse_command"]


@dataclass(frozen=True, slots=True)
class Command:
    """One request, as its sender wrote it."""

    name: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a command needs a name")


def parse_command(payload: bytes) -> Command | None:
    """The command of a ``veilleuse.command/1`` message, or None if it is not one.

    >>> parse_command(b'{"schema": "veilleuse.command/1", "command": "selftest"}')
    Command(name='selftest')
    >>> parse_command(b'selftest') is None
    True
    """
    try:
        message = json.loads(payload)
        if str(message.get("schema", "")).startswith("veilleuse.command/"):
            return Command(str(message["command"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return None
