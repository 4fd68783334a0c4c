"""Merge findings into alerts, one per (device, kind, indicator).

Each finding becomes a sighting (an alert of ``finding.count`` sightings)
and is merged with the alert book's rule (``sensor.alerts.book.merge_sighting``,
the only merge), so the running totals of an analysis and the book agree.
The merge is order-independent, so a capture source that emits records in
another order still produces the same alerts. With a device registry, a
finding's address is turned into its device's key (the MAC that held the
address then), so a phone that changes address keeps one alert.
"""

from __future__ import annotations

from dataclasses import replace

from sensor.alerts.book import merge_sighting
from sensor.detect.model import Alert, Finding, alert_id
from sensor.devices.registry import DeviceRegistry


class AlertAggregator:
    """Holds the current alerts of one analysis; ``add`` returns the finding as a sighting."""

    def __init__(self, devices: DeviceRegistry | None = None) -> None:
        self._devices = devices
        self._alerts: dict[str, Alert] = {}

    def __len__(self) -> int:
        return len(self._alerts)

    def sighting(self, finding: Finding) -> Alert:
        """The finding as an alert of its own sightings, keyed by its device."""
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

    def add(self, finding: Finding) -> Alert:
        """Merge the finding into the running totals; returns its sighting (new sightings only)."""
        sighting = self.sighting(finding)
        self._alerts[sighting.id] = merge_sighting(self._alerts.get(sighting.id), sighting)
        return sighting

    def alerts(self) -> list[Alert]:
        """All alerts, most severe first, then by first sighting; identities as known now."""
        alerts = self._alerts.values()
        if self._devices is not None:
            alerts = [replace(alert, identity=self._devices.identity(alert.device) or
                              alert.identity) for alert in alerts]
        return sorted(alerts,
                      key=lambda a: (-a.severity.rank, a.first_seen, a.device, a.indicator))
