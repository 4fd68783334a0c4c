"""Feed loading: `python bench/feed_bench.py [--before /work/main]` prints time and peak memory.

The live sensor and every `veilleuse analyze` load the feeds before anything
else: this is start-up latency on the Pi, and whether a MISP-sized feed fits
in its memory at all (goal: 1M domains in <= 10 s and <= 300 MB). Three
feeds: Echap's real ones (or the demo feed), and generated Echap-format feeds
of 100k and 1M domains (apps of 500 C2 domains each, cached in bench/.cache).

Each load runs in a fresh interpreter, so its peak RSS (VmHWM) is its own.
``--before DIR`` runs the same loads with the code of another checkout
(``/work/main``) through this interpreter, and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.run import feeds  # noqa: E402

GENERATED = (100_000, 1_000_000)
DOMAINS_PER_APP = 500

# Run with the checkout under test as the working directory: "" comes first on sys.path.
PROBE = """
import json, logging, sys, time
from pathlib import Path
logging.disable(logging.WARNING)
from sensor.feeds.matcher import IndicatorMatcher
from sensor.feeds.store import load_feed_file

def peak_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

started, cpu = time.perf_counter(), time.process_time()
loaded = [load_feed_file(path) for path in sys.argv[1:]]
load_seconds, load_cpu = time.perf_counter() - started, time.process_time() - cpu
load_mb = peak_mb()
matcher = IndicatorMatcher(i for feed in loaded for i in feed.indicators)
print(json.dumps({"indicators": sum(f.indicator_count for f in loaded),
                  "load_s": load_seconds, "load_cpu": load_cpu, "load_mb": load_mb,
                  "matcher_s": time.perf_counter() - started, "matcher_mb": peak_mb()}))
"""


def generated_feed(domains: int) -> Path:
    """An Echap-format feed of ``domains`` C2 domains, written once and cached."""
    path = BENCH / ".cache" / f"feed-{domains}-domains.yaml"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    apps = max(1, domains // DOMAINS_PER_APP)
    with path.open("w") as feed:
        for app in range(apps):
            feed.write(f"- name: App{app}\n  type: stalkerware\n  websites:\n"
                       f"  - app{app}.example\n  c2:\n    domains:\n")
            feed.writelines(f"    - c{index}.app{app}-cloud.example\n"
                            for index in range(domains // apps - 1))
    return path


def measure(code: Path, paths: list[Path], repeat: int) -> dict[str, float]:
    """Median time and peak of ``repeat`` loads in fresh interpreters, with ``code``'s modules."""
    runs = []
    for _ in range(repeat):
        output = subprocess.run([sys.executable, "-c", PROBE, *map(str, paths)], cwd=code,
                                check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(output.strip().splitlines()[-1]))
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout to compare with (/work/main)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(GENERATED))
    args = parser.parse_args()
    cases = [("Echap feeds (" + ", ".join(p.name for p in feeds()) + ")", feeds())]
    cases += [(f"{size:,} domains", [generated_feed(size)]) for size in args.sizes]
    print(f"feed loading, median of {args.repeat} fresh processes (load = file to validated "
          "feed; +matcher = what the daemon holds)")
    for label, paths in cases:
        repeat = 1 if paths[0].stat().st_size > 10_000_000 else args.repeat
        now = measure(REPO, paths, repeat)
        line = (f"{label}: {now['indicators']:,.0f} indicators; load {now['load_s']:.2f} s "
                f"({now['load_cpu']:.2f} s CPU), peak {now['load_mb']:.0f} MB; +matcher "
                f"{now['matcher_s']:.2f} s, peak {now['matcher_mb']:.0f} MB")
        if args.before:
            then = measure(args.before, paths, repeat)
            line += (f" | before: load {then['load_s']:.2f} s ({then['load_cpu']:.2f} s CPU), "
                     f"peak {then['load_mb']:.0f} MB -> {then['load_cpu'] / now['load_cpu']:.1f}x "
                     f"less CPU, {then['load_mb'] / now['load_mb']:.1f}x less memory")
        print(line, flush=True)
    print("goal: 1M domains load in <= 10 s and <= 300 MB (CPU seconds are the steadier "
          "figure when the machine is shared)")


if __name__ == "__main__":
    main()
