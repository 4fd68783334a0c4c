"""Parse Suricata EVE JSON lines into observations.

Suricata does the packet work (reassembly, protocol detection, QUIC
decryption); this module only maps its records to ours. A line that is not
JSON, or a record missing a field we need, raises ``EveRecordError`` so the
reader can count it and carry on. Event types we do not use are skipped;
types we have never heard of are counted by the reader.

Speed (the live path reads every record Suricata writes): msgspec decodes a
record straight into the typed structure its event_type names, holding only
the fields we use (the rest is skipped without being built); a record of a
type we ignore is only checked to be JSON. A line of an unexpected shape (a
field of another JSON type, an unknown event type) goes the slow, general
way, which gives the same observations or the same error as before: the
fast way changes the cost, never the answer.

Records no detector looks at are not built: given ``wanted``, the
observation types the detection engine uses (``DetectionEngine.observed_types``),
a record that can only give other types is decoded and dropped (the cost of
checking it is JSON), and only wanted observations are returned. Such a
record is no longer checked field by field either, so a malformed one is not
counted as malformed: it could change no alert.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from typing import Annotated, Any, ClassVar, Union, cast

import msgspec
import orjson

from sensor.capture.identity import MDNS_PORT, dhcp_lease, mdns_announcements, neighbour_advert
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
    "alert", "anomaly", "stats", "fileinfo", "drop", "netflow", "smb", "ssh", "krb5",
    "nfs", "ntp", "ike", "rdp", "rfb", "sip", "snmp", "tftp", "ftp", "ftp_data", "smtp",
    "mqtt", "http2", "pgsql", "bittorrent-dht", "dcerpc", "dnp3", "modbus", "engine",
})


NameFilter = Callable[[str], bool]
"""Whether detection looks at a DNS name (``DetectionEngine.dns_name_filter``)."""


class EveRecordError(ValueError):
    """One EVE line could not be turned into an observation."""


class UnknownEventType(EveRecordError):
    """The record's event_type is one this version of Veilleuse does not know."""

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        super().__init__(f"unknown EVE event_type {event_type!r}")


# An EVE time: RFC 3339 with a UTC offset, decoded by msgspec (in C) as it reads the line.
EveTime = Annotated[datetime, msgspec.Meta(tz=True)]


def parse_eve_time(text: object) -> float:
    """EVE timestamps (``2026-01-01T10:00:00.123456+0000``) as UNIX seconds; else EveRecordError.

    Read as RFC 3339 by msgspec, the same reading the typed decoding of a
    line makes: digits past the microseconds are a decimal fraction, rounded
    to the microsecond. (Suricata prints the pcap's microseconds with
    ``%06u``: a damaged capture whose microsecond field reads 1000000 gives
    ``.1000000``, read as 0.1 s; scapy and tshark read that packet 0.9 s later.)

    >>> parse_eve_time("2026-01-01T10:00:00.500000+0100") - parse_eve_time(
    ...     "2026-01-01T09:00:00Z")
    0.5
    """
    try:
        return msgspec.convert(text, EveTime).timestamp()
    except msgspec.ValidationError:
        raise EveRecordError(f"bad timestamp {text!r}") from None


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
    if endpoints.client_port == MDNS_PORT == endpoints.server_port:
        yield from _mdns(time, dns)
        return
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
        yield from _neighbour_flow(record, flow)
        return
    yield Flow(time=parse_eve_time(flow.get("start")), endpoints=_endpoints(record),
               end=parse_eve_time(flow.get("end")),
               packets=int(flow.get("pkts_toserver", 0)) + int(flow.get("pkts_toclient", 0)),
               bytes=int(flow.get("bytes_toserver", 0)) + int(flow.get("bytes_toclient", 0)),
               packets_to_client=int(flow.get("pkts_toclient", 0)),
               bytes_to_client=int(flow.get("bytes_toclient", 0)))


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


# -- the fast way: typed decoding of the fields we use --------------------------------------


class _Part(msgspec.Struct, gc=False):
    """Decoded JSON holds no cycles: the garbage collector need not track our parts."""


class _Record(_Part, kw_only=True, tag_field="event_type"):
    """A record of a type we ignore: only checked to be JSON, none of its fields built."""

    yields: ClassVar[frozenset[type]] = frozenset()  # the observation types it can give

    def observations(self) -> list[Observation]:
        return []


