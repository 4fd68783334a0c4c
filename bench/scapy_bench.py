"""Per-packet cost of the scapy ("lite") source on the bench mix, before and after, as a ratio.

"Before" is the source as it was at ``--baseline`` (a git revision; by
default the last one where scapy dissected every packet), extracted to a
temporary directory and run the same way, so the comparison stays honest
as the code moves on. Both read the first ``--sample`` packets of the bench
mix in a fresh process; the figure is CPU time over records read (steadier
than wall time on a shared machine; wall time is printed beside it), median
of ``--repeat`` runs. Goal (issue #11): <= 60 µs per packet.

Run: ``python bench/scapy_bench.py [--sample 20000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.mixed_traffic import GENERATOR_VERSION, build_mixed_capture  # noqa: E402

BASELINE = "0a66796"  # main before the raw-record reader: every packet dissected by scapy
GOAL_US = 60.0
_PROBE = """
import json, sys, time
from pathlib import Path
from sensor.capture.scapy_reader import ScapySource
source = ScapySource()
started, cpu = time.perf_counter(), time.process_time()
observations = sum(1 for _ in source.read(Path(sys.argv[1])))
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({"records": source.stats.records, "observations": observations,
                  "seconds": seconds, "cpu": cpu}))
"""


def sample_capture(packets: int, sample: int) -> Path:
    """The first ``sample`` records of the bench mix (built once, like bench/run.py's)."""
    from scapy.utils import PcapWriter, RawPcapReader

    cache = BENCH / ".cache"
    full = cache / f"mixed-{packets}-v{GENERATOR_VERSION}.pcap"
    path = cache / f"mixed-{packets}-v{GENERATOR_VERSION}-first{sample}.pcap"
    if path.exists():
        return path
    if not full.exists():
        build_mixed_capture(full, packets)
    writer = PcapWriter(str(path), linktype=1, sync=False)
    writer.write_header(None)
    with RawPcapReader(str(full)) as reader:
        for index, (frame, meta) in enumerate(reader):
            if index == sample:
                break
            writer.write_packet(frame, sec=meta.sec, usec=meta.usec)
    writer.close()
    return path


def measure(tree: Path, pcap: Path) -> dict:
    """One run of the scapy source from the code in ``tree``, in a fresh process."""
    output = subprocess.run([sys.executable, "-c", _PROBE, str(pcap)], check=True,
                            capture_output=True, text=True, cwd=tree,
                            env={**os.environ, "PYTHONPATH": str(tree)}).stdout
    return json.loads(output.strip().splitlines()[-1])


def baseline_tree(revision: str, directory: Path) -> Path:
    """The ``sensor`` package as it was at ``revision``."""
    archive = subprocess.run(["git", "archive", revision, "sensor"], check=True, cwd=REPO,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        # Our own git archive; the "data" filter where this Python has it (3.11.4+).
        tar.extractall(directory, **({"filter": "data"} if hasattr(tarfile, "data_filter")
                                     else {}))
    return directory


def per_packet(runs: list[dict], figure: str = "cpu") -> float:
    return statistics.median(run[figure] / run["records"] for run in runs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=300_000, help="the bench mix to sample")
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE, help="git revision for 'before'")
    args = parser.parse_args()
    pcap = sample_capture(args.packets, args.sample)
    with tempfile.TemporaryDirectory() as directory:
        before_tree = baseline_tree(args.baseline, Path(directory))
        before = [measure(before_tree, pcap) for _ in range(args.repeat)]
    after = [measure(REPO, pcap) for _ in range(args.repeat)]
    old, new = per_packet(before), per_packet(after)
    print(f"capture: {pcap.name} ({after[0]['records']} packets), median of {args.repeat}")
    print(f"scapy source before ({args.baseline}): {old:.1f} µs/packet CPU "
          f"({per_packet(before, 'seconds'):.1f} wall), {before[0]['observations']} observations")
    print(f"scapy source now: {new:.1f} µs/packet CPU ({per_packet(after, 'seconds'):.1f} wall), "
          f"{after[0]['observations']} observations (goal <= {GOAL_US:.0f} µs)")
    print(f"ratio now/before: {new / old:.3f} ({old / new:.1f}x faster)")


if __name__ == "__main__":
    main()
