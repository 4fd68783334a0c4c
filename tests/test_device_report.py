"""The report for one device: built from real alerts, read back in a real browser.

The alerts come from a real analysis of the demo capture (built by scapy);
the pages are opened by headless Chromium, and the checks read the text the
browser shows, not the HTML we wrote.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from sensor.alerts.book import AlertBook, AlertBookError
from sensor.alerts.pseudonym import Pseudonymizer, load_or_create_secret
from sensor.config import Config
from sensor.demo.scenario import LAPTOP, PHONE, demo_feed_path
from sensor.detect.model import Alert, AlertKind, Severity
from sensor.messages import LANGUAGES, load_catalogue
from sensor.outputs.delivery import AlertQueue
from sensor.report import explain
from sensor.reports.browser import browser_dom, browser_screenshot
from sensor.reports.device_page import ClockState, DeviceNotFound, Provenance, build_device_page
from sensor.reports.html import render_device_page
from sensor.reports.pictures import analyze_demo
from sensor.reports.sources import alert_from_stored, read_book_alerts
from tests.conftest import require_tool

HOSTILE_NAME = "<script>document.title='pwned'</script>"
HOSTILE_SERVER = "<img src=x onerror=\"document.title='pwned'\">"


class _Text(HTMLParser):
    """The text a reader sees, the page's title, and every element's tag and attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.title = ""
        self._in_title = False
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._skip += tag in ("style", "title")
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "title")
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if not self._skip:
            self.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def shown(dom: str) -> _Text:
    parser = _Text()
    parser.feed(dom)
    return parser


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """(capture, feeds, alerts) of the demo capture, analysed by the scapy source."""
    capture, feeds, result = analyze_demo(tmp_path_factory.mktemp("device-report"))
    return capture, feeds, list(result.alerts)


def provenance(capture: Path) -> Provenance:
    return Provenance(generated_at=time.time(), sensor="box-1", site="shelter",
                      source=str(capture), from_capture=True, feeds=(("feed.yaml", "cc5d36c8"),),
                      clock=ClockState.CAPTURE)


def test_page_holds_the_device_s_alerts_only_most_severe_first(demo) -> None:
    capture, _, alerts = demo
    page = build_device_page(alerts, PHONE, provenance(capture))
    mine = [alert for alert in alerts if alert.device == PHONE]
    assert {alert.id for alert in page.sightings} == {alert.id for alert in mine}
    assert {alert.kind for alert in page.sightings} >= {AlertKind.DOMAIN, AlertKind.IP}
    ranks = [alert.severity.rank for alert in page.sightings]
    assert ranks == sorted(ranks, reverse=True)
    assert page.count == sum(alert.count for alert in mine)
    assert page.first_seen == min(alert.first_seen for alert in mine)
    assert page.last_seen == max(alert.last_seen for alert in mine)
    assert (page.identity.label, page.identity.addresses) == (PHONE, (PHONE,))
    assert page.identity.maker is page.identity.mac is page.identity.randomized_mac is None


def test_any_spelling_of_an_address_finds_the_device(demo) -> None:
    capture, _, alerts = demo
    moved = [dataclasses.replace(alert, device="2001:db8::21") for alert in alerts
             if alert.device == PHONE]
    page = build_device_page(moved, "2001:DB8:0:0::21", provenance(capture))
    assert len(page.sightings) == len(moved)


