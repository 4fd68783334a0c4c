"""Turn findings into sightings: alerts of new sightings only, keyed by device.

A finding's address becomes its device's key (the MAC that held the address
then, from the device registry), so a phone that changes address keeps one
alert id. Not its job: adding sightings up; the alert book does that, and
only it (``sensor.alerts.book.merge_sighting``), for the live sensor and
for an offline analysis alike.
"""

from __future__ import annotations

from sensor.detect.model import Alert, Finding, alert_id
from sensor.devices.registry import DeviceRegistry


class SightingMaker:
    """Makes each finding an alert of its own sightings, keyed by its device."""

    def __init__(self, devices: DeviceRegistry | None = None) -> None:
        self._devices = devices

    def sighting(self, finding: Finding) -> Alert:
        device, identity = finding.device, None
        if self._devices is not None:
            device = self._devices.key_for(finding.device, finding.time)
            identity = self._devices.identity(device)
        return Alert(
            id=alert_id(device, finding.kind, finding.indicator), kind=finding.kind,
            severity=finding.severity, device=device, indicator=finding.indicator,
            observed=finding.observed, app=finding.app, protocols=(finding.protocol,),
            first_seen=finding.time, last_seen=finding.end_time, count=finding.count,
            details=finding.details, addresses=(finding.device,), identity=identity)
