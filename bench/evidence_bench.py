"""Evidence bytes per high alert, and the time to cut them, on three kinds of traffic.

``python bench/evidence_bench.py`` (or ``python bench/run.py --evidence``):

- quiet: a phone looks up and calls a C2 every 10 minutes for 2 hours, among
  20 other devices browsing (a stalkerware app checking in);
- chatty: the same C2 called every 20 s for an hour (an app uploading);
- mix: the bench mix (``bench/run.py``'s capture, Echap's feeds), every high
  alert in it.

For each: the high alerts, the packets and pcap bytes kept per alert, the
encrypted bundle's bytes (tar, manifest, JSON files and age's overhead
included) and the seconds the cut and the encryption took, with the default
window (60 s) and caps (2 MB an alert).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench.run import capture, feeds  # noqa: E402
from sensor.analysis import analyze_capture  # noqa: E402
from sensor.capture.scapy_reader import ScapySource  # noqa: E402
from sensor.config import Config, EvidenceConfig  # noqa: E402
from sensor.demo.scenario import demo_feed_path  # noqa: E402
from sensor.demo.traffic import DEFAULT_START, Traffic  # noqa: E402
from sensor.evidence.keeper import EvidenceKeeper, needs_evidence  # noqa: E402
from sensor.evidence.window import file_records  # noqa: E402
from sensor.feeds.model import feed_versions  # noqa: E402
from sensor.feeds.store import load_feed_file  # noqa: E402
from sensor.wiring import build_engine, build_matcher  # noqa: E402

C2_NAME, C2_ADDRESS, PHONE = "api.demospy.example", "203.0.113.66", "192.168.10.21"


def c2_capture(path: Path, every: float, duration: float, others: int = 20) -> Path:
    """The phone calls the C2 every ``every`` s; ``others`` devices browse meanwhile."""
    rng = random.Random(7)
    traffic = Traffic()
    sites = [(f"www.site{n}.example", f"198.51.100.{n + 1}") for n in range(40)]
    moment = 0.0
    while moment < duration:
        start = DEFAULT_START + moment
        traffic.dns(start, PHONE, "192.168.10.1", C2_NAME, [(C2_NAME, "A", C2_ADDRESS)],
                    transaction_id=rng.randrange(65536))
        traffic.tls(start + 0.1, PHONE, C2_ADDRESS, C2_NAME)
        for _ in range(others):
            name, address = rng.choice(sites)
            device = f"192.168.10.{rng.randrange(30, 200)}"
            at = start + rng.uniform(0, every)
            traffic.dns(at, device, "192.168.10.1", name, [(name, "A", address)],
                        transaction_id=rng.randrange(65536))
            traffic.tls(at + 0.05, device, address, name)
        moment += every
    return traffic.write(path)


def measure(name: str, pcap: Path, feed_files: list[Path], workdir: Path,
            recipient: str) -> None:
    config = Config()
    loaded = [load_feed_file(path) for path in feed_files]
    engine = build_engine(config, build_matcher(loaded, config))
    result = analyze_capture(pcap, ScapySource(), engine)
    high = [alert for alert in result.alerts if needs_evidence(alert)]
    store = workdir / name
    keeper = EvidenceKeeper(EvidenceConfig(recipients=(recipient,), directory=store,
                                           max_total_megabytes=10_000),
                            pseudonyms=None, wall_clock=time.time,
                            clock_synchronised=lambda: True)
    started = time.perf_counter()
    kept = keeper.keep(high, file_records([pcap]), feed_versions(loaded))
    seconds = time.perf_counter() - started
    if not kept:
        print(f"{name}: {len(high)} high alert(s), nothing kept")
        return
    packets = [entry.packets for entry in kept]
    sizes = [entry.size for entry in kept]
    sightings = [alert.count for alert in high]
    print(f"{name}: capture {pcap.stat().st_size / 1e6:.1f} MB, {result.records:,} packets; "
          f"{len(high)} high alert(s), sightings per alert median "
          f"{statistics.median(sightings):.0f} (max {max(sightings)}); kept {len(kept)} bundle(s), "
          f"{sum(e.truncated for e in kept)} cut at the 2 MB cap")
    print(f"  per alert: packets median {statistics.median(packets):.0f} (max {max(packets)}); "
          f"encrypted bundle median {statistics.median(sizes) / 1e3:.1f} kB "
          f"(min {min(sizes) / 1e3:.1f}, max {max(sizes) / 1e3:.1f}); total "
          f"{sum(sizes) / 1e6:.2f} MB = {sum(sizes) / pcap.stat().st_size:.3f}x the capture")
    print(f"  cut + bundle + encrypt: {seconds:.2f} s for {len(high)} alert(s) "
          f"({seconds / len(high) * 1e3:.0f} ms an alert; two reads of the capture)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=300_000, help="the bench mix's size")
    parser.add_argument("--no-mix", action="store_true", help="skip the bench mix")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        made = subprocess.run(["age-keygen", "-o", str(workdir / "key.txt")],
                              capture_output=True, text=True, check=True)
        recipient = made.stderr.split("Public key:")[1].strip()
        demo = [demo_feed_path()]
        measure("quiet (C2 every 10 min, 2 h, 20 other devices)",
                c2_capture(workdir / "quiet.pcap", 600, 7200), demo, workdir, recipient)
        measure("chatty (C2 every 20 s, 1 h, 20 other devices)",
                c2_capture(workdir / "chatty.pcap", 20, 3600), demo, workdir, recipient)
        if not args.no_mix:
            measure("bench mix (Echap feeds)", capture(args.packets), feeds(), workdir,
                    recipient)


if __name__ == "__main__":
    main()
