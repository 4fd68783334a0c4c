"""Every detection row, through every capture source, with the real Echap feeds.

The same pcap through Suricata, tshark and scapy must give the same alerts:
same ids, kinds, indicators, counts and protocols. Times may differ by the
length of a handshake: Suricata stamps a TLS or HTTP record when the
handshake or transaction completes, the packet sources at the first packet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.analysis import analyze_capture
from sensor.config import Config
from sensor.detect.model import Alert
from sensor.wiring import build_engine, open_source
from tests.conftest import require_tool
from tests.scenarios import Expected, build_everything

SOURCES = ("suricata", "tshark", "scapy")
TOOL = {"suricata": "suricata", "tshark": "tshark", "scapy": None}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Expected]]:
    return build_everything(tmp_path_factory.mktemp("parity") / "everything.pcap")


@pytest.fixture(scope="module")
def results(scenario, echap_matcher) -> dict[str, list[Alert]]:
    capture, _ = scenario
    alerts = {}
    for name in SOURCES:
        if TOOL[name]:
            require_tool(TOOL[name])
        engine = build_engine(Config(), echap_matcher)
        alerts[name] = list(analyze_capture(capture, open_source(name, Config()), engine).alerts)
    return alerts


def _identity(alert: Alert) -> Expected:
    return Expected(alert.kind.value, alert.device, alert.indicator, alert.count)


@pytest.mark.parametrize("source", SOURCES)
def test_source_finds_exactly_the_expected_alerts(source, scenario, results) -> None:
    _, expected = scenario
    assert sorted(map(_identity, results[source]), key=repr) == sorted(expected, key=repr)


def test_sources_agree_on_every_alert(results) -> None:
    reference = {alert.id: alert for alert in results["scapy"]}
    for source in ("suricata", "tshark"):
        other = {alert.id: alert for alert in results[source]}
        assert other.keys() == reference.keys(), source
        for alert_id, alert in other.items():
            mine = reference[alert_id]
            assert (alert.kind, alert.severity, alert.device, alert.indicator, alert.observed,
                    alert.app, alert.protocols, alert.count) == \
                   (mine.kind, mine.severity, mine.device, mine.indicator, mine.observed,
                    mine.app, mine.protocols, mine.count), (source, alert_id)
            assert abs(alert.first_seen - mine.first_seen) < 1.0, (source, alert)
            assert abs(alert.last_seen - mine.last_seen) < 1.0, (source, alert)


def test_alert_fields_tell_what_was_seen(results) -> None:
    by_key = {(a.kind.value, a.device, a.indicator): a for a in results["suricata"]}
    phone_c2 = by_key[("domain", "192.168.1.10", "copy9.com")]
    assert phone_c2.app == "TheTruthSpy"
    assert phone_c2.severity.value == "high"
    assert phone_c2.protocols == ("dns", "http", "tls")
    assert phone_c2.observed == "api.copy9.com"
    resolved = by_key[("ip", "192.168.1.10", "copy9.com")]
    assert resolved.observed == "203.0.113.50"
    assert dict(resolved.details)["resolved_from"] == "api.copy9.com"
    assert by_key[("website", "192.168.1.20", "exactspy.com")].severity.value == "low"
    assert by_key[("watchware", "192.168.1.10", "mycloud-cs10.wisemo.com")].severity.value == \
        "medium"
    assert by_key[("encrypted_dns", "2001:db8:1::30", "dns-over-tls")].severity.value == "info"
    beacon = by_key[("beacon", "192.168.1.10", "198.51.100.200")]
    assert dict(beacon.details)["interval_s"] == "120"
    assert beacon.first_seen == pytest.approx(1_767_261_620.0, abs=0.01)
