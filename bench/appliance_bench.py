"""The installed appliance (needs root): package size, boot to READY=1, idle memory, card writes.

Installs the amd64 package on a booted Debian 12 container (as tests/system
does), then measures:
1. the package's size and its installed size;
2. boot to READY=1: the container rebooted, from `systemd-nspawn --boot` to
   veilleuse.service active (Type=notify: active means READY=1 was sent);
3. idle memory (RSS) of the sensor, the screen and Mosquitto, and of Suricata;
4. bytes written to the disk per hour (the kernel's write_bytes of every
   process in the box: tmpfs writes do not count, as they never reach a
   card) while the bench capture is replayed on the mirror port, side by side
   with the peer a user would pick instead: Debian's own suricata.service
   configuration with Echap's suricata.rules, on the same port and replay.

Run: `sudo .venv/bin/python bench/appliance_bench.py [--seconds 120] [--pps 2000]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.run import capture  # noqa: E402
from tests.conftest import ECHAP_DIR, until  # noqa: E402
from tests.system.appliance import configure, install, prepare  # noqa: E402
from tests.system.booted import BootedSystem  # noqa: E402
from tests.system.conftest import built_package  # noqa: E402

SENSOR_PROCESSES = {"veilleuse", "veilleuse-scree", "mosquitto"}  # comm is cut at 15


def _written_bytes(box: BootedSystem) -> Counter[str]:
    """Bytes each program in the box has sent to block devices so far (exited ones aside)."""
    script = ("for p in /proc/[0-9]*; do w=$(grep -h '^write_bytes' $p/io 2>/dev/null) && "
              "echo \"$(cat $p/comm) ${w#write_bytes: }\"; done")
    written: Counter[str] = Counter()
    for line in box.run(script).stdout.splitlines():
        comm, _, value = line.rpartition(" ")
        written[comm] += int(value)
    return written


def _rss_mb(box: BootedSystem) -> dict[str, float]:
    totals: dict[str, float] = {}
    for line in box.run(["ps", "-e", "-o", "rss=,comm="]).stdout.splitlines():
        rss, comm = line.split(None, 1)
        totals[comm] = totals.get(comm, 0.0) + int(rss) / 1024
    return totals


def _replay(box: BootedSystem, pcap: Path, seconds: int, pps: int) -> Counter[str]:
    """Replay ``pcap`` on the mirror port for ``seconds``; the box's disk writes meanwhile."""
    before = _written_bytes(box)
    subprocess.run(["tcpreplay", "-q", "-i", box.mirror_host, f"--pps={pps}", "--loop=0",
                    f"--duration={seconds}", str(pcap)], check=True, capture_output=True)
    after = _written_bytes(box)
    return Counter({comm: after[comm] - before[comm] for comm in after
                    if after[comm] > before[comm]})


def _boot_to_ready(box: BootedSystem) -> float:
    box.poweroff()
    started = time.monotonic()
    box.boot()
    assert until(lambda: box.run(["systemctl", "is-active", "veilleuse.service"],
                                 check=False).stdout.strip() == "active", 180, every=0.1)
    return time.monotonic() - started


def _peer(box: BootedSystem) -> None:
    """Debian's suricata.service as a user would run it, with Echap's rules, on the mirror."""
    box.run(["systemctl", "stop", "veilleuse.service"])
    (box.root / "etc" / "suricata" / "rules").mkdir(parents=True, exist_ok=True)
    rules = box.root / "etc" / "suricata" / "rules" / "echap.rules"
    rules.write_bytes((ECHAP_DIR / "suricata.rules").read_bytes())
    box.run(["systemd-run", "--unit=peer-suricata", "suricata", "-c",
             "/etc/suricata/suricata.yaml", "--af-packet=mirror0", "-S",
             "/etc/suricata/rules/echap.rules"])
    assert until(lambda: "engine started" in box.run(
        ["journalctl", "-u", "peer-suricata", "--no-pager"]).stdout.lower(), 120), \
        box.journal("peer-suricata")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120, help="replay time per side")
    parser.add_argument("--pps", type=int, default=2000, help="replay rate, packets/s")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (systemd-nspawn, veth, tcpreplay)")
    deb = built_package("amd64")
    pcap = capture(300_000)
    with tempfile.TemporaryDirectory(prefix="veilleuse-appliance-") as work:
        box = prepare(Path(work), deb)
        box.boot()
        try:
            install(box)
            configure(box)
            installed_kib = int(box.run(["dpkg-query", "-W", "-f=${Installed-Size}",
                                         "veilleuse"]).stdout)
            ready = _boot_to_ready(box)
            time.sleep(30)  # idle: a while after start-up, nothing replayed
            rss = _rss_mb(box)
            ours = _replay(box, pcap, args.seconds, args.pps)
            _peer(box)
            theirs = _replay(box, pcap, args.seconds, args.pps)
        finally:
            box.poweroff()
    per_hour = 3600 / args.seconds / 2**20
    sensor_rss = sum(v for k, v in rss.items() if k in SENSOR_PROCESSES)
    print(f"package: {deb.stat().st_size / 2**20:.1f} MiB; installed: "
          f"{installed_kib / 1024:.1f} MiB")
    print(f"boot to READY=1 (container reboot): {ready:.1f} s")
    print(f"idle RSS: sensor + screen + Mosquitto {sensor_rss:.0f} MB "
          f"({', '.join(f'{k} {v:.0f}' for k, v in sorted(rss.items()) if k in SENSOR_PROCESSES)}"
          f"); Suricata {rss.get('Suricata-Main', 0.0):.0f} MB")
    ours_total, theirs_total = sum(ours.values()), sum(theirs.values())
    print(f"disk writes under {args.pps} packets/s: Veilleuse {ours_total * per_hour:.1f} MiB/h; "
          f"Debian's suricata.service with Echap's rules {theirs_total * per_hour:.1f} MiB/h "
          f"(ratio {ours_total / theirs_total if theirs_total else float('nan'):.3f}); "
          "goal < 20 MiB/h")
    for side, written in (("Veilleuse", ours), ("peer", theirs)):
        print(f"  {side}, by program: " + ", ".join(
            f"{comm} {value * per_hour:.1f}" for comm, value in written.most_common(5)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
