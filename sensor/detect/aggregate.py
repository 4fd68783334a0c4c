"""Merge findings into alerts, one per (device, kind, indicator).

The merge is order-independent (min/max/sum), so a capture source that emits
records in another order still produces the same alerts.
"""

from __future__ import annotations

from dataclasses import replace

from sensor.detect.model import Alert, Finding, alert_id


class AlertAggregator:
    """Holds the current alerts of one analysis; ``add`` returns the updated alert."""

    def __init__(self) -> None:
        self._alerts: dict[str, Alert] = {}
        self._first_observed: dict[str, tuple[float, str]] = {}

    def __len__(self) -> int:
        return len(self._alerts)

    def add(self, finding: Finding) -> Alert:
        key = alert_id(finding.device, finding.kind, finding.indicator)
        candidate = (finding.time, finding.observed)
        earliest = min(self._first_observed.get(key, candidate), candidate)
        self._first_observed[key] = earliest
        known = self._alerts.get(key)
        if known is None:
            alert = Alert(
                id=key, kind=finding.kind, severity=finding.severity, device=finding.device,
                indicator=finding.indicator, observed=finding.observed, app=finding.app,
                protocols=(finding.protocol,), first_seen=finding.time,
                last_seen=finding.end_time, count=finding.count, details=finding.details)
        else:
            alert = replace(
                known,
                severity=max(known.severity, finding.severity, key=lambda s: s.rank),
                observed=earliest[1],
                protocols=tuple(sorted({*known.protocols, finding.protocol})),
                first_seen=min(known.first_seen, finding.time),
                last_seen=max(known.last_seen, finding.end_time),
                count=known.count + finding.count,
                details=finding.details or known.details)
        self._alerts[key] = alert
        return alert

    def alerts(self) -> list[Alert]:
        """All alerts, most severe first, then by first sighting."""
        return sorted(self._alerts.values(),
                      key=lambda a: (-a.severity.rank, a.first_seen, a.device, a.indicator))
