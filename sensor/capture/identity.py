"""Device identity records (DHCP, neighbour discovery, mDNS) from decoded protocol fields.

The three sources decode packets their own way, then call these functions
with the same fields, so the rules (which DHCP message binds which address,
which mDNS answers name a host) are written once and every source learns
the same devices. ``dhcp_lease_of_payload`` reads a raw BOOTP message for
the scapy source. Not its job: what a device is (``sensor.devices``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from sensor.observations import (
    DhcpLease,
    DnsRecord,
    NameAnnouncement,
    NeighbourAdvert,
    canonical_ip,
    canonical_mac,
)

DHCP_PORTS = frozenset({67, 68})
MDNS_PORT = 5353
NEIGHBOUR_TYPES = frozenset({135, 136})  # ICMPv6 neighbour solicitation, advertisement
# RFC 2132 9.6: the DHCP message types, named as Suricata's EVE names them.
DHCP_MESSAGES = {1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak",
                 7: "release", 8: "inform"}
MAX_NAME = 64
_UNSPECIFIED = frozenset({"0.0.0.0", "::"})
_BOOTP_HEADER, _MAGIC = 236, b"\x63\x82\x53\x63"


def _usable(address: str | None) -> str | None:
    if not address:
        return None
    address = canonical_ip(address)
    return None if address in _UNSPECIFIED else address


def dhcp_lease(time: float, mac: str, message: str, *, your_address: str | None = None,
               client_address: str | None = None, requested_address: str | None = None,
               host_name: str | None = None, vendor_class: str | None = None) -> DhcpLease:
    """The lease record: an ACK binds its yiaddr; a REQUEST the address asked for or renewed."""
    address = None
    if message == "ack":
        address = _usable(your_address)
    elif message == "request":
        address = _usable(requested_address) or _usable(client_address)
    return DhcpLease(time, canonical_mac(mac), message, address, clean_name(host_name),
                     clean_name(vendor_class))


def clean_name(text: str | None) -> str | None:
    """A name a device gave, without control characters (a C string's NUL...), at most 64.

    >>> clean_name("nas1" + chr(0)), clean_name(" " + chr(0) + " ")
    ('nas1', None)
    """
    if text is None:
        return None
    cleaned = "".join(c for c in text if c.isprintable()).strip()[:MAX_NAME]
    return cleaned or None


def dhcp_lease_of_payload(time: float, payload: bytes) -> DhcpLease | None:
    """A raw BOOTP/DHCP message (RFC 2131) read with slicing; None if it is not DHCP.

    ValueError for a message cut short or with a lying option length.
    """
    if len(payload) < _BOOTP_HEADER + 4 or payload[_BOOTP_HEADER:_BOOTP_HEADER + 4] != _MAGIC \
            or payload[1] != 1 or payload[2] != 6:  # Ethernet, 6-byte hardware addresses
        return None
    options: dict[int, bytes] = {}
    offset = _BOOTP_HEADER + 4
    while offset < len(payload):
        code = payload[offset]
        if code == 255:
            break
        if code == 0:
            offset += 1
            continue
        length = payload[offset + 1]
        value = payload[offset + 2:offset + 2 + length]
        if len(value) != length:
            raise ValueError(f"DHCP option {code} cut short")
        options.setdefault(code, value)
        offset += 2 + length
    kind = options.get(53)
    if not kind:
        return None  # plain BOOTP
    message = DHCP_MESSAGES.get(kind[0], str(kind[0]))
    requested = options.get(50)
    return dhcp_lease(
        time, payload[28:34].hex(":"), message,
        your_address=str(ipaddress.IPv4Address(payload[16:20])),
        client_address=str(ipaddress.IPv4Address(payload[12:16])),
        requested_address=str(ipaddress.IPv4Address(requested)) if requested and
        len(requested) == 4 else None,
        host_name=_text(options.get(12)), vendor_class=_text(options.get(60)))


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value else None


def neighbour_advert(time: float, mac: str, address: str, icmp_type: int) -> NeighbourAdvert | None:
    """A neighbour solicitation or advertisement from ``address`` (not ``::``) by ``mac``.

    The frame's source MAC and IPv6 source are used, as Suricata's flow
    records give them (its EVE does not carry the link-layer options).
    """
    if icmp_type not in NEIGHBOUR_TYPES:
        return None
    usable = _usable(address)
    return None if usable is None else NeighbourAdvert(time, canonical_mac(mac), usable)


def _reverse_address(name: str) -> str | None:
    """The address of an ``in-addr.arpa`` or ``ip6.arpa`` name, or None."""
    labels = name.lower().rstrip(".").split(".")
    try:
        if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
            digits = "".join(reversed(labels[:32]))
            return str(ipaddress.IPv6Address(int(digits, 16)))
    except ValueError:
        return None
    return None


def _host(name: str) -> str | None:
    """``Galaxy-A52`` for ``Galaxy-A52.local.``; None for a name outside ``.local``."""
    name = name.rstrip(".")
    if not name.lower().endswith(".local"):
        return None
    host = name[:-len(".local")]
    return host or None


def mdns_announcements(time: float, records: Iterable[DnsRecord]) -> list[NameAnnouncement]:
    """Host names an mDNS answer gives: A/AAAA for ``*.local``, and reverse PTRs to one."""
    found = []
    for record in records:
        host, address = None, None
        if record.rrtype in ("A", "AAAA"):
            host, address = _host(record.name), record.data
        elif record.rrtype == "PTR":
            host, address = _host(record.data), _reverse_address(record.name)
        if host is None or address is None:
            continue
        host = clean_name(host)
        if host is None:
            continue
        try:
            found.append(NameAnnouncement(time, host, canonical_ip(address)))
        except ValueError:
            continue  # an answer whose data is not an address
    return found
