"""Differential test: every source alerts on every name tshark decodes, and on nothing else.

The captures are generated (seeded, so a failure replays): random names with
random letter case (DNS 0x20), random devices over IPv4 and IPv6, random
ports and transaction ids, and each protocol cut into segments or packets as
it allows (pipelined and split DNS over TCP, on port 53 and 5353, DNS UPDATE,
ClientHellos split over TCP segments or sent on the SYN (TCP Fast Open), HTTP
requests split over TCP segments, HTTP with bare LF line
ends, empty lines between pipelined requests or a header line past libhtp's
18 KiB limit, QUIC ClientHellos over several Initial packets, DNS queries
POSTed over cleartext HTTP/2), connections caught mid-stream, at their
SYN/ACK or in one direction, VLAN tags and tunnels (GRE, VXLAN, Teredo). The
expected alerts are not written here: tshark is asked, on its own, for every
client-side DNS query name, TLS and QUIC SNI and HTTP Host in each capture,
and a feed is made of them. Every source must then alert on each (device,
name) and on nothing beyond; what a source is known to miss is a strict xfail
that says why (``KNOWN_MISSES``).

Devices too: random devices join with DHCP (DISCOVER, OFFER, REQUEST, ACK;
some twice), neighbour discovery and mDNS, and every source must learn each
MAC with its addresses, name and vendor class, and nothing else.

With ``VEILLEUSE_PUBLIC_CAPTURES=<directory>``, the same check runs on every
pcap and pcapng under that directory and prints each source's recall; it was
run on the captures of the public suricata-verify suite
(https://github.com/OISF/suricata-verify, ``tests/*/*.pcap``), which are not
vendored here. ``VEILLEUSE_PUBLIC_MIN_RECALL`` (default 1.0) sets the bar. On
the first 500 captures of suricata-verify 10a45e4 (1,523 sightings), recall was
suricata 0.991, tshark 1.000, scapy 1.000, with no alert beyond the feed
(before the third round of issue #11: 0.988, 0.997 and 0.985, and two alerts
counted beyond the feed that were this test's: an alert keyed by a MAC). On all
1,509 captures of that commit (2,210 sightings): suricata 0.993, tshark 1.000,
scapy 1.000, nothing beyond (before: 0.979, 0.986, 0.977). What Suricata 7
misses in the first 500: the 12 DNS queries POSTed over cleartext HTTP/2 in one
capture (no DoH parser, no HTTP/2 body in EVE) and a TLS hello of a connection
it never tracks (bug-4702-02: a SYN/ACK with a TSecr the SYN did not offer;
Suricata 7.0.10 fails that suricata-verify test too).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import socket
import string
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from sensor.analysis import analyze_capture
from sensor.capture import CaptureError, scan_capture
from sensor.capture.quic import seal_client_initial
from sensor.config import Config
from sensor.demo.doh import doh_client_stream, settings_frame
from sensor.demo.identity import dhcp_lease, mdns_announcement, neighbour_discovery
from sensor.demo.tls import (
    change_cipher_spec_and_data,
    client_hello,
    client_hello_record,
    server_hello_record,
)
from sensor.demo.traffic import DEFAULT_START, Traffic, _length_prefixed
from sensor.detect.model import AlertKind
from sensor.feeds.names import indicator_domain
from sensor.feeds.store import load_feed_file
from sensor.wiring import build_engine, build_matcher, open_source
from tests.conftest import require_tool

SOURCES = ("suricata", "tshark", "scapy")
SESSIONS = 12  # random sessions per shape
Sighting = tuple[str, str]  # (device, name)


class Generator:
    """Random sessions of one shape into a ``Traffic``; names, addresses and ports from ``rng``."""

    def __init__(self, rng: random.Random, traffic: Traffic) -> None:
        self.rng = rng
        self.traffic = traffic
        self.now = DEFAULT_START

    def name(self) -> str:
        labels = [("".join(self.rng.choices(string.ascii_lowercase + string.digits,
                                            k=self.rng.randint(3, 12))))
                  for _ in range(self.rng.randint(1, 3))]
        name = ".".join([*labels, self.rng.choice(["com", "net", "org", "io", "info", "app"])])
        return "".join(c.upper() if self.rng.random() < 0.3 else c for c in name)

    def device(self) -> str:
        if self.rng.random() < 0.3:
            return str(ipaddress.ip_address(f"2001:db8:1::{self.rng.randrange(1, 0xffff):x}"))
        return f"192.168.{self.rng.randrange(0, 4)}.{self.rng.randrange(2, 250)}"

    def server(self, device: str) -> str:
        if ":" in device:
            return f"2001:db8:99::{self.rng.randrange(1, 0xffff):x}"
        return f"198.51.100.{self.rng.randrange(1, 250)}"

    def tick(self) -> float:
        self.now += self.rng.uniform(0.05, 3.0)
        return self.now

    def port(self) -> int:
        return self.rng.randrange(1024, 65000)

    # -- shapes ----------------------------------------------------------------

    def dns_udp(self) -> None:
        device, name = self.device(), self.name()
        resolver = "192.168.0.1" if ":" not in device else "2001:db8:1::1"
        self.traffic.dns(self.tick(), device, resolver, name,
                         [(name, "A", self.server("0.0.0.0"))],
                         transaction_id=self.rng.randrange(1 << 16))

    def _dns_tcp(self, pieces: Callable[[bytes], list[bytes]], port: int = 53) -> None:
        device = self.device()
        resolver = "192.168.0.1" if ":" not in device else "2001:db8:1::1"
        queries = b"".join(_length_prefixed(bytes(DNS(id=self.rng.randrange(1 << 16), rd=1,
                                                      qd=DNSQR(qname=self.name()))))
                           for _ in range(self.rng.randint(1, 3)))
        self.traffic.tcp_connection(self.tick(), device, resolver, port, pieces(queries),
                                    client_port=self.port())

    def dns_tcp_pipelined(self) -> None:
        self._dns_tcp(lambda data: [data])

    def dns_tcp_split(self) -> None:
        self._dns_tcp(lambda data: self._split(data))

    def dns_tcp_mdns_port(self) -> None:
        """DNS over TCP to port 5353 (mDNS's TCP fallback), which tshark decodes as DNS."""
        self._dns_tcp(lambda data: [data], port=5353)

    def _split(self, data: bytes) -> list[bytes]:
        cut = self.rng.randrange(1, len(data))
        return [data[:cut], data[cut:]]

    def tls(self, split: bool = False) -> None:
        device = self.device()
        hello = client_hello_record(self.name())
        requests = self._split(hello) if split else [hello]
        self.traffic.tcp_connection(self.tick(), device, self.server(device),
                                    self.rng.choice([443, 443, 8443]),
                                    [*requests, change_cipher_spec_and_data()],
                                    [b""] * (len(requests) - 1) + [server_hello_record()],
                                    client_port=self.port())

    def tls_split(self) -> None:
        self.tls(split=True)

    def tls_fast_open(self) -> None:
        """TCP Fast Open (RFC 7413): the ClientHello rides on the SYN."""
        device = self.device()
        server, port, hello = self.server(device), self.port(), client_hello_record(self.name())
        time, seq = self.tick(), self.rng.randrange(1 << 31)
        self.traffic.frame(time, device, server,
                           TCP(sport=port, dport=443, flags="S", seq=seq,
                               options=[("TFO", self.rng.randbytes(8))]) / Raw(hello))
        self.traffic.frame(time + 0.01, server, device,
                           TCP(sport=443, dport=port, flags="SA", seq=7000,
                               ack=seq + 1 + len(hello)))
        answer, rest = server_hello_record(), change_cipher_spec_and_data()
        client = seq + 1 + len(hello)
        for step, (source, segment) in enumerate([
                (device, TCP(sport=port, dport=443, flags="A", seq=client, ack=7001)),
                (server, TCP(sport=443, dport=port, flags="PA", seq=7001, ack=client) /
                 Raw(answer)),
                (device, TCP(sport=port, dport=443, flags="PA", seq=client,
                             ack=7001 + len(answer)) / Raw(rest)),
                (device, TCP(sport=port, dport=443, flags="FA", seq=client + len(rest),
                             ack=7001 + len(answer))),
                (server, TCP(sport=443, dport=port, flags="FA", seq=7001 + len(answer),
                             ack=client + len(rest) + 1))]):
            self.traffic.frame(time + 0.02 + step * 0.005, source,
                               server if source == device else device, segment)

    def http(self, split: bool = False) -> None:
        device, host = self.device(), self.name()
        port = self.rng.choice([80, 80, 8080])
        header = f"{host}:{port}" if port != 80 and self.rng.random() < 0.5 else host
        request = (f"GET /{self.name().lower()} HTTP/1.1\r\nHost: {header}\r\n"
                   "User-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n").encode()
        requests = self._split(request) if split else [request]
        self.traffic.tcp_connection(self.tick(), device, self.server(device), port, requests,
                                    [b""] * (len(requests) - 1) +
                                    [b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"],
                                    client_port=self.port())

    def http_split(self) -> None:
        self.http(split=True)

    def quic(self, split: bool = False) -> None:
        device = self.device()
        hello = client_hello(self.name(), quic=True)
        cid = self.rng.randbytes(8)
        pieces = self._split(hello) if split else [hello]
        port, server, offset, time = self.port(), self.server(device), 0, self.tick()
        for number, piece in enumerate(pieces):
            datagram = seal_client_initial(piece, cid, packet_number=number, crypto_offset=offset)
            self.traffic.udp_exchange(time + number * 0.001, device, server, 443,
                                      Raw(datagram), client_port=port)
            offset += len(piece)

    def quic_split(self) -> None:
        self.quic(split=True)

    def http_lenient(self) -> None:
        """Pipelined requests as servers accept them: bare LF line ends, empty lines between."""
        device = self.device()
        requests = b""
        for _ in range(self.rng.randint(1, 3)):
            end = self.rng.choice(["\r\n", "\n"])
            requests += b"\r\n" * self.rng.randint(0, 2) + end.join(
                [f"GET /{self.name().lower()} HTTP/1.1", f"Host: {self.name()}",
                 "Accept: */*", "", ""]).encode()
        self.traffic.tcp_connection(self.tick(), device, self.server(device), 80,
                                    self._split(requests),
                                    [b"", b"HTTP/1.1 204 No Content\r\n\r\n"],
                                    client_port=self.port())

    def http_long_header(self) -> None:
        """A Host followed by a header line longer than libhtp's 18 KiB default field limit."""
        device = self.device()
        padding = "x" * self.rng.randrange(19_000, 40_000)
        request = (f"GET / HTTP/1.1\r\nHost: {self.name()}\r\nX-Padding: {padding}\r\n"
                   "Accept: */*\r\n\r\n").encode()
        segments = [request[start:start + 1448] for start in range(0, len(request), 1448)]
        self.traffic.tcp_connection(self.tick(), device, self.server(device), 80, segments,
                                    [b""] * (len(segments) - 1) +
                                    [b"HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\n\r\n"],
                                    client_port=self.port())

    def dns_update(self) -> None:
        """A dynamic update (RFC 2136, opcode 5): its zone is asked for as a question is."""
        device = self.device()
        resolver = "192.168.0.1" if ":" not in device else "2001:db8:1::1"
        update = DNS(id=self.rng.randrange(1 << 16), opcode=5,
                     qd=DNSQR(qname=self.name(), qtype="SOA"))
        if self.rng.random() < 0.5:
            self.traffic.udp_exchange(self.tick(), device, resolver, 53, update,
                                      client_port=self.port())
        else:
            self.traffic.tcp_connection(self.tick(), device, resolver, 53,
                                        [_length_prefixed(bytes(update))],
                                        client_port=self.port())

    def doh_h2c(self) -> None:
        """DNS over cleartext HTTP/2 (prior knowledge): POSTs of application/dns-message."""
        device = self.device()
        queries = [bytes(DNS(id=0, rd=1, qd=DNSQR(qname=self.name())))
                   for _ in range(self.rng.randint(1, 3))]
        self.traffic.tcp_connection(self.tick(), device, self.server(device), 80,
                                    self._split(doh_client_stream(queries)),
                                    [b"", settings_frame()], client_port=self.port())


def _midstream(traffic: Traffic) -> None:
    """Drop every SYN: the sensor started after the connections opened."""
    traffic.frames = [(time, frame) for time, frame in traffic.frames
                      if not _tcp_flags(frame) & 0x02]


def _syn_ack_first(traffic: Traffic) -> None:
    """Drop the clients' SYNs only: each connection is first seen at its SYN/ACK."""
    traffic.frames = [(time, frame) for time, frame in traffic.frames
                      if _tcp_flags(frame) & 0x12 != 0x02]


def _teredo(traffic: Traffic) -> None:
    """IPv6 frames carried in IPv4 UDP, on the ports a NAT gave (Teredo, RFC 4380)."""
    rng = random.Random("veilleuse-differential-teredo")
    ports: dict[str, tuple[int, int]] = {}
    wrapped = []
    for time, frame in traffic.frames:
        if _network(frame)[0] == 6:
            source = _source(frame)
            sport, dport = ports.setdefault(source, (rng.randrange(1024, 65000),
                                                     rng.randrange(1024, 65000)))
            frame = bytes(Ether() / IP(src="10.99.0.1", dst="10.99.0.2") /
                          UDP(sport=sport, dport=dport) / Raw(frame[14:]))
        wrapped.append((time, frame))
    traffic.frames = wrapped


def _one_sided(traffic: Traffic) -> None:
    """Keep what the devices (the home networks) sent: a mirror of one direction."""
    traffic.frames = [(time, frame) for time, frame in traffic.frames
                      if _source(frame).startswith(("192.168.", "2001:db8:1:"))]


def _network(frame: bytes) -> tuple[int, str, int, int]:
    """(IP version, source, transport protocol, transport offset) of an Ethernet frame.

    Read from the bytes: dissecting with scapy would run its TLS session layer.
    """
    offset = 14 + (4 if frame[12:14] == b"\x81\x00" else 0)
    if frame[offset] >> 4 == 4:
        return 4, socket.inet_ntoa(frame[offset + 12:offset + 16]), frame[offset + 9], \
            offset + (frame[offset] & 0x0F) * 4
    return 6, socket.inet_ntop(socket.AF_INET6, frame[offset + 8:offset + 24]), \
        frame[offset + 6], offset + 40


def _tcp_flags(frame: bytes) -> int:
    _, _, protocol, offset = _network(frame)
    return frame[offset + 13] if protocol == 6 else 0


def _source(frame: bytes) -> str:
    return str(ipaddress.ip_address(_network(frame)[1]))


def _tunnel(kind: str) -> Callable[[Traffic], None]:
    def wrap(traffic: Traffic) -> None:
        wrapped = []
        for time, frame in traffic.frames:
            outer = Ether() / IP(src="10.99.0.1", dst="10.99.0.2")
            if kind == "gre":
                version = _network(frame)[0]
                packet = outer / GRE(proto=0x86DD if version == 6 else 0x0800) / Raw(frame[14:])
            else:
                packet = outer / UDP(sport=49152, dport=4789) / VXLAN(vni=42) / Raw(frame)
            wrapped.append((time, bytes(packet)))
        traffic.frames = wrapped
    return wrap


# shape -> (sessions to draw, transformation of the whole capture)
MIX = ("dns_udp", "dns_tcp_pipelined", "tls", "http", "quic")
SHAPES: dict[str, tuple[tuple[str, ...], Callable[[Traffic], None] | None, int | None]] = {
    "dns-udp": (("dns_udp",), None, None),
    "dns-tcp-pipelined": (("dns_tcp_pipelined",), None, None),
    "dns-tcp-split": (("dns_tcp_split",), None, None),
    "tls": (("tls",), None, None),
    "tls-split": (("tls_split",), None, None),
    "http": (("http",), None, None),
    "http-split": (("http_split",), None, None),
    "quic": (("quic",), None, None),
    "quic-split": (("quic_split",), None, None),
    "midstream": (("tls", "http", "dns_tcp_pipelined"), _midstream, None),
    "one-sided-http": (("http",), _one_sided, None),
    "syn-ack-first": (("http", "dns_tcp_pipelined"), _syn_ack_first, None),
    "syn-ack-first-tls": (("tls",), _syn_ack_first, None),
    "tcp-fast-open": (("tls_fast_open",), None, None),
    "http-lenient": (("http_lenient",), None, None),
    "http-long-header": (("http_long_header",), None, None),
    "dns-update": (("dns_update", "dns_udp"), None, None),
    "dns-tcp-5353": (("dns_tcp_mdns_port",), None, None),
    "teredo": (MIX, _teredo, None),
    "doh-h2c": (("doh_h2c",), None, None),
    "vlan": (MIX, None, 7),
    "gre": (MIX, _tunnel("gre"), None),
    "vxlan": (MIX, _tunnel("vxlan"), None),
}


def build_capture(shape: str, path: Path) -> Path:
    kinds, transform, vlan = SHAPES[shape]
    rng = random.Random(f"veilleuse-differential-{shape}")
    traffic = Traffic(vlan=vlan)
    generator = Generator(rng, traffic)
    for _ in range(SESSIONS):
        getattr(generator, rng.choice(kinds))()
    if transform is not None:
        transform(traffic)
    return traffic.write(path)


def tshark_sightings(capture: Path) -> set[Sighting]:
    """(device, name) of every client-side DNS query, TLS/QUIC SNI and HTTP Host tshark decodes."""
    tshark = require_tool("tshark")
    separator = "\x1f"
    fields = ("frame.protocols", "ip.src", "ipv6.src", "dns.flags.response", "dns.qry.name",
              "tls.handshake.type", "tls.handshake.extensions_server_name", "http.host")
    command = [tshark, "-r", str(capture), "-n", "--enable-heuristic", "teredo_udp", "-Y",
               "dns.flags.response == 0 || tls.handshake.type == 1 || http.request",
               "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
               "-E", f"aggregator={separator}"]
    for field in fields:
        command += ["-e", field]
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    sightings = set()
    for line in output.splitlines():
        protocols, ip4, ip6, responses, queries, types, snis, hosts = \
            [value.split(separator) if value else [] for value in line.split("\t")]
        layers = protocols[0].split(":") if protocols else []
        inner = next((layer for layer in reversed(layers) if layer in ("ip", "ipv6")), None)
        addresses = ip4 if inner == "ip" else ip6
        if not addresses:
            continue
        device = str(ipaddress.ip_address(addresses[-1]))
        names = []
        # mDNS and LLMNR reuse DNS's fields but are local service discovery, not lookups.
        if "0" in responses and "1" not in responses and \
                not {"mdns", "llmnr"} & set(layers):
            names += queries
        if "1" in types:
            names += snis
        names += [host.rsplit(":", 1)[0] if host.count(":") == 1 else host for host in hosts]
        for name in names:
            if "." in name and not _is_address(name.strip("[]")):
                with contextlib.suppress(ValueError):  # not a name a feed can hold
                    sightings.add((device, indicator_domain(name)))
    return sightings


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _feed(names: set[str], path: Path) -> Path:
    body = "- name: DifferentialSpy\n  type: stalkerware\n  c2:\n    domains:\n"
    path.write_text(body + "".join(f"    - {name}\n" for name in sorted(names)))
    return path


def source_sightings(capture: Path, feed: Path, source: str) -> set[Sighting]:
    config = Config()
    engine = build_engine(config, build_matcher([load_feed_file(feed)], config))
    result = analyze_capture(capture, open_source(source, config), engine)
    # An alert is keyed by the device's MAC once a DHCP lease bound its address: the
    # addresses it used in the sightings are what tshark's side names.
    return {(address, alert.indicator) for alert in result.alerts
            if alert.kind is AlertKind.DOMAIN for address in alert.addresses or (alert.device,)}


# What a source is known to miss, and why; strict: a fix makes the case fail until it goes.
KNOWN_MISSES = {
    ("syn-ack-first-tls", "suricata"):
        "Suricata 7 writes the tls record of a connection first seen at its SYN/ACK with the "
        "server as src_ip (its flow record has the sides right)",
    ("doh-h2c", "suricata"):
        "Suricata 7 has no DNS-over-HTTPS parser and does not log HTTP/2 request bodies",
}


def _cases() -> list:
    cases = []
    for shape in SHAPES:
        for source in SOURCES:
            known = KNOWN_MISSES.get((shape, source))
            marks = [pytest.mark.xfail(reason=known, strict=True)] if known else []
            cases.append(pytest.param(shape, source, id=f"{shape}-{source}", marks=marks))
    return cases


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path,
                                                                            set[Sighting]]]:
    directory = tmp_path_factory.mktemp("differential")
    built = {}
    for shape in SHAPES:
        capture = build_capture(shape, directory / f"{shape}.pcap")
        expected = tshark_sightings(capture)
        built[shape] = (capture, _feed({name for _, name in expected},
                                       directory / f"{shape}.yaml"), expected)
    return built


