"""Bad input never crashes anything and loses nothing that could be read."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest

from sensor.analysis import analyze_capture
from sensor.capture.eve import EveRecordError, parse_eve_line
from sensor.capture.stats import SourceStats
from sensor.capture.suricata import read_eve_lines
from sensor.config import Config
from sensor.demo.traffic import DEFAULT_START, Traffic
from sensor.errors import CaptureError
from sensor.wiring import build_engine, open_source
from tests.conftest import require_tool

ETHERNET = bytes.fromhex("020000000001" "0200000000fe" "0800")
POINTER_LOOP = bytes.fromhex("abcd01000001000000000000") + b"\xc0\x0c\x00\x01\x00\x01"
QUIC_NOISE = b"\xc3\x00\x00\x00\x01\x08" + bytes(8) + b"\x00\x00\x44\xd0" + bytes(40)


def _ipv4_udp(source: str, destination: str, sport: int, dport: int, payload: bytes) -> bytes:
    from scapy.layers.inet import IP, UDP

    return bytes(IP(src=source, dst=destination) / UDP(sport=sport, dport=dport) / payload)


def build_malformed(path: Path) -> Path:
    t = Traffic()
    s = DEFAULT_START
    bad = [
        ETHERNET + b"\x45\x00\x00",                                        # truncated IPv4
        ETHERNET + b"\x4f" + bytes(30),                                    # IHL past the end
        ETHERNET + _ipv4_udp("192.168.1.10", "192.168.1.1", 5000, 53, b"\x12\x34\x81"),
        ETHERNET + _ipv4_udp("192.168.1.10", "192.168.1.1", 5001, 53, POINTER_LOOP),
        ETHERNET + _ipv4_udp("192.168.1.10", "203.0.113.9", 5002, 443, QUIC_NOISE),
        ETHERNET + _ipv4_udp("192.168.1.10", "203.0.113.9", 5003, 443, b"\xc0"),
    ]
    for index, frame in enumerate(bad):
        t.frames.append((s + index * 0.01, frame))
    # A truncated ClientHello, a non-UTF-8 Host and a DNS-over-TCP length that lies.
    t.tcp_connection(s + 1, "192.168.1.10", "203.0.113.10", 443,
                     [b"\x16\x03\x01\x01\xf4\x01\x00\x01\xf0\x03\x03" + bytes(5)])
    t.tcp_connection(s + 2, "192.168.1.10", "203.0.113.11", 80,
                     [b"GET / HTTP/1.1\r\nHost: \xff\xfe.example\r\n\r\n"])
    t.tcp_connection(s + 3, "192.168.1.10", "192.168.1.1", 53, [struct.pack("!H", 900) + b"\x00"])
    # ... and one good lookup of a listed C2 name, which must still be found.
    t.dns(s + 4, "192.168.1.10", "192.168.1.1", "api.copy9.com",
          [("api.copy9.com", "A", "203.0.113.12")])
    return t.write(path)


@pytest.mark.parametrize("source", ["suricata", "tshark", "scapy"])
def test_malformed_packets_are_skipped_and_the_good_one_still_alerts(
        tmp_path, echap_matcher, source) -> None:
    if source != "scapy":
        require_tool(source)
    capture = build_malformed(tmp_path / "malformed.pcap")
    result = analyze_capture(capture, open_source(source, Config()),
                             build_engine(Config(), echap_matcher))
    assert [(a.kind.value, a.indicator, a.count) for a in result.alerts] == \
        [("domain", "copy9.com", 2)]
    assert result.detector_errors == 0


def test_broken_eve_lines_are_counted_and_reported_once(caplog) -> None:
    good = ('{"timestamp":"2026-01-01T10:00:00.000000+0000","event_type":"dns",'
            '"src_ip":"192.168.1.10","src_port":5353,"dest_ip":"192.168.1.1","dest_port":53,"proto":"UDP",'
            '"dns":{"type":"query","rrname":"api.copy9.com","rrtype":"A"}}')
    lines = ["not json", "[1, 2]", '{"event_type":"dns"}', good[:40],
             '{"event_type":"flow","proto":"TCP","src_ip":"x","flow":{}}',
             '{"event_type":"teleport"}', '{"event_type":"teleport"}',
             '{"event_type":["dns"]}', '{"event_type":{"dns":1}}',
             '{"event_type":"stats","stats":{}}', "", good]
    stats = SourceStats("suricata")
    with caplog.at_level(logging.WARNING):
        observations = list(read_eve_lines(lines, stats))
    assert [o.name for o in observations] == ["api.copy9.com"]
    assert stats.records == 11
    assert stats.skipped == {"malformed EVE record": 7, "unknown event_type teleport": 2}
    assert caplog.text.count("unknown event_type teleport") == 1
    assert "please open a Veilleuse issue with the Suricata version" in caplog.text


def test_only_wanted_observations_come_out_the_fast_way_and_the_general_one() -> None:
    from sensor.observations import DnsAnswer, DnsQuery

    query = ('{"timestamp":"2026-01-01T10:00:00.000000+0000","event_type":"dns",'
             '"src_ip":"192.168.1.10","src_port":5353,"dest_ip":"192.168.1.1","dest_port":53,'
             '"proto":"UDP","dns":{"type":"query","rrname":"a.example","rrtype":"A"}}')
    odd = query.replace('"src_port":5353', '"src_port":"5353"')  # read the general way
    for line in (query, odd):
        assert [type(o) for o in parse_eve_line(line)] == [DnsQuery]
        assert parse_eve_line(line, {DnsQuery}) == parse_eve_line(line)
        assert parse_eve_line(line, {DnsAnswer}) == []


def test_eve_parser_rejects_records_it_cannot_trust() -> None:
    with pytest.raises(EveRecordError, match="bad timestamp"):
        parse_eve_line('{"event_type":"tls","timestamp":"yesterday","src_ip":"192.168.1.1",'
                       '"dest_ip":"192.168.1.2","proto":"TCP","tls":{"sni":"a.example"}}')


def test_missing_or_garbage_capture_files_give_clear_errors(tmp_path, echap_matcher) -> None:
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture")
    for source in ("scapy", "suricata", "tshark"):
        if source != "scapy":
            require_tool(source)
        with pytest.raises(CaptureError, match="no such capture file"):
            list(open_source(source, Config()).read(tmp_path / "missing.pcap"))
        with pytest.raises(CaptureError, match=r"garbage\.pcap: not a pcap or pcapng"):
            list(open_source(source, Config()).read(garbage))


def test_a_failing_suricata_is_reported_not_waited_for(tmp_path) -> None:
    from sensor.capture.suricata import SuricataSource
    from sensor.suricata.config import SuricataSettings

    capture, _ = build_malformed(tmp_path / "m.pcap"), None
    source = SuricataSource(SuricataSettings(binary="false"))  # a real program that fails
    with pytest.raises(CaptureError, match=r"suricata failed on .*m\.pcap \(exit 1\)"):
        list(source.read(capture))
