"""STIX 2.1 and MISP feeds: Echap's data through STIX, a helpline's MISP event, hostile files."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from sensor.demo.traffic import DEFAULT_START, Traffic
from sensor.errors import FeedError
from sensor.feeds.formats import detect_format, load_feed
from sensor.feeds.model import Category
from sensor.feeds.names import indicator_domain
from tests.conftest import require_tool
from tests.feedfiles import (
    echap_style_stix,
    misp_attribute,
    misp_event,
    stix_bundle,
    stix_indicator,
    stix_malware,
)
from tests.test_cli import veilleuse


def _echap_lists(ioc_yaml) -> dict[str, set[str]]:
    lists: dict[str, set[str]] = {"c2.domains": set(), "c2.ips": set(), "other": set()}
    for app in yaml.safe_load(ioc_yaml.read_text()):
        c2 = app.get("c2") or {}
        lists["c2.domains"] |= set(c2.get("domains") or ())
        lists["c2.ips"] |= set(c2.get("ips") or ()) | set(c2.get("ip") or ())
        lists["other"] |= set(app.get("websites") or ()) | set(app.get("distribution") or ())
    return lists


def _name(value: str) -> str | None:
    try:
        return indicator_domain(value)
    except ValueError:
        return None


def test_echap_stix_gives_the_c2_domains_of_ioc_yaml_and_its_precise_difference(
        echap_files) -> None:
    # Echap's generator writes one pattern per `domain` row of network.csv: every C2 domain
    # of ioc.yaml, plus distribution hosts (one is an address), and no c2.ips at all; all
    # are marked malicious-activity alike, so STIX cannot tell a download site from a C2.
    # Two distribution rows are GitHub URLs written as domain-name values: skipped.
    content = echap_style_stix(echap_files[0].parent / "network.csv")
    started = time.perf_counter()
    feed = load_feed(content, "stalkerware.stix2", "stix2")
    notes = "\n".join(feed.warnings)
    elapsed = time.perf_counter() - started
    lists = _echap_lists(echap_files[0])
    domains = {i.value for i in feed.indicators if not i.is_ip}
    ips = {i.value for i in feed.indicators if i.is_ip}
    c2_domains = {indicator_domain(d) for d in lists["c2.domains"]}
    assert c2_domains <= domains
    assert domains - c2_domains <= {_name(d) for d in lists["other"]}
    assert len(domains - c2_domains) == 32  # 35 other rows, less 2 URLs and 1 address
    assert ips == {"178.63.71.15"} and not ips & lists["c2.ips"]
    assert {i.category for i in feed.indicators} == {Category.C2}
    apps = {i.app for i in feed.indicators if i.value == "copy9.com"}
    assert apps == {"thetruthspy"}  # Echap lower-cases app names in its STIX
    assert feed.rejected == 2
    assert notes.count("'https://github.com/") == 2 * 2
    assert elapsed < 10, f"{feed.indicator_count} indicators took {elapsed:.1f} s"


def test_stix_patterns_or_and_sets_urls_and_what_is_ignored() -> None:
    spy = stix_malware("SpyPhone Pro")
    watch = stix_malware("KidWatch", "Parental monitoring app (watchware)")
    objects = [spy, watch,
               *stix_indicator("[domain-name:value = 'api.spy.example' OR "
                               "url:value = 'https://cdn.spy.example:8443/app.apk'] OR "
                               "[ipv4-addr:value = '198.51.100.7']", spy),
               *stix_indicator("[ipv6-addr:value IN ('2001:db8::7', '2001:db8::8')]", spy),
               *stix_indicator("[network-traffic:dst_ref.type = 'ipv4-addr' AND "
                               "network-traffic:dst_ref.value = '203.0.113.9']", spy),
               *stix_indicator("[domain-name:value = 'buy.spy.example']", spy,
                               labels=["website"]),
               *stix_indicator("[domain-name:value = 'sync.kidwatch.example']", watch),
               *stix_indicator("[file:hashes.'SHA-256' = "
                               "'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']"
                               " OR [app:id = 'com.spy.phone']", spy),
               *stix_indicator("[domain-name:value LIKE '%.spy.example']", spy),
               *stix_indicator("[domain-name:value = 'benign.example']",
                               indicator_types=["benign"])]
    feed = load_feed(stix_bundle(objects), "helpline.json", "stix2")
    notes = "\n".join(feed.warnings)
    found = {(i.value, i.category, i.app) for i in feed.indicators}
    assert found == {
        ("api.spy.example", Category.C2, "SpyPhone Pro"),
        ("cdn.spy.example", Category.C2, "SpyPhone Pro"),
        ("198.51.100.7", Category.C2, "SpyPhone Pro"),
        ("2001:db8::7", Category.C2, "SpyPhone Pro"),
        ("2001:db8::8", Category.C2, "SpyPhone Pro"),
        ("203.0.113.9", Category.C2, "SpyPhone Pro"),
        ("buy.spy.example", Category.WEBSITE, "SpyPhone Pro"),
        ("sync.kidwatch.example", Category.WATCHWARE, "KidWatch")}
    assert notes.count("ignored what cannot be matched on the wire") == 1
    assert ("helpline.json: ignored what cannot be matched on the wire: 1 app comparisons, "
            "1 benign indicators, 1 domain-name comparisons other than = and IN, "
            "1 file comparisons") in notes


def test_hostile_stix_values_are_skipped_with_their_object_id() -> None:
    spy = stix_malware("Spy\x1b[2J\nApp")
    good = stix_indicator("[domain-name:value = 'good.spy.example']", spy)
    scoped = stix_indicator("[ipv6-addr:value = 'fe80::1%eth0']", spy)
    long_label = stix_indicator(f"[domain-name:value = '{'a' * 64}.example']", spy)
    quote = stix_indicator("[domain-name:value = 'x\";alert.example']", spy)
    broken = stix_indicator("[domain-name:value = ", spy)
    control = stix_indicator("[url:value = 'http://evil\n.example/']", spy)
    not_text = [{**stix_indicator("[x:y = 'z']")[0], "pattern": 42}]
    nested = stix_indicator("(" * 3000 + "[domain-name:value = 'n.example']" + ")" * 3000, spy)
    huge = stix_indicator(f"[domain-name:value = '{'a' * 20_000}.example']", spy)
    objects = [spy, *good, *scoped, *long_label, *quote, *broken, *not_text, "junk", *control,
               *nested, *huge]
    feed = load_feed(stix_bundle(objects), "hostile.json", "stix2")
    notes = "\n".join(feed.warnings)
    assert [(i.value, i.app) for i in feed.indicators] == [("good.spy.example", "Spy [2J App")]
    assert feed.rejected == 9
    index = {o["id"]: n for n, o in enumerate(objects) if isinstance(o, dict)}
    for (indicator, *_), reason in [(scoped, "has an interface scope"),
                                   (long_label, "is longer than 63 characters"),
                                   (quote, "holds a character a domain name cannot"),
                                   (broken, "not a STIX 2.1 pattern"),
                                   (not_text, "the pattern is not text"),
                                   (control, "holds control or invisible characters"),
                                   (nested, "a pattern nested too deeply"),
                                   (huge, "a pattern of 20032 characters (more than 16384)")]:
        where = f"hostile.json, {indicator['id']} (objects[{index[indicator['id']]}]): skipped"
        assert where in notes and reason in notes.split(where, 1)[1].split("\n")[0]
    assert f"hostile.json, objects[{objects.index('junk')}]: skipped: not a STIX object: 'junk'" \
        in notes
    assert "app name 'Spy\\x1b[2J\\nApp' cleaned to 'Spy [2J App'" in notes


@pytest.mark.parametrize(("content", "message", "line"), [
    (b'{"type": "bundle", "objects": [', "not valid JSON", 1),
    (b'{"type": "bundle",\n "objects": {}}', "expected a list of STIX objects", None),
    (b'{"type": "indicator"}', "expected a STIX 2.1 bundle", 1),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply", None),
    (b"\xff\xfe{}", "not UTF-8", None),
])
def test_unusable_stix_files_are_refused_saying_why(content, message, line) -> None:
    with pytest.raises(FeedError, match=message) as caught:
        load_feed(content, "x.json", "stix2")
    assert caught.value.line == line


def _helpline_event() -> bytes:
    app = {"name": "android-app", "meta-category": "file", "uuid": "0b6b7c1e-obj",
           "description": "Indicators related to an Android app",
           "Attribute": [misp_attribute("text", "MonitorMinor", "Other", to_ids=False,
                                        object_relation="name"),
                         misp_attribute("domain", "api.monitorminor.example",
                                        object_relation="domain"),
                         misp_attribute("sha256", "ab" * 32, "Payload delivery",
                                        object_relation="sha256")]}
    stalker = {"name": "Stalkerware", "type": "stalkerware",
               "GalaxyCluster": [{"value": "Cerberus", "type": "stalkerware"}]}
    return misp_event("Stalkerware seen at the helpline, November 2026", [
        misp_attribute("domain|ip", "c2.cerberus.example|198.51.100.20", Galaxy=[stalker]),
        misp_attribute("hostname", "push.cerberus.example",
                       Tag=[{"name": 'misp-galaxy:stalkerware="Cerberus"'}]),
        misp_attribute("url", "https://dl.cerberus.example/cerberus.apk", "Payload delivery"),
        misp_attribute("ip-dst|port", "203.0.113.21|8443"),
        misp_attribute("ip-src", "2001:db8::21"),
        misp_attribute("domain", "198.51.100.22"),  # Echap's event types one address so
        misp_attribute("domain", "analytics.cerberus.example", to_ids=False),
        misp_attribute("domain", "family.kidwatch.example",
                       Tag=[{"name": "veilleuse:watchware"}]),
        misp_attribute("domain", "old.cerberus.example", deleted=True),
        misp_attribute("email-src", "support@cerberus.example", "Attribution"),
        misp_attribute("link", "https://helpline.example/report", "External analysis",
                       to_ids=False)], [app],
        Tag=[{"name": "tlp:amber"}])


def test_a_helpline_misp_event_loads_with_apps_and_categories() -> None:
    content = _helpline_event()
    assert detect_format(content) == "misp"
    feed = load_feed(content, "helpline-event.json", "misp")
    notes = "\n".join(feed.warnings)
    found = {(i.value, i.category, i.app) for i in feed.indicators}
    event = "Stalkerware seen at the helpline, November 2026"
    assert found == {
        ("c2.cerberus.example", Category.C2, "Cerberus"),
        ("198.51.100.20", Category.C2, "Cerberus"),
        ("push.cerberus.example", Category.C2, "Cerberus"),
        ("dl.cerberus.example", Category.WEBSITE, event),
        ("203.0.113.21", Category.C2, event),
        ("2001:db8::21", Category.C2, event),
        ("198.51.100.22", Category.C2, event),
        ("family.kidwatch.example", Category.WATCHWARE, event),
        ("api.monitorminor.example", Category.C2, "MonitorMinor")}
    assert ("helpline-event.json: ignored what cannot be matched on the wire: "
            "1 'email-src' attributes, 1 'link' attributes, 1 'sha256' attributes, "
            "1 attributes not meant for detection (to_ids false), 1 deleted attributes"
            ) in notes


@pytest.mark.parametrize("envelope", ["Event", "response", "bare", "list"])
def test_every_misp_json_envelope_reads_the_same(envelope) -> None:
    event = json.loads(_helpline_event())["Event"]
    document = {"Event": {"Event": event}, "response": {"response": [{"Event": event}]},
                "bare": event, "list": [{"Event": event}]}[envelope]
    feed = load_feed(json.dumps(document).encode(), "x.json", "misp")
    assert feed.indicator_count == 9


def test_hostile_misp_values_are_skipped_with_their_attribute() -> None:
    attributes = [misp_attribute("domain", "good.spy.example"),
                  misp_attribute("domain", "bad\u202e.example"),
                  misp_attribute("ip-dst", "10.0.0.0/8"),
                  misp_attribute("domain|ip", "only-one-part.example"),
                  misp_attribute("url", "http://[::1"),
                  {**misp_attribute("hostname", "x.example"), "value": ["x.example"]},
                  "junk"]
    feed = load_feed(misp_event("Spy", attributes), "hostile.json", "misp")
    notes = "\n".join(feed.warnings)
    assert [i.value for i in feed.indicators] == ["good.spy.example"]
    assert feed.rejected == 6
    for index, reason in [(1, "holds control or invisible characters"),
                          (2, "is a network; list single addresses"),
                          (3, "a domain|ip value needs 2 parts separated by '|'"),
                          (4, "not a URL"),
                          (5, "expected text, got ['x.example']")]:
        where = (f"hostile.json, attribute {attributes[index]['uuid']} "
                 f"(Event.Attribute[{index}]): skipped: ")
        assert where in notes
        assert reason in notes.split(where, 1)[1].split("\n")[0]
    assert "hostile.json, Event.Attribute[6]: skipped: not a MISP attribute: 'junk'" \
        in notes


def test_a_misp_feed_manifest_is_refused_with_what_to_give_instead() -> None:
    manifest = {"5e7a1b2c-uuid": {"info": "Stalkerware", "date": "2026-11-02",
                                  "Orgc": {"name": "Helpline"}, "Tag": []}}
    with pytest.raises(FeedError, match=r"MISP feed manifest.*one event file of the feed"):
        load_feed(json.dumps(manifest).encode(), "manifest.json", "misp")


def test_formats_are_recognised_from_the_content(echap_files) -> None:
    assert detect_format(echap_files[0].read_bytes()) == "echap"
    assert detect_format(b"[]\n") == "echap"
    assert detect_format(stix_bundle([])) == "stix2"
    assert detect_format(b'  {"response": []}') == "misp"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("source", ["scapy", "suricata"])
def test_analyze_alerts_on_an_indicator_only_a_stix_feed_lists(tmp_path, source) -> None:
    if source == "suricata":
        require_tool("suricata")
    spy = stix_malware("HelplineSpy")
    bundle = tmp_path / "helpline.stix2"
    bundle.write_bytes(stix_bundle([spy, *stix_indicator(
        "[domain-name:value = 'sync.helplinespy.example' OR ipv4-addr:value = '198.51.100.77']",
        spy)]))
    traffic = Traffic()
    traffic.dns(DEFAULT_START, "192.168.1.10", "192.168.1.1", "eu.sync.helplinespy.example",
                [("eu.sync.helplinespy.example", "A", "203.0.113.70")])
    traffic.tcp_connection(DEFAULT_START + 5, "192.168.1.10", "198.51.100.77", 443,
                           [b"\x16\x03\x01"], [b"\x16\x03\x03"])
    capture = traffic.write(tmp_path / "stix-only.pcap")
    result = veilleuse("analyze", str(capture), "--source", source, "--feed", str(bundle),
                       "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    alerts = {(r["indicator"], r["app"], r["severity"])
              for r in map(json.loads, result.stdout.splitlines())}
    assert {("sync.helplinespy.example", "HelplineSpy", "high"),
            ("198.51.100.77", "HelplineSpy", "high")} <= alerts
