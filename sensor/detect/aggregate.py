"""Merge findings into alerts, one per (device, kind, indicator).

The merge is order-independent (min/max/sum), so a capture source that emits
records in another order still produces the same alerts. With a device
registry, a finding's address is turned into its device's key (the MAC that
held the address then), so a phone that changes address keeps one alert.
"""

from __future__ import annotations

from dataclasses import replace

from sensor.detect.model import Alert, Finding, alert_id
from sensor.devices.registry import DeviceRegistry


class AlertAggregator:
    """Holds the current alerts of one analysis; ``add`` returns the updated alert."""

    def __init__(self, devices: DeviceRegistry | None = None) -> None:
        self._devices = devices
        self._alerts: dict[str, Alert] = {}
        self._first_observed: dict[str, tuple[float, str]] = {}

    def __len__(self) -> int:
        return len(self._alerts)

    def add(self, finding: Finding) -> Alert:
        device, identity = finding.device, None
        if self._devices is not None:
            device = self._devices.key_for(finding.device, finding.time)
            identity = self._devices.identity(device)
        key = alert_id(device, finding.kind, finding.indicator)
        candidate = (finding.time, finding.observed)
        earliest = min(self._first_observed.get(key, candidate), candidate)
        self._first_observed[key] = earliest
        known = self._alerts.get(key)
        if known is None:
            alert = Alert(
                id=key, kind=finding.kind, severity=finding.severity, device=device,
                indicator=finding.indicator, observed=finding.observed, app=finding.app,
                protocols=(finding.protocol,), first_seen=finding.time,
                last_seen=finding.end_time, count=finding.count, details=finding.details,
                addresses=(finding.device,), identity=identity)
        else:
            alert = replace(
                known,
                severity=max(known.severity, finding.severity, key=lambda s: s.rank),
                observed=earliest[1],
                protocols=tuple(sorted({*known.protocols, finding.protocol})),
                first_seen=min(known.first_seen, finding.time),
                last_seen=max(known.last_seen, finding.end_time),
                count=known.count + finding.count,
                details=finding.details or known.details,
                addresses=tuple(sorted({*known.addresses, finding.device})),
                identity=identity or known.identity)
        self._alerts[key] = alert
        return alert

    def alerts(self) -> list[Alert]:
        """All alerts, most severe first, then by first sighting; identities as known now."""
        alerts = self._alerts.values()
        if self._devices is not None:
            alerts = [replace(alert, identity=self._devices.identity(alert.device) or
                              alert.identity) for alert in alerts]
        return sorted(alerts,
                      key=lambda a: (-a.severity.rank, a.first_seen, a.device, a.indicator))
