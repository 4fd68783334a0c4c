"""Offline replay CPU against Suricata with Echap's rules: `python bench/replay_bench.py`.

What a person with a capture would otherwise run: Debian's suricata.yaml with
Echap's suricata.rules (``suricata -r capture -S suricata.rules``). Against
it, ``veilleuse analyze`` end to end (Python start-up, feed loading, its own
Suricata, EVE decoding and detection), on two captures:

- the event-dense mix of ``bench/mixed_traffic.py`` (a DNS lookup, TLS or QUIC
  handshake or HTTP request every ten packets): goal <= 1.5x;
- the session-shaped mix of ``bench/session_traffic.py`` (long TLS sessions,
  about 500 packets per handshake): goal <= 1.2x.

The figure is CPU seconds (user + system of every process involved, from
``getrusage``), not wall time: it is what a Pi pays, and it moves less when
other work shares the machine. Median of ``--repeat`` runs. ``--before DIR``
also runs ``veilleuse analyze`` with the code of another checkout.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench import mixed_traffic, session_traffic  # noqa: E402
from bench.mixed_traffic import packet_count  # noqa: E402
from bench.run import SHARED, feeds  # noqa: E402
from sensor.suricata.config import SuricataSettings, render_suricata_config  # noqa: E402

DEBIAN_CONFIG = Path("/etc/suricata/suricata.yaml")
ECHAP_RULES = SHARED / "suricata.rules"


def cached_capture(kind: str, packets: int, build: Callable[[Path, int], Path],
                   version: int) -> Path:
    path = BENCH / ".cache" / f"{kind}-{packets}-v{version}.pcap"
    if not path.exists():
        started = time.perf_counter()
        build(path, packets)
        print(f"built {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def cpu_seconds(command: list[str], cwd: Path) -> float:
    """User + system CPU of ``command`` and every process it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "TZ": "UTC"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def echap_suricata(pcap: Path, workdir: Path) -> float:
    return cpu_seconds(["suricata", "-c", str(DEBIAN_CONFIG), "-S", str(ECHAP_RULES), "-r",
                        str(pcap), "-l", str(workdir), "-k", "none"], workdir)


def our_suricata(pcap: Path, workdir: Path) -> float:
    """Suricata alone as ``veilleuse analyze`` runs it (the split of the Veilleuse figure)."""
    config = workdir / "suricata.yaml"
    config.write_text(render_suricata_config(SuricataSettings(), workdir))
    return cpu_seconds(["suricata", "-c", str(config), "-r", str(pcap), "-l", str(workdir),
                        "-k", "none", "--disable-detection", "--runmode", "single"], workdir)


def veilleuse(pcap: Path, workdir: Path, code: Path) -> float:
    """``veilleuse analyze`` with the modules of ``code`` (``-m`` puts its cwd first)."""
    command = [sys.executable, "-m", "sensor", "analyze", str(pcap), "--format", "jsonl",
               "--output", str(workdir / "alerts.jsonl")]
    for feed in feeds():
        command += ["--feed", str(feed)]
    return cpu_seconds(command, code)


def median_of(repeat: int, run: Callable[[Path], float]) -> float:
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="veilleuse-replay-") as workdir:
            times.append(run(Path(workdir)))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", type=Path, help="a checkout to compare with (/work/main)")
    parser.add_argument("--sessions-packets", type=int, default=250_000)
    args = parser.parse_args()
    if not ECHAP_RULES.exists():
        sys.exit(f"{ECHAP_RULES} is missing: Echap's rules are the baseline")
    captures = [
        ("event-dense mix", cached_capture("mixed", 300_000, mixed_traffic.build_mixed_capture,
                                           mixed_traffic.GENERATOR_VERSION), 1.5),
        ("session-shaped mix", cached_capture("sessions", args.sessions_packets,
                                              session_traffic.build_session_capture,
                                              session_traffic.GENERATOR_VERSION), 1.2),
    ]
    print(f"CPU seconds (user+system), median of {args.repeat}; baseline: Debian's "
          f"suricata.yaml + Echap's {ECHAP_RULES.name}; feeds: "
          f"{', '.join(p.name for p in feeds())}")
    for label, pcap, goal in captures:
        theirs = median_of(args.repeat, lambda w, p=pcap: echap_suricata(p, w))
        ours = median_of(args.repeat, lambda w, p=pcap: veilleuse(p, w, REPO))
        alone = median_of(args.repeat, lambda w, p=pcap: our_suricata(p, w))
        line = (f"{label} ({pcap.name}, {packet_count(pcap):,} packets): Suricata+Echap "
                f"{theirs:.2f} s; veilleuse analyze {ours:.2f} s (its Suricata {alone:.2f} s); "
                f"ratio {ours / theirs:.2f}x (goal <= {goal}x)")
        if args.before:
            then = median_of(args.repeat, lambda w, p=pcap: veilleuse(p, w, args.before))
            line += f"; before {then:.2f} s, ratio {then / theirs:.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
