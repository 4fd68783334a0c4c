"""Raw link-layer frames to TCP/UDP segments, through VLANs and tunnels, without scapy.

Why by hand: letting scapy dissect every packet cost ~300 µs a packet, and a
sensor only needs addresses, ports, TCP flags and sequence numbers, and the
payload. ``parse_frame`` reads those with ``struct`` and opens what a mirror
port wraps traffic in: 802.1Q/QinQ tags, MPLS, PPPoE sessions, GRE (with
ERSPAN types I, II and III and transparent Ethernet bridging), VXLAN on UDP
4789, Teredo (on any UDP port, as Suricata), and IP in IP. The segment
returned is the innermost one. Link types it does not know are dissected by
scapy once and their IP packet read the same way. Non-job: application
payloads (``packets``), IP fragment reassembly (a non-first fragment is
ignored, as a first one is read as it stands).
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from dataclasses import dataclass

from sensor.observations import Transport

LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_PPP, LINKTYPE_RAW = 0, 1, 9, 101
LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6 = 108, 113, 228, 229
LINKTYPE_LINUX_SLL2 = 276
VXLAN_PORT = 4789
MAX_DEPTH = 6  # encapsulations opened, at most, before a frame is given up

_ETH_IPV4, _ETH_IPV6, _ETH_VLAN, _ETH_QINQ, _ETH_QINQ_OLD = 0x0800, 0x86DD, 0x8100, 0x88A8, 0x9100
_ETH_PPPOE_SESSION, _ETH_MPLS, _ETH_MPLS_MULTICAST = 0x8864, 0x8847, 0x8848
_GRE_BRIDGING, _GRE_ERSPAN_2, _GRE_ERSPAN_3, _GRE_PPP = 0x6558, 0x88BE, 0x22EB, 0x880B
_PPP_IPV4, _PPP_IPV6 = 0x0021, 0x0057
_IP_TCP, _IP_UDP, _IP_GRE, _IP_IPIP, _IP_IPV6 = 6, 17, 47, 4, 41
_IP_ICMPV6 = 58
_IPV6_EXTENSIONS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT, _IPV6_AH = 44, 51
_BSD_AF_INET6 = frozenset({10, 24, 28, 30})  # AF_INET6 on Linux, the BSDs and macOS

_U16 = struct.Struct("!H")
_IPV4 = struct.Struct("!BxHxxHxB")  # version/ihl, total length, flags/fragment, protocol
_TCP = struct.Struct("!HHIxxxxBB")  # ports, sequence, data offset, flags
_UDP = struct.Struct("!HHH")


@dataclass(frozen=True, slots=True)
class Segment:
    """The innermost TCP or UDP segment of a frame: what flows and parsers need."""

    source: str
    destination: str
    source_port: int
    destination_port: int
    transport: Transport
    flags: int  # TCP flags (0 for UDP)
    sequence: int  # TCP sequence number (0 for UDP)
    payload: bytes


@functools.lru_cache(maxsize=65536)
def _address(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def parse_frame(linktype: int, frame: bytes) -> Segment | None:
    """The innermost TCP/UDP segment in ``frame``; None if it carries none we can read.

    Raises nothing for a short or garbled frame: it simply has no segment.
    """
    try:
        return _link(linktype, memoryview(frame), 0)
    except (struct.error, IndexError, ValueError):
        return None


def _link(linktype: int, data: memoryview, depth: int) -> Segment | None:
    if linktype == LINKTYPE_ETHERNET:
        return _ethernet(data, depth)
    if linktype in (LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return _ip(data, depth)
    if linktype == LINKTYPE_LINUX_SLL:
        return _ethertype(_U16.unpack_from(data, 14)[0], data[16:], depth)
    if linktype == LINKTYPE_LINUX_SLL2:
        return _ethertype(_U16.unpack_from(data, 0)[0], data[20:], depth)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return _ip(data[4:], depth)  # the family says v4 or v6, and so does the version nibble
    if linktype == LINKTYPE_PPP:
        return _ppp(data, depth)
    return _other_link(linktype, bytes(data), depth)


def _other_link(linktype: int, frame: bytes, depth: int) -> Segment | None:
    """A link type read by scapy's dissector (NFLOG and the like), then by ours from IP up."""
    from scapy.config import conf
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    layer = conf.l2types.num2layer.get(linktype)
    if layer is None:
        return None
    packet = layer(frame)
    network = packet.getlayer(IP) or packet.getlayer(IPv6)
    return None if network is None else _ip(memoryview(bytes(network)), depth)


