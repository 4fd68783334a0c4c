"""Which phone is it: devices learnt from the traffic, and alerts keyed by device.

Captures are built with scapy (DHCP, neighbour discovery, mDNS, then DNS to
a C2) and read by every source; the maker is checked against netaddr's own
copy of the IEEE registry, not a table written here.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import jsonschema
import netaddr
import pytest

from screen.model import ScreenState, apply_message
from sensor.alerts.book import AlertBook
from sensor.alerts.pseudonym import Pseudonymizer
from sensor.analysis import analyze_capture
from sensor.cli import main
from sensor.config import Config, load_config
from sensor.demo.identity import dhcp_lease, mdns_announcement, neighbour_discovery
from sensor.demo.traffic import DEFAULT_START, Traffic
from sensor.detect.model import AlertKind, alert_id
from sensor.devices.makers import oui_registry
from sensor.devices.registry import DeviceRegistry
from sensor.feeds.store import load_feed_file
from sensor.messages import load_catalogue
from sensor.observations import DhcpLease, NameAnnouncement, NeighbourAdvert
from sensor.outputs.delivery import AlertQueue
from sensor.outputs.outgoing import alert_payload, outgoing_alert
from sensor.report import all_catalogues, write_text
from sensor.reports.device_page import ClockState, Provenance, build_device_page
from sensor.wire.topics import Topics
from sensor.wiring import build_engine, build_matcher, open_source, pseudonymizer
from tests.conftest import REPO, require_tool

SOURCES = ("suricata", "tshark", "scapy")
C2 = "c2.phonespy.example"
PHONE = "28:39:5e:12:34:56"  # a Samsung OUI in the IEEE registry
PRIVATE = "da:a1:19:7e:00:02"  # locally administered: a randomized Wi-Fi address
ROUTED = "10.9.0.5"  # behind a router: no MAC of its own reaches the mirror


def _feed(path: Path) -> Path:
    path.write_text(f"- name: PhoneSpy\n  type: stalkerware\n  c2:\n    domains:\n    - {C2}\n")
    return path


def _lookups(traffic: Traffic, start: float, device: str, times: int) -> None:
    resolver = "192.168.1.1"
    for index in range(times):
        traffic.dns(start + 60 * index, device, resolver, C2, [(C2, "A", "203.0.113.5")],
                    transaction_id=0x1000 + index)


def build_shelter(path: Path) -> Path:
    """A phone leased .23 that keeps calling the C2 and gets .42 halfway; a second phone
    with a randomized MAC known by its mDNS name; a routed device with no MAC to see."""
    traffic, start = Traffic(), DEFAULT_START
    dhcp_lease(traffic, start, PHONE, "192.168.1.23", host_name="Galaxy-A52",
               vendor_class="android-dhcp-13")
    neighbour_discovery(traffic, start + 1, PHONE, "fe80::2a39:5eff:fe12:3456")
    _lookups(traffic, start + 10, "192.168.1.23", 3)
    dhcp_lease(traffic, start + 600, PHONE, "192.168.1.42", host_name="Galaxy-A52",
               vendor_class="android-dhcp-13", transaction_id=0x55)
    _lookups(traffic, start + 700, "192.168.1.42", 3)
    dhcp_lease(traffic, start + 5, PRIVATE, "192.168.1.77", transaction_id=0x77)
    mdns_announcement(traffic, start + 6, PRIVATE, "Pixel-de-Lea.local", "192.168.1.77")
    _lookups(traffic, start + 20, "192.168.1.77", 2)
    _lookups(traffic, start + 30, ROUTED, 2)
    return traffic.write(path)


@pytest.fixture(scope="module")
def shelter(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("devices")
    return build_shelter(directory / "shelter.pcap"), _feed(directory / "feed.yaml")


def _analyse(capture: Path, feed: Path, source: str):
    config = Config()
    engine = build_engine(config, build_matcher([load_feed_file(feed)], config))
    result = analyze_capture(capture, open_source(source, config), engine)
    return result, engine


@pytest.mark.parametrize("source", SOURCES)
def test_a_phone_that_changes_address_is_one_device_with_one_alert(shelter, source) -> None:
    if source != "scapy":
        require_tool(source)
    result, engine = _analyse(*shelter, source)
    domain = {alert.device: alert for alert in result.alerts if alert.kind is AlertKind.DOMAIN}
    assert sorted(domain) == sorted([PHONE, PRIVATE, ROUTED])
    phone = domain[PHONE]
    assert phone.id == alert_id(PHONE, AlertKind.DOMAIN, C2)  # the same with every source
    assert phone.addresses == ("192.168.1.23", "192.168.1.42")
    assert phone.count == 12  # 6 lookups, each a query and an answer
    assert phone.identity.name == "Galaxy-A52"
    assert phone.identity.vendor_class == "android-dhcp-13"
    registered = netaddr.EUI(PHONE).oui.registration().org  # the package's IEEE data
    assert registered.startswith(phone.identity.maker) and phone.identity.maker == "Samsung"
    assert not phone.identity.randomized
    private = domain[PRIVATE]
    assert private.identity.randomized and private.identity.maker is None
    assert private.identity.name == "Pixel-de-Lea"  # learnt from mDNS only
    assert domain[ROUTED].identity is None and domain[ROUTED].addresses == (ROUTED,)
    learnt = engine.devices.device(PHONE)
    assert "fe80::2a39:5eff:fe12:3456" in learnt.addresses  # neighbour discovery


def test_the_report_names_the_phone_and_its_maker(shelter) -> None:
    result, _ = _analyse(*shelter, "scapy")
    for language, wanted in (("en", "Device Galaxy-A52 (Samsung), 192.168.1.23, 192.168.1.42"),
                             ("fr", "L'appareil Galaxy-A52 (Samsung), 192.168.1.23, "
                                    "192.168.1.42")):
        stream = io.StringIO()
        write_text(list(result.alerts), stream, load_catalogue(language), capture="c",
                   source="scapy", observations=result.observations, feeds="f")
        text = " ".join(stream.getvalue().split())
        assert wanted in text
        assert PRIVATE in text  # the randomized address is named as such, in both languages
        assert ("private (randomized) Wi-Fi address" if language == "en"
                else "adresse Wi-Fi privée (aléatoire)") in text


def _validator():
    schema = json.loads((REPO / "docs" / "schemas" / "alert.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_names_and_macs_leave_the_box_only_if_the_site_opts_in(shelter) -> None:
    result, _ = _analyse(*shelter, "scapy")
    phone = next(alert for alert in result.alerts if alert.device == PHONE)
    pseudonyms = Pseudonymizer(b"k" * 32)
    catalogues = all_catalogues()
    validator = _validator()

    def payload(pseudo, share):
        text = alert_payload(phone, catalogues, site="s", sensor="b", pseudonyms=pseudo,
                             queued_at=DEFAULT_START, share_identity=share)
        validator.validate(json.loads(text))
        return text, json.loads(text)

    text, record = payload(pseudonyms, False)
    assert record["device"] == pseudonyms.device(PHONE)  # keyed on the MAC: one per phone
    assert record["addresses"] == [] and record["device_identity"] is None
    for secret in (PHONE, "Galaxy-A52", "Samsung", "192.168.1.23"):
        assert secret not in text
    text, record = payload(pseudonyms, True)
    assert record["device"] == pseudonyms.device(PHONE)
    assert record["device_identity"]["name"] == "Galaxy-A52"
    assert record["device_identity"]["mac"] == PHONE and "192.168.1.23" not in text
    _, record = payload(None, False)  # addresses shared, identities not
    assert record["device"] == "192.168.1.23" and PHONE not in json.dumps(record)
    assert outgoing_alert(phone, None, True).device == PHONE


def test_an_address_belongs_to_the_mac_that_last_leased_it() -> None:
    registry = DeviceRegistry()
    registry.observe(DhcpLease(100.0, PHONE, "ack", "192.168.1.23"))
    registry.observe(DhcpLease(200.0, PRIVATE, "ack", "192.168.1.23"))
    assert registry.key_for("192.168.1.23", 50.0) == "192.168.1.23"  # before any lease
    assert registry.key_for("192.168.1.23", 150.0) == PHONE
    assert registry.key_for("192.168.1.23", 250.0) == PRIVATE
    registry.observe(NeighbourAdvert(300.0, PHONE, "2001:db8::23"))
    registry.observe(NameAnnouncement(301.0, "Galaxy-A52", "2001:db8::23"))
    assert registry.identity(PHONE).name == "Galaxy-A52"
    assert registry.device(PHONE).addresses == ("2001:db8::23", "192.168.1.23")


def test_the_registry_is_bounded_and_forgets_stale_devices() -> None:
    registry = DeviceRegistry(max_devices=100, stale_after=3600.0)
    for index in range(250):
        mac = f"02:00:00:00:{index >> 8:02x}:{index & 0xff:02x}"
        registry.observe(DhcpLease(1000.0 + index, mac, "ack", f"10.0.{index >> 8}.{index & 0xff}"))
    assert len(registry) == 100 and registry.evicted == 150
    assert registry.key_for("10.0.0.0", 2000.0) == "10.0.0.0"  # its owner was evicted
    assert registry.key_for("10.0.0.249", 2000.0) == "02:00:00:00:00:f9"
    registry.observe(DhcpLease(1249.0 + 3601.0, PHONE, "ack", "192.168.1.23"))
    assert len(registry) == 1  # the others were not seen for an hour


def test_the_screen_names_the_device_after_a_press(shelter) -> None:
    result, _ = _analyse(*shelter, "scapy")
    phone = next(alert for alert in result.alerts if alert.device == PHONE)
    pseudonyms = Pseudonymizer(b"k" * 32)
    topics = Topics(site="s", sensor="b")
    for on_box, shown in ((True, "Galaxy-A52 (Samsung), 192.168.1.23, 192.168.1.42"),
                          (False, pseudonyms.device(PHONE))):
        payload = alert_payload(phone, all_catalogues(), site="s", sensor="b",
                                pseudonyms=pseudonyms, queued_at=DEFAULT_START, on_box=on_box)
        _validator().validate(json.loads(payload))
        state = apply_message(ScreenState(broker_connected=True), topics.alert, payload.encode())
        assert state.recent[0].device == shown


def test_status_names_the_devices_of_the_last_alerts(shelter, tmp_path, capsys) -> None:
    result, _ = _analyse(*shelter, "scapy")
    config_file = tmp_path / "veilleuse.yaml"
    config_file.write_text(f"alerts:\n  database: {tmp_path / 'alerts.sqlite'}\n"
                           f"daemon:\n  runtime_directory: {tmp_path / 'run'}\n"
                           f"privacy:\n  secret_file: {tmp_path / 'key'}\n")
    config = load_config(config_file)
    book = AlertBook(config.alerts.database)
    AlertQueue(book, config, pseudonymizer(config), time.time).add_all(result.alerts)
    book.close()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "health.json").write_text(json.dumps(
        {"time": time.time(), "state": "alert", "reasons": [], "details": [],
         "capture": "running", "observations": 1, "drop_ratio": 0.0, "pending_alerts": 4,
         "feeds": {}}))
    assert main(["--config", str(config_file), "status"]) == 0
    shown = capsys.readouterr().out
    assert f"high domain {C2} (12x, last 2026-01-01 10:13:40 UTC): Galaxy-A52 (Samsung), " \
        "192.168.1.23, 192.168.1.42" in shown
    assert "Pixel-de-Lea, 192.168.1.77" in shown and f": {ROUTED}" in shown


def test_the_compact_oui_index_agrees_with_netaddr() -> None:
    """Every 97th OUI of netaddr's registry, read both ways (netaddr's own API and ours)."""
    registry = oui_registry()
    assert len(registry) > 30_000
    checked = 0
    for oui in list(netaddr.eui.ieee.OUI_INDEX or _netaddr_index())[::97]:
        expected = netaddr.OUI(oui).registration().org.strip()
        assert registry.organisation(oui) == expected, f"{oui:06x}"
        checked += 1
    assert checked > 300
    assert registry.organisation(0x02_00_00) is None  # locally administered: never registered


def _netaddr_index() -> dict:
    netaddr.EUI("28:39:5e:00:00:01").oui.registration()  # netaddr loads its index lazily
    return netaddr.eui.ieee.OUI_INDEX


def test_the_device_report_finds_the_phone_by_name_mac_or_either_address(shelter) -> None:
    result, _ = _analyse(*shelter, "scapy")
    provenance = Provenance(generated_at=DEFAULT_START, sensor="b", site="s", source="c",
                            from_capture=True, feeds=(), clock=ClockState.CAPTURE)
    for query in ("Galaxy-A52", PHONE.upper(), "192.168.1.23", "192.168.1.42"):
        page = build_device_page(result.alerts, query, provenance)
        assert [alert.device for alert in page.sightings] == [PHONE], query
        assert (page.identity.label, page.identity.maker, page.identity.mac,
                page.identity.randomized_mac, page.identity.addresses) == \
            ("Galaxy-A52", "Samsung", PHONE, False, ("192.168.1.23", "192.168.1.42"))
    private = build_device_page(result.alerts, "Pixel-de-Lea", provenance).identity
    assert private.randomized_mac and private.maker is None
