"""The JSON payloads Veilleuse publishes, versioned by their ``schema`` field.

docs/schemas/*.schema.json describe them; tests validate real payloads
against those files. Devices appear as keyed pseudonyms unless the site
opted in to sharing addresses; payloads never contain packet contents.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from sensor.alerts.pseudonym import Pseudonymizer
from sensor.detect.model import Alert
from sensor.messages import Catalogue
from sensor.report import alert_record, iso_time

STATE_SCHEMA = "veilleuse.state/1"
STATUS_SCHEMA = "veilleuse.status/1"


def outgoing_alert(alert: Alert, pseudonyms: Pseudonymizer | None) -> Alert:
    """The alert as it may leave the box: pseudonymous device and id, unless ``None``."""
    if pseudonyms is None:
        return alert
    return dataclasses.replace(alert, id=pseudonyms.alert_id(alert.id),
                               device=pseudonyms.device(alert.device))


def alert_payload(alert: Alert, catalogues: Mapping[str, Catalogue], *, site: str, sensor: str,
                  pseudonyms: Pseudonymizer | None, queued_at: float,
                  evidence: Mapping[str, object] | None = None) -> str:
    """``evidence``: that encrypted evidence is on the box (size, SHA-256), never its content."""
    record = alert_record(outgoing_alert(alert, pseudonyms), catalogues)
    record.update({"site": site, "sensor": sensor, "queued_at": iso_time(queued_at),
                   "device_is_pseudonym": pseudonyms is not None})
    if evidence is not None:
        record["evidence"] = dict(evidence)
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


def status_payload(status: str, time: float, reason: str | None = None) -> str:
    payload: dict[str, Any] = {"schema": STATUS_SCHEMA, "status": status, "time": iso_time(time)}
    if reason:
        payload["reason"] = reason
    return json.dumps(payload, sort_keys=True)


def state_payload(*, site: str, sensor: str, time: float, health: str, reasons: list[str],
                  details: list[str], counters: Mapping[str, int],
                  feeds: Mapping[str, str]) -> str:
    """``reasons`` are codes (documented in the schema) a screen can translate."""
    return json.dumps({"schema": STATE_SCHEMA, "site": site, "sensor": sensor,
                       "time": iso_time(time), "health": health, "reasons": reasons,
                       "details": details, "counters": dict(counters), "feeds": dict(feeds)},
                      sort_keys=True)
