"""CPU per EVE record on the live path, split: decoding, building observations, detection.

The bench capture (``bench/mixed_traffic.py``, the event-dense mix) goes
through Suricata once; its EVE lines then go through the reader and the
detection engine of the code measured, in batches of 1,000 as the daemon
reads them (CPU time, best of --repeat runs):

- decode: msgspec's typed decoding of every line alone (``eve._DECODER``);
- observations: the rest of the reader (``read_eve_lines``: decoded records
  to observations, counting, skipping), given the engine's ``observed_types``
  and ``dns_name_filter`` as the daemon gives them, where the checkout has them;
- detect: ``DetectionEngine.observe`` on every observation.

All-in is reading + detection, the figure bench/live_bench.py prints as
"per EVE record"; the goal is <= 6 us. ``--before DIR`` measures another
checkout (e.g. /work/main) the same way, run after run, and prints the ratios.
The machine may be shared: compare figures of one run only.

Run: `.venv/bin/python bench/eve_bench.py [--before /work/main]` (or bench/run.py --eve).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.run import CHILD_PREAMBLE, capture, feeds, interpreter, suricata_alone  # noqa: E402

GOAL_US = 6.0

# Run as `python -c` in the checkout measured, so that "before" uses its own reader.
# A checkout without the typed decoder gets no decode figure (its reading is one figure).
SPLIT = CHILD_PREAMBLE + """try:
    from sensor.alerts.book import AlertTotals  # the engine gives sightings; totals merge them
except ImportError:  # a checkout whose engine kept its own totals (--before)
    AlertTotals = None
from sensor.capture import eve
from sensor.capture.stats import SourceStats
from sensor.capture.suricata import read_eve_lines
from sensor.config import Config
from sensor.feeds.store import load_feed_file
lines = Path(sys.argv[1]).read_bytes().splitlines()
repeat = int(sys.argv[2])
config = Config()
matcher = build_matcher([load_feed_file(Path(p)) for p in sys.argv[3:]], config)
decoder = getattr(eve, "_DECODER", None)
runs = []
for _ in range(repeat):
    engine, decode, read, detect = build_engine(config, matcher), 0.0, 0.0, 0.0
    totals = AlertTotals() if AlertTotals is not None else None
    # What the daemon gives its reader, where the checkout has it: the observation types
    # and the DNS names detection looks at.
    wanted = (engine.observed_types,) if hasattr(engine, "observed_types") else ()
    if hasattr(engine, "dns_name_filter"):
        wanted += (engine.dns_name_filter,)
    for start in range(0, len(lines), 1000):  # batches, as the daemon reads them
        batch = lines[start:start + 1000]
        if decoder is not None:
            started = time.process_time()
            for line in batch:
                try:
                    decoder.decode(line)
                except Exception:
                    pass
            decode += time.process_time() - started
        started = time.process_time()
        observations = list(read_eve_lines(batch, SourceStats("bench"), *wanted))
        parsed = time.process_time()
        for observation in observations:
            changed = engine.observe(observation)
            if changed and totals is not None:
                totals.add(changed)
        read, detect = read + parsed - started, detect + time.process_time() - parsed
    runs.append((decode, read, detect))
decode, read, detect = min(runs, key=lambda run: run[1] + run[2])
per = 1e6 / len(lines)
alerts = len(totals) if totals is not None else len(engine.alerts())
print(json.dumps({"records": len(lines), "alerts": alerts,
                  "decode_us": decode * per if decoder is not None else None,
                  "read_us": read * per, "detect_us": detect * per}))
"""


def split(code: Path, eve: Path, repeat: int) -> dict:
    """Microseconds of CPU per EVE record with the reader and detection of ``code``."""
    output = subprocess.run([sys.executable, "-c", SPLIT, str(eve), str(repeat),
                             *map(str, feeds())],
                            check=True, capture_output=True, text=True, cwd=code,
                            env={**os.environ, "PYTHONPATH": str(code)}).stdout
    return json.loads(output.strip().splitlines()[-1])


def all_in(figures: dict) -> float:
    return figures["read_us"] + figures["detect_us"]


def describe(figures: dict) -> str:
    decode = figures["decode_us"]
    parts = (f"decode {decode:.2f}, observations {figures['read_us'] - decode:.2f}"
             if decode is not None else f"reading {figures['read_us']:.2f}")
    return (f"{all_in(figures):.2f} us per record ({parts}, detect {figures['detect_us']:.2f}); "
            f"{all_in(figures) / GOAL_US:.2f}x the goal of <= {GOAL_US:g} us; "
            f"{figures['alerts']} alerts")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per checkout (best kept)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each checkout this many times, alternating")
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    args = parser.parse_args(argv)
    pcap = capture(args.packets)
    codes = [code for code in (args.before, REPO) if code is not None]
    with tempfile.TemporaryDirectory() as workdir:
        _, eve = suricata_alone(pcap, Path(workdir), "single")
        records = sum(1 for _ in eve.open("rb"))
        rounds = [{code: split(code, eve, args.repeat) for code in codes}
                  for _ in range(args.rounds)]
    print(f"EVE records of {pcap.name}: {records:,}; CPU time, best of {args.repeat}, batches "
          "of 1,000 (the machine may be shared: figures vary with what else runs)")
    print(f"interpreter: {interpreter()}")
    for number, figures in enumerate(rounds, 1):
        for code in codes:
            print(f"round {number} [{code}]: {describe(figures[code])}")
        if args.before:
            old, new = figures[args.before], figures[REPO]
            print(f"round {number} ratio before/after: all-in {all_in(old) / all_in(new):.2f}x, "
                  f"reading {old['read_us'] / new['read_us']:.2f}x, detect "
                  f"{old['detect_us'] / new['detect_us']:.2f}x")


if __name__ == "__main__":
    main()