def test_a_device_no_alert_names_is_an_error_not_an_all_clear(demo) -> None:
    capture, _, alerts = demo
    with pytest.raises(DeviceNotFound, match=r"'192\.168\.10\.99'.*devices with alerts: "
                       r"192\.168\.10\.21, 192\.168\.10\.35"):
        build_device_page(alerts, "192.168.10.99", provenance(capture))


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_browser_shows_the_device_and_the_advice(demo, tmp_path, language) -> None:
    require_tool("chromium")
    capture, _, alerts = demo
    page = build_device_page(alerts, PHONE, provenance(capture))
    catalogue = load_catalogue(language)
    path = tmp_path / f"device.{language}.html"
    path.write_text(render_device_page(page, catalogue), encoding="utf-8")
    dom = shown(browser_dom(path))
    assert ("html", {"lang": language}) in dom.tags
    assert f"{catalogue.text('device_report.device')} {PHONE}" in dom.text
    assert flat(catalogue.text("device_report.safety")) in dom.text
    for alert in page.sightings:  # each finding with the alert's own advice, in this language
        assert flat(explain(alert, catalogue)["advice"]) in dom.text
        assert flat(explain(alert, catalogue)["what"]) in dom.text
    assert flat(catalogue.text("report.caveat")) in dom.text
    assert flat(catalogue.text("device_report.clock.capture")) in dom.text
    assert LAPTOP not in dom.text
    # Self-contained: nothing to run, nothing fetched.
    assert not [tag for tag, _ in dom.tags if tag in ("script", "link", "img", "iframe")]
    assert not [attrs for _, attrs in dom.tags if attrs.keys() & {"src", "href"}]


def test_the_screenshot_draws_the_whole_page(demo, tmp_path) -> None:
    require_tool("chromium")
    capture, _, alerts = demo
    path = tmp_path / "device.html"
    path.write_text(render_device_page(build_device_page(alerts, PHONE, provenance(capture)),
                                       load_catalogue("en")), encoding="utf-8")
    picture = browser_screenshot(path, tmp_path / "device.png")
    with Image.open(picture) as image:
        assert image.width == 900
        assert 1500 < image.height < 4000  # cut below the footer, not at the window's edge
        assert len(image.convert("RGB").getcolors(1 << 16) or ()) > 10  # drawn, not blank


def test_hostile_names_print_as_text_and_run_nothing(demo, tmp_path) -> None:
    require_tool("chromium")
    capture, _, alerts = demo
    hostile = [dataclasses.replace(alert, device=HOSTILE_NAME, observed=HOSTILE_SERVER,
                                   app="</title><b>DemoSpy</b>") for alert in alerts
               if alert.device == PHONE]
    page = build_device_page(hostile, HOSTILE_NAME, provenance(capture))
    html = render_device_page(page, load_catalogue("en"))
    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    path = tmp_path / "hostile.html"
    path.write_text(html, encoding="utf-8")
    dom = browser_dom(path)
    seen = shown(dom)
    assert not [tag for tag, _ in seen.tags if tag in ("script", "img", "b")]
    english = load_catalogue("en")
    assert seen.title == english.text("device_report.title", device=HOSTILE_NAME)  # unchanged
    assert f"Device {HOSTILE_NAME}" in seen.text
    assert HOSTILE_SERVER in seen.text


def veilleuse(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""}
    return subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, env=environment, timeout=300, check=False)


def test_report_from_the_alert_book_on_the_box(demo, tmp_path) -> None:
    _, _, alerts = demo
    database = tmp_path / "alerts.sqlite"
    config_file = tmp_path / "veilleuse.yaml"
    key = tmp_path / "pseudonym.key"
    config_file.write_text(f"sensor: box-7\nalerts:\n  database: {database}\n"
                           f"feeds:\n  directory: {tmp_path / 'feeds'}\n"
                           f"privacy:\n  secret_file: {key}\n")
    pseudonym = Pseudonymizer(load_or_create_secret(key)).device(PHONE)
    book = AlertBook(database)
    try:  # stored by the live sensor's own queue, on a clock NTP has not set yet
        AlertQueue(book, Config(), None, time.time, lambda: False).add_all(alerts)
        stored = read_book_alerts(database)
    finally:
        book.close()
    assert {alert.id: dataclasses.replace(alert, clock_synchronised=False)
            for alert in alerts} == {alert.id: alert for alert in stored}

    output = tmp_path / "page.html"
    result = veilleuse("--config", str(config_file), "report", "--device", pseudonym,
                       "--language", "fr", "--output", str(output))  # as the screen shows it
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    french = load_catalogue("fr")
    text = shown(output.read_text(encoding="utf-8")).text
    phone_alert = next(alert for alert in alerts if alert.device == PHONE)
    assert flat(explain(phone_alert, french)["advice"]) in text
    assert flat(french.text("device_report.clock_doubtful")) in text
    assert "capteur box-7" in text and str(database) in text
    assert f"Appareil {PHONE}" in text
    assert f"{flat(french.text('device_report.pseudonym'))} {pseudonym}" in text


