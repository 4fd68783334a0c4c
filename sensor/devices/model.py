"""What is known of a device, as alerts carry it and people read it.

A device is keyed by its MAC address when one was seen binding its
addresses (DHCP, neighbour discovery), else by its IP address (routed
traffic, a static address never announced). Not its job: learning devices
(``registry``) or finding makers (``makers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """How a device names itself: MAC, DHCP host name or mDNS name, vendor class, maker."""

    mac: str | None
    name: str | None = None
    maker: str | None = None
    vendor_class: str | None = None
    randomized: bool = False
    """The MAC is locally administered (a phone's private Wi-Fi address): stable on one
    network, but it says nothing of the maker."""

    def __post_init__(self) -> None:
        if self.mac is None and self.name is None:
            raise ValueError("a device identity needs a MAC or a name")


def device_label(key: str, identity: DeviceIdentity | None, addresses: Sequence[str]) -> str:
    """What a person reads: ``Galaxy-A52 (Samsung), 192.168.1.23``.

    >>> device_label("28:39:5e:00:00:01", DeviceIdentity("28:39:5e:00:00:01", "Galaxy-A52",
    ...              "Samsung"), ["192.168.1.23", "192.168.1.42"])
    'Galaxy-A52 (Samsung), 192.168.1.23, 192.168.1.42'
    >>> device_label("192.168.1.7", None, ["192.168.1.7"])
    '192.168.1.7'
    """
    if identity is None:
        return ", ".join(dict.fromkeys([key, *addresses]))
    name = identity.name or identity.mac or key
    if identity.maker:
        name = f"{name} ({identity.maker})"
    return ", ".join([name, *addresses]) if addresses else name
