"""Findings (one matching observation) and alerts (findings merged per device and indicator)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from sensor.devices.model import DeviceIdentity


class Severity(StrEnum):
    """How urgent an alert is; compare with ``rank``."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class AlertKind(StrEnum):
    """What was detected; part of an alert's identity."""

    DOMAIN = "domain"                # a stalkerware C2 name was looked up or contacted
    IP = "ip"                        # a stalkerware C2 IP (listed or resolved) was contacted
    WEBSITE = "website"              # a stalkerware vendor or download site was visited
    WATCHWARE = "watchware"          # a monitoring app's server was contacted
    ENCRYPTED_DNS = "encrypted_dns"  # the device hides its DNS lookups from the sensor
    BEACON = "beacon"                # the device calls one server at a regular rhythm
    SELFTEST = "selftest"            # the sensor's own test probe came through


@dataclass(frozen=True, slots=True)
class Finding:
    """What one detector concluded from one observation (or, for beacons, a series)."""

    kind: AlertKind
    severity: Severity
    device: str
    indicator: str
    observed: str
    protocol: str
    time: float
    app: str | None = None
    count: int = 1
    last_time: float | None = None
    details: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"a finding counts at least one event, not {self.count}")
        if not self.device or not self.indicator:
            raise ValueError("a finding needs a device and an indicator")

    @property
    def end_time(self) -> float:
        return self.time if self.last_time is None else self.last_time


def alert_id(device: str, kind: AlertKind, indicator: str) -> str:
    """Stable id: the same device, kind and indicator always give the same id.

    Redeliveries and re-analyses of the same traffic therefore deduplicate
    downstream without coordination.
    """
    digest = hashlib.sha256(f"v1|{device}|{kind.value}|{indicator}".encode()).hexdigest()
    return digest[:20]


@dataclass(frozen=True, slots=True)
class Alert:
    """Everything known about one (device, kind, indicator), as a person needs it."""

    id: str
    kind: AlertKind
    severity: Severity
    device: str
    indicator: str
    observed: str
    app: str | None
    protocols: tuple[str, ...]
    first_seen: float
    last_seen: float
    count: int
    details: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # True/False: the live sensor's clock was (not) synchronised when it stored the
    # sightings; None: the times come from a capture file's packets.
    clock_synchronised: bool | None = None
    # ``device`` is the device's key: its MAC when one was seen binding its addresses
    # (sensor.devices), else its address. ``addresses``: those it used in the sightings.
    addresses: tuple[str, ...] = ()
    identity: DeviceIdentity | None = None
