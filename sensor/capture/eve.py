"""Parse Suricata EVE JSON lines into observations.

Suricata does the packet work (reassembly, protocol detection, QUIC
decryption); this module only maps its records to ours. A line that is not
JSON, or a record missing a field we need, raises ``EveRecordError`` so the
reader can count it and carry on. Event types we do not use are skipped;
types we have never heard of are counted by the reader.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson

from sensor.observations import (
    DnsAnswer,
    DnsQuery,
    DnsRecord,
    Endpoints,
    Flow,
    HttpRequest,
    Observation,
    QuicHello,
    TlsHello,
    canonical_ip,
)

# Event types Suricata may write that carry nothing for us (yet).
IGNORED_EVENT_TYPES = frozenset({
    "alert", "anomaly", "stats", "fileinfo", "drop", "netflow", "smb", "ssh", "dhcp", "krb5",
    "nfs", "ntp", "ike", "rdp", "rfb", "sip", "snmp", "tftp", "ftp", "ftp_data", "smtp",
    "mqtt", "http2", "pgsql", "bittorrent-dht", "dcerpc", "dnp3", "modbus", "engine",
})


class EveRecordError(ValueError):
    """One EVE line could not be turned into an observation."""


class UnknownEventType(EveRecordError):
    """The record's event_type is one this version of Veilleuse does not know."""

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        super().__init__(f"unknown EVE event_type {event_type!r}")


_EVE_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([+-]\d{4}|Z)$")


def parse_eve_time(text: str) -> float:
    """EVE timestamps (``2026-01-01T10:00:00.123456+0000``) as UNIX seconds.

    Suricata prints the pcap's microseconds with ``%06u``; a capture whose
    microsecond field overflows (1000000, seen in the wild) gives 7 digits,
    which we read as microseconds, as scapy and tshark do.

    >>> parse_eve_time("2026-01-01T10:00:00.1000000+0000") - parse_eve_time(
    ...     "2026-01-01T10:00:00.000000+0000")
    1.0
    """
    if isinstance(text, str) and len(text) == 31 and text[19] == "." and text[26] in "+-" \
            and text[20:26].isdigit():
        base, digits, zone = text[:19], text[20:26], text[26:]  # Suricata's usual form
    else:
        match = _EVE_TIME.match(text) if isinstance(text, str) else None
        if match is None:
            raise EveRecordError(f"bad timestamp {text!r}")
        base, digits, zone = match.groups()
    fraction = 0.0
    if digits:
        fraction = int(digits) / (1_000_000 if len(digits) > 6 else 10 ** len(digits))
    return _whole_seconds(base, zone) + fraction


@functools.lru_cache(maxsize=4096)
def _whole_seconds(base: str, zone: str) -> float:
    """Memoized: records of the same second share this (strptime is slow)."""
    try:
        moment = datetime.strptime(base + zone.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        raise EveRecordError(f"bad timestamp {base}{zone}") from None
    return moment.timestamp()


def _endpoints(record: dict[str, Any]) -> Endpoints:
    """EVE orients every record by flow: src is the client whatever the packet direction."""
    try:
        return Endpoints(client=str(_ip(record["src_ip"])), server=str(_ip(record["dest_ip"])),
                         client_port=int(record.get("src_port", 0)),
                         server_port=int(record.get("dest_port", 0)),
                         transport=str(record.get("proto", "")).lower())  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as error:
        raise EveRecordError(f"bad endpoints: {error}") from None


def _ip(text: str) -> str:
    return canonical_ip(text)


def _dns(record: dict[str, Any]) -> Iterator[Observation]:
    dns = record.get("dns")
    if not isinstance(dns, dict):
        raise EveRecordError("dns record without a 'dns' object")
    time, endpoints = parse_eve_time(record.get("timestamp")), _endpoints(record)
    kind = dns.get("type")
    if kind == "query":
        if dns.get("rrname") is not None:
            yield DnsQuery(time, endpoints, str(dns["rrname"]), str(dns.get("rrtype", "")))
        for query in dns.get("queries", ()):  # Suricata 8 style
            yield DnsQuery(time, endpoints, str(query["rrname"]), str(query.get("rrtype", "")))
    elif kind == "answer":
        records = tuple(
            DnsRecord(name=str(a.get("rrname", "")), rrtype=str(a.get("rrtype", "")),
                      data=_answer_data(a), ttl=int(a.get("ttl", 0)))
            for a in dns.get("answers", ()) if isinstance(a, dict))
        yield DnsAnswer(time, endpoints, str(dns.get("rrname", "")), records)
    else:
        raise EveRecordError(f"dns record of unknown type {kind!r}")


def _answer_data(answer: dict[str, Any]) -> str:
    data = str(answer.get("rdata", ""))
    if answer.get("rrtype") in ("A", "AAAA"):
        try:
            return _ip(data)
        except ValueError:
            return data
    return data


def _flow(record: dict[str, Any]) -> Iterator[Observation]:
    flow = record.get("flow")
    if not isinstance(flow, dict):
        raise EveRecordError("flow record without a 'flow' object")
    if str(record.get("proto", "")).lower() not in ("tcp", "udp"):
        return
    yield Flow(time=parse_eve_time(flow.get("start")), endpoints=_endpoints(record),
               end=parse_eve_time(flow.get("end")),
               packets=int(flow.get("pkts_toserver", 0)) + int(flow.get("pkts_toclient", 0)),
               bytes=int(flow.get("bytes_toserver", 0)) + int(flow.get("bytes_toclient", 0)))


def _tls(record: dict[str, Any]) -> Iterator[Observation]:
    tls = record.get("tls") or {}
    if tls.get("sni"):
        yield TlsHello(parse_eve_time(record.get("timestamp")), _endpoints(record),
                       str(tls["sni"]), ja4=tls.get("ja4"))


def _quic(record: dict[str, Any]) -> Iterator[Observation]:
    quic = record.get("quic") or {}
    if quic.get("sni"):
        yield QuicHello(parse_eve_time(record.get("timestamp")), _endpoints(record),
                        str(quic["sni"]))


def _http(record: dict[str, Any]) -> Iterator[Observation]:
    http = record.get("http") or {}
    if http.get("hostname"):
        yield HttpRequest(parse_eve_time(record.get("timestamp")), _endpoints(record),
                          str(http["hostname"]), str(http.get("http_method", "GET")))


_PARSERS = {"dns": _dns, "flow": _flow, "tls": _tls, "quic": _quic, "http": _http}


def parse_eve_line(line: str | bytes) -> list[Observation]:
    """The observations in one EVE line; EveRecordError if the line is unusable."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise EveRecordError(f"not JSON: {error}") from None
    if not isinstance(record, dict):
        raise EveRecordError("not a JSON object")
    event_type = record.get("event_type")
    parser = _PARSERS.get(event_type)  # type: ignore[arg-type]
    if parser is None:
        if event_type in IGNORED_EVENT_TYPES:
            return []
        raise UnknownEventType(str(event_type))
    try:
        return list(parser(record))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as error:
        # A field of the wrong JSON type (a list where an object belongs, ...).
        if isinstance(error, EveRecordError):
            raise
        raise EveRecordError(f"{event_type} record: {error}") from None