def _ethernet(data: memoryview, depth: int) -> Segment | None:
    return _ethertype(_U16.unpack_from(data, 12)[0], data[14:], depth)


def _ethertype(kind: int, data: memoryview, depth: int) -> Segment | None:
    while kind in (_ETH_VLAN, _ETH_QINQ, _ETH_QINQ_OLD):  # 802.1Q, QinQ: 4-byte tags
        kind = _U16.unpack_from(data, 2)[0]
        data = data[4:]
    if kind in (_ETH_IPV4, _ETH_IPV6):
        return _ip(data, depth)
    if kind == _ETH_PPPOE_SESSION:  # version/type, code, session id, length, then PPP
        (length,) = _U16.unpack_from(data, 4)
        return _ppp(data[6:6 + length], depth)
    if kind in (_ETH_MPLS, _ETH_MPLS_MULTICAST):
        offset = 0
        while not data[offset + 2] & 0x01:  # bottom-of-stack bit
            offset += 4
        return _ip(data[offset + 4:], depth)  # a pseudowire's control word is not guessed
    return None


def _ppp(data: memoryview, depth: int) -> Segment | None:
    if data[0] == 0xFF and data[1] == 0x03:  # HDLC address and control
        data = data[2:]
    if data[0] & 0x01:  # a compressed one-byte protocol field
        protocol, data = data[0], data[1:]
    else:
        protocol, data = _U16.unpack_from(data, 0)[0], data[2:]
    return _ip(data, depth) if protocol in (_PPP_IPV4, _PPP_IPV6) else None


def _ip(data: memoryview, depth: int) -> Segment | None:
    if depth > MAX_DEPTH:
        return None
    version = data[0] >> 4
    if version == 4:
        network = _ipv4(data)
    elif version == 6:
        network = _ipv6(data)
    else:
        return None
    if network is None:
        return None
    source, destination, protocol, body = network
    if protocol == _IP_TCP:
        return _tcp(source, destination, body)
    if protocol == _IP_UDP:
        return _udp(source, destination, body, depth)
    if protocol == _IP_GRE:
        return _gre(body, depth + 1)
    if protocol in (_IP_IPIP, _IP_IPV6):
        return _ip(body, depth + 1)
    return None


_Network = tuple[memoryview, memoryview, int, memoryview]  # source, destination, protocol, body


def _ipv4(data: memoryview) -> _Network | None:
    first, total, fragment, protocol = _IPV4.unpack_from(data, 0)
    if fragment & 0x1FFF:
        return None  # a later fragment: no transport header
    header = (first & 0x0F) * 4
    if header < 20:
        return None
    body = data[header:total] if total >= header else data[header:]
    return data[12:16], data[16:20], protocol, body


def _ipv6(data: memoryview) -> _Network | None:
    protocol = data[6]
    (length,) = _U16.unpack_from(data, 4)
    body = data[40:40 + length] if length else data[40:]
    while protocol in _IPV6_EXTENSIONS or protocol in (_IPV6_FRAGMENT, _IPV6_AH):
        if protocol == _IPV6_FRAGMENT:
            if _U16.unpack_from(body, 2)[0] & 0xFFF8:
                return None
            size = 8
        elif protocol == _IPV6_AH:
            size = (body[1] + 2) * 4
        else:
            size = (body[1] + 1) * 8
        protocol, body = body[0], body[size:]
    return data[8:24], data[24:40], protocol, body


def _tcp(source: memoryview, destination: memoryview, body: memoryview) -> Segment | None:
    sport, dport, sequence, offset, flags = _TCP.unpack_from(body, 0)
    header = (offset >> 4) * 4
    if header < 20:
        return None
    return Segment(_address(bytes(source)), _address(bytes(destination)), sport, dport, "tcp",
                   flags, sequence, bytes(body[header:]))


