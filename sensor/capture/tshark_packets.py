"""Decode tshark's field output (one line of tab-separated fields a packet) into observations.

The mirror of ``packets.py`` for tshark's dissection; flows go through the
same ``FlowTracker`` so all sources split conversations alike. tshark prints
every occurrence of a field (``-E occurrence=a``) joined by ``AGGREGATOR``, so
a TCP segment carrying several DNS messages (pipelined queries) or HTTP
requests gives all of them, and a tunnelled packet (GRE, VXLAN...) gives the
inner addresses last. Not its job: running tshark (``tshark.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

from scapy.layers.dns import dnstypes

from sensor.capture.flows import FlowState, FlowTracker, PacketSummary
from sensor.capture.identity import (
    DHCP_MESSAGES,
    dhcp_lease,
    mdns_announcements,
    neighbour_advert,
)
from sensor.capture.packets import QUIC_PORTS
from sensor.observations import (
    DnsAnswer,
    DnsQuery,
    DnsRecord,
    Endpoints,
    HttpRequest,
    Observation,
    QuicHello,
    TlsHello,
    canonical_ip,
    packet_time,
)

AGGREGATOR = "\x1f"  # joins a field's occurrences: a byte no name or number carries
FIELDS = (
    "frame.time_epoch", "frame.protocols", "frame.len",
    "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "tcp.srcport", "tcp.dstport", "tcp.flags", "udp.srcport", "udp.dstport",
    "dns.flags.response", "dns.count.queries", "dns.count.answers", "dns.count.auth_rr",
    "dns.count.add_rr", "dns.qry.name", "dns.qry.type", "dns.resp.name", "dns.resp.type",
    "dns.resp.ttl", "dns.a", "dns.aaaa", "dns.cname",
    "tls.handshake.type", "tls.handshake.extensions_server_name",
    "http.request.method", "http.host",
    # device identity: neighbour discovery, DHCP, mDNS PTR answers
    "eth.src", "icmpv6.type", "dhcp.option.dhcp", "dhcp.hw.mac_addr", "dhcp.ip.your",
    "dhcp.ip.client", "dhcp.option.requested_ip_address", "dhcp.option.hostname",
    "dhcp.option.vendor_class_id", "dns.ptr.domain_name",
    # DNS UPDATE (opcode 5) counts its sections as zones, prerequisites and updates
    "dns.flags.opcode", "dns.count.zones", "dns.count.prerequisites", "dns.count.updates",
)
(_TIME, _PROTOCOLS, _LENGTH, _IP_SRC, _IP_DST, _IP6_SRC, _IP6_DST, _TCP_SRC, _TCP_DST,
 _TCP_FLAGS, _UDP_SRC, _UDP_DST, _DNS_RESPONSE, _DNS_QUERIES, _DNS_ANSWERS, _DNS_AUTHORITY,
 _DNS_ADDITIONAL, _QRY_NAME, _QRY_TYPE, _RESP_NAME, _RESP_TYPE, _RESP_TTL, _A, _AAAA, _CNAME,
 _TLS_TYPE, _SNI, _HTTP_METHOD, _HTTP_HOST, _ETH_SRC, _ICMPV6_TYPE, _DHCP_TYPE, _DHCP_MAC,
 _DHCP_YOUR, _DHCP_CLIENT, _DHCP_REQUESTED, _DHCP_HOST, _DHCP_VENDOR, _PTR, _DNS_OPCODE,
 _DNS_ZONES, _DNS_PREREQUISITES, _DNS_UPDATES) = range(len(FIELDS))
_ADDRESS_FIELDS = {"A": _A, "AAAA": _AAAA, "CNAME": _CNAME, "PTR": _PTR}
_OPT = "41"  # the EDNS pseudo-record: it has no TTL field
_UPDATE = "5"  # the DNS UPDATE opcode (RFC 2136): its zone is read as the question


class TsharkFieldError(ValueError):
    """A packet's line lacks a field its layer should have."""


def _type_name(code: str) -> str:
    try:
        return dnstypes.get(int(code), code)
    except ValueError:
        return code


def _split(value: str) -> list[str]:
    return value.split(AGGREGATOR) if value else []