class _Located(_Record, kw_only=True):
    src_ip: str
    dest_ip: str
    src_port: int = 0
    dest_port: int = 0
    proto: str = ""

    def endpoints(self) -> Endpoints:
        """Memoized per 5-tuple (``_endpoints_of``): a flow's record and its protocol's
        records share one, and a network has few of them at a time."""
        return _endpoints_of(self.src_ip, self.dest_ip, self.src_port, self.dest_port,
                             self.proto)


_TCP_OR_UDP = ("TCP", "UDP", "tcp", "udp")  # Suricata writes them upper-case


@functools.lru_cache(maxsize=16384)
def _endpoints_of(client: str, server: str, client_port: int, server_port: int,
                  proto: str) -> Endpoints:
    """Validated once: Suricata writes canonical addresses, which ``Endpoints`` accepts as
    they are (it checks them); any other text is made canonical first, or refused (a
    refusal raises, so it is never memoized)."""
    transport = proto.lower()
    try:
        return Endpoints(client, server, client_port, server_port,
                         transport)  # type: ignore[arg-type]
    except ValueError:
        pass  # not canonical (or not an address): the general way below says which
    try:
        return Endpoints(canonical_ip(client), canonical_ip(server), client_port,
                         server_port, transport)  # type: ignore[arg-type]
    except ValueError as error:
        raise EveRecordError(f"bad endpoints: {error}") from None


class _Timed(_Located, kw_only=True):
    timestamp: EveTime


class _DnsQuestion(_Part):
    rrname: str
    rrtype: str = ""


class _DnsAnswerRecord(_Part):
    rrname: str = ""
    rrtype: str = ""
    rdata: str = ""
    ttl: int = 0

    def data(self) -> str:
        if self.rrtype in ("A", "AAAA"):
            try:
                return canonical_ip(self.rdata)
            except ValueError:
                return self.rdata
        return self.rdata


class _DnsSection(_Part):
    type: str
    rrname: str | None = None
    rrtype: str = ""
    queries: list[_DnsQuestion] = []
    answers: list[_DnsAnswerRecord] = []


class _DnsEvent(_Timed, tag="dns"):
    yields = frozenset({DnsQuery, DnsAnswer})
    dns: _DnsSection

    def names_wanted(self, wanted_name: NameFilter) -> bool:
        """Whether detection looks at a name of this record: its question, an answer's
        owner or a CNAME's target (as ``IocDetector`` reads an answer); mDNS always (devices
        learn their names from it)."""
        dns = self.dns
        if self.src_port == MDNS_PORT == self.dest_port:
            return True
        if dns.rrname is not None and wanted_name(dns.rrname):
            return True
        return any(wanted_name(q.rrname) for q in dns.queries) or any(
            wanted_name(a.rrname) or (a.rrtype == "CNAME" and wanted_name(a.rdata))
            for a in dns.answers)

    def observations(self) -> list[Observation]:
        dns = self.dns
        time, endpoints = self.timestamp.timestamp(), self.endpoints()
        if self.src_port == MDNS_PORT == self.dest_port:
            return list(_mdns(time, msgspec.to_builtins(dns)))
        if dns.type == "query":
            queries: list[Observation] = [] if dns.rrname is None else [
                DnsQuery(time, endpoints, dns.rrname, dns.rrtype)]  # Suricata 7 style
            if dns.queries:  # Suricata 8 style
                queries += [DnsQuery(time, endpoints, q.rrname, q.rrtype) for q in dns.queries]
            return queries
        if dns.type == "answer":
            records = tuple([DnsRecord(a.rrname, a.rrtype, a.data(), a.ttl) for a in dns.answers])
            return [DnsAnswer(time, endpoints, dns.rrname or "", records)]
        raise EveRecordError(f"dns record of unknown type {dns.type!r}")


class _FlowSection(_Part):
    start: EveTime
    end: EveTime
    pkts_toserver: int = 0
    pkts_toclient: int = 0
    bytes_toserver: int = 0
    bytes_toclient: int = 0


class _FlowEvent(_Located, tag="flow"):
    yields = frozenset({Flow})
    flow: _FlowSection
    icmp_type: int | None = None
    ether: msgspec.Raw = msgspec.Raw()  # its text: only neighbour discovery reads it (rare)

    def observations(self) -> list[Observation]:
        if self.proto not in _TCP_OR_UDP and self.proto.lower() not in _TCP_OR_UDP:
            return _neighbour_event(self)
        flow = self.flow
        return [Flow(flow.start.timestamp(), self.endpoints(), flow.end.timestamp(),
                     flow.pkts_toserver + flow.pkts_toclient,
                     flow.bytes_toserver + flow.bytes_toclient,
                     flow.pkts_toclient, flow.bytes_toclient)]


