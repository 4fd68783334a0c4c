"""The live sensor under load, on a veth pair (needs root): latency, idle CPU, drops, per record.

1. Per EVE record: the bench capture through Suricata once, then its EVE
   lines through the reader and detection of the code measured, in batches
   of 1,000 as the daemon reads them (CPU time, best of 3): microseconds per
   record, reading and detection apart.
2. Idle: the daemon running with no traffic for --idle seconds; its CPU in
   % of one core (goal <= 1%).
3. Latency: 50 probes (a DNS query for a listed C2 name, each from another
   device) sent on the wire; measured from the send to the alert's arrival
   at an MQTT subscriber. Reports p50/p99 (goals <= 50 ms, <= 250 ms), idle
   and again during the load below.
4. Load: the 300k-packet bench capture replayed at --pps (default 20,000
   packets/s) for --seconds (default 300); every 5 s it samples CPU (% of one
   core) and RSS of the daemon and of Suricata, and the EVE backlog (bytes
   written past the saved offset: the daemon saves it only once waiting
   sightings are written, every daemon.alert_update_seconds, so this counts
   records read but not committed too; the probes' latency says whether the
   reading keeps up). "No backlog growing" means the backlog at the end is no
   larger than its median. Drops: Suricata's capture drops
   (its stats) and probes that never gave an alert.

``--before DIR`` runs everything a second time with the code of another
checkout (e.g. /work/main) and prints the ratios.

Run: `sudo .venv/bin/python bench/live_bench.py [--seconds 300] [--pps 20000] [--before DIR]`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402

from bench.run import CHILD_PREAMBLE, capture, feeds, suricata_alone  # noqa: E402
from tests.broker import Mosquitto  # noqa: E402

PROBES = 50

# Run as `python -c` in the checkout measured, so that "before" uses its own reader.
PER_RECORD = CHILD_PREAMBLE + """from sensor.capture.stats import SourceStats
from sensor.capture.suricata import read_eve_lines
from sensor.config import Config
from sensor.feeds.store import load_feed_file
lines = Path(sys.argv[1]).read_bytes().splitlines()
config = Config()
matcher = build_matcher([load_feed_file(Path(p)) for p in sys.argv[2:]], config)
runs = []
for _ in range(3):
    engine, read, detect = build_engine(config, matcher), 0.0, 0.0
    # What the daemon gives its reader, where the checkout has it.
    wanted = (engine.observed_types,) if hasattr(engine, "observed_types") else ()
    if hasattr(engine, "dns_name_filter"):
        wanted += (engine.dns_name_filter,)
    for start in range(0, len(lines), 1000):  # batches, as the daemon reads them
        started = time.process_time()
        observations = list(read_eve_lines(lines[start:start + 1000], SourceStats("bench"),
                                           *wanted))
        parsed = time.process_time()
        for observation in observations:
            engine.observe(observation)
        read, detect = read + parsed - started, detect + time.process_time() - parsed
    runs.append((read, detect))
read, detect = min(runs, key=sum)
print(json.dumps({"records": len(lines), "read_us": read / len(lines) * 1e6,
                  "detect_us": detect / len(lines) * 1e6}))
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _backlog(eve: Path, offset_file: Path) -> int:
    """Bytes of EVE written but not analysed yet, across a rotation (eve.json.1)."""
    saved = json.loads(offset_file.read_text())
    sizes = {}
    for path in (eve.with_name(eve.name + ".1"), eve):
        try:
            status = path.stat()
        except FileNotFoundError:
            continue
        sizes[status.st_ino] = status.st_size
    if saved["inode"] not in sizes:
        return sum(sizes.values())
    inodes = list(sizes)
    return sizes[saved["inode"]] - saved["offset"] + sum(
        sizes[i] for i in inodes[inodes.index(saved["inode"]) + 1:])


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


class Arrivals:
    def __init__(self, port: int) -> None:
        self.times: dict[str, float] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe("veilleuse/+/+/alert", 1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        payload = json.loads(message.payload)
        with self.lock:
            self.times.setdefault(payload["device"], time.time())

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Prober:
    """Sends DNS queries for a listed name, one device each, and times their alerts."""

    def __init__(self, interface: str, arrivals: Arrivals) -> None:
        self.interface, self.arrivals = interface, arrivals
        self.sent: dict[str, dict[str, float]] = {}

    def send(self, phase: str, network: int, count: int, interval: float) -> None:
        from scapy.layers.dns import DNS, DNSQR
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether
        from scapy.sendrecv import sendp

        sent = self.sent.setdefault(phase, {})
        for i in range(count):
            device = f"10.{network}.{i // 200}.{i % 200 + 1}"
            packet = (Ether(dst="02:00:00:00:00:fe") / IP(src=device, dst="192.0.2.1") /
                      UDP(sport=41000 + i, dport=53) /
                      DNS(rd=1, qd=DNSQR(qname=f"p{network}x{i}.copy9.com")))
            sent[device] = time.time()
            sendp(packet, iface=self.interface, verbose=False)
            time.sleep(interval)

    def latencies(self, phase: str) -> tuple[list[float], int]:
        sent = self.sent.get(phase, {})
        with self.arrivals.lock:
            found = [self.arrivals.times[d] - t for d, t in sent.items()
                     if d in self.arrivals.times]
        return found, len(sent)


def _setup_network(tag: str) -> tuple[str, str, str]:
    namespace, host, inner = f"lb{tag}", f"lbh{tag}", f"lbi{tag}"
    for command in (["ip", "netns", "add", namespace],
                    ["ip", "link", "add", host, "type", "veth", "peer", "name", inner, "netns",
                     namespace],
                    ["ip", "link", "set", host, "up"], ["ip", "-n", namespace, "link", "set",
                                                        inner, "up"]):
        subprocess.run(command, check=True, capture_output=True)
    return namespace, host, inner


def start_daemon(code: Path, config: Path, log: Path) -> subprocess.Popen:
    """``veilleuse run`` of the checkout ``code`` with the bench's feeds, its log in ``log``."""
    return subprocess.Popen([sys.executable, "-m", "sensor", "--config", str(config), "run",
                             *(a for f in feeds() for a in ("--feed", str(f)))],
                            cwd=code, env={**os.environ, "PYTHONPATH": str(code)},
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))


