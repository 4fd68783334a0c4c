"""Veilleuse benchmarks: `python bench/run.py` prints figures and ratios against the goals.

- analyzer throughput: EVE lines parsed and observations detected per second;
- offline replay of a large capture: Suricata alone vs Suricata + analyzer (goal <= 1.25x);
- the analyzer's peak RSS during that replay (goal < 60 MB);
- with ``--scapy``, the scapy source's cost per packet before and after (bench/scapy_bench.py);
- ``--tshark``: the tshark source's µs per packet before/after (bench/tshark_bench.py);
- ``--evidence``: evidence bytes per high alert and the time to cut them
  (bench/evidence_bench.py);
- ``--eve``: only the CPU per EVE record, split into decoding, observations and
  detection, with its ratio to the 6 µs goal (bench/eve_bench.py; ``--before DIR`` compares);
- ``--devices``: the device registry's memory per device and with 5,000 (bench/device_bench.py);
- with ``--live`` (root): the live sensor, bench/live_bench.py (latency, idle CPU,
  drops, CPU per EVE record).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.mixed_traffic import GENERATOR_VERSION, build_mixed_capture, packet_count  # noqa: E402
from sensor.capture.eve import EveRecordError, parse_eve_line  # noqa: E402
from sensor.config import Config  # noqa: E402
from sensor.feeds.store import load_feed_file  # noqa: E402
from sensor.suricata.config import SuricataSettings, render_suricata_config  # noqa: E402
from sensor.wiring import build_engine, build_matcher  # noqa: E402

logging.basicConfig(level=logging.ERROR)
SHARED = REPO.parent / "shared" / "data" / "stalkerware-indicators"
DEMO_FEED = REPO / "sensor" / "demo" / "feed.yaml"

# The opening of the scripts the benches run as `python -c` in the checkout measured
# (``--before``): the builders of this code, or of a checkout from before sensor/wiring.py.
CHILD_PREAMBLE = """
import json, sys, time
from pathlib import Path
try:
    from sensor.wiring import build_engine, build_matcher
except ImportError:  # a checkout from before sensor/wiring.py (--before)
    from sensor.analysis import build_engine, build_matcher
