"""MQTT topic names, validated once (docs/mqtt.md documents them)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LEVEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True, slots=True)
class Topics:
    """``<prefix>/<site>/<sensor>/{alert,state,status}``."""

    site: str
    sensor: str
    prefix: str = "veilleuse"

    def __post_init__(self) -> None:
        for name, value in (("prefix", self.prefix), ("site", self.site),
                            ("sensor", self.sensor)):
            if not _LEVEL.match(value):
                raise ValueError(f"{name} {value!r} is not a valid topic level (1-63 lower-case "
                                 "letters, digits, '-' or '_')")

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}/{self.sensor}"

    @property
    def alert(self) -> str:
        return f"{self.base}/alert"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def status(self) -> str:
        return f"{self.base}/status"