@pytest.mark.parametrize(("shape", "source"), _cases())
def test_every_source_alerts_on_exactly_what_tshark_decodes(generated, shape, source) -> None:
    if source != "scapy":
        require_tool(source)
    capture, feed, expected = generated[shape]
    assert len(expected) >= SESSIONS // 2, f"tshark decoded too little of {shape}: {expected}"
    found = source_sightings(capture, feed, source)
    assert (sorted(expected - found), sorted(found - expected)) == ([], []), \
        "(missed, beyond the feed)"


PUBLIC = os.environ.get("VEILLEUSE_PUBLIC_CAPTURES")


def _public_captures() -> list[Path]:
    if not PUBLIC:
        return []
    files = sorted(path for pattern in ("*.pcap", "*.pcapng", "*.cap")
                   for path in Path(PUBLIC).rglob(pattern))
    readable = []
    for path in files:
        try:
            scan_capture(path)
        except CaptureError:
            continue
        readable.append(path)
    return readable


@pytest.mark.skipif(not PUBLIC, reason="set VEILLEUSE_PUBLIC_CAPTURES to a directory of "
                    "public captures (e.g. suricata-verify's tests/)")
@pytest.mark.timeout(7200)
@pytest.mark.parametrize("source", SOURCES)
def test_public_captures(tmp_path, source) -> None:
    if source != "scapy":
        require_tool(source)
    minimum = float(os.environ.get("VEILLEUSE_PUBLIC_MIN_RECALL", "1.0"))
    expected_total, found_total = 0, 0
    beyond: list[str] = []
    misses: list[str] = []
    for index, capture in enumerate(_public_captures()):
        expected = tshark_sightings(capture)
        if not expected:
            continue
        feed = _feed({name for _, name in expected}, tmp_path / f"feed{index}.yaml")
        try:
            found = source_sightings(capture, feed, source)
        except CaptureError as error:
            found = set()
            misses.append(f"{capture}: {error}")
        expected_total += len(expected)
        found_total += len(expected & found)
        beyond += [f"{capture.name}: {device} {name}" for device, name in sorted(found - expected)]
        misses += [f"{capture.name}: {device} {name}" for device, name in sorted(expected - found)]
    recall = found_total / expected_total if expected_total else 1.0
    print(f"{source}: recall {recall:.3f} ({found_total}/{expected_total}), "
          f"{len(beyond)} alert(s) beyond the feed")
    for line in [*(f"  beyond: {item}" for item in beyond), *(f"  missed: {item}"
                                                             for item in misses)]:
        print(line)
    assert beyond == []
    assert recall >= minimum, "\n".join(misses[:50])


