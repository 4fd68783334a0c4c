"""Damaged captures through each source, by the real CLI path: an answer, never a traceback.

Mutations of a small valid capture (cut short, bit-flipped, lying record
lengths, bad link types, Linux cooked v2, dates past 9999, pcap and pcapng),
seeded so a failure replays. Each run must end with a report (exit 0), or
with one ``veilleuse: error: ...`` line (exit 1), and a damaged capture must
say so. ``VEILLEUSE_FUZZ_CASES=200`` runs more cases per source.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest

from sensor.cli import main
from sensor.demo.traffic import DEFAULT_START, Traffic
from tests.conftest import require_tool

CASES = {"scapy": 40, "suricata": 40, "tshark": 15}  # tshark: ~1.5 s a run
SCALE = int(os.environ.get("VEILLEUSE_FUZZ_CASES", "0"))
FEED = """\
- name: FuzzSpy
  type: stalkerware
  c2:
    domains:
    - copy9.com
"""


def _base(directory: Path) -> dict[str, bytes]:
    """The valid captures mutations start from: pcap, pcapng and Linux cooked v2."""
    from scapy.layers.l2 import CookedLinuxV2
    from scapy.utils import PcapNgWriter, rdpcap, wrpcap

    traffic = Traffic()
    traffic.dns(DEFAULT_START, "192.168.1.10", "192.168.1.1", "api.copy9.com",
                [("api.copy9.com", "A", "203.0.113.12")])
    traffic.tcp_connection(DEFAULT_START + 1, "192.168.1.10", "203.0.113.12", 80,
                           [b"GET / HTTP/1.1\r\nHost: api.copy9.com\r\n\r\n"])
    pcap = traffic.write(directory / "base.pcap")
    packets = rdpcap(str(pcap))
    with PcapNgWriter(str(directory / "base.pcapng")) as writer:
        for packet in packets:
            writer.write(packet)
    cooked = []
    for packet in packets:
        copy = CookedLinuxV2(proto=0x0800) / packet.payload
        copy.time = packet.time
        cooked.append(copy)
    wrpcap(str(directory / "sll2.pcap"), cooked, linktype=276)
    return {name: (directory / name).read_bytes()
            for name in ("base.pcap", "base.pcapng", "sll2.pcap")}


def _record_offsets(pcap: bytes) -> list[int]:
    offsets, offset = [], 24
    while offset + 16 <= len(pcap):
        offsets.append(offset)
        offset += 16 + struct.unpack_from("<I", pcap, offset + 8)[0]
    return offsets


def _mutate(rng: random.Random, base: dict[str, bytes]) -> tuple[str, bytes]:
    kind = rng.choice(["cut", "flip", "length", "linktype", "sll2", "date", "ng-cut",
                       "ng-flip", "ng-length"])
    pcap, pcapng = bytearray(base["base.pcap"]), bytearray(base["base.pcapng"])
    if kind == "cut":
        return kind, bytes(pcap[:rng.randrange(1, len(pcap))])
    if kind in ("flip", "ng-flip"):
        data = pcap if kind == "flip" else pcapng
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return kind, bytes(data)
    if kind == "length":
        offset = rng.choice(_record_offsets(bytes(pcap)))
        field = offset + rng.choice([8, 12])
        struct.pack_into("<I", pcap, field, rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 262_145,
                                                        rng.randrange(1 << 32)]))
        return kind, bytes(pcap)
    if kind == "linktype":
        struct.pack_into("<I", pcap, 20, rng.choice([147, 276, 0xFFFF, rng.randrange(1 << 32)]))
        return kind, bytes(pcap)
    if kind == "sll2":
        sll2 = base["sll2.pcap"]
        return kind, sll2 if rng.random() < 0.5 else sll2[:rng.randrange(24, len(sll2))]
    if kind == "date":  # seconds past year 9999 in a pcapng enhanced packet block
        offset = pcapng.find(b"\x06\x00\x00\x00")
        struct.pack_into("<II", pcapng, offset + 12, rng.randrange(1 << 20, 1 << 32),
                         rng.randrange(1 << 32))
        return kind, bytes(pcapng)
    if kind == "ng-cut":
        return kind, bytes(pcapng[:rng.randrange(1, len(pcapng))])
    offset = pcapng.find(b"\x06\x00\x00\x00")  # ng-length: a lying block length
    struct.pack_into("<I", pcapng, offset + 4, rng.choice([0xFFFFFFF0, 1 << 30, 13]))
    return kind, bytes(pcapng)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("source", ["scapy", "suricata", "tshark"])
def test_damaged_captures_give_a_report_or_one_clear_error(tmp_path, capfd, caplog,
                                                            source) -> None:
    if source != "scapy":
        require_tool(source)
    feed = tmp_path / "feed.yaml"
    feed.write_text(FEED)
    base = _base(tmp_path)
    rng = random.Random(f"veilleuse-fuzz-{source}")
    outcomes: dict[str, int] = {}
    for case in range(SCALE or CASES[source]):
        kind, data = _mutate(rng, base)
        capture = tmp_path / f"case{case}.{'pcapng' if kind.startswith(('ng', 'date')) else 'pcap'}"
        capture.write_bytes(data)
        caplog.clear()
        code = main(["analyze", str(capture), "--source", source, "--feed", str(feed)])
        out, err = capfd.readouterr()
        where = f"case {case} ({kind}, seed veilleuse-fuzz-{source}):\n{err}{caplog.text}"
        assert "Traceback" not in err + caplog.text, where
        errors = [line for line in err.splitlines() if line.startswith("veilleuse: error: ")]
        if code == 0:
            assert errors == [] and "alert(s)" in out, where
        else:
            assert code == 1 and len(errors) == 1, where
        outcomes[f"{kind} exit {code}"] = outcomes.get(f"{kind} exit {code}", 0) + 1
        capture.unlink()
    print(f"{source}: {sum(outcomes.values())} cases, {outcomes}")


@pytest.mark.parametrize("source", ["scapy", "suricata", "tshark"])
def test_a_capture_cut_short_reports_what_was_read_and_fails(tmp_path, capfd, source) -> None:
    if source != "scapy":
        require_tool(source)
    feed = tmp_path / "feed.yaml"
    feed.write_text(FEED)
    pcap = _base(tmp_path)["base.pcap"]
    capture = tmp_path / "cut.pcap"
    capture.write_bytes(pcap[:-10])
    code = main(["analyze", str(capture), "--source", source, "--feed", str(feed),
                 "--format", "jsonl"])
    out, err = capfd.readouterr()
    assert code == 1
    assert '"indicator": "copy9.com"' in out  # the packets before the cut were analysed
    assert "cut short in the middle of record" in err and "covers only" in err, err


@pytest.mark.parametrize("source", ["scapy", "suricata", "tshark"])
def test_unknown_link_types_are_errors_and_empty_captures_never_all_clear(
        tmp_path, capfd, source) -> None:
    if source != "scapy":
        require_tool(source)
    feed = tmp_path / "feed.yaml"
    feed.write_text(FEED)
    valid = _base(tmp_path)["base.pcap"]
    pcap = bytearray(valid)
    struct.pack_into("<I", pcap, 20, 147)  # LINKTYPE_USER0
    unknown, empty = tmp_path / "user0.pcap", tmp_path / "empty.pcap"
    unknown.write_bytes(bytes(pcap))
    empty.write_bytes(valid[:24])
    assert main(["analyze", str(unknown), "--source", source, "--feed", str(feed)]) == 1
    assert "link type 147 is not one Veilleuse can decode" in capfd.readouterr().err
    # A valid empty capture is read (nothing in it), and the report says so, at once.
    assert main(["analyze", str(empty), "--source", source, "--feed", str(feed)]) == 0
    out, err = capfd.readouterr()
    assert "the capture holds no packet; nothing was analysed" in err
    assert "Nothing in this capture could be analysed" in out
    assert "No known stalkerware indicator was seen" not in out


def test_suricata_reads_linux_cooked_v2_through_scapy_and_says_so(tmp_path, capfd, caplog,
                                                                  suricata) -> None:
    feed = tmp_path / "feed.yaml"
    feed.write_text(FEED)
    _base(tmp_path)
    code = main(["analyze", str(tmp_path / "sll2.pcap"), "--feed", str(feed), "--format",
                 "jsonl"])
    assert code == 0
    assert '"indicator": "copy9.com"' in capfd.readouterr().out
    assert "Suricata 7 cannot read link type 276" in caplog.text
    assert "reading it with the scapy source instead" in caplog.text