def test_report_without_an_alert_book_says_where_it_looked(tmp_path) -> None:
    config_file = tmp_path / "veilleuse.yaml"
    config_file.write_text(f"alerts:\n  database: {tmp_path / 'none.sqlite'}\n")
    result = veilleuse("--config", str(config_file), "report", "--device", PHONE)
    assert result.returncode == 1
    assert result.stderr.startswith(f"veilleuse: error: {tmp_path / 'none.sqlite'}: no alert "
                                    "book here")
    assert not (tmp_path / "none.sqlite").exists()


def test_report_from_a_capture_analysed_by_suricata(demo) -> None:
    require_tool("suricata")
    capture, _, alerts = demo
    result = veilleuse("report", "--device", PHONE, "--capture", str(capture),
                       "--feed", str(demo_feed_path()), "--lang", "en")
    assert result.returncode == 0, result.stderr
    english = load_catalogue("en")
    text = shown(result.stdout).text
    page = build_device_page(alerts, PHONE, provenance(capture))
    for alert in page.sightings:  # Suricata finds what scapy found: same ids, same advice
        assert alert.id in text
        assert flat(explain(alert, english)["advice"]) in text
    assert english.text("device_report.from_capture", path=capture) in text


def test_stored_alert_with_an_unreadable_record_names_it(demo, tmp_path) -> None:
    _, _, alerts = demo
    book = AlertBook(tmp_path / "alerts.sqlite")
    try:
        AlertQueue(book, Config(), None, time.time).add_all(alerts[:1])
        row = book.alerts()[0]
    finally:
        book.close()
    with pytest.raises(AlertBookError, match=f"alert {row.id}: its stored record cannot be read"):
        alert_from_stored(dataclasses.replace(row, record="{}"))


def test_every_alert_kind_has_its_advice_on_the_page() -> None:
    """A kind added later without its texts would fail here, not on an advocate's printer."""
    for kind in AlertKind:
        alert = Alert("0" * 20, kind, Severity.LOW, PHONE, "x.example", "x.example",
                      None, ("dns",), 0.0, 1.0, 1)
        page = build_device_page([alert], PHONE, provenance(Path("x.pcap")))
        for language in LANGUAGES:
            catalogue = load_catalogue(language)
            assert flat(explain(alert, catalogue)["advice"]) in shown(
                render_device_page(page, catalogue)).text



def test_a_damaged_capture_gives_the_page_so_far_and_says_so(demo, tmp_path) -> None:
    capture, _, _ = demo
    damaged = tmp_path / "cut.pcap"
    data = capture.read_bytes()
    damaged.write_bytes(data[:len(data) // 2])  # cut inside a record, past the C2 lookup
    output = tmp_path / "page.html"
    result = veilleuse("report", "--device", PHONE, "--capture", str(damaged), "--source",
                       "scapy", "--feed", str(demo_feed_path()), "--output", str(output))
    assert result.returncode == 1
    assert result.stderr.startswith(f"veilleuse: error: {damaged}: ")
    assert "the page covers only what was read before the damage" in result.stderr
    text = shown(output.read_text(encoding="utf-8")).text
    assert PHONE in text
    damage = result.stderr.removeprefix(f"veilleuse: error: {damaged}: ").split(";")[0]
    assert load_catalogue("en").text("device_report.damaged", damage=damage) in text