"""


def interpreter() -> str:
    """Which Python ran: per-record figures depend on its build (Debian's python3, which
    the appliance runs, is faster per operation than pyenv's default build)."""
    which = ("the system's, as on the appliance" if sys.base_prefix == "/usr"
             else "not the system's: the appliance runs /usr/bin/python3")
    return f"Python {sys.version.split()[0]} from {sys.base_prefix} ({which})"


def feeds() -> list[Path]:
    real = [SHARED / "ioc.yaml", SHARED / "watchware.yaml"]
    return real if all(p.exists() for p in real) else [DEMO_FEED]


def capture(packets: int) -> Path:
    path = BENCH / ".cache" / f"mixed-{packets}-v{GENERATOR_VERSION}.pcap"
    if not path.exists():
        started = time.perf_counter()
        build_mixed_capture(path, packets)
        print(f"built {path.name} in {time.perf_counter() - started:.0f} s")
    return path


def suricata_alone(pcap: Path, workdir: Path, runmode: str) -> tuple[float, Path]:
    """Suricata with our config, EVE to a regular file; ``workdir`` must be fresh (EVE appends)."""
    config = workdir / "suricata.yaml"
    config.write_text(render_suricata_config(SuricataSettings(), workdir))
    started = time.perf_counter()
    subprocess.run(["suricata", "-c", str(config), "-r", str(pcap), "-l", str(workdir), "-k",
                    "none", "--disable-detection", "--runmode", runmode], check=True,
                   capture_output=True, env={**os.environ, "TZ": "UTC"})
    return time.perf_counter() - started, workdir / "eve.json"


def pipeline(pcap: Path, source: str) -> dict:
    command = [sys.executable, str(BENCH / "analyzer_probe.py"), str(pcap), source,
               *map(str, feeds())]
    started = time.perf_counter()
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    figures = json.loads(output.strip().splitlines()[-1])
    figures["wall"] = time.perf_counter() - started
    return figures


def analyzer_throughput(eve: Path) -> dict:
    lines = eve.read_bytes().splitlines()
    started = time.perf_counter()
    observations, unparsed = [], 0
    for line in lines:
        try:
            observations.extend(parse_eve_line(line))
        except EveRecordError:
            unparsed += 1
    parse_seconds = time.perf_counter() - started
    engine = build_engine(Config(), build_matcher([load_feed_file(p) for p in feeds()],
                                                  Config()))
    started = time.perf_counter()
    for observation in observations:
        engine.observe(observation)
    engine.flush()
    detect_seconds = time.perf_counter() - started
    return {"lines": len(lines), "observations": len(observations), "unparsed": unparsed,
            "parse_per_s": len(lines) / parse_seconds,
            "detect_per_s": len(observations) / detect_seconds,
            "end_to_end_per_s": len(observations) / (parse_seconds + detect_seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scapy", action="store_true",
                        help="also the scapy source's µs per packet, before/after")
    parser.add_argument("--tshark", action="store_true",
                        help="only the tshark source's µs per packet, before/after "
                             "(bench/tshark_bench.py)")
    parser.add_argument("--devices", action="store_true",
                        help="only the device registry's memory (bench/device_bench.py)")
    parser.add_argument("--live", type=int, metavar="SECONDS",
                        help="then the live bench (root) with SECONDS of load")
    parser.add_argument("--evidence", action="store_true",
                        help="only the evidence bytes per alert (bench/evidence_bench.py)")
    parser.add_argument("--eve", action="store_true",
                        help="only the CPU per EVE record, decode/observations/detect "
                             "(bench/eve_bench.py)")
    parser.add_argument("--before", type=Path, help="with --eve: another checkout to compare")
    args = parser.parse_args()
    if args.evidence:
        from bench.evidence_bench import main as evidence_bench

        evidence_bench(["--packets", str(args.packets)])
    if args.devices:
        from bench.device_bench import main as device_bench

        device_bench([])
        return
    if args.tshark:
        from bench.tshark_bench import main as tshark_bench

        tshark_bench([])
        return
    if args.eve:
        from bench.eve_bench import main as eve_bench

        eve_bench(["--packets", str(args.packets), "--repeat", str(args.repeat),
                   *(["--before", str(args.before)] if args.before else [])])
        return
    pcap = capture(args.packets)
    # Probes first: a child's peak RSS includes what it inherited from this process
    # before exec (ru_maxrss survives execve), so measure while this one is small.
    runs = [pipeline(pcap, "suricata") for _ in range(args.repeat)]
    with tempfile.TemporaryDirectory() as workdir:
        alone: dict[str, list[tuple[float, Path]]] = {"autofp": [], "single": []}
        for runmode, runs_of_mode in alone.items():
            for run in range(args.repeat):
                (Path(workdir) / f"{runmode}{run}").mkdir()
                runs_of_mode.append(suricata_alone(pcap, Path(workdir) / f"{runmode}{run}",
                                                   runmode))
        medians = {mode: statistics.median(s for s, _ in r) for mode, r in alone.items()}
        fastest = min(medians, key=medians.__getitem__)
        alone_seconds = medians[fastest]
        throughput = analyzer_throughput(alone[fastest][-1][1])
    full = statistics.median(run["wall"] for run in runs)
    replay = statistics.median(run["replay_seconds"] for run in runs)
    rss = max(run["rss_mb"] for run in runs)
    print(f"capture: {pcap.name} ({packet_count(pcap):,} packets), feeds: "
          f"{', '.join(p.name for p in feeds())}, median of {args.repeat}")
    print(f"analyzer: {throughput['lines']} EVE lines ({throughput['unparsed']} unparsable) -> "
          f"{throughput['observations']} observations; parse "
          f"{throughput['parse_per_s']:,.0f} lines/s, detect "
          f"{throughput['detect_per_s']:,.0f} obs/s, together "
          f"{throughput['end_to_end_per_s']:,.0f} obs/s")
    print("suricata alone by runmode: " + ", ".join(f"{m} {s:.2f} s" for m, s in medians.items())
          + f"; baseline: the fastest ({fastest})")
    print(f"replay: suricata alone {alone_seconds:.2f} s; suricata + analyzer "
          f"{replay:.2f} s; ratio {replay / alone_seconds:.2f}x (goal <= 1.25x)")
    print(f"whole command incl. Python start-up and feed loading: {full:.2f} s; ratio "
          f"{full / alone_seconds:.2f}x")
    print(f"analyzer peak RSS: {rss:.1f} MB (goal < 60 MB); alerts: {runs[-1]['alerts']}")
    if args.scapy:
        subprocess.run([sys.executable, str(BENCH / "scapy_bench.py"), "--packets",
                        str(args.packets), "--repeat", str(args.repeat)], check=True)
    if args.live:
        subprocess.run([sys.executable, str(BENCH / "live_bench.py"), "--seconds",
                        str(args.live)], check=True, cwd=REPO)


if __name__ == "__main__":
    main()
