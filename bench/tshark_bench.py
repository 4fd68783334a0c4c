"""tshark source speed: µs per packet, pyshark's XML route (before) against tshark fields (after).

``python bench/tshark_bench.py`` (or ``python bench/run.py --tshark``) reads the
first ``--packets`` packets of the bench mix. "Before" is pyshark's default
mode only iterating the packets, the floor of what the old source cost (it
also decoded them); "after" is the whole TsharkSource, flows and observations
included. Goal: <= 300 µs a packet.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench.run import capture  # noqa: E402
from sensor.capture.tshark import TsharkSource  # noqa: E402

GOAL_MICROSECONDS = 300.0


def first_packets(pcap: Path, count: int, directory: Path) -> Path:
    """The first ``count`` packets of ``pcap`` (editcap keeps them byte for byte)."""
    head = directory / "head.pcap"
    subprocess.run(["editcap", "-r", str(pcap), str(head), f"1-{count}"], check=True,
                   capture_output=True)
    return head


def pyshark_xml(pcap: Path) -> tuple[float, int]:
    import pyshark

    started = time.perf_counter()
    capture = pyshark.FileCapture(str(pcap), keep_packets=False, display_filter="tcp || udp")
    packets = sum(1 for _ in capture)
    capture.close()
    return time.perf_counter() - started, packets


def tshark_fields(pcap: Path) -> tuple[float, int]:
    source = TsharkSource()
    started = time.perf_counter()
    for _ in source.read(pcap):
        pass
    return time.perf_counter() - started, source.stats.records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        pcap = first_packets(capture(300_000), args.packets, Path(directory))
        before, before_packets = pyshark_xml(pcap)
        after, after_packets = tshark_fields(pcap)
    old = before / before_packets * 1e6
    new = after / after_packets * 1e6
    print(f"tshark source on the first {args.packets} packets of the bench mix "
          f"({after_packets} tcp/udp packets)")
    verdict = "met" if new <= GOAL_MICROSECONDS else "NOT met"
    print(f"before (pyshark XML, iteration only): {old:,.0f} µs/packet; after (tshark "
          f"fields, full source): {new:,.0f} µs/packet; ratio {old / new:.1f}x faster "
          f"(goal <= {GOAL_MICROSECONDS:.0f} µs/packet: {verdict})")


if __name__ == "__main__":
    main()