class TsharkDecoder:
    """Keeps the flow table; ``decode`` one line of tshark's output at a time."""

    def __init__(self) -> None:
        self.flows = FlowTracker()

    def decode(self, line: str) -> list[Observation]:
        fields = line.rstrip("\n").split("\t")
        if len(fields) != len(FIELDS):
            raise TsharkFieldError(f"{len(fields)} fields where {len(FIELDS)} were asked for")
        layers = fields[_PROTOCOLS].split(":")
        network = _last_of(layers, ("ip", "ipv6"))
        transport = _last_of(layers, ("tcp", "udp"))
        if network is None or transport is None:
            return _neighbour(fields, layers)
        is_tcp = transport == "tcp"
        source, destination = (_IP_SRC, _IP_DST) if network == "ip" else (_IP6_SRC, _IP6_DST)
        source_port, destination_port = (_TCP_SRC, _TCP_DST) if is_tcp else (_UDP_SRC, _UDP_DST)
        try:
            flags = int(_split(fields[_TCP_FLAGS])[-1], 16) if is_tcp else 0
            summary = PacketSummary(
                time=packet_time(float(fields[_TIME])),
                source=canonical_ip(_split(fields[source])[-1]),
                destination=canonical_ip(_split(fields[destination])[-1]),
                source_port=int(_split(fields[source_port])[-1]),
                destination_port=int(_split(fields[destination_port])[-1]),
                transport="tcp" if is_tcp else "udp", length=int(fields[_LENGTH]),
                syn=bool(flags & 0x02), ack=bool(flags & 0x10), fin=bool(flags & 0x01),
                rst=bool(flags & 0x04))
        except (IndexError, ValueError) as error:
            raise TsharkFieldError(f"{type(error).__name__}: {error}") from None
        state, ended = self.flows.add(summary)
        observations: list[Observation] = list(ended)
        observations.extend(self._application(fields, layers, summary, state))
        return observations

    def finish(self) -> list[Observation]:
        return list(self.flows.finish())

    def _application(self, fields: list[str], layers: list[str], summary: PacketSummary,
                     state: FlowState) -> Iterator[Observation]:
        endpoints = state.endpoints
        from_client = summary.source == endpoints.client and \
            summary.source_port == endpoints.client_port
        if "dns" in layers:
            yield from _dns(fields, summary.time, endpoints)
        elif "mdns" in layers or "dhcp" in layers:
            yield from _identity(fields, layers, summary.time, endpoints)
        elif "quic" in layers:
            if from_client and not state.hello_seen and endpoints.server_port in QUIC_PORTS \
                    and "1" in _split(fields[_TLS_TYPE]):
                state.hello_seen = True
                sni = _split(fields[_SNI])
                if sni:
                    yield QuicHello(summary.time, endpoints, sni[0])
        elif "tls" in layers:
            if from_client and not state.hello_seen and "1" in _split(fields[_TLS_TYPE]):
                state.hello_seen = True
                sni = _split(fields[_SNI])
                if sni:
                    yield TlsHello(summary.time, endpoints, sni[0])
        elif "http" in layers and from_client:
            methods, hosts = _split(fields[_HTTP_METHOD]), _split(fields[_HTTP_HOST])
            for method, host in zip(methods, hosts, strict=False):
                yield HttpRequest(summary.time, endpoints, host, method or "GET")


def _identity(fields: list[str], layers: list[str], time: float,
              endpoints: Endpoints) -> Iterator[Observation]:
    """Names in mDNS answers (with a question, as Suricata 7 logs them) and DHCP leases."""
    if "mdns" in layers:
        for answer in _dns(fields, time, endpoints):
            if isinstance(answer, DnsAnswer) and answer.query_name:
                yield from mdns_announcements(time, answer.records)
    else:
        yield from _dhcp(fields, time)


def _first(fields: list[str], index: int) -> str | None:
    values = _split(fields[index])
    return values[0] if values else None


