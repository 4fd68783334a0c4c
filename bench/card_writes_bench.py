"""What the live sensor writes to its disk (the SD card) per hour under load (needs root).

Runs the real daemon (`veilleuse run`, Suricata source, as installed) on a
veth pair, with its state (the alert book) on a disk-backed directory and
its runtime directory on tmpfs (/dev/shm, as /run on the appliance: EVE, the
EVE offset and the health file never reach the card), and replays the bench
capture on the mirror at --pps (default 2,000 packets/s, as
bench/appliance_bench.py) for --seconds. It reads the kernel's
``write_bytes`` of the daemon's process (/proc/<pid>/io: bytes sent towards
block devices, its threads included; Suricata is a separate process writing
to tmpfs, reported beside it) before and after, and prints MiB/h, with
what the book says happened meanwhile: new alerts, deliveries, the book's
and its WAL's sizes, and SQLite's counts of commits and of WAL frames.

No booted appliance needed; journald and Mosquitto are not counted (the
daemon logs to a file on tmpfs). ``--before DIR`` runs the same with the
code of another checkout (e.g. /work/main) first and prints the ratio.
``--warm SECONDS`` replays that long before measuring: the bench mix's
alerts are then known, and what is measured is a sensor in its steady state
(sightings of known alerts, written once a minute) rather than the first
minutes' storm of new alerts. ``--syscalls`` also traces the daemon
(strace, which slows it down) and prints, per file on the disk, the bytes
its write calls hand the kernel and its fsyncs: what writes.

Run: `.venv/bin/python bench/card_writes_bench.py [--seconds 120] [--pps 2000] [--before DIR]`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.live_bench import (  # noqa: E402
    _setup_network,
    start_daemon,
    wait_until_capturing,
)
from bench.run import capture, feeds  # noqa: E402
from tests.broker import Mosquitto  # noqa: E402

GOAL_MIB_PER_HOUR = 20.0  # the whole box; the daemon's share must leave room for the rest
RAM = Path("/dev/shm")


def written_bytes(pid: int) -> int:
    """The kernel's count of bytes this process (all threads) sent towards block devices."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError(f"no write_bytes in /proc/{pid}/io")


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


SYSCALL = re.compile(r"^\d+\s+(?P<call>pwrite64|write|fsync|fdatasync)"
                     r"\((?P<fd>\d+)<(?P<path>[^>]*)>.*\)\s+= (?P<result>-?\d+)")


def traced_writes(trace: Path, disk: Path) -> dict[str, list[int]]:
    """Per file under ``disk``: [bytes handed to write calls, fsyncs], from strace's log."""
    files: dict[str, list[int]] = {}
    for line in trace.read_text(errors="replace").splitlines():
        match = SYSCALL.match(line)
        if match is None or not match["path"].startswith(str(disk)):
            continue
        name = str(Path(match["path"]).relative_to(disk))
        totals = files.setdefault(name, [0, 0])
        if match["call"] in ("fsync", "fdatasync"):
            totals[1] += 1
        elif int(match["result"]) > 0:
            totals[0] += int(match["result"])
    return files


def book_facts(database: Path) -> dict:
    """Alerts, undelivered rows, the book's and its WAL's sizes and page size."""
    wal = database.with_name(database.name + "-wal")
    with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as db:
        alerts = db.execute("SELECT count(*) FROM alerts").fetchone()[0]
        delivered = db.execute("SELECT count(*) FROM alerts WHERE delivered_at IS NOT NULL"
                               ).fetchone()[0]
        pending = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    return {"alerts": alerts, "delivered": delivered, "pending": pending,
            "page_size": page_size, "book_bytes": database.stat().st_size,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0}