class _Hello(_Part):
    sni: str | None = None
    ja4: str | None = None


class _TlsEvent(_Timed, tag="tls"):
    yields = frozenset({TlsHello})
    tls: _Hello | None = None

    def observations(self) -> list[Observation]:
        if self.tls is None or not self.tls.sni:
            return []
        return [TlsHello(self.timestamp.timestamp(), self.endpoints(), self.tls.sni,
                         self.tls.ja4)]


class _QuicEvent(_Timed, tag="quic"):
    yields = frozenset({QuicHello})
    quic: _Hello | None = None

    def observations(self) -> list[Observation]:
        if self.quic is None or not self.quic.sni:
            return []
        return [QuicHello(self.timestamp.timestamp(), self.endpoints(), self.quic.sni)]


class _HttpSection(_Part):
    hostname: str | None = None
    http_method: str = "GET"


class _HttpEvent(_Timed, tag="http"):
    yields = frozenset({HttpRequest})
    http: _HttpSection | None = None

    def observations(self) -> list[Observation]:
        if self.http is None or not self.http.hostname:
            return []
        return [HttpRequest(self.timestamp.timestamp(), self.endpoints(),
                            self.http.hostname, self.http.http_method)]


# -- device identity: DHCP, neighbour discovery (ICMPv6 flows), mDNS -------------------


def _dhcp(record: dict[str, Any]) -> Iterator[Observation]:
    """A DHCP record (``extended: yes``): the client's MAC and what binds it."""
    dhcp = record.get("dhcp")
    if not isinstance(dhcp, dict):
        raise EveRecordError("dhcp record without a 'dhcp' object")
    if dhcp.get("client_mac") and dhcp.get("dhcp_type"):
        yield dhcp_lease(parse_eve_time(record.get("timestamp")), str(dhcp["client_mac"]),
                         str(dhcp["dhcp_type"]), your_address=dhcp.get("assigned_ip"),
                         client_address=dhcp.get("client_ip"),
                         requested_address=dhcp.get("requested_ip"),
                         host_name=dhcp.get("hostname"),
                         vendor_class=dhcp.get("vendor_class_identifier"))


def _neighbour_flow(record: dict[str, Any], flow: dict[str, Any]) -> Iterator[Observation]:
    """An ICMPv6 flow of neighbour discovery, with its source MAC (``ethernet: yes``)."""
    macs = (record.get("ether") or {}).get("src_macs") or ()
    icmp_type = record.get("icmp_type")
    if macs and isinstance(icmp_type, int):
        advert = neighbour_advert(parse_eve_time(flow.get("start")), str(macs[0]),
                                  _ip(record["src_ip"]), icmp_type)
        if advert is not None:
            yield advert


def _mdns(time: float, dns: dict[str, Any]) -> Iterator[Observation]:
    """Names an mDNS answer announces (Suricata reads UDP 5353 as DNS)."""
    if dns.get("type") != "answer" or not dns.get("rrname"):
        return
    records = [DnsRecord(name=str(a.get("rrname", "")), rrtype=str(a.get("rrtype", "")),
                         data=_answer_data(a)) for a in dns.get("answers", ())
               if isinstance(a, dict)]
    yield from mdns_announcements(time, records)


_PARSERS["dhcp"] = _dhcp


class _FlowEther(_Part):
    src_macs: list[str] = []


# A flow's "ether" object, decoded only for the flows that need it; a ValidationError
# sends the line the general way, as if the whole record had been decoded at once.
_ETHER_DECODER = msgspec.json.Decoder(_FlowEther | None)


def _neighbour_event(event: _FlowEvent) -> list[Observation]:
    ether = _ETHER_DECODER.decode(event.ether) if event.ether else None
    if event.icmp_type is None or ether is None or not ether.src_macs:
        return []
    advert = neighbour_advert(event.flow.start.timestamp(), ether.src_macs[0],
                              canonical_ip(event.src_ip), event.icmp_type)
    return [] if advert is None else [advert]


class _DhcpSection(msgspec.Struct):
    client_mac: str | None = None
    dhcp_type: str | None = None
    assigned_ip: str | None = None
    client_ip: str | None = None
    requested_ip: str | None = None
    hostname: str | None = None
    vendor_class_identifier: str | None = None


