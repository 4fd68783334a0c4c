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


def outgoing_alert(alert: Alert, pseudonyms: Pseudonymizer | None,
                   share_identity: bool = False, on_box: bool = False) -> Alert:
    """The alert as it may leave the box: pseudonymous device and id, unless ``None``.

    The pseudonym is keyed on the device's key (its MAC when known), so a phone
    keeps one across its addresses. Its MAC, names and maker leave only with
    ``share_identity`` (``privacy.share_device_identity``); without it, a
    device known by its MAC leaves as its address when addresses are shared.
    ``on_box``: the copy for the box's own screen (its loopback broker), with
    the device's identity and addresses, and the id and device the core gets.
    """
    identity = alert.identity if share_identity else None
    if pseudonyms is None:
        device = alert.device
        if not share_identity and alert.identity is not None and \
                alert.device == alert.identity.mac and alert.addresses:
            device = alert.addresses[0]
        return dataclasses.replace(alert, device=device, identity=identity)
    return dataclasses.replace(alert, id=pseudonyms.alert_id(alert.id),
                               device=pseudonyms.device(alert.device),
                               addresses=alert.addresses if on_box else (),
                               identity=alert.identity if on_box else identity)


def alert_payload(alert: Alert, catalogues: Mapping[str, Catalogue], *, site: str, sensor: str,
                  pseudonyms: Pseudonymizer | None, queued_at: float,
                  share_identity: bool = False, on_box: bool = False,
                  evidence: Mapping[str, object] | None = None) -> str:
    """``evidence``: that encrypted evidence is on the box (size, SHA-256), never its content."""
    record = alert_record(outgoing_alert(alert, pseudonyms, share_identity, on_box),
                          catalogues)
    record.update({"site": site, "sensor": sensor, "queued_at": iso_time(queued_at),
                   "device_is_pseudonym": pseudonyms is not None})
    if evidence is not None:
        record["evidence"] = dict(evidence)
    return json.dumps(record, ensure_ascii=False, sort_keys=True)
