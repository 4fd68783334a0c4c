"""The live reader skips DNS records of names no detector looks at, and no alert changes.

Real Suricata writes the EVE records of a capture with lookups of listed
names (directly, through a CNAME, with an mDNS announcement beside them) and
of ordinary ones, and connections to listed, learnt, encrypted-DNS and
ordinary addresses; detection reading every record and detection reading
only what ``DetectionEngine.dns_name_filter`` lets through must give the
same alerts and learn the same devices, while far fewer observations are built.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sensor.alerts.book import AlertTotals
from sensor.capture.eve import line_parser
from sensor.capture.stats import SourceStats
from sensor.capture.suricata import read_eve_lines
from sensor.config import Config
from sensor.demo.identity import mdns_announcement
from sensor.demo.traffic import DEFAULT_START, Traffic
from sensor.detect.engine import DetectionEngine
from sensor.detect.ioc import IocDetector
from sensor.devices.registry import DeviceRegistry
from sensor.feeds.model import Category, Feed, Indicator
from sensor.observations import DnsAnswer, DnsQuery, Flow, NameAnnouncement, Observation
from sensor.suricata.config import SuricataSettings, render_suricata_config
from sensor.wiring import build_engine, build_matcher
from tests.conftest import require_tool

PHONE, LAPTOP, RESOLVER = "192.168.10.21", "192.168.10.22", "192.168.10.1"
FEED = Feed(name="focus", version="1", app_count=1, indicators=(
    Indicator("c2.spy.example", Category.C2, "Spy"),
    Indicator("198.51.100.99", Category.C2, "Spy", is_ip=True),
))


def _capture(path: Path) -> Path:
    traffic, t0 = Traffic(), DEFAULT_START
    for minute in range(30):  # ordinary browsing: what the filter spares
        for device in (PHONE, LAPTOP):
            name = f"www.site{minute % 7}.example"
            traffic.dns(t0 + 60 * minute, device, RESOLVER, name, [(name, "A", "203.0.113.9")])
            traffic.tls(t0 + 60 * minute + 0.2, device, "203.0.113.9", name)
    traffic.dns(t0 + 100, PHONE, RESOLVER, "sync.c2.spy.example",  # a listed name's child
                [("sync.c2.spy.example", "A", "203.0.113.66")])
    traffic.tls(t0 + 101, PHONE, "203.0.113.66", "cdn.unrelated.example")  # learnt IP
    traffic.dns(t0 + 200, LAPTOP, RESOLVER, "harmless.example",  # listed only as a CNAME target
                [("harmless.example", "CNAME", "c2.spy.example")])
    traffic.dns(t0 + 300, LAPTOP, RESOLVER, "nothing-answers.example")  # a query, no answer
    traffic.tls(t0 + 400, LAPTOP, "198.51.100.99", "listed-ip.example")  # listed by address
    traffic.udp_exchange(t0 + 410, PHONE, "198.51.100.99", 4500, b"x" * 40, b"y" * 40)
    traffic.quic(t0 + 420, PHONE, "203.0.113.66", "cdn.unrelated.example")  # learnt, over UDP
    # ... and on a port beaconing ignores: only the learnt address makes it count.
    traffic.udp_exchange(t0 + 425, PHONE, "203.0.113.66", 123, b"z" * 48, b"w" * 48)
    traffic.tls(t0 + 430, LAPTOP, "1.1.1.1", "one.one.one.one", port=853)  # DNS over TLS
    traffic.tls(t0 + 440, LAPTOP, "8.8.8.8", "")  # DNS over HTTPS by address, no name
    mdns_announcement(traffic, t0 + 5, "3c:2e:ff:00:00:01", "Galaxy-A52.local", PHONE)
    return traffic.write(path)


@pytest.fixture(scope="module")
def eve_lines(tmp_path_factory) -> list[bytes]:
    suricata = require_tool("suricata")
    workdir = tmp_path_factory.mktemp("focus")
    config = workdir / "suricata.yaml"
    config.write_text(render_suricata_config(SuricataSettings(binary=suricata), workdir))
    subprocess.run([suricata, "-c", str(config), "-r", str(_capture(workdir / "c.pcap")),
                    "-l", str(workdir), "-k", "none", "--disable-detection",
                    "--runmode", "single"], check=True, capture_output=True)
    return (workdir / "eve.json").read_bytes().splitlines()


def _engine() -> DetectionEngine:
    config = Config()
    return build_engine(config, build_matcher([FEED], config), DeviceRegistry())


def _detect(lines: list[bytes], focused: bool) -> tuple[DetectionEngine, AlertTotals, int]:
    engine, totals, stats = _engine(), AlertTotals(), SourceStats("focus")
    for start in range(0, len(lines), 50):  # batches, as the daemon reads them
        names = engine.dns_name_filter if focused else None
        for observation in read_eve_lines(lines[start:start + 50], stats,
                                          engine.observed_types, names):
            totals.add(engine.observe(observation))
    totals.add(engine.flush())
    return engine, totals, stats.observations


def test_skipping_dns_records_of_unwanted_names_changes_no_alert(eve_lines) -> None:
    every, every_totals, every_built = _detect(eve_lines, focused=False)
    focused, focused_totals, focused_built = _detect(eve_lines, focused=True)
    seen = {(a.indicator, a.kind.value, a.device, a.count) for a in every_totals.alerts()}
    assert {(a.indicator, a.kind.value, a.device, a.count) for a in focused_totals.alerts()} \
        == seen
    indicators = {indicator for indicator, *_ in seen}
    assert {"c2.spy.example", "198.51.100.99", "dns-over-tls", "dns-over-https"} <= \
        indicators, seen
    assert any(a.indicator == "198.51.100.99" and PHONE in a.addresses
               for a in focused_totals.alerts()), "a listed address over UDP"
    assert any(details for a in every_totals.alerts() for details in a.details
               if details[0] == "resolved_from"), "the learnt address still alerts"
    assert focused.devices is not None and every.devices is not None
    assert focused.devices.identity(focused.devices.key_for(PHONE, DEFAULT_START + 600)) == \
        every.devices.identity(every.devices.key_for(PHONE, DEFAULT_START + 600))
    assert focused_built < every_built - 100, (focused_built, every_built)


def test_the_filter_keeps_what_a_detector_reads_in_a_dns_record(eve_lines) -> None:
    names = _engine().dns_name_filter
    assert names is not None
    parse = line_parser(None, names)
    kept = [observation for line in eve_lines for observation in parse(line)]
    queried = {o.name for o in kept if isinstance(o, DnsQuery)}
    answered = {o.query_name for o in kept if isinstance(o, DnsAnswer)}
    assert queried == {"sync.c2.spy.example"}
    assert answered == {"sync.c2.spy.example", "harmless.example"}  # the CNAME's answer
    assert any(isinstance(o, NameAnnouncement) for o in kept), "mDNS is always read"
    servers = {o.endpoints.server for o in kept if isinstance(o, Flow)}
    assert {RESOLVER, "198.51.100.99", "1.1.1.1", "8.8.8.8"} <= servers, \
        "flows are never filtered by name"


def test_a_detector_that_does_not_say_which_names_it_wants_gets_them_all() -> None:
    class EveryName:
        name, observes = "every-name", (DnsQuery,)

        def observe(self, observation: Observation) -> tuple:
            return ()

        def flush(self) -> tuple:
            return ()

    config = Config()
    listed = IocDetector(build_matcher([FEED], config))
    assert DetectionEngine([listed]).dns_name_filter is not None
    assert DetectionEngine([listed, EveryName()]).dns_name_filter is None
    wants = DetectionEngine([listed]).dns_name_filter
    assert wants is not None
    assert wants("C2.Spy.Example.") and wants("a.b.c2.spy.example")
    assert not wants("spy.example") and not wants("c2.spy.example.org")
