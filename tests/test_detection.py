"""The detection engine on observation records: IOC rules, isolation, order independence."""

from __future__ import annotations

import logging

from sensor.alerts.book import AlertTotals
from sensor.config import Config
from sensor.detect.encrypted_dns import EncryptedDnsDetector
from sensor.detect.engine import DetectionEngine
from sensor.detect.ioc import IocDetector
from sensor.feeds.matcher import IndicatorMatcher
from sensor.feeds.model import Category, Indicator
from sensor.observations import DnsAnswer, DnsRecord, Endpoints, Flow, QuicHello, TlsHello
from sensor.wiring import build_engine, make_allowlist

MATCHER = IndicatorMatcher([Indicator("spy.example", Category.C2, "DemoSpy")])
T = 1_767_261_600.0
PHONE, LAPTOP = "192.168.1.10", "192.168.1.20"


def _answer(device: str, time: float, address: str = "203.0.113.5") -> DnsAnswer:
    return DnsAnswer(time, Endpoints(device, "192.168.1.1", 5353, 53, "udp"), "api.spy.example",
                     (DnsRecord("api.spy.example", "A", address, 60),))


def _flow(device: str, time: float, server: str = "203.0.113.5") -> Flow:
    return Flow(time, Endpoints(device, server, 40000, 443, "tcp"), time + 1)


def _kinds(totals: AlertTotals) -> set[tuple[str, str]]:
    return {(a.kind.value, a.device) for a in totals.alerts()}


def test_resolved_ip_is_watched_only_for_the_device_that_asked_and_only_for_a_while() -> None:
    engine, totals = DetectionEngine([IocDetector(MATCHER, resolved_ip_window=600)]), AlertTotals()
    totals.add(engine.observe(_answer(PHONE, T)))
    totals.add(engine.observe(_flow(LAPTOP, T + 10)))  # another device, same shared IP: none
    totals.add(engine.observe(_flow(PHONE, T + 700)))  # after the window: no alert
    totals.add(engine.observe(_flow(PHONE, T - 5)))    # before the lookup: no alert
    assert _kinds(totals) == {("domain", PHONE)}
    totals.add(engine.observe(_flow(PHONE, T + 30)))
    assert _kinds(totals) == {("domain", PHONE), ("ip", PHONE)}


def test_alerts_do_not_depend_on_record_order() -> None:
    records = [_answer(PHONE, T), _flow(PHONE, T + 1),
               TlsHello(T + 2, Endpoints(PHONE, "203.0.113.5", 40001, 443, "tcp"),
                        "x.spy.example"),
               TlsHello(T + 3, Endpoints(PHONE, "203.0.113.5", 40002, 443, "tcp"),
                        "a.spy.example")]
    forward, backward = AlertTotals(), AlertTotals()
    engine = build_engine(Config(), MATCHER)
    for record in records:
        forward.add(engine.observe(record))
    engine = build_engine(Config(), MATCHER)
    for record in [records[0], *reversed(records[1:])]:  # the answer still comes first
        backward.add(engine.observe(record))
    assert forward.alerts() == backward.alerts()
    (domain,) = [a for a in forward.alerts() if a.kind.value == "domain"]
    assert domain.observed == "api.spy.example" and domain.count == 3


class _Broken:
    name = "broken"

    def observe(self, observation: object) -> list:
        raise KeyError("boom")

    def flush(self) -> list:
        return []


def test_a_failing_detector_is_isolated_logged_once_and_counted(caplog) -> None:
    engine, totals = DetectionEngine([_Broken(), IocDetector(MATCHER)]), AlertTotals()
    with caplog.at_level(logging.ERROR):
        totals.add(engine.observe(_answer(PHONE, T)))
        totals.add(engine.observe(_answer(LAPTOP, T + 1)))
    assert _kinds(totals) == {("domain", PHONE), ("domain", LAPTOP)}
    assert engine.errors["broken"] == 2
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["detector broken failed on a record and skipped it (KeyError: 'boom'); "
                        "further errors of this kind are only counted. Please report this as a "
                        "Veilleuse bug."]


def test_encrypted_dns_allowlist_silences_the_site_resolver() -> None:
    detector = EncryptedDnsDetector(make_allowlist(["doh.shelter.example", "192.0.2.53/32"]))
    hello = TlsHello(T, Endpoints(PHONE, "192.0.2.53", 40000, 853, "tcp"),
                     "doh.shelter.example")
    assert list(detector.observe(hello)) == []
    assert list(detector.observe(Flow(T, hello.endpoints, T + 1))) == []
    other = TlsHello(T, Endpoints(PHONE, "192.0.2.99", 40000, 443, "tcp"), "abc.dns.nextdns.io")
    (finding,) = detector.observe(other)
    assert (finding.indicator, finding.observed) == ("dns-over-https", "abc.dns.nextdns.io")


def test_a_detector_without_observes_wants_every_observation_type() -> None:
    assert DetectionEngine([_Broken()]).observed_types is None
    assert DetectionEngine([EncryptedDnsDetector()]).observed_types == {TlsHello, QuicHello,
                                                                        Flow}