def _dhcp(fields: list[str], time: float) -> Iterator[Observation]:
    kind, mac = _first(fields, _DHCP_TYPE), _first(fields, _DHCP_MAC)
    if not kind or not mac:
        return
    try:
        message = DHCP_MESSAGES.get(int(kind), kind)
        yield dhcp_lease(time, mac, message, your_address=_first(fields, _DHCP_YOUR),
                         client_address=_first(fields, _DHCP_CLIENT),
                         requested_address=_first(fields, _DHCP_REQUESTED),
                         host_name=_first(fields, _DHCP_HOST),
                         vendor_class=_first(fields, _DHCP_VENDOR))
    except ValueError as error:
        raise TsharkFieldError(f"DHCP: {error}") from None


def _neighbour(fields: list[str], layers: list[str]) -> list[Observation]:
    """A neighbour solicitation or advertisement: the frame's source MAC uses its IPv6 source."""
    if "icmpv6" not in layers or "eth" not in layers:
        return []
    macs, sources, types = (_split(fields[index]) for index in (_ETH_SRC, _IP6_SRC,
                                                                 _ICMPV6_TYPE))
    if not macs or not sources or not types:
        return []
    try:
        advert = neighbour_advert(packet_time(float(fields[_TIME])), macs[-1],
                                  canonical_ip(sources[-1]), int(types[0]))
    except ValueError as error:
        raise TsharkFieldError(f"neighbour discovery: {error}") from None
    return [] if advert is None else [advert]


def _last_of(layers: list[str], wanted: tuple[str, ...]) -> str | None:
    """The innermost of ``wanted`` in the protocol stack (a tunnel's inner packet)."""
    for layer in reversed(layers):
        if layer in wanted:
            return layer
    return None


class _Column:
    """The occurrences of one field, consumed message by message."""

    __slots__ = ("next", "values")

    def __init__(self, value: str) -> None:
        self.values = _split(value)
        self.next = 0

    def take(self, count: int) -> list[str]:
        taken = self.values[self.next:self.next + count]
        self.next += count
        return taken

    def pop(self) -> str:
        if self.next >= len(self.values):
            return ""
        self.next += 1
        return self.values[self.next - 1]


def _dns(fields: list[str], time: float, endpoints: Endpoints) -> Iterator[Observation]:
    """Every DNS message of the packet (several when TCP carries pipelined ones)."""
    responses, opcodes = _split(fields[_DNS_RESPONSE]), _Column(fields[_DNS_OPCODE])
    counts = [_Column(fields[index]) for index in (_DNS_QUERIES, _DNS_ANSWERS, _DNS_AUTHORITY,
                                                   _DNS_ADDITIONAL)]
    update_counts = [_Column(fields[index]) for index in (_DNS_ZONES, _DNS_PREREQUISITES,
                                                          _DNS_UPDATES)] + counts[3:]
    names, types = _Column(fields[_QRY_NAME]), _Column(fields[_QRY_TYPE])
    records = [_Column(fields[_RESP_NAME]), _Column(fields[_RESP_TYPE]),
               _Column(fields[_RESP_TTL])]
    addresses = {kind: _Column(fields[index]) for kind, index in _ADDRESS_FIELDS.items()}
    for response in responses:
        sections = update_counts if opcodes.pop() == _UPDATE else counts
        queries, answers, authority, additional = (_count(column.pop()) for column in sections)
        query_names = names.take(queries)
        query_types = [_type_name(code) for code in types.take(queries)]
        if response in ("0", "False"):
            for index, name in enumerate(query_names):
                yield DnsQuery(time, endpoints, name,
                               query_types[index] if index < len(query_types) else "")
            continue
        found = []
        record_names, record_types = records[0].take(answers + authority + additional), \
            records[1].take(answers + authority + additional)
        for index, (name, code) in enumerate(zip(record_names, record_types, strict=False)):
            ttl = records[2].pop() if code != _OPT else ""
            rrtype = _type_name(code)
            data = addresses[rrtype].pop() if rrtype in addresses else ""
            if index < answers:
                found.append(DnsRecord(name=name, rrtype=rrtype, data=data,
                                       ttl=int(ttl) if ttl.isdigit() else 0))
        yield DnsAnswer(time, endpoints, query_names[0] if query_names else "", tuple(found))


def _count(text: str) -> int:
    return int(text) if text.isdigit() else 0