# -- device identity: every source learns the same devices ------------------------------

DeviceView = tuple[str, tuple[str, ...], str | None, str | None]  # mac, addresses, name, vendor


def build_devices_capture(path: Path, count: int = 12) -> tuple[Path, set[DeviceView]]:
    """Random devices joining: DHCP (DISCOVER to ACK), some with a second lease, neighbour
    discovery of a link-local address, mDNS names; seeded. Returns the capture and the truth."""
    rng = random.Random("veilleuse-differential-devices")
    traffic, now, truth = Traffic(), DEFAULT_START, set()
    for index in range(count):
        mac = ":".join(f"{octet:02x}" for octet in
                       [rng.choice([0x28, 0x3c, 0xda, 0x92]), *rng.randbytes(5)])
        addresses = [f"192.168.{index % 4}.{10 + index}"]
        host = rng.choice([None, f"Phone-{index}"])
        vendor = rng.choice([None, "android-dhcp-13", "MSFT 5.0"])
        now += rng.uniform(0.5, 5)
        dhcp_lease(traffic, now, mac, addresses[0], host_name=host, vendor_class=vendor,
                   transaction_id=rng.randrange(1 << 32))
        if rng.random() < 0.4:  # a new lease later
            addresses.append(f"192.168.{index % 4}.{120 + index}")
            dhcp_lease(traffic, now + 60, mac, addresses[1], host_name=host,
                       vendor_class=vendor, transaction_id=rng.randrange(1 << 32))
        link_local = f"fe80::{rng.randrange(1, 0xffff):x}:{index + 1:x}"
        neighbour_discovery(traffic, now + 1, mac, link_local)
        addresses.append(link_local)
        name = host
        if rng.random() < 0.5:
            mdns = f"mdns-{index}"
            mdns_announcement(traffic, now + 2, mac, f"{mdns}.local", addresses[0])
            name = host or mdns
        truth.add((mac, tuple(sorted(addresses)), name, vendor))
    return traffic.write(path), truth


