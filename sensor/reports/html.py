"""Lay a device page out as one self-contained, printable HTML file.

One file an advocate can open, print or keep: the CSS is inline (with print
styles), there is no script and nothing is fetched (a Content-Security-Policy
forbids it), and every value is escaped by Jinja2's autoescape, so a hostile
device name or server name prints as text. The words come from the message
catalogue; what was seen and what to do are the alerts' own texts
(``sensor.report.explain``), never copies. Not the job of this module: PDF
(the browser's "Print to PDF" makes one from this page).
"""

from __future__ import annotations

from typing import Any

import jinja2

from sensor.detect.model import Alert
from sensor.messages import Catalogue
from sensor.report import explain, human_time
from sensor.reports.device_page import DevicePage

TEMPLATE = "device.html.j2"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("sensor.reports", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def _finding(alert: Alert, catalogue: Catalogue) -> dict[str, Any]:
    text = explain(alert, catalogue)
    return {"id": alert.id, "severity": alert.severity.value,
            "level": catalogue.text(f"severity.{alert.severity.value}"),
            "title": text["title"], "what": text["what"], "advice": text["advice"],
            "indicator": alert.indicator, "observed": alert.observed, "app": alert.app,
            "protocols": ", ".join(alert.protocols), "count": alert.count,
            "first_seen": human_time(alert.first_seen),
            "last_seen": human_time(alert.last_seen),
            "clock_doubtful": alert.clock_synchronised is False}


def _footer(page: DevicePage, catalogue: Catalogue) -> list[str]:
    provenance = page.provenance
    source = catalogue.text("device_report.from_capture" if provenance.from_capture
                            else "device_report.from_book", path=provenance.source)
    feeds = ", ".join(f"{label} {version[:8]}" for label, version in provenance.feeds)
    return [catalogue.text("device_report.generated",
                           generated=human_time(provenance.generated_at),
                           sensor=provenance.sensor, site=provenance.site, source=source),
            catalogue.text("device_report.feeds", feeds=feeds) if feeds
            else catalogue.text("device_report.no_feeds"),
            catalogue.text(f"device_report.clock.{provenance.clock.value}")]


def render_device_page(page: DevicePage, catalogue: Catalogue) -> str:
    """The page as HTML text in the catalogue's language.

    >>> from sensor.messages import load_catalogue
    >>> from sensor.reports.device_page import ClockState, DevicePage, DeviceIdentity, Provenance
    >>> from sensor.detect.model import Alert, AlertKind, Severity
    >>> alert = Alert("a1", AlertKind.DOMAIN, Severity.HIGH, "192.168.10.21",
    ...               "api.demospy.example", "api.demospy.example", "DemoSpy", ("dns",),
    ...               1767261630.0, 1767264957.0, 14)
    >>> page = DevicePage(DeviceIdentity("192.168.10.21"), (alert,),
    ...                   Provenance(1767268800.0, "veilleuse", "shelter", "demo.pcap", True,
    ...                              (), ClockState.CAPTURE))
    >>> html = render_device_page(page, load_catalogue("en"))
    >>> "Do not uninstall it" in html and "<script" not in html
    True
    """
    identity = page.identity
    text = {key.removeprefix("device_report."): value
            for key, value in catalogue.messages.items() if key.startswith("device_report.")}
    return _environment().get_template(TEMPLATE).render(
        lang=catalogue.language, text=text,
        title=catalogue.text("device_report.title", device=identity.label),
        identity=identity,
        period=catalogue.text("device_report.period", first_seen=human_time(page.first_seen),
                              last_seen=human_time(page.last_seen),
                              alerts=len(page.sightings), count=page.count),
        findings=[_finding(alert, catalogue) for alert in page.sightings],
        labels={"what": catalogue.text("report.what"),
                "advice": catalogue.text("report.advice"),
                "alert_id": catalogue.text("report.alert_id")},
        caveat=catalogue.text("report.caveat"),
        clock_doubtful=page.is_clock_doubtful,
        damaged=None if page.provenance.damaged is None else catalogue.text(
            "device_report.damaged", damage=page.provenance.damaged),
        footer=_footer(page, catalogue))