def wait_until_capturing(health: Path, log: Path, seconds: float = 120) -> None:
    """Until the daemon's health file says it captures; SystemExit after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not _capturing(health):
        if time.monotonic() > deadline:
            raise SystemExit(f"the daemon did not start capturing, see {log}")
        time.sleep(0.5)


def _capturing(health: Path) -> bool:
    try:
        return json.loads(health.read_text()).get("capture") == "running"
    except (FileNotFoundError, ValueError):  # not written yet, or being replaced
        return False


def per_record(code: Path, eve: Path) -> dict:
    """Microseconds of CPU per EVE record with the reader and detection of ``code``."""
    output = subprocess.run([sys.executable, "-c", PER_RECORD, str(eve), *map(str, feeds())],
                            check=True, capture_output=True, text=True, cwd=code,
                            env={**os.environ, "PYTHONPATH": str(code)}).stdout
    return json.loads(output.strip().splitlines()[-1])


def live(code: Path, pcap: Path, args: argparse.Namespace) -> dict:
    """One run of the daemon of ``code``: idle CPU, latency idle and under load, drops."""
    tag = str(os.getpid())[-4:] + str(int(time.time()) % 10)
    namespace, host, inner = _setup_network(tag)
    workdir = Path(tempfile.mkdtemp(prefix="veilleuse-live-bench-"))
    (workdir / "broker").mkdir()
    broker = Mosquitto(workdir / "broker", "mosquitto")
    broker.start()
    config = workdir / "veilleuse.yaml"
    config.write_text(json.dumps({
        "network": {"interface": host}, "alerts": {"database": str(workdir / "a.sqlite")},
        "mqtt": {"url": broker.url}, "privacy": {"device_ids": "address"},
        "daemon": {"state_directory": str(workdir / "state"),
                   "runtime_directory": str(workdir / "run")}}))
    daemon = start_daemon(code, config, workdir / "daemon.log")
    health = workdir / "run" / "health.json"
    figures: dict = {"code": str(code)}
    arrivals = None
    try:
        wait_until_capturing(health, workdir / "daemon.log")
        time.sleep(5)  # start-up settles (feeds loaded, first health written)
        before = _cpu_seconds(daemon.pid)
        time.sleep(args.idle)
        figures["idle_cpu"] = (_cpu_seconds(daemon.pid) - before) / args.idle * 100
        arrivals = Arrivals(broker.port)
        prober = Prober(host, arrivals)
        time.sleep(1)
        prober.send("idle", 77, PROBES, 0.2)
        time.sleep(5)

        suricata = int(subprocess.run(["pgrep", "-f", f"suricata -c {workdir}"],
                                      capture_output=True, text=True).stdout.split()[0])
        replay = subprocess.Popen(["ip", "netns", "exec", namespace, "tcpreplay", "-q",
                                   f"--pps={args.pps}", "--loop=0",
                                   f"--duration={args.seconds}", "-i", inner, str(pcap)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Probes spread over the load (after the first 5 s), from their own thread.
        loaded = threading.Thread(target=prober.send, daemon=True, args=(
            "load", 78, PROBES, max(0.05, (args.seconds - 10) / PROBES)))
        threading.Timer(5, loaded.start).start()
        samples = []
        eve, offset = workdir / "run" / "suricata" / "eve.json", \
            workdir / "run" / "suricata" / "eve.offset"
        previous = {pid: _cpu_seconds(pid) for pid in (daemon.pid, suricata)}
        while replay.poll() is None:
            time.sleep(5)
            now = {pid: _cpu_seconds(pid) for pid in previous}
            backlog = _backlog(eve, offset)
            samples.append({"daemon_cpu": (now[daemon.pid] - previous[daemon.pid]) / 5 * 100,
                            "suricata_cpu": (now[suricata] - previous[suricata]) / 5 * 100,
                            "daemon_rss": _rss_mb(daemon.pid),
                            "suricata_rss": _rss_mb(suricata), "backlog": backlog})
            previous = now
        loaded.join()
        time.sleep(5)
        # The daemon reads Suricata's drop counters every 30 s: wait for a fresh figure.
        time.sleep(31)
        state = json.loads(health.read_text())
        for phase in ("idle", "load"):
            found, sent = prober.latencies(phase)
            figures[phase] = {"probes": sent, "alerts": len(found),
                              "p50_ms": statistics.median(found) * 1000 if found else None,
                              "p99_ms": _percentile(found, 0.99) * 1000 if found else None}
        backlogs = [s["backlog"] for s in samples]
        figures.update(
            samples=len(samples), drop_ratio=state["drop_ratio"], health=state["state"],
            observations=state["observations"],
            daemon_cpu=statistics.mean(s["daemon_cpu"] for s in samples),
            daemon_rss=max(s["daemon_rss"] for s in samples),
            suricata_cpu=statistics.mean(s["suricata_cpu"] for s in samples),
            suricata_rss=max(s["suricata_rss"] for s in samples),
            backlog_median=statistics.median(backlogs), backlog_end=backlogs[-1],
            backlog_max=max(backlogs),
            growing=backlogs[-1] > statistics.median(backlogs) * 1.5 + 65536)
        return figures
    finally:
        if arrivals is not None:
            arrivals.stop()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        broker.stop()
        subprocess.run(["ip", "link", "del", host], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def report(figures: dict, records: dict, args: argparse.Namespace) -> None:
    print(f"[{figures['code']}]")
    print(f"per EVE record: {_per_record_us(records):.1f} us of CPU "
          f"(reading {records['read_us']:.1f}, detection {records['detect_us']:.1f}; "
          f"{records['records']:,} records; goal <= 6 us)")
    print(f"idle: daemon CPU {figures['idle_cpu']:.2f}% of a core over {args.idle} s "
          "(goal <= 1%)")
    for phase in ("idle", "load"):
        latency = figures[phase]
        print(f"latency packet -> alert at the subscriber, {phase}: {latency['alerts']}/"
              f"{latency['probes']} probes; p50 {_ms(latency['p50_ms'])}, p99 "
              f"{_ms(latency['p99_ms'])} (goals <= 50 ms, <= 250 ms)")
    print(f"load: {args.pps} packets/s for {args.seconds} s ({figures['samples']} samples); "
          f"daemon CPU mean {figures['daemon_cpu']:.0f}% of a core, RSS max "
          f"{figures['daemon_rss']:.0f} MB; Suricata CPU mean {figures['suricata_cpu']:.0f}%, "
          f"RSS max {figures['suricata_rss']:.0f} MB")
    lost = sum(figures[p]["probes"] - figures[p]["alerts"] for p in ("idle", "load"))
    print(f"EVE backlog: median {figures['backlog_median'] / 1024:.0f} KiB, end "
          f"{figures['backlog_end'] / 1024:.0f} KiB, max {figures['backlog_max'] / 1024:.0f} KiB "
          f"({'GROWING' if figures['growing'] else 'not growing'}); drops "
          f"{figures['drop_ratio']:.2%} (Suricata), {lost} probe(s) without alert; health "
          f"{figures['health']}; EVE records analysed {figures['observations']:,}")


def _per_record_us(records: dict) -> float:
    return records["read_us"] + records["detect_us"]


def _ratio(before: float | None, after: float | None) -> str:
    if not before or not after:
        return "-"
    return f"{before / after:.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--pps", type=int, default=20_000)
    parser.add_argument("--idle", type=int, default=20, help="seconds of idle CPU measure")
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    args = parser.parse_args()
    pcap = capture(300_000)
    with tempfile.TemporaryDirectory() as workdir:
        _, eve = suricata_alone(pcap, Path(workdir), "single")
        records = {code: per_record(code, eve) for code in filter(None, (REPO, args.before))}
    print("(the machine may be shared: figures vary with what else runs)")
    runs = {code: live(code, pcap, args) for code in filter(None, (args.before, REPO))}
    for code, figures in runs.items():
        report(figures, records[code], args)
    if args.before:
        old, new = runs[args.before], runs[REPO]
        old_records, new_records = records[args.before], records[REPO]
        print(f"ratios before/after: per record "
              f"{_ratio(_per_record_us(old_records), _per_record_us(new_records))} "
              f"(reading {_ratio(old_records['read_us'], new_records['read_us'])}); idle CPU "
              f"{_ratio(old['idle_cpu'], new['idle_cpu'])}; p50 idle "
              f"{_ratio(old['idle']['p50_ms'], new['idle']['p50_ms'])}, p99 idle "
              f"{_ratio(old['idle']['p99_ms'], new['idle']['p99_ms'])}; p50 load "
              f"{_ratio(old['load']['p50_ms'], new['load']['p50_ms'])}, p99 load "
              f"{_ratio(old['load']['p99_ms'], new['load']['p99_ms'])}")


if __name__ == "__main__":
    main()
