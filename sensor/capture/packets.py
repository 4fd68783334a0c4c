"""Decode captured frames into observations (DNS, TLS, QUIC, HTTP, flows).

Shared by the offline pcap reader and the live "lite" sniffer. Frames are
read as raw bytes (``frames.parse_frame``: headers with ``struct``, through
VLANs and tunnels), and only payloads that may matter are parsed: DNS on
port 53, the start of each TCP stream (a TLS ClientHello, HTTP request
headers, DNS-over-TCP messages, DNS queries in cleartext HTTP/2, reassembled
across segments by
``reassembly.Stream``) and QUIC Initials on port 443 (CRYPTO frames put back
by offset across packets). The common shapes (a ClientHello's server name,
DNS messages with address and name records) are read here with ``struct``
because scapy's dissectors cost hundreds of microseconds a message; anything
else falls back to scapy. Decoding is lenient: ``decode`` raises
``PacketDecodeError`` for a packet it cannot use and the caller counts it.
To agree with Suricata, a TLS or QUIC hello counts once per flow and QUIC is
read on port 443 only.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterator

from scapy.layers.dns import DNS, DNSRR, dnstypes
from scapy.layers.http import HTTPRequest
from scapy.layers.tls.extensions import TLS_Ext_ServerName
from scapy.layers.tls.handshake import TLSClientHello

from sensor.capture.doh import PREFACE, Http2Error, Http2Queries
from sensor.capture.flows import FlowState, FlowTracker, PacketSummary
from sensor.capture.frames import Segment, parse_frame, parse_neighbour_frame
from sensor.capture.identity import (
    DHCP_PORTS,
    MDNS_PORT,
    dhcp_lease_of_payload,
    mdns_announcements,
    neighbour_advert,
)
from sensor.capture.quic import CryptoStream, QuicError, is_client_initial, open_client_initials
from sensor.capture.reassembly import ReassemblyBudget, Stream
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
    packet_time,
)

DNS_PORT = 53
# DNS over TCP: 53, and 5353 where mDNS queriers and responders fall back to TCP (RFC 6762
# 18.5); tshark and Suricata's generated configuration read both
DNS_TCP_PORTS = frozenset({DNS_PORT, MDNS_PORT})
QUIC_PORTS = frozenset({443})
HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ",
                b"CONNECT ")
MAX_HTTP_HEADERS = 16_384  # bytes of request headers waited for before giving up
_TLS_HANDSHAKE, _CLIENT_HELLO = 0x16, 0x01
_SYN, _RST, _ACK, _FIN = 0x02, 0x04, 0x10, 0x01
_U16 = struct.Struct("!H")


class PacketDecodeError(ValueError):
    """One packet could not be decoded; the reason is its message."""


def _name(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text.rstrip(".")


# -- TLS ------------------------------------------------------------------------------


def sni_of_client_hello(message: bytes, what: str = "TLS ClientHello") -> str | None:
    """The server name in a ClientHello handshake message, or None if it has none.

    Read with ``struct`` (the layout is fixed, RFC 8446 4.1.2 and RFC 6066 3);
    a hello that does not follow it goes to scapy's lenient dissector, whose
    failure on hostile bytes is a ``PacketDecodeError`` naming ``what``.
    """
    try:
        return _fast_sni(message)
    except (IndexError, struct.error, ValueError):
        pass
    try:
        hello = TLSClientHello(message)
        for extension in hello.ext or ():
            if isinstance(extension, TLS_Ext_ServerName) and extension.servernames:
                return _name(extension.servernames[0].servername)
    except Exception as error:  # noqa: BLE001 - scapy's dissector, on hostile bytes
        raise PacketDecodeError(f"{what}: {type(error).__name__}: {error}") from None
    return None


def _fast_sni(message: bytes) -> str | None:
    if message[0] != _CLIENT_HELLO:
        raise ValueError("not a ClientHello")
    end = 4 + int.from_bytes(message[1:4], "big")
    if end > len(message):
        raise ValueError("cut short")
    offset = 4 + 2 + 32
    offset += 1 + message[offset]  # session id
    offset += 2 + _U16.unpack_from(message, offset)[0]  # cipher suites
    offset += 1 + message[offset]  # compression methods
    if offset == end:
        return None  # no extensions at all
    extensions_end = offset + 2 + _U16.unpack_from(message, offset)[0]
    if extensions_end != end:
        raise ValueError("extension lengths disagree")
    offset += 2
    while offset + 4 <= extensions_end:
        kind, length = struct.unpack_from("!HH", message, offset)
        offset += 4
        if kind == 0:  # server_name: list length, name type, name length, name
            if message[offset + 2] != 0:
                raise ValueError("not a host name")
            size = _U16.unpack_from(message, offset + 3)[0]
            if offset + 5 + size > offset + length:
                raise ValueError("server name overruns its extension")
            return _name(message[offset + 5:offset + 5 + size]) or None
        offset += length
    if offset != extensions_end:
        raise ValueError("extension overruns the hello")
    return None


def _client_hello(data: bytearray) -> bytes | None:
    """The first handshake message in TLS records at the start of ``data``.

    None while more bytes are needed; ValueError if the stream is not TLS
    handshake records or the message is not a ClientHello.
    """
    handshake = b""
    offset = 0
    while len(handshake) < 4 or len(handshake) < 4 + int.from_bytes(handshake[1:4], "big"):
        if offset + 5 > len(data):
            return None
        if data[offset] != _TLS_HANDSHAKE or data[offset + 1] != 3:
            raise ValueError("not a TLS handshake record")
        length = _U16.unpack_from(data, offset + 3)[0]
        if offset + 5 + length > len(data):
            return None
        handshake += data[offset + 5:offset + 5 + length]
        offset += 5 + length
        if handshake[0] != _CLIENT_HELLO:
            raise ValueError("the first handshake message is not a ClientHello")
    return handshake[:4 + int.from_bytes(handshake[1:4], "big")]


# -- DNS ------------------------------------------------------------------------------

_NAME_TYPES = frozenset({2, 5, 12, 39})  # NS, CNAME, PTR, DNAME: rdata is a name


def _dns_name(message: bytes, offset: int) -> tuple[bytes, int]:
    """A (possibly compressed) name at ``offset``: (dotted bytes, offset after it)."""
    labels: list[bytes] = []
    end = None
    jumps = 0
    while True:
        length = message[offset]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = offset + 2
            jumps += 1
            if jumps > 32:
                raise ValueError("a compression loop")
            offset = _U16.unpack_from(message, offset)[0] & 0x3FFF
            continue
        if length & 0xC0:
            raise ValueError("a reserved label type")
        offset += 1
        if length == 0:
            return b".".join(labels), end if end is not None else offset
        labels.append(message[offset:offset + length])
        if len(labels[-1]) != length:
            raise ValueError("a label cut short")
        offset += length


def _fast_dns(summary: PacketSummary, endpoints: Endpoints,
              message: bytes) -> list[Observation] | None:
    """A DNS message read with ``struct``; None if it holds records this reader leaves to scapy."""
    _, flags, questions, answers = struct.unpack_from("!HHHH", message, 0)
    offset = 12
    names = []
    for _ in range(questions):
        name, offset = _dns_name(message, offset)
        qtype = _U16.unpack_from(message, offset)[0]
        offset += 4
        names.append((name.decode("utf-8", "replace"), qtype))
    if not flags & 0x8000:
        return [DnsQuery(summary.time, endpoints, name, dnstypes.get(qtype, str(qtype)))
                for name, qtype in names]
    records = []
    for _ in range(answers):
        name, offset = _dns_name(message, offset)
        rrtype, _, ttl, length = struct.unpack_from("!HHIH", message, offset)
        offset += 10
        rdata = message[offset:offset + length]
        if len(rdata) != length:
            raise ValueError("a record cut short")
        if rrtype == 1 and length == 4:
            data = ".".join(map(str, rdata))
        elif rrtype == 28 and length == 16:
            data = str(ipaddress.IPv6Address(rdata))
        elif rrtype in _NAME_TYPES:
            data = _dns_name(message, offset)[0].decode("utf-8", "replace")
        else:
            return None
        offset += length
        records.append(DnsRecord(name=name.decode("utf-8", "replace"),
                                 rrtype=dnstypes.get(rrtype, str(rrtype)), data=data, ttl=ttl))
    return [DnsAnswer(summary.time, endpoints, names[0][0] if names else "", tuple(records))]


def _dns(summary: PacketSummary, endpoints: Endpoints, message: bytes) -> list[Observation]:
    try:
        fast = _fast_dns(summary, endpoints, message)
    except (IndexError, struct.error, ValueError):
        fast = None
    return fast if fast is not None else list(_scapy_dns(summary, endpoints, message))


def _scapy_dns(summary: PacketSummary, endpoints: Endpoints,
               message: bytes) -> Iterator[Observation]:
    dns = DNS(message)
    questions = list(dns.qd or ())
    if not dns.qr:
        for question in questions:
            yield DnsQuery(summary.time, endpoints, _name(question.qname),
                           dnstypes.get(question.qtype, str(question.qtype)))
        return
    records = tuple(
        DnsRecord(name=_name(rr.rrname), rrtype=dnstypes.get(rr.type, str(rr.type)),
                  data=_name(rr.rdata) if isinstance(rr.rdata, bytes) else str(rr.rdata),
                  ttl=int(rr.ttl))
        for rr in (dns.an or ()) if isinstance(rr, DNSRR))
    query_name = _name(questions[0].qname) if questions else ""
    yield DnsAnswer(summary.time, endpoints, query_name, records)


# -- the decoder ----------------------------------------------------------------------


class PacketDecoder:
    """Keeps the flow table and per-flow state; ``decode_frame`` one frame at a time."""

    def __init__(self, budget: ReassemblyBudget | None = None) -> None:
        self.flows = FlowTracker()
        self.budget = budget or ReassemblyBudget()
        # what reads a client stream, by what its first bytes say (``_stream_protocol``)
        self._stream_readers = {"tls": self._tls_stream, "http": self._http_stream,
                                "h2c": self._doh_stream}

    def decode_frame(self, linktype: int, frame: bytes, time: float,
                     length: int | None = None) -> list[Observation]:
        """One captured frame of link type ``linktype`` seen at ``time``."""
        observations: list[Observation] = []
        self._decode_into(observations, linktype, frame, time, length)
        return observations

    def decode_frame_counted(self, stats: SourceStats, linktype: int, frame: bytes,
                             time: float, length: int | None = None) -> list[Observation]:
        """``decode_frame``, counting the frame in ``stats``; one that fails is skipped there.

        Flows that ended before a frame that fails are still returned.
        """
        stats.records += 1
        observations: list[Observation] = []
        try:
            self._decode_into(observations, linktype, frame, time, length)
        except PacketDecodeError as error:
            stats.skip("undecodable packet", str(error))
        except Exception as error:  # noqa: BLE001 - the record boundary: count, go on
            stats.skip("malformed packet", f"{type(error).__name__}: {error}")
        stats.observations += len(observations)
        return observations

    def _decode_into(self, out: list[Observation], linktype: int, frame: bytes, time: float,
                     length: int | None) -> None:
        time = _time(time)
        segment = parse_frame(linktype, frame)
        if segment is None:
            out.extend(_neighbour(linktype, frame, time))
            return
        flags = segment.flags
        summary = PacketSummary(
            time=time, source=segment.source, destination=segment.destination,
            source_port=segment.source_port, destination_port=segment.destination_port,
            transport=segment.transport, length=len(frame) if length is None else length,
            syn=bool(flags & _SYN), ack=bool(flags & _ACK), fin=bool(flags & _FIN),
            rst=bool(flags & _RST))
        state, ended = self.flows.add(summary)
        out.extend(ended)
        if segment.transport == "tcp":
            self._tcp(summary, state, segment, out)
        elif segment.payload:
            self._udp(summary, state, segment.payload, out)

    def finish(self) -> list[Observation]:
        return list(self.flows.finish())

    def expire(self, now: float) -> list[Observation]:
        return list(self.flows.expire(now))

    # -- UDP --------------------------------------------------------------------------

    def _udp(self, summary: PacketSummary, state: FlowState, payload: bytes,
             out: list[Observation]) -> None:
        endpoints = state.endpoints
        if summary.source_port == DNS_PORT or summary.destination_port == DNS_PORT:
            out.extend(_dns(summary, endpoints, payload))
        elif summary.source_port in DHCP_PORTS and summary.destination_port in DHCP_PORTS:
            out.extend(_dhcp(summary.time, payload))
        elif summary.source_port == MDNS_PORT == summary.destination_port:
            out.extend(_mdns(summary, endpoints, payload))
        elif not state.hello_seen and endpoints.server_port in QUIC_PORTS and \
                summary.source_port == endpoints.client_port and \
                summary.source == endpoints.client and is_client_initial(payload):
            self._quic(summary, state, payload, out)

    @staticmethod
    def _quic(summary: PacketSummary, state: FlowState, payload: bytes,
              out: list[Observation]) -> None:
        try:
            initials = open_client_initials(payload)
        except QuicError as error:
            raise PacketDecodeError(f"QUIC Initial: {error}") from None
        crypto = state.application.get("quic")
        if crypto is None:
            crypto = state.application["quic"] = CryptoStream()
        try:
            for initial in initials:
                for offset, piece in initial.crypto:
                    crypto.add(offset, piece)
        except QuicError as error:
            state.hello_seen = True  # give up on this flow, once
            crypto.close()
            raise PacketDecodeError(f"QUIC Initial: {error}") from None
        data = crypto.data
        if len(data) < 4:
            return
        if data[0] != _CLIENT_HELLO:
            state.hello_seen = True
            crypto.close()
            raise PacketDecodeError("QUIC Initial: the CRYPTO stream is not a ClientHello")
        if len(data) < 4 + int.from_bytes(data[1:4], "big"):
            return  # the rest comes in the next Initial
        crypto.close()
        sni = sni_of_client_hello(data, "QUIC ClientHello")
        state.hello_seen = True
        if sni:
            out.append(QuicHello(summary.time, state.endpoints, sni))

    # -- TCP --------------------------------------------------------------------------

    def _tcp(self, summary: PacketSummary, state: FlowState, segment: Segment,
             out: list[Observation]) -> None:
        endpoints = state.endpoints
        from_client = summary.source_port == endpoints.client_port and \
            summary.source == endpoints.client
        is_dns = summary.source_port in DNS_TCP_PORTS or summary.destination_port in DNS_TCP_PORTS
        if not from_client and not is_dns:
            return  # only the client's stream is read, but for DNS answers
        key = "client" if from_client else "server"
        stream = state.application.get(key)
        if stream is None:
            if not segment.payload and not summary.syn:
                return
            stream = state.application[key] = Stream(self.budget)
        if summary.syn:
            stream.start(segment.sequence)
        # data on a SYN (TCP Fast Open, RFC 7413) starts after the SYN's own sequence number
        start = (segment.sequence + 1) & 0xFFFFFFFF if summary.syn else segment.sequence
        if stream.closed or not stream.add(start, segment.payload):
            if stream.failed:
                reason, stream.failed = stream.failed, None
                raise PacketDecodeError(f"TCP reassembly gave up: {reason}")
            return
        if is_dns:
            self._dns_stream(summary, state, stream, out)
            return
        protocol = state.application.get("protocol")
        if protocol is None:
            protocol = _stream_protocol(stream.data)
            if protocol is None:
                return
            state.application["protocol"] = protocol
        reader = self._stream_readers.get(protocol)
        if reader is None:
            stream.close()
        else:
            reader(summary, state, stream, out)

    @staticmethod
    def _tls_stream(summary: PacketSummary, state: FlowState, stream: Stream,
                    out: list[Observation]) -> None:
        if state.hello_seen:
            stream.close()
            return
        try:
            message = _client_hello(stream.data)
        except ValueError:
            stream.close()
            return
        if message is None:
            return  # wait for the next segment
        stream.close()
        sni = sni_of_client_hello(message)
        state.hello_seen = True  # only once a hello was read whole and parsed
        if sni:
            out.append(TlsHello(summary.time, state.endpoints, sni))

    @staticmethod
    def _http_stream(summary: PacketSummary, state: FlowState, stream: Stream,
                     out: list[Observation]) -> None:
        """Request headers, one after the other; a body is skipped by its Content-Length.

        Read as servers (and Suricata's libhtp) read them: lines may end with a
        bare LF, and empty lines before a request are skipped (RFC 9112 2.2). A
        body of unknown length (chunked) loses the framing: then the next
        segment that starts with a method starts the next request. Headers longer
        than ``MAX_HTTP_HEADERS`` give the Host of their complete lines, then
        the framing is lost too.
        """
        data = stream.data
        while data:
            skip = state.application.get("http_body", 0)
            if skip:
                taken = min(skip, len(data))
                stream.consume(taken)
                state.application["http_body"] = skip - taken
                continue
            blank = len(data) - len(data.lstrip(b"\r\n"))
            if blank:
                stream.consume(blank)
                continue
            if not data.startswith(HTTP_METHODS):
                if len(data) < 8 and any(method.startswith(bytes(data))
                                         for method in HTTP_METHODS):
                    return  # a method cut by the segment boundary
                stream.consume(len(data))  # lost framing: wait for a segment with a method
                return
            found = _HEADERS_END.search(data)
            if found is None:
                if len(data) > MAX_HTTP_HEADERS:
                    lines = data.rfind(b"\n")
                    _http_request(summary, state, bytes(data[:lines + 1]), out)
                    state.application["http_body"] = 0  # the rest of the headers comes next
                    stream.consume(len(data))
                return
            headers = bytes(data[:found.end()])
            stream.consume(found.end())
            _http_request(summary, state, headers, out)

    @staticmethod
    def _doh_stream(summary: PacketSummary, state: FlowState, stream: Stream,
                    out: list[Observation]) -> None:
        """DNS queries in cleartext HTTP/2 requests (``doh``): the device's own lookups."""
        reader = state.application.get("h2c")
        if reader is None:
            reader = state.application["h2c"] = Http2Queries()
        try:
            messages, used = reader.read(stream.data)
        except Http2Error as error:
            stream.close()
            raise PacketDecodeError(f"HTTP/2: {error}") from None
        stream.consume(used)
        for message in messages:
            try:
                observations = _dns(summary, state.endpoints, message)
            except Exception as error:  # noqa: BLE001 - scapy's dissector, on hostile bytes
                raise PacketDecodeError(f"DNS over HTTP/2: {type(error).__name__}: {error}") \
                    from None
            out.extend(observation for observation in observations
                       if isinstance(observation, DnsQuery))

    @staticmethod
    def _dns_stream(summary: PacketSummary, state: FlowState, stream: Stream,
                    out: list[Observation]) -> None:
        """Length-prefixed DNS messages (RFC 1035 4.2.2), several in a segment or one in several."""
        data = stream.data
        while len(data) >= 2:
            (length,) = _U16.unpack_from(data, 0)
            if length == 0:
                stream.close()
                return
            if len(data) < 2 + length:
                return
            message = bytes(data[2:2 + length])
            stream.consume(2 + length)
            try:
                out.extend(_dns(summary, state.endpoints, message))
            except Exception as error:  # noqa: BLE001 - scapy's dissector, on hostile bytes
                raise PacketDecodeError(f"DNS over TCP: {type(error).__name__}: {error}") \
                    from None


_HEADERS_END = re.compile(rb"\r?\n\r?\n")


def _http_request(summary: PacketSummary, state: FlowState, headers: bytes,
                  out: list[Observation]) -> None:
    """One request's header lines: its Host, and the length of the body that follows."""
    if b"\n" in headers.replace(b"\r\n", b""):
        headers = headers.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # scapy wants CRLF
    if not headers.endswith(b"\r\n\r\n"):
        headers += b"\r\n"  # the complete lines of headers cut at MAX_HTTP_HEADERS
    request = HTTPRequest(headers)
    if request.Host:
        out.append(HttpRequest(summary.time, state.endpoints, _name(request.Host),
                               _name(request.Method)))
    length = request.Content_Length
    try:
        state.application["http_body"] = int(length) if length else 0
    except ValueError:
        state.application["http_body"] = 0


def _stream_protocol(data: bytearray) -> str | None:
    """What the first bytes of a client stream say it carries; None until they say."""
    if data[0] == _TLS_HANDSHAKE:
        return "tls"
    if data.startswith(PREFACE):
        return "h2c"
    if len(data) < len(PREFACE) and PREFACE.startswith(bytes(data)):
        return None
    request = data.lstrip(b"\r\n")  # empty lines before a request are allowed
    if not request and len(data) < 8:
        return None
    if request.startswith(HTTP_METHODS):
        return "http"
    if len(request) < 8 and any(method.startswith(bytes(request)) for method in HTTP_METHODS):
        return None
    return "other"


# -- device identity --------------------------------------------------------------


def _dhcp(time: float, payload: bytes) -> list[Observation]:
    try:
        lease = dhcp_lease_of_payload(time, payload)
    except (IndexError, ValueError) as error:
        raise PacketDecodeError(f"DHCP: {error}") from None
    return [] if lease is None else [lease]


def _mdns(summary: PacketSummary, endpoints: Endpoints, payload: bytes) -> list[Observation]:
    """Names in an mDNS response; Suricata 7 logs only responses with a question, so do we."""
    answers = [observation for observation in _dns(summary, endpoints, payload)
               if isinstance(observation, DnsAnswer) and observation.query_name]
    return [announcement for answer in answers
            for announcement in mdns_announcements(summary.time, answer.records)]


def _neighbour(linktype: int, frame: bytes, time: float) -> list[Observation]:
    found = parse_neighbour_frame(linktype, frame)
    if found is None:
        return []
    advert = neighbour_advert(time, *found)
    return [] if advert is None else [advert]


def _time(value: float) -> float:
    try:
        return packet_time(value)
    except ValueError as error:
        raise PacketDecodeError(str(error)) from None
