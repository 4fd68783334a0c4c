"""The live sensor under load, on a veth pair (needs root): latency, CPU, memory, backlog.

1. Latency: 50 probes (a DNS query for a listed C2 name, each from another
   device) sent on the wire; measured from the send to the alert's arrival
   at an MQTT subscriber. Reports p50/p99.
2. Load: the 300k-packet bench capture replayed at --pps (default 20,000
   packets/s) for --seconds (default 300); every 5 s it samples CPU (% of one
   core) and RSS of the daemon and of Suricata, and the EVE backlog (bytes
   written but not yet analysed). "No backlog growing" means the backlog at
   the end is no larger than its median.

Run: `sudo .venv/bin/python bench/live_bench.py [--seconds 300] [--pps 20000]`.
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

from bench.run import capture, feeds  # noqa: E402
from tests.broker import Mosquitto  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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


def _setup_network(tag: str) -> tuple[str, str, str]:
    namespace, host, inner = f"lb{tag}", f"lbh{tag}", f"lbi{tag}"
    for command in (["ip", "netns", "add", namespace],
                    ["ip", "link", "add", host, "type", "veth", "peer", "name", inner, "netns",
                     namespace],
                    ["ip", "link", "set", host, "up"], ["ip", "-n", namespace, "link", "set",
                                                        inner, "up"]):
        subprocess.run(command, check=True, capture_output=True)
    return namespace, host, inner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--pps", type=int, default=20_000)
    args = parser.parse_args()
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.sendrecv import sendp

    pcap = capture(300_000)
    tag = str(os.getpid())[-5:]
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
    daemon = subprocess.Popen([sys.executable, "-m", "sensor", "--config", str(config), "run",
                               *(a for f in feeds() for a in ("--feed", str(f)))],
                              cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=(workdir / "daemon.log").open("w"))
    health = workdir / "run" / "health.json"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if health.exists() and json.loads(health.read_text()).get("capture") == "running":
                break
            time.sleep(0.5)
        arrivals = Arrivals(broker.port)
        time.sleep(1)
        sent: dict[str, float] = {}
        for i in range(50):
            device = f"10.77.{i // 200}.{i % 200 + 1}"
            sent[device] = time.time()
            sendp(Ether(dst="02:00:00:00:00:fe") / IP(src=device, dst="192.0.2.1") /
                  UDP(sport=41000 + i, dport=53) / DNS(rd=1, qd=DNSQR(qname=f"p{i}.copy9.com")),
                  iface=host, verbose=False)
            time.sleep(0.2)
        time.sleep(5)
        latencies = sorted(arrivals.times[d] - t for d, t in sent.items() if d in arrivals.times)
        print(f"latency packet -> alert at the broker's subscriber: {len(latencies)}/50 probes; "
              f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
              f"p99 {latencies[int(0.99 * (len(latencies) - 1))] * 1000:.0f} ms")

        suricata = int(subprocess.run(["pgrep", "-f", f"suricata -c {workdir}"],
                                      capture_output=True, text=True).stdout.split()[0])
        replay = subprocess.Popen(["ip", "netns", "exec", namespace, "tcpreplay", "-q",
                                   f"--pps={args.pps}", "--loop=0",
                                   f"--duration={args.seconds}", "-i", inner, str(pcap)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples = []
        eve, offset = workdir / "run" / "suricata" / "eve.json", \
            workdir / "run" / "suricata" / "eve.offset"
        previous = {pid: _cpu_seconds(pid) for pid in (daemon.pid, suricata)}
        while replay.poll() is None:
            time.sleep(5)
            now = {pid: _cpu_seconds(pid) for pid in previous}
            backlog = eve.stat().st_size - json.loads(offset.read_text())["offset"]
            samples.append({"daemon_cpu": (now[daemon.pid] - previous[daemon.pid]) / 5 * 100,
                            "suricata_cpu": (now[suricata] - previous[suricata]) / 5 * 100,
                            "daemon_rss": _rss_mb(daemon.pid),
                            "suricata_rss": _rss_mb(suricata), "backlog": backlog})
            previous = now
        state = json.loads(health.read_text())
        backlogs = [s["backlog"] for s in samples]
        growing = backlogs[-1] > statistics.median(backlogs) * 1.5 + 65536
        print(f"load: {args.pps} packets/s for {args.seconds} s ({len(samples)} samples); "
              f"daemon CPU mean {statistics.mean(s['daemon_cpu'] for s in samples):.0f}% "
              f"of a core, RSS max {max(s['daemon_rss'] for s in samples):.0f} MB; Suricata "
              f"CPU mean {statistics.mean(s['suricata_cpu'] for s in samples):.0f}%, RSS max "
              f"{max(s['suricata_rss'] for s in samples):.0f} MB")
        print(f"EVE backlog: median {statistics.median(backlogs) / 1024:.0f} KiB, end "
              f"{backlogs[-1] / 1024:.0f} KiB, max {max(backlogs) / 1024:.0f} KiB "
              f"({'GROWING' if growing else 'not growing'}); "
              f"drops {state['drop_ratio']:.2%}; health {state['state']}; EVE records "
              f"analysed {state['observations']:,} ({state['observations'] / args.seconds:,.0f}/s)")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        broker.stop()
        subprocess.run(["ip", "link", "del", host], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


if __name__ == "__main__":
    main()
