"""Turn alerts into what people read: JSON lines for machines, a summary for humans.

Each alert record carries its explanation and advice in French and English,
so whoever receives it (a SOC analyst, a helpline) can act without this box.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any

from sensor.detect.model import Alert
from sensor.messages import LANGUAGES, Catalogue, load_catalogue
from sensor.wire.payloads import ALERT_SCHEMA, iso_time

_ASCII_SPACES = re.compile(r"[ \t\r\n]+")


def human_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def message_values(alert: Alert) -> dict[str, object]:
    """The named values every alert message may use."""
    details = dict(alert.details)
    return {"device": alert.device, "observed": alert.observed, "indicator": alert.indicator,
            "app": alert.app or "?", "count": alert.count,
            "first_seen": human_time(alert.first_seen), "last_seen": human_time(alert.last_seen),
            "protocols": ", ".join(alert.protocols), "interval": details.get("interval_s", "?")}


def explain(alert: Alert, catalogue: Catalogue) -> dict[str, str]:
    """Title, what was seen and what to do, in the catalogue's language."""
    values = message_values(alert)
    prefix = f"kind.{alert.kind.value}"
    return {part: catalogue.text(f"{prefix}.{part}", **values)
            for part in ("title", "what", "advice")}


def alert_record(alert: Alert, catalogues: Mapping[str, Catalogue]) -> dict[str, Any]:
    """The JSON-ready record of an alert (documented in docs/alerts.md)."""
    texts = {language: explain(alert, catalogue) for language, catalogue in catalogues.items()}
    return {
        "schema": ALERT_SCHEMA,
        "id": alert.id,
        "kind": alert.kind.value,
        "severity": alert.severity.value,
        "device": alert.device,
        "indicator": alert.indicator,
        "observed": alert.observed,
        "app": alert.app,
        "protocol": ",".join(alert.protocols),
        "protocols": list(alert.protocols),
        "first_seen": iso_time(alert.first_seen),
        "last_seen": iso_time(alert.last_seen),
        "count": alert.count,
        "details": dict(alert.details),
        "clock_synchronised": alert.clock_synchronised,
        "title": {language: text["title"] for language, text in texts.items()},
        "summary": {language: text["what"] for language, text in texts.items()},
        "advice": {language: text["advice"] for language, text in texts.items()},
    }


def all_catalogues() -> dict[str, Catalogue]:
    return {language: load_catalogue(language) for language in LANGUAGES}


def write_jsonl(alerts: Iterable[Alert], stream: IO[str]) -> int:
    catalogues = all_catalogues()
    count = 0
    for alert in alerts:
        stream.write(json.dumps(alert_record(alert, catalogues), ensure_ascii=False) + "\n")
        count += 1
    return count


def write_text(alerts: list[Alert], stream: IO[str], catalogue: Catalogue, *, capture: str,
               source: str, observations: int, feeds: str, skipped: int = 0,
               detector_errors: int = 0) -> None:
    """A summary a non-technical reader can follow, most severe alert first."""
    def paragraph(text: str, indent: str = "") -> None:
        # ASCII white space only: a no-break space (before a French ":") must stay one
        stream.write(textwrap.fill(_ASCII_SPACES.sub(" ", text).strip(), width=78,
                                   initial_indent=indent, subsequent_indent=indent) + "\n")

    stream.write(catalogue.text("report.heading", capture=capture) + "\n\n")
    devices = len({alert.device for alert in alerts})
    paragraph(catalogue.text("report.summary", alerts=len(alerts), devices=devices,
                             observations=observations, source=source, feeds=feeds))
    if skipped:
        paragraph(catalogue.text("report.skipped", skipped=skipped))
    if detector_errors:
        paragraph(catalogue.text("report.detector_errors", errors=detector_errors))
    stream.write("\n")
    if not alerts:  # "nothing seen" only when something was read
        paragraph(catalogue.text("report.none" if observations else "report.empty"))
    for alert in alerts:
        text = explain(alert, catalogue)
        severity = catalogue.text(f"severity.{alert.severity.value}")
        stream.write(f"[{severity}] {text['title']}\n")
        # the labels hold their colon: French puts a no-break space before it
        paragraph(f"{catalogue.text('report.what')} {text['what']}", "    ")
        paragraph(f"{catalogue.text('report.advice')} {text['advice']}", "    ")
        stream.write(f"    {catalogue.text('report.alert_id')} {alert.id}\n\n")
    paragraph(catalogue.text("report.caveat"))
