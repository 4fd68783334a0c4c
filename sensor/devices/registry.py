"""The device registry: which MAC holds which address, over time, and how it names itself.

An address belongs to the MAC that last leased it (DHCP ACK or REQUEST) or
used it in neighbour discovery; ``key_for(address, time)`` answers with the
owner at the packet's time, so a phone that changes address keeps one key,
and a capture replayed gives the same keys whatever order the source emits
records in (as long as a binding comes before the traffic that needs it).
An address no MAC was seen binding keeps the address as its key (routed
traffic, static addresses).

Memory is bounded: at most ``max_devices`` devices (the least recently seen
goes first), each with a few addresses and names, and devices not seen for
``stale_after`` seconds of packet time are forgotten with their bindings.
Not its job: deciding what is suspicious (``sensor.detect``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from sensor.devices.makers import is_randomized, maker_of
from sensor.devices.model import DeviceIdentity
from sensor.observations import DhcpLease, NameAnnouncement, NeighbourAdvert, Observation

MAX_DEVICES = 10_000
STALE_AFTER = 30 * 86_400.0  # a month: a resident who comes back is the same phone
MAX_ADDRESSES = 8  # per device
MAX_NAMES = 4  # mDNS names per device
MAX_OWNERS = 4  # past owners remembered per address


class _Entry:
    """What is known of one device (mutable; ``Device`` is its frozen view)."""

    __slots__ = ("addresses", "first_seen", "host_name", "key", "last_seen", "mac", "names",
                 "vendor_class")

    def __init__(self, key: str, mac: str | None, time: float) -> None:
        self.key, self.mac = key, mac
        self.host_name: str | None = None
        self.vendor_class: str | None = None
        self.names: list[str] = []
        self.addresses: dict[str, float] = {}  # address -> last bound
        self.first_seen = self.last_seen = time


@dataclass(frozen=True, slots=True)
class Device:
    """One device as the registry knows it: its key, identity and addresses (newest first)."""

    key: str
    identity: DeviceIdentity | None
    addresses: tuple[str, ...]
    first_seen: float
    last_seen: float


class DeviceRegistry:
    """Learns devices from identity observations; maps addresses to device keys."""

    def __init__(self, max_devices: int = MAX_DEVICES, stale_after: float = STALE_AFTER) -> None:
        if max_devices < 1:
            raise ValueError(f"max_devices must be at least 1, not {max_devices}")
        self.max_devices = max_devices
        self.stale_after = stale_after
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently seen first
        self._owners: dict[str, list[tuple[float, str]]] = {}  # address -> [(since, mac)]
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def observe(self, observation: Observation) -> bool:
        """Learn from an identity observation; False for any other kind (nothing learnt)."""
        if isinstance(observation, DhcpLease):
            entry = self._entry(observation.mac, observation.mac, observation.time)
            entry.host_name = observation.host_name or entry.host_name
            entry.vendor_class = observation.vendor_class or entry.vendor_class
            if observation.address is not None:
                self._bind(entry, observation.address, observation.time)
        elif isinstance(observation, NeighbourAdvert):
            entry = self._entry(observation.mac, observation.mac, observation.time)
            self._bind(entry, observation.address, observation.time)
        elif isinstance(observation, NameAnnouncement):
            key = self.key_for(observation.address, observation.time)
            entry = self._entry(key, None if key == observation.address else key,
                                observation.time)
            if observation.name not in entry.names:
                entry.names = [*entry.names, observation.name][-MAX_NAMES:]
        else:
            return False
        self._expire(observation.time)
        return True

    def key_for(self, address: str, time: float) -> str:
        """The device key of ``address`` at ``time``: its owner's MAC then, else the address."""
        owners = self._owners.get(address)
        if owners:
            for since, mac in reversed(owners):
                if since <= time:
                    return mac
        return address

    def identity(self, key: str) -> DeviceIdentity | None:
        """How the device with this key names itself; None if nothing is known."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        name = entry.host_name or (entry.names[0] if entry.names else None)
        if entry.mac is None:
            return None if name is None else DeviceIdentity(None, name)
        return DeviceIdentity(entry.mac, name, maker_of(entry.mac), entry.vendor_class,
                              is_randomized(entry.mac))

    def device(self, key: str) -> Device | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        addresses = sorted(entry.addresses, key=lambda a: entry.addresses[a], reverse=True)
        return Device(key, self.identity(key), tuple(addresses), entry.first_seen,
                      entry.last_seen)

    def devices(self) -> list[Device]:
        """Every device known, most recently seen first."""
        return [device for key in reversed(self._entries)
                if (device := self.device(key)) is not None]

    def _entry(self, key: str, mac: str | None, time: float) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(key, mac, time)
            while len(self._entries) > self.max_devices:
                self._forget(next(iter(self._entries)))
        else:
            self._entries.move_to_end(key)
            entry.first_seen = min(entry.first_seen, time)
        entry.last_seen = max(entry.last_seen, time)
        return entry

    def _bind(self, entry: _Entry, address: str, time: float) -> None:
        """``address`` is the entry's from ``time`` on (until another MAC takes it)."""
        owners = self._owners.setdefault(address, [])
        if not owners or owners[-1][1] != entry.key or owners[-1][0] > time:
            owners.append((time, entry.key))
            owners.sort()
            del owners[:-MAX_OWNERS]
        entry.addresses[address] = max(time, entry.addresses.get(address, time))
        if len(entry.addresses) > MAX_ADDRESSES:
            oldest = min(entry.addresses, key=entry.addresses.__getitem__)
            del entry.addresses[oldest]
            self._unbind(oldest, entry.key)

    def _unbind(self, address: str, key: str) -> None:
        owners = [owner for owner in self._owners.get(address, ()) if owner[1] != key]
        if owners:
            self._owners[address] = owners
        else:
            self._owners.pop(address, None)

    def _forget(self, key: str) -> None:
        entry = self._entries.pop(key)
        for address in entry.addresses:
            self._unbind(address, key)
        self.evicted += 1

    def _expire(self, now: float) -> None:
        """Forget devices not seen for ``stale_after`` (the oldest are first in line)."""
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.last_seen >= now - self.stale_after:
                return
            self._forget(oldest.key)
