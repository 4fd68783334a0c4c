"""Captures that exercise every detection, built with the project's traffic builder.

Indicators come from the real Echap feeds; each constant says what the feed
lists, and test_feeds checks those facts so a feed change is caught early.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sensor.demo.traffic import DEFAULT_START, Traffic

RESOLVER = "192.168.1.1"
PHONE = "192.168.1.10"
LAPTOP = "192.168.1.20"
TABLET_V6 = "2001:db8:1::30"
RESOLVER_V6 = "2001:db8:1::1"
VLAN_PHONE = "10.20.0.5"

C2_DOMAIN, C2_APP = "copy9.com", "TheTruthSpy"
C2_FIREBASE = "thetruth-db94a.firebaseio.com"
C2_IP, C2_IP_APP = "69.64.74.239", "TheTruthSpy"
WATCHWARE_DOMAIN, WATCHWARE_APP = "mycloud-cs10.wisemo.com", "WiseMo"
WEBSITE_DOMAIN = "exactspy.com"
RESOLVED_C2_IP = "203.0.113.50"
CNAME_TARGET_HOST = "203.0.113.51"
BEACON_SERVER = "198.51.100.200"


@dataclass(frozen=True, slots=True)
class Expected:
    """An alert the scenario must produce, by identity and count."""

    kind: str
    device: str
    indicator: str
    count: int


def build_everything(path: Path) -> tuple[Path, list[Expected]]:
    """One capture with every detection row; returns it and the alerts it must give."""
    t = Traffic()
    s = DEFAULT_START
    # C2 domain: DNS query + answer (subdomain), then TLS SNI and HTTP Host on it.
    t.dns(s, PHONE, RESOLVER, f"api.{C2_DOMAIN}", [(f"api.{C2_DOMAIN}", "A", RESOLVED_C2_IP)])
    t.tls(s + 1, PHONE, RESOLVED_C2_IP, f"api.{C2_DOMAIN}")
    t.http(s + 2, PHONE, "203.0.113.52", f"www.{C2_DOMAIN}:8080", "/upload")
    # A harmless name whose CNAME points into a C2 zone: the answer matches.
    t.dns(s + 3, LAPTOP, RESOLVER, "cdn.innocent.example",
          [("cdn.innocent.example", "CNAME", f"edge.{C2_DOMAIN}"),
           (f"edge.{C2_DOMAIN}", "A", CNAME_TARGET_HOST)])
    # DNS over TCP for a listed Firebase C2, and a lookup of the shared parent (no alert).
    t.dns(s + 4, LAPTOP, RESOLVER, C2_FIREBASE, [(C2_FIREBASE, "A", "203.0.113.53")],
          over_tcp=True)
    t.dns(s + 5, LAPTOP, RESOLVER, "firebaseio.com", [("firebaseio.com", "A", "203.0.113.54")])
    # Listed C2 IP contacted directly, without any name.
    t.tcp_connection(s + 6, PHONE, C2_IP, 8443, [b"\x00hello"], [b"\x00ok"])
    # QUIC with a C2 name; vendor website over TLS; watchware over HTTP.
    t.quic(s + 7, LAPTOP, "203.0.113.55", f"push.{C2_DOMAIN}")
    t.tls(s + 8, LAPTOP, "203.0.113.56", f"www.{WEBSITE_DOMAIN}")
    t.http(s + 9, PHONE, "203.0.113.57", WATCHWARE_DOMAIN)
    # IPv6: lookup of a C2 name (AAAA) and encrypted DNS (DoT and DoH).
    t.dns(s + 10, TABLET_V6, RESOLVER_V6, C2_DOMAIN, [(C2_DOMAIN, "AAAA", "2001:db8:ff::66")],
          rrtype="AAAA")
    t.tls(s + 11, TABLET_V6, "2001:db8:ff::53", "dns.google", port=853)
    t.tls(s + 12, PHONE, "203.0.113.58", "cloudflare-dns.com")
    # Beaconing: every 120 s +-8 %, ten times, to a server no feed lists.
    jitter = [0.03, -0.05, 0.08, -0.02, 0.0, 0.06, -0.07, 0.01, -0.04, 0.05]
    beat = s + 20
    for offset in jitter:
        t.tls(beat, PHONE, BEACON_SERVER, "updates.unlisted.example")
        beat += 120 * (1 + offset)
    # Ordinary browsing at irregular times must give nothing.
    for delay in (13, 47, 260, 290, 700, 1100):
        t.dns(s + delay, LAPTOP, RESOLVER, "www.example.org", [("www.example.org", "A",
                                                                "203.0.113.99")])
        t.tls(s + delay + 0.2, LAPTOP, "203.0.113.99", "www.example.org")
    # 802.1Q-tagged segment: a C2 lookup from a device on VLAN 20.
    t.vlan = 20
    t.dns(s + 30, VLAN_PHONE, "10.20.0.1", f"vlan.{C2_DOMAIN}", [(f"vlan.{C2_DOMAIN}", "A",
                                                                 "203.0.113.60")])
    t.vlan = None
    expected = [
        Expected("domain", PHONE, C2_DOMAIN, 4),      # query, answer, TLS, HTTP
        Expected("ip", PHONE, C2_DOMAIN, 1),          # flow to the IP api.copy9.com resolved to
        Expected("domain", LAPTOP, C2_DOMAIN, 2),     # CNAME answer, QUIC
        Expected("domain", LAPTOP, C2_FIREBASE, 2),   # query, answer over TCP
        Expected("ip", PHONE, C2_IP, 1),
        Expected("website", LAPTOP, WEBSITE_DOMAIN, 1),
        Expected("watchware", PHONE, WATCHWARE_DOMAIN, 1),
        Expected("domain", TABLET_V6, C2_DOMAIN, 2),
        Expected("encrypted_dns", TABLET_V6, "dns-over-tls", 2),   # TLS hello + flow on 853
        Expected("encrypted_dns", PHONE, "dns-over-https", 1),
        Expected("beacon", PHONE, BEACON_SERVER, 10),
        Expected("domain", VLAN_PHONE, C2_DOMAIN, 2),
    ]
    return t.write(path), expected
