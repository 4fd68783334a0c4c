"""Decode scapy packets into observations (DNS, TLS, QUIC, HTTP, flows).

Shared by the offline pcap reader and the live "lite" sniffer. Decoding is
lenient and every packet is independent: ``decode`` raises
``PacketDecodeError`` for one it cannot use and the caller counts it.
To agree with Suricata, a TLS or QUIC hello counts once per flow, QUIC is
read on port 443 only, and DNS over TCP is read when a segment holds whole
messages.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from scapy.layers.dns import DNS, DNSRR, dnstypes
from scapy.layers.http import HTTPRequest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.tls.extensions import TLS_Ext_ServerName
from scapy.layers.tls.handshake import TLSClientHello
from scapy.packet import Packet

from sensor.capture.flows import FlowState, FlowTracker, PacketSummary
from sensor.capture.quic import QuicError, is_client_initial, open_client_initial
from sensor.capture.stats import SourceStats
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

DNS_PORT = 53
QUIC_PORTS = frozenset({443})
HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ",
                b"CONNECT ")
_TLS_HANDSHAKE, _CLIENT_HELLO = 0x16, 0x01


class PacketDecodeError(ValueError):
    """One packet could not be decoded; the reason is its message."""


def _name(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text.rstrip(".")


def sni_of_client_hello(message: bytes) -> str | None:
    """The server name in a ClientHello handshake message, or None if it has none."""
    hello = TLSClientHello(message)
    for extension in hello.ext or ():
        if isinstance(extension, TLS_Ext_ServerName) and extension.servernames:
            return _name(extension.servernames[0].servername)
    return None


class PacketDecoder:
    """Keeps the flow table and per-flow state; ``decode`` one packet at a time."""

    def __init__(self) -> None:
        self.flows = FlowTracker()

    def decode(self, packet: Packet) -> list[Observation]:
        network = packet.getlayer(IP) or packet.getlayer(IPv6)
        if network is None:
            return []
        transport = network.getlayer(TCP) or network.getlayer(UDP)
        if transport is None or transport.underlayer is not network:
            return []  # not TCP/UDP, or tunnelled (ICMP errors quote packets)
        is_tcp = isinstance(transport, TCP)
        flags = int(transport.flags) if is_tcp else 0
        summary = PacketSummary(
            time=_time(packet), source=canonical_ip(network.src),
            destination=canonical_ip(network.dst),
            source_port=int(transport.sport), destination_port=int(transport.dport),
            transport="tcp" if is_tcp else "udp", length=len(packet),
            syn=bool(flags & 0x02), ack=bool(flags & 0x10), fin=bool(flags & 0x01),
            rst=bool(flags & 0x04))
        state, ended = self.flows.add(summary)
        observations: list[Observation] = list(ended)
        payload = bytes(transport.payload)
        if payload:
            observations.extend(self._application(summary, state, payload))
        return observations

    def decode_counted(self, packet: Packet, stats: SourceStats) -> list[Observation]:
        """``decode``, counting the packet in ``stats``; a packet that fails is skipped there."""
        stats.records += 1
        try:
            observations = self.decode(packet)
        except PacketDecodeError as error:
            stats.skip("undecodable packet", str(error))
            return []
        except Exception as error:  # noqa: BLE001 - the record boundary: count, go on
            stats.skip("malformed packet", f"{type(error).__name__}: {error}")
            return []
        stats.observations += len(observations)
        return observations

    def finish(self) -> list[Observation]:
        return list(self.flows.finish())

    def expire(self, now: float) -> list[Observation]:
        return list(self.flows.expire(now))

    def _application(self, summary: PacketSummary, state: FlowState,
                     payload: bytes) -> Iterator[Observation]:
        ports = (summary.source_port, summary.destination_port)
        endpoints = state.endpoints
        from_client = summary.source == endpoints.client and \
            summary.source_port == endpoints.client_port
        if DNS_PORT in ports:
            yield from _dns(summary, endpoints, payload)
        elif summary.transport == "tcp" and from_client and not state.hello_seen and \
                len(payload) > 5 and payload[0] == _TLS_HANDSHAKE and payload[5] == _CLIENT_HELLO:
            state.hello_seen = True
            sni = sni_of_client_hello(payload[5:])
            if sni:
                yield TlsHello(summary.time, endpoints, sni)
        elif summary.transport == "tcp" and from_client and payload.startswith(HTTP_METHODS):
            request = HTTPRequest(payload)
            if request.Host:
                yield HttpRequest(summary.time, endpoints, _name(request.Host),
                                  _name(request.Method))
        elif summary.transport == "udp" and from_client and not state.hello_seen and \
                endpoints.server_port in QUIC_PORTS and is_client_initial(payload):
            yield from _quic(summary, endpoints, state, payload)


def _time(packet: Packet) -> float:
    try:
        return packet_time(packet.time)
    except ValueError as error:
        raise PacketDecodeError(str(error)) from None


def _quic(summary: PacketSummary, endpoints: Endpoints, state: FlowState,
          payload: bytes) -> Iterator[Observation]:
    try:
        initial = open_client_initial(payload)
    except QuicError as error:
        raise PacketDecodeError(f"QUIC Initial: {error}") from None
    first = dict(initial.crypto).get(0)
    if first is None or len(first) < 4 or first[0] != _CLIENT_HELLO:
        return  # the ClientHello starts in another packet; Suricata also needs the first
    state.hello_seen = True
    sni = sni_of_client_hello(first)
    if sni:
        yield QuicHello(summary.time, endpoints, sni)


def _dns(summary: PacketSummary, endpoints: Endpoints, payload: bytes) -> Iterator[Observation]:
    for message in _dns_messages(summary.transport, payload):
        dns = DNS(message)
        questions = list(dns.qd or ())
        if not dns.qr:
            for question in questions:
                yield DnsQuery(summary.time, endpoints, _name(question.qname),
                               dnstypes.get(question.qtype, str(question.qtype)))
            continue
        records = tuple(
            DnsRecord(name=_name(rr.rrname), rrtype=dnstypes.get(rr.type, str(rr.type)),
                      data=_name(rr.rdata) if isinstance(rr.rdata, bytes) else str(rr.rdata),
                      ttl=int(rr.ttl))
            for rr in (dns.an or ()) if isinstance(rr, DNSRR))
        query_name = _name(questions[0].qname) if questions else ""
        yield DnsAnswer(summary.time, endpoints, query_name, records)


def _dns_messages(transport: str, payload: bytes) -> Iterator[bytes]:
    if transport == "udp":
        yield payload
        return
    offset = 0
    while offset + 2 <= len(payload):
        (length,) = struct.unpack_from("!H", payload, offset)
        if length == 0 or offset + 2 + length > len(payload):
            return  # a message split across segments; not reassembled here
        yield payload[offset + 2:offset + 2 + length]
        offset += 2 + length