def _udp(source: memoryview, destination: memoryview, body: memoryview,
         depth: int) -> Segment | None:
    sport, dport, length = _UDP.unpack_from(body, 0)
    payload = body[8:length] if length >= 8 else body[8:]
    if dport == VXLAN_PORT and len(payload) >= 8 and payload[0] & 0x08:
        inner = _ethernet(payload[8:], depth + 1)
        if inner is not None:
            return inner
    if len(payload) >= 40:
        inner = _teredo(payload, depth + 1)
        if inner is not None:
            return inner
    return Segment(_address(bytes(source)), _address(bytes(destination)), sport, dport, "udp",
                   0, 0, bytes(payload))


def _teredo(payload: memoryview, depth: int) -> Segment | None:
    """IPv6 in UDP (RFC 4380) on any port, as Suricata and tshark's heuristic take it.

    Teredo's data packets use whatever ports the NAT gave, so the test is the
    payload's: an IPv6 header (not an atomic fragment) whose length fills the
    datagram exactly, after an optional authentication or origin header.
    """
    offset = 0
    if payload[0:2] == b"\x00\x01":  # authentication: ids, value, nonce, confirmation
        offset = 4 + payload[2] + payload[3] + 8 + 1
    if payload[offset:offset + 2] == b"\x00\x00":  # origin indication
        offset += 8
    inner = payload[offset:]
    if len(inner) < 40 or inner[0] >> 4 != 6:
        return None
    (length,) = _U16.unpack_from(inner, 4)
    # Suricata's checks: no hop limit 0, no short hop-by-hop, no atomic fragment (a DNS
    # message that looks like IPv6 has a zero answer count where the hop limit is)
    if inner[7] == 0 or (inner[6] == 0 and length < 8) or inner[6] == _IPV6_FRAGMENT or \
            40 + length != len(inner):
        return None
    return _ip(inner, depth)


def _gre(data: memoryview, depth: int) -> Segment | None:
    """GRE (RFC 2784/2890, and PPTP's version 1), with what switches mirror inside it."""
    flags, protocol = struct.unpack_from("!HH", data, 0)
    version = flags & 0x07
    if flags & 0x4000 or version > 1:  # source routing (RFC 1701) is not read
        return None
    offset = 4 + 4 * bool(flags & 0x8000) + 4 * bool(flags & 0x2000) \
        + 4 * bool(flags & 0x1000) + 4 * (version == 1 and bool(flags & 0x0080))
    body = data[offset:]
    if protocol in (_ETH_IPV4, _ETH_IPV6):
        return _ip(body, depth)
    if protocol == _GRE_BRIDGING:
        return _ethernet(body, depth)
    if protocol == _GRE_ERSPAN_2:  # type I has no header (no sequence number), type II 8 bytes
        return _ethernet(body[8:] if flags & 0x1000 else body, depth)
    if protocol == _GRE_ERSPAN_3:
        header = 12 + 8 * (body[11] & 0x01)  # the O bit: an 8-byte platform sub-header
        frame_type = (body[10] >> 2) & 0x1F
        return _ethernet(body[header:], depth) if frame_type == 0 else \
            _ip(body[header:], depth)
    if protocol == _GRE_PPP:
        return _ppp(body, depth)
    return None


def parse_neighbour_frame(linktype: int, frame: bytes) -> tuple[str, str, int] | None:
    """(source MAC, IPv6 source, ICMPv6 type) of an Ethernet frame carrying ICMPv6; else None.

    Only what device identity needs (neighbour discovery on the local link):
    802.1Q tags are opened, tunnels are not (their MACs are not the device's).
    """
    if linktype != LINKTYPE_ETHERNET:
        return None
    try:
        data = memoryview(frame)
        kind, offset = _U16.unpack_from(data, 12)[0], 14
        while kind in (_ETH_VLAN, _ETH_QINQ, _ETH_QINQ_OLD):
            kind, offset = _U16.unpack_from(data, offset + 2)[0], offset + 4
        if kind != _ETH_IPV6 or data[offset + 6] != _IP_ICMPV6 or len(data) < offset + 41:
            return None
        return (bytes(data[6:12]).hex(":"), _address(bytes(data[offset + 8:offset + 24])),
                data[offset + 40])
    except (struct.error, IndexError, ValueError):
        return None