def run(code: Path, pcap: Path, args: argparse.Namespace) -> dict:
    """One daemon of ``code`` under the replay: its bytes written, and what the book did."""
    tag = str(os.getpid())[-4:] + str(int(time.time()) % 10)
    namespace, host, inner = _setup_network(tag)
    disk = Path(tempfile.mkdtemp(prefix="veilleuse-card-", dir="/var/tmp"))
    ram = Path(tempfile.mkdtemp(prefix="veilleuse-card-", dir=RAM))
    (disk / "broker").mkdir()
    broker = Mosquitto(disk / "broker", "mosquitto")
    broker.start()
    database = disk / "state" / "alerts.sqlite"
    config = disk / "veilleuse.yaml"
    config.write_text(json.dumps({
        "network": {"interface": host}, "alerts": {"database": str(database)},
        "mqtt": {"url": broker.url},
        "privacy": {"secret_file": str(disk / "state" / "pseudonym.key")},
        "daemon": {"state_directory": str(disk / "state"),
                   "runtime_directory": str(ram / "run")}}))
    daemon = start_daemon(code, config, ram / "daemon.log")
    try:
        wait_until_capturing(ram / "run" / "health.json", ram / "daemon.log")
        time.sleep(5)  # start-up settles (feeds loaded, the book created)
        if args.warm:
            subprocess.run(["ip", "netns", "exec", namespace, "tcpreplay", "-q",
                            f"--pps={args.pps}", "--loop=0", f"--duration={args.warm}", "-i",
                            inner, str(pcap)], check=True, capture_output=True)
        suricata = _children(daemon.pid)
        before = written_bytes(daemon.pid), sum(written_bytes(p) for p in suricata)
        facts_before = book_facts(database)
        tracer = subprocess.Popen(
            ["strace", "-f", "-qq", "-y", "-e", "trace=pwrite64,write,fsync,fdatasync", "-o",
             str(ram / "strace.log"), "-p", str(daemon.pid)]) if args.syscalls else None
        started = time.monotonic()
        subprocess.run(["ip", "netns", "exec", namespace, "tcpreplay", "-q", f"--pps={args.pps}",
                        "--loop=0", f"--duration={args.seconds}", "-i", inner, str(pcap)],
                       check=True, capture_output=True)
        elapsed = time.monotonic() - started
        after = written_bytes(daemon.pid), sum(written_bytes(p) for p in suricata)
        facts_after = book_facts(database)
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(60)
        traced = traced_writes(ram / "strace.log", disk) if tracer is not None else {}
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        broker.stop()
        subprocess.run(["ip", "link", "del", host], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        log = (ram / "daemon.log").read_text(errors="replace")
        shutil.rmtree(ram, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(disk, ignore_errors=True)
    per_hour = 3600 / elapsed / 2**20
    return {"code": str(code), "seconds": elapsed, "daemon_mib_h": (after[0] - before[0]) *
            per_hour, "suricata_mib_h": (after[1] - before[1]) * per_hour,
            "new_alerts": facts_after["alerts"] - facts_before["alerts"],
            "delivered": facts_after["delivered"] - facts_before["delivered"],
            "before": facts_before, "after": facts_after, "errors": log.count(" ERROR "),
            "traced": {name: (written * per_hour, syncs * 3600 / elapsed)
                       for name, (written, syncs) in traced.items()}}


def report(figures: dict) -> None:
    after = figures["after"]
    hours = figures["seconds"] / 3600
    per_alert = (figures["daemon_mib_h"] * hours * 1024 / figures["new_alerts"]
                 if figures["new_alerts"] else float("nan"))
    print(f"[{figures['code']}]")
    print(f"  daemon writes {figures['daemon_mib_h']:.1f} MiB/h (goal for the whole box "
          f"< {GOAL_MIB_PER_HOUR:.0f} MiB/h); Suricata {figures['suricata_mib_h']:.1f} MiB/h "
          "(its files are on tmpfs)")
    print(f"  over {figures['seconds']:.0f} s: {figures['new_alerts']} new alerts "
          f"({figures['new_alerts'] / figures['seconds']:.2f}/s), {figures['delivered']} "
          f"delivered; {per_alert:.1f} KiB written per new alert")
    print(f"  book at the end: {after['alerts']} alerts, {after['pending']} undelivered; "
          f"page size {after['page_size']} B; book {after['book_bytes'] / 1024:.0f} KiB, "
          f"WAL {after['wal_bytes'] / 1024:.0f} KiB; errors in the log: {figures['errors']}")
    for name, (mib_h, syncs_h) in sorted(figures["traced"].items(), key=lambda i: -i[1][0]):
        print(f"  write calls to {name}: {mib_h:.1f} MiB/h, {syncs_h:.0f} fsyncs/h")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120, help="replay time per run")
    parser.add_argument("--pps", type=int, default=2000, help="replay rate, packets/s")
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    parser.add_argument("--warm", type=int, default=0,
                        help="seconds of replay before measuring (steady state)")
    parser.add_argument("--keep", action="store_true", help="keep the book (in /var/tmp)")
    parser.add_argument("--syscalls", action="store_true",
                        help="also trace the daemon's write calls and fsyncs per file (strace)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (veth, network namespace, tcpreplay)")
    pcap = capture(300_000)
    print(f"(the machine may be shared: figures vary with what else runs); {args.pps} "
          f"packets/s for {args.seconds} s" + (f" after {args.warm} s of warm-up" if args.warm
                                              else "") +
          f", feeds: {', '.join(p.name for p in feeds())}")
    runs = [run(code, pcap, args) for code in filter(None, (args.before, REPO))]
    for figures in runs:
        report(figures)
    if args.before:
        old, new = runs
        print(f"ratio before/after: {old['daemon_mib_h'] / max(new['daemon_mib_h'], 1e-9):.1f}x "
              "fewer bytes written by the daemon")


if __name__ == "__main__":
    main()
