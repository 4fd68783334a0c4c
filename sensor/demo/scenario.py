"""The demo capture: one evening of a small shelter network, built with scapy.

Three devices behind 192.168.10.1: a phone with the fictitious stalkerware
DemoSpy (DNS lookup, TLS check-ins every five minutes, an HTTP upload to a
listed IP), a laptop that visits DemoSpy's shop, and a tablet with a
monitoring app over QUIC and Private DNS (DNS over TLS). Ordinary browsing
at irregular times surrounds it all, so the quiet parts show too.
"""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path

from sensor.demo.traffic import DEFAULT_START, Traffic

RESOLVER = "192.168.10.1"
PHONE, LAPTOP, TABLET = "192.168.10.21", "192.168.10.35", "192.168.10.48"
DEMOSPY_SERVER, DEMOSPY_LISTED_IP = "203.0.113.66", "198.51.100.66"
ORDINARY_SITES = {"www.example.org": "203.0.113.10", "news.example.net": "203.0.113.20",
                  "mail.example.com": "203.0.113.30"}


def demo_feed_path() -> Path:
    """The packaged demo feed (an Echap-format YAML file)."""
    return Path(str(resources.files("sensor.demo").joinpath("feed.yaml")))


def _browse(traffic: Traffic, rng: random.Random, device: str, start: float,
            duration: float) -> None:
    now = start
    while now < start + duration:
        name, address = rng.choice(sorted(ORDINARY_SITES.items()))
        traffic.dns(now, device, RESOLVER, name, [(name, "A", address)])
        traffic.tls(now + 0.1, device, address, name)
        now += rng.expovariate(1 / 240)


def build_demo_capture(path: Path | str, seed: int = 2026) -> Path:
    rng = random.Random(seed)
    traffic = Traffic()
    t0 = DEFAULT_START
    hour = 3600.0
    for device in (PHONE, LAPTOP, TABLET):
        _browse(traffic, rng, device, t0 + rng.uniform(0, 60), hour)

    traffic.dns(t0 + 30, PHONE, RESOLVER, "api.demospy.example",
                [("api.demospy.example", "A", DEMOSPY_SERVER)])
    beat = t0 + 31
    for _ in range(12):
        traffic.tls(beat, PHONE, DEMOSPY_SERVER, "api.demospy.example")
        beat += 300 * (1 + rng.uniform(-0.05, 0.05))
    traffic.http(t0 + 900, PHONE, DEMOSPY_LISTED_IP, DEMOSPY_LISTED_IP, "/upload")

    traffic.dns(t0 + 1200, LAPTOP, RESOLVER, "www.demospy.example",
                [("www.demospy.example", "A", "203.0.113.67")])
    traffic.http(t0 + 1201, LAPTOP, "203.0.113.67", "www.demospy.example", "/pricing")

    traffic.tls(t0 + 600, TABLET, "1.1.1.1", "one.one.one.one", port=853)
    traffic.quic(t0 + 1800, TABLET, "203.0.113.80", "sync.kidwatch.example")
    return traffic.write(path)
