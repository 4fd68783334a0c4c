"""An alert as it leaves the box: pseudonymous, with its texts, in the contract's JSON.

Devices appear as keyed pseudonyms unless the site opted in to sharing
addresses. The payload's format is the contract's
(``sensor.wire.payloads``, docs/schemas/alert.schema.json); this module
only fills it from a detection.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from sensor.alerts.pseudonym import Pseudonymizer
from sensor.detect.model import Alert
from sensor.messages import Catalogue
from sensor.report import alert_record
from sensor.wire.payloads import iso_time


def outgoing_alert(alert: Alert, pseudonyms: Pseudonymizer | None) -> Alert:
    """The alert as it may leave the box: pseudonymous device and id, unless ``None``."""
    if pseudonyms is None:
        return alert
    return dataclasses.replace(alert, id=pseudonyms.alert_id(alert.id),
                               device=pseudonyms.device(alert.device))


def alert_payload(alert: Alert, catalogues: Mapping[str, Catalogue], *, site: str, sensor: str,
                  pseudonyms: Pseudonymizer | None, queued_at: float) -> str:
    record = alert_record(outgoing_alert(alert, pseudonyms), catalogues)
    record.update({"site": site, "sensor": sensor, "queued_at": iso_time(queued_at),
                   "device_is_pseudonym": pseudonyms is not None})
    return json.dumps(record, ensure_ascii=False, sort_keys=True)
