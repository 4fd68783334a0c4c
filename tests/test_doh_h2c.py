"""DNS over cleartext HTTP/2 (DoH over h2c): the scapy source reads the device's queries.

The differential test checks POSTs against tshark; tshark 4.0 does not
decode a ``GET ?dns=`` query, so that one, the server's answers (never read
as the device's lookups) and hostile HTTP/2 bytes are checked here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR

from sensor.capture.scapy_reader import ScapySource
from sensor.demo.doh import doh_client_stream, http2_frame, settings_frame
from sensor.demo.traffic import DEFAULT_START, Traffic
from sensor.observations import DnsAnswer, DnsQuery

DEVICE, RESOLVER = "192.168.1.23", "198.51.100.53"


def _query(name: str) -> bytes:
    return bytes(DNS(id=0, rd=1, qd=DNSQR(qname=name)))


def _read(tmp_path: Path, client: list[bytes], server: list[bytes]) -> tuple[list, ScapySource]:
    traffic = Traffic()
    traffic.tcp_connection(DEFAULT_START, DEVICE, RESOLVER, 80, client, server)
    source = ScapySource()
    return list(source.read(traffic.write(tmp_path / "doh.pcap"))), source


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_devices_queries_are_read_and_the_answers_are_not(tmp_path, method) -> None:
    names = ["first.example", "Second.Example.org", "third.example.net"]
    stream = doh_client_stream([_query(name) for name in names], method=method)
    answer = bytes(DNS(id=0, qr=1, qd=DNSQR(qname="first.example"),
                       an=DNSRR(rrname="first.example", rdata="203.0.113.9")))
    observations, _ = _read(tmp_path, [stream[:40], stream[40:]],  # cut inside the preface
                            [b"", settings_frame() + http2_frame(0, 1, 1, answer)])
    queries = [(o.endpoints.client, o.name) for o in observations if isinstance(o, DnsQuery)]
    assert queries == [(DEVICE, name) for name in names]
    assert not [o for o in observations if isinstance(o, DnsAnswer)]


def test_hostile_http2_is_counted_and_the_connection_given_up(tmp_path) -> None:
    good = doh_client_stream([_query("before.example")])
    broken = http2_frame(1, 0x4, 3, b"\xff\xff\xff\xff")  # an HPACK index that cannot be
    later = doh_client_stream([_query("after.example")])[len(settings_frame()) + 24:]
    observations, source = _read(tmp_path, [good, broken, later], [])
    names = [o.name for o in observations if isinstance(o, DnsQuery)]
    assert names == ["before.example"]
    assert source.stats.skipped == {"undecodable packet": 1}
