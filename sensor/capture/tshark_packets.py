"""Decode pyshark packets (tshark's dissection) into observations.

The mirror of ``packets.py`` for tshark's field names; flows go through the
same ``FlowTracker`` so all sources split conversations alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scapy.layers.dns import dnstypes

from sensor.capture.flows import FlowState, FlowTracker, PacketSummary
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

_ADDRESS_FIELDS = {"A": "a", "AAAA": "aaaa", "CNAME": "cname"}


class TsharkFieldError(ValueError):
    """A packet lacks a field its layer should have."""


def _values(layer: Any, name: str) -> list[str]:
    field = layer.get_field(name)
    if field is None:
        return []
    return [str(item.show) for item in field.all_fields]


def _first(layer: Any, name: str) -> str | None:
    values = _values(layer, name)
    return values[0] if values else None


def _type_name(code: str) -> str:
    try:
        return dnstypes.get(int(code), code)
    except ValueError:
        return code


class TsharkDecoder:
    """Keeps the flow table; ``decode`` one pyshark packet at a time."""

    def __init__(self) -> None:
        self.flows = FlowTracker()

    def decode(self, packet: Any) -> list[Observation]:
        network = getattr(packet, "ip", None) or getattr(packet, "ipv6", None)
        transport = getattr(packet, "tcp", None) or getattr(packet, "udp", None)
        if network is None or transport is None:
            return []
        try:
            is_tcp = transport.layer_name == "tcp"
            flags = int(str(transport.flags), 16) if is_tcp else 0
            summary = PacketSummary(
                time=packet_time(packet.sniff_timestamp), source=canonical_ip(str(network.src)),
                destination=canonical_ip(str(network.dst)), source_port=int(transport.srcport),
                destination_port=int(transport.dstport), transport="tcp" if is_tcp else "udp",
                length=int(packet.length), syn=bool(flags & 0x02), ack=bool(flags & 0x10),
                fin=bool(flags & 0x01), rst=bool(flags & 0x04))
        except (AttributeError, ValueError) as error:
            raise TsharkFieldError(f"{type(error).__name__}: {error}") from None
        state, ended = self.flows.add(summary)
        observations: list[Observation] = list(ended)
        observations.extend(self._application(packet, summary, state))
        return observations

    def finish(self) -> list[Observation]:
        return list(self.flows.finish())

    def _application(self, packet: Any, summary: PacketSummary,
                     state: FlowState) -> Iterator[Observation]:
        endpoints = state.endpoints
        from_client = summary.source == endpoints.client and \
            summary.source_port == endpoints.client_port
        if hasattr(packet, "dns"):
            yield from _dns(packet.dns, summary.time, endpoints)
        elif hasattr(packet, "tls") and from_client and not state.hello_seen and \
                _first(packet.tls, "handshake_type") == "1":
            state.hello_seen = True
            sni = _first(packet.tls, "handshake_extensions_server_name")
            if sni:
                yield TlsHello(summary.time, endpoints, sni)
        elif hasattr(packet, "http") and from_client and _first(packet.http, "request_method"):
            host = _first(packet.http, "host")
            if host:
                yield HttpRequest(summary.time, endpoints, host,
                                  _first(packet.http, "request_method") or "GET")
        elif hasattr(packet, "quic") and from_client and not state.hello_seen and \
                endpoints.server_port in QUIC_PORTS:
            sni = _first(packet.quic, "tls_handshake_extensions_server_name")
            if _first(packet.quic, "tls_handshake_type") == "1":
                state.hello_seen = True
                if sni:
                    yield QuicHello(summary.time, endpoints, sni)


def _dns(layer: Any, time: float, endpoints: Endpoints) -> Iterator[Observation]:
    names = _values(layer, "qry_name")
    if _first(layer, "flags_response") in ("0", "False", None):
        types = _values(layer, "qry_type")
        for index, name in enumerate(names):
            rrtype = _type_name(types[index]) if index < len(types) else ""
            yield DnsQuery(time, endpoints, name, rrtype)
        return
    count = int(_first(layer, "count_answers") or 0)
    record_names = _values(layer, "resp_name")[:count]
    record_types = [_type_name(t) for t in _values(layer, "resp_type")[:count]]
    ttls = _values(layer, "resp_ttl")[:count]
    pending = {kind: _values(layer, field) for kind, field in _ADDRESS_FIELDS.items()}
    records = []
    for index, (name, rrtype) in enumerate(zip(record_names, record_types, strict=False)):
        data = pending[rrtype].pop(0) if pending.get(rrtype) else ""
        ttl = int(ttls[index]) if index < len(ttls) and ttls[index].isdigit() else 0
        records.append(DnsRecord(name=name, rrtype=rrtype, data=data, ttl=ttl))
    yield DnsAnswer(time, endpoints, names[0] if names else "", tuple(records))
