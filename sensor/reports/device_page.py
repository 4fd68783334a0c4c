"""One device's page: what the sensor saw of it, as plain typed data for a renderer.

Built from alerts, whose ``device`` is the device's key (its MAC when the
sensor saw one binding its addresses, else its address): the device asked
for is matched against that key, its addresses, its name and its pseudonym,
and the identity the device registry learnt (host name, maker, MAC) fills
``DeviceIdentity``. Not the job of this
module: reading the alert book or a capture (``sensor.reports.sources``), nor
HTML (``sensor.reports.html``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sensor.alerts.pseudonym import Pseudonymizer
from sensor.detect.model import Alert
from sensor.errors import VeilleuseError


class DeviceNotFound(VeilleuseError):
    """No alert names the device asked for: there is nothing to report on it."""


class ClockState(StrEnum):
    """Can the times on the page be trusted?"""

    SYNCHRONISED = "synchronised"      # the box's clock is set by NTP
    UNSYNCHRONISED = "unsynchronised"  # the box's clock is not synchronised: times may be wrong
    CAPTURE = "capture"                # times come from a capture file's own packets


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """Who the device is, as far as the sensor knows; unknown fields stay None or empty."""

    label: str
    """What a person calls it: its host name once known, else its address."""
    maker: str | None = None
    mac: str | None = None
    randomized_mac: bool | None = None
    """A locally administered (private) MAC: stable on one network only."""
    addresses: tuple[str, ...] = ()
    pseudonym: str | None = None
    """The keyed name alerts that leave the box give it (``dev-...``), to match them up."""

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("a device needs a label (its name or address)")


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where the page comes from, for its footer: an advocate may have to show it."""

    generated_at: float
    sensor: str
    site: str
    source: str
    """The alert book's path, or the capture file's."""
    from_capture: bool
    feeds: tuple[tuple[str, str], ...]
    """(label, version) of each indicator feed."""
    clock: ClockState
    damaged: str | None = None
    """The capture is damaged (what and where): the page covers what was read before it."""


@dataclass(frozen=True, slots=True)
class DevicePage:
    """Everything the report for one device shows, in no particular language."""

    identity: DeviceIdentity
    sightings: tuple[Alert, ...]
    """The device's alerts, most severe first, then earliest first."""
    provenance: Provenance

    def __post_init__(self) -> None:
        if not self.sightings:
            raise ValueError("a device page reports at least one alert")

    @property
    def first_seen(self) -> float:
        return min(alert.first_seen for alert in self.sightings)

    @property
    def last_seen(self) -> float:
        return max(alert.last_seen for alert in self.sightings)

    @property
    def count(self) -> int:
        """Sightings in all, over every alert."""
        return sum(alert.count for alert in self.sightings)

    @property
    def is_clock_doubtful(self) -> bool:
        """Some sightings were stored while the box's clock was not synchronised."""
        return any(alert.clock_synchronised is False for alert in self.sightings)


def normalize_device(text: str) -> str:
    """An address in its canonical form, so any spelling of it matches; other text as given.

    >>> normalize_device(" 2001:DB8:0::21 ")
    '2001:db8::21'
    >>> normalize_device("Galaxy-A52")
    'Galaxy-A52'
    """
    text = text.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def device_matches(device: str, query: str) -> bool:
    """Is ``device`` (an alert's device) the one asked for? Addresses in any spelling; names
    without regard to case.

    >>> device_matches("192.168.10.21", "192.168.010.21")
    False
    >>> device_matches("2001:db8::21", "2001:DB8:0:0::21")
    True
    """
    return normalize_device(device).casefold() == normalize_device(query).casefold()


def _names(alert: Alert, query: str, pseudonyms: Pseudonymizer | None) -> bool:
    """Whether ``query`` names the alert's device: its key (MAC or address), one of its
    addresses, its name, or its pseudonym."""
    wanted = query.strip().casefold()
    if device_matches(alert.device, query) or \
            any(device_matches(address, query) for address in alert.addresses):
        return True
    if alert.identity is not None and wanted in {(alert.identity.name or "").casefold(),
                                                 (alert.identity.mac or "").casefold()}:
        return True
    return pseudonyms is not None and pseudonyms.device(alert.device) == wanted


def build_device_page(alerts: Iterable[Alert], query: str, provenance: Provenance, *,
                      pseudonyms: Pseudonymizer | None = None) -> DevicePage:
    """The page for the device ``query`` names, from its alerts.

    ``query`` is an address today, or with the site's ``pseudonyms`` the
    ``dev-...`` name the screen and the helpline's alerts show. A device no
    alert names is an error, not an empty page: a mistyped address must never
    print as "nothing seen" for someone's phone.
    """
    alerts = list(alerts)
    mine = [alert for alert in alerts if _names(alert, query, pseudonyms)]
    if not mine:
        known = sorted({alert.device for alert in alerts})
        listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise DeviceNotFound(f"no alert names device {query!r} in {provenance.source}; "
                             + (f"devices with alerts: {listed}" if known else
                                "it holds no alert at all") +
                             " (give the device's IP address, or its dev-... pseudonym on the box)")
    mine.sort(key=lambda alert: (-alert.severity.rank, alert.first_seen, alert.id))
    addresses = tuple(sorted({normalize_device(address) for alert in mine
                              for address in alert.addresses or (alert.device,)}))
    learnt = next((alert.identity for alert in mine if alert.identity is not None), None)
    identity = DeviceIdentity(
        label=(learnt.name if learnt is not None and learnt.name else mine[0].device),
        maker=None if learnt is None else learnt.maker,
        mac=None if learnt is None else learnt.mac,
        randomized_mac=None if learnt is None or learnt.mac is None else learnt.randomized,
        addresses=addresses,
        pseudonym=None if pseudonyms is None else pseudonyms.device(mine[0].device))
    return DevicePage(identity=identity, sightings=tuple(mine), provenance=provenance)