class _DhcpEvent(_Record, tag="dhcp"):
    timestamp: EveTime
    dhcp: _DhcpSection

    def observations(self) -> list[Observation]:
        dhcp = self.dhcp
        if not dhcp.client_mac or not dhcp.dhcp_type:
            return []
        return [dhcp_lease(self.timestamp.timestamp(), dhcp.client_mac, dhcp.dhcp_type,
                           your_address=dhcp.assigned_ip, client_address=dhcp.client_ip,
                           requested_address=dhcp.requested_ip, host_name=dhcp.hostname,
                           vendor_class=dhcp.vendor_class_identifier)]


# msgspec picks the structure by event_type (in C); an ignored type gets an empty one.
_RECORD_TYPES: tuple[type[_Record], ...] = (
    _DnsEvent, _FlowEvent, _TlsEvent, _QuicEvent, _HttpEvent, _DhcpEvent,
    *(cast(type[_Record], msgspec.defstruct(f"_Ignored{index}", [], bases=(_Record,), tag=name))
      for index, name in enumerate(sorted(IGNORED_EVENT_TYPES))))
_DECODER = msgspec.json.Decoder(Union[_RECORD_TYPES])  # noqa: UP007 - a tuple of types


def parse_eve_line(line: str | bytes,
                   wanted: Collection[type] | None = None) -> list[Observation]:
    """The observations in one EVE line; EveRecordError if the line is unusable.

    ``wanted``: only observations of these types (None: all); a record that
    can give no wanted type is not built at all.
    """
    return line_parser(None if wanted is None else frozenset(wanted))(line)


# What a decoded record's observations are worth, given `wanted` and a name filter.
_SKIP, _ALL, _SOME, _NAMES = 0, 1, 2, 4  # _NAMES: first ask the filter (with _ALL or _SOME)


@functools.lru_cache(maxsize=32)
def line_parser(wanted: frozenset[type] | None,
                names: NameFilter | None = None) -> Callable[[str | bytes], list[Observation]]:
    """``parse_eve_line`` for one ``wanted`` and name filter, its decisions per record type
    made once.

    The reader calls this for every line Suricata writes: what is worked out
    here (which record types to skip, build whole, or filter) costs nothing
    per line. With ``names``, a DNS record none of whose names detection looks
    at is decoded and dropped, never built: most of a network's lookups are of
    names no feed lists, and building their observations was the largest cost
    of the live path.
    """
    plan = {kind: _ALL if wanted is None or kind.yields <= wanted else
            _SKIP if kind.yields.isdisjoint(wanted) else _SOME for kind in _RECORD_TYPES}
    if names is not None and plan[_DnsEvent] != _SKIP:
        plan[_DnsEvent] |= _NAMES
    decode = _DECODER.decode

    def parse(line: str | bytes) -> list[Observation]:
        try:
            record = decode(line)
        except msgspec.ValidationError:  # valid JSON of an unexpected shape or type
            return _only(_parse_general(line), wanted)
        except msgspec.DecodeError as error:
            raise EveRecordError(f"not JSON: {error}") from None
        worth = plan[type(record)]
        if worth == _SKIP or (worth & _NAMES and not record.names_wanted(names)):
            return []
        try:
            observations = record.observations()
        except msgspec.ValidationError:  # a part decoded late (a flow's "ether") of another shape
            return _only(_parse_general(line), wanted)
        except EveRecordError:
            raise
        except ValueError as error:  # an observation refused its values (a flow ending first...)
            raise EveRecordError(f"{type(record).__name__} record: {error}") from None
        return observations if worth & _ALL else _only(observations, wanted)

    return parse


def _only(observations: list[Observation], wanted: Collection[type] | None) -> list[Observation]:
    if wanted is None:
        return observations
    return [observation for observation in observations if type(observation) in wanted]


def _parse_general(line: str | bytes) -> list[Observation]:
    """The slow way, for what the typed one refused: the same observations or a clear error."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise EveRecordError(f"not JSON: {error}") from None
    if not isinstance(record, dict):
        raise EveRecordError("not a JSON object")
    event_type = record.get("event_type")
    if isinstance(event_type, (dict, list)):  # unhashable: no look-up may see it
        raise EveRecordError(f"event_type is a JSON {type(event_type).__name__}, not a string")
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
