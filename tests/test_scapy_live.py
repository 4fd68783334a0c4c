"""The scapy "lite" live source on a veth pair, fed by tcpreplay: the same alerts as offline."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from sensor.alerts.book import AlertTotals
from sensor.analysis import analyze_capture
from sensor.capture.scapy_live import ScapyLiveSource
from sensor.config import Config
from sensor.demo.traffic import DEFAULT_START, Traffic
from sensor.observations import DnsQuery
from sensor.wiring import build_engine, open_source
from tests.conftest import require_tool
from tests.scenarios import (
    C2_DOMAIN,
    C2_FIREBASE,
    C2_IP,
    LAPTOP,
    PHONE,
    RESOLVER,
    RESOLVER_V6,
    TABLET_V6,
    WATCHWARE_DOMAIN,
    WEBSITE_DOMAIN,
)

SENTINEL = "end-of-replay.veilleuse.test"


def _capture(path: Path) -> Path:
    t = Traffic()
    s = DEFAULT_START
    t.dns(s, PHONE, RESOLVER, f"api.{C2_DOMAIN}", [(f"api.{C2_DOMAIN}", "A", "203.0.113.50")])
    t.tls(s + 1, PHONE, "203.0.113.50", f"api.{C2_DOMAIN}")
    t.http(s + 2, PHONE, "203.0.113.57", WATCHWARE_DOMAIN)
    t.tcp_connection(s + 3, PHONE, C2_IP, 8443, [b"\x00hello"], [b"\x00ok"])
    t.quic(s + 4, LAPTOP, "203.0.113.55", f"push.{C2_DOMAIN}")
    t.tls(s + 5, LAPTOP, "203.0.113.56", f"www.{WEBSITE_DOMAIN}")
    t.dns(s + 6, LAPTOP, RESOLVER, C2_FIREBASE, [(C2_FIREBASE, "A", "203.0.113.53")],
          over_tcp=True)
    t.dns(s + 7, TABLET_V6, RESOLVER_V6, C2_DOMAIN, [(C2_DOMAIN, "AAAA", "2001:db8:ff::66")],
          rrtype="AAAA")
    t.tls(s + 8, TABLET_V6, "2001:db8:ff::53", "dns.google", port=853)
    t.http(s + 9, TABLET_V6, "2001:db8:ff::80", f"www.{C2_DOMAIN}")
    t.vlan = 20
    t.dns(s + 10, "10.20.0.5", "10.20.0.1", f"vlan.{C2_DOMAIN}",
          [(f"vlan.{C2_DOMAIN}", "A", "203.0.113.60")])
    return t.write(path)


def _identities(alerts) -> set[tuple[str, str, str, int]]:
    return {(a.kind.value, a.device, a.indicator, a.count) for a in alerts}


def test_live_sniffing_finds_what_offline_analysis_finds(tmp_path, veth, echap_matcher) -> None:
    require_tool("tcpreplay")
    host, namespace = veth
    capture = _capture(tmp_path / "live.pcap")
    sentinel = Traffic()
    sentinel.dns(DEFAULT_START + 60, PHONE, RESOLVER, SENTINEL)
    end = sentinel.write(tmp_path / "sentinel.pcap")

    source = ScapyLiveSource(host)
    engine, totals = build_engine(Config(), echap_matcher), AlertTotals()
    stop, seen_sentinel = threading.Event(), threading.Event()

    def consume() -> None:
        for observation in source.read(stop):
            if isinstance(observation, DnsQuery) and observation.name == SENTINEL:
                seen_sentinel.set()
                stop.set()
                continue
            totals.add(engine.observe(observation))

    reader = threading.Thread(target=consume)
    reader.start()
    try:
        assert source.started.wait(10), "the sniffer did not start"
        for pcap in (capture, end):
            subprocess.run(["ip", "netns", "exec", namespace, "tcpreplay", "-q", "--topspeed",
                            "-i", host.replace("vlh", "vli"), str(pcap)], check=True,
                           capture_output=True)
        assert seen_sentinel.wait(20), "the replayed traffic did not reach the sniffer"
    finally:
        stop.set()
        reader.join(20)
    totals.add(engine.flush())
    offline = analyze_capture(capture, open_source("scapy", Config()),
                              build_engine(Config(), echap_matcher))
    assert _identities(totals.alerts()) == _identities(offline.alerts)
    assert len(offline.alerts) >= 9
    assert source.stats.skipped_total == 0
    assert source.stats.records < 100, "the kernel filter should pass only what detection reads"