def source_devices(capture: Path, source: str) -> set[DeviceView]:
    config = Config()
    engine = build_engine(config, build_matcher([], config))
    analyze_capture(capture, open_source(source, config), engine)
    return {(device.key, tuple(sorted(device.addresses)), device.identity.name,
             device.identity.vendor_class)
            for device in engine.devices.devices() if device.identity is not None}


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_learns_the_same_devices(tmp_path, source) -> None:
    if source != "scapy":
        require_tool(source)
    capture, truth = build_devices_capture(tmp_path / "devices.pcap")
    found = source_devices(capture, source)
    assert (sorted(truth - found), sorted(found - truth)) == ([], []), "(missed, unexpected)"


@pytest.mark.skipif(not PUBLIC, reason="set VEILLEUSE_PUBLIC_CAPTURES to a directory of "
                    "public captures (e.g. suricata-verify's tests/)")
@pytest.mark.timeout(7200)
def test_public_captures_devices() -> None:
    """The three sources learn the same devices from each public capture (e.g. the DHCP
    tests of suricata-verify); prints how many devices, names and addresses were learnt."""
    for tool in ("suricata", "tshark"):
        require_tool(tool)
    disagreements, devices = [], 0
    for capture in _public_captures():
        try:
            learnt = {source: source_devices(capture, source) for source in SOURCES}
        except CaptureError:
            continue
        devices += len(learnt["scapy"])
        if not learnt["suricata"] == learnt["tshark"] == learnt["scapy"]:
            disagreements.append(f"{capture}: {learnt}")
    print(f"\n{devices} device(s) learnt alike by {', '.join(SOURCES)}; "
          f"{len(disagreements)} capture(s) where they differ")
    assert not disagreements, "\n".join(disagreements[:20])
