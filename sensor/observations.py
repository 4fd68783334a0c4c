"""Typed records of what crossed the wire, independent of the capture source.

Every source (Suricata EVE, tshark, scapy) produces these and nothing else, so
detection never knows where a record came from. Times are the packet's own
(UNIX seconds, UTC) so a replayed capture gives the same result every time.
This module only describes and validates; it neither parses nor detects.

Records are ``msgspec.Struct`` subclasses of ``Record`` rather than frozen
dataclasses: the same typed, immutable, hashable records (keyword or
positional construction, equality, repr, validation in ``__post_init__``),
built about 15 times faster (a 5-field frozen slotted dataclass costs about
1 µs to build on Python 3.11, a frozen Struct about 70 ns), and the live path
builds several per packet. A new record type is ``class Name(Record, frozen=True)``
(``frozen=True`` again only for mypy, which does not inherit it).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Literal

import msgspec

Transport = Literal["tcp", "udp"]


MAX_TIME = 253_402_300_800.0  # 10000-01-01: dates past it cannot be shown or stored


def packet_time(value: float) -> float:
    """``value`` if it is a time a packet can have (1970 to 9999); ValueError otherwise.

    >>> packet_time(1.5e9)
    1500000000.0
    >>> packet_time(1e12)
    Traceback (most recent call last):
    ValueError: packet timestamp 1000000000000.0 is past the year 9999
    """
    value = float(value)
    if not 0.0 <= value < MAX_TIME:
        raise ValueError(f"packet timestamp {value} is " +
                         ("before 1970" if value < MAX_TIME else "past the year 9999"))
    return value


@functools.lru_cache(maxsize=65536)
def canonical_ip(text: str) -> str:
    """The canonical text of an IP address (ValueError if it is not one).

    Memoized: a network has few distinct addresses and parsing them is the
    largest cost of reading EVE records.
    """
    return str(ipaddress.ip_address(text))


def _check_ip(value: str, what: str) -> None:
    try:
        canonical = canonical_ip(value)
    except ValueError:
        raise ValueError(f"{what} is not an IP address: {value!r}") from None
    if canonical != value:
        raise ValueError(f"{what} is not in canonical form: {value!r} (use {canonical!r})")


def _check_port(value: int, what: str) -> None:
    if not 0 <= value <= 65535:
        raise ValueError(f"{what} is not a port number: {value!r}")


class Record(msgspec.Struct, frozen=True, gc=False):
    """Base of every observation record: typed, immutable, hashable, cheap to build.

    ``gc=False``: the garbage collector does not track records, which makes
    them cheaper still. That is safe because a record can never be part of a
    reference cycle: its fields are strings, numbers, and records or tuples of
    records built before it, and it is frozen, so nothing can point back to it
    later (msgspec's condition for ``gc=False``: an instance never part of a
    reference cycle; one that were would leak). Use ``msgspec.structs.replace`` and
    ``msgspec.structs.asdict`` where one would use the ``dataclasses`` ones.
    """


class Endpoints(Record, frozen=True):
    """Who talked to whom: client (the device) and server, as the first packet saw them."""

    client: str
    server: str
    client_port: int
    server_port: int
    transport: Transport

    def __post_init__(self) -> None:
        # One test of everything first (every EVE record builds one of these); the
        # checks that name the wrong value run only when it fails.
        try:
            valid = canonical_ip(self.client) == self.client and \
                canonical_ip(self.server) == self.server and \
                0 <= self.client_port <= 65535 and 0 <= self.server_port <= 65535 and \
                self.transport in ("tcp", "udp")
        except ValueError:
            valid = False
        if not valid:
            self._refuse()

    def _refuse(self) -> None:
        _check_ip(self.client, "client")
        _check_ip(self.server, "server")
        _check_port(self.client_port, "client_port")
        _check_port(self.server_port, "server_port")
        raise ValueError(f"transport must be tcp or udp, not {self.transport!r}")


class DnsQuery(Record, frozen=True):
    """A DNS question sent by a device."""

    time: float
    endpoints: Endpoints
    name: str
    rrtype: str


class DnsRecord(Record, frozen=True):
    """One resource record of a DNS answer section (A, AAAA, CNAME ...)."""

    name: str
    rrtype: str
    data: str
    ttl: int = 0


class DnsAnswer(Record, frozen=True):
    """A DNS response received by a device (``endpoints.client`` is the device)."""

    time: float
    endpoints: Endpoints
    query_name: str
    records: tuple[DnsRecord, ...] = ()


class TlsHello(Record, frozen=True):
    """A TLS ClientHello: the server name the device asked for."""

    time: float
    endpoints: Endpoints
    sni: str
    ja4: str | None = None


class QuicHello(Record, frozen=True):
    """A QUIC Initial carrying a TLS ClientHello with a server name."""

    time: float
    endpoints: Endpoints
    sni: str


class HttpRequest(Record, frozen=True):
    """A clear-text HTTP request; only the Host is kept (no path, no payload)."""

    time: float
    endpoints: Endpoints
    host: str
    method: str = "GET"


class Flow(Record, frozen=True):
    """A connection (TCP) or conversation (UDP), reported once when it ends.

    ``time`` is when it started. Byte and packet counts are None when the
    source does not count them. ``packets_to_client`` and ``bytes_to_client``
    are the server's share of them (the client's is the rest): zero in a
    connection with traffic means the mirror carried one direction only.
    """

    time: float
    endpoints: Endpoints
    end: float
    packets: int | None = None
    bytes: int | None = None
    packets_to_client: int | None = None
    bytes_to_client: int | None = None

    def __post_init__(self) -> None:
        if self.end < self.time:
            raise ValueError(f"flow ends ({self.end}) before it starts ({self.time})")


_MAC = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")


def canonical_mac(text: str) -> str:
    """A MAC address as lower-case, colon-separated hex (ValueError if it is not one).

    >>> canonical_mac("DA-A1-19-00-00-01"), canonical_mac("daa1.1900.0001")
    ('da:a1:19:00:00:01', 'da:a1:19:00:00:01')
    """
    digits = re.sub(r"[:.-]", "", str(text)).lower()
    mac = ":".join(digits[index:index + 2] for index in range(0, len(digits), 2))
    if not _MAC.match(mac):
        raise ValueError(f"not a MAC address: {text!r}")
    return mac


def _check_mac(value: str) -> None:
    if canonical_mac(value) != value:
        raise ValueError(f"MAC address not in canonical form: {value!r}")


class DhcpLease(Record, frozen=True):
    """A DHCP message about the device with ``mac`` (its chaddr).

    ``address`` is what binds it: the address an ACK gave (yiaddr), or the
    one a REQUEST asked for or renews; None for other messages. The host name
    (option 12) and vendor class (option 60) are the client's own words.
    """

    time: float
    mac: str
    message: str
    address: str | None = None
    host_name: str | None = None
    vendor_class: str | None = None

    def __post_init__(self) -> None:
        _check_mac(self.mac)
        if self.address is not None:
            _check_ip(self.address, "address")


class NeighbourAdvert(Record, frozen=True):
    """IPv6 neighbour discovery: the device with ``mac`` uses ``address``."""

    time: float
    mac: str
    address: str

    def __post_init__(self) -> None:
        _check_mac(self.mac)
        _check_ip(self.address, "address")


class NameAnnouncement(Record, frozen=True):
    """A device announced its host ``name`` for ``address`` (an mDNS answer for ``*.local``)."""

    time: float
    name: str
    address: str
    protocol: str = "mdns"

    def __post_init__(self) -> None:
        _check_ip(self.address, "address")
        if not self.name:
            raise ValueError("a name announcement needs a name")


Identity = DhcpLease | NeighbourAdvert | NameAnnouncement
IDENTITY_TYPES = (DhcpLease, NeighbourAdvert, NameAnnouncement)
Observation = DnsQuery | DnsAnswer | TlsHello | QuicHello | HttpRequest | Flow | Identity
