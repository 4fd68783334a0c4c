"""Offline analysis: one capture file through one source and an engine, to a list of alerts.

It receives the source and the engine built (``sensor.wiring`` builds them
from the config and the feeds); it holds no detection logic itself.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sensor.alerts.book import AlertTotals
from sensor.capture.stats import SourceStats
from sensor.detect.engine import DetectionEngine
from sensor.detect.model import Alert
from sensor.devices.registry import DeviceRegistry
from sensor.observations import Observation

log = logging.getLogger(__name__)


class CaptureSource(Protocol):
    """A capture file's reader: observations out, what it could not parse in ``stats``."""

    name: str
    stats: SourceStats

    def read(self, pcap: Path) -> Iterator[Observation]: ...


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    """The alerts of one capture and what it took to get them."""

    capture: Path
    source: str
    alerts: tuple[Alert, ...]
    records: int
    observations: int
    skipped: int
    detector_errors: int
    damaged: str | None = None
    """The capture is damaged: only the packets before the damage were analysed."""


def analyze_capture(capture: Path, source: CaptureSource,
                    engine: DetectionEngine) -> AnalysisResult:
    totals, observations = AlertTotals(), 0
    for observation in source.read(capture):
        observations += 1
        totals.add(engine.observe(observation))
    totals.add(engine.flush())
    alerts = tuple(named_devices(totals.alerts(), engine.devices))
    log.info("analysed %s with %s: %d records, %d observations, %d skipped, %d alerts",
             capture, source.name, source.stats.records, observations,
             source.stats.skipped_total, len(alerts))
    return AnalysisResult(capture=capture, source=source.name, alerts=alerts,
                          records=source.stats.records, observations=observations,
                          skipped=source.stats.skipped_total,
                          detector_errors=sum(engine.errors.values()),
                          damaged=source.stats.damaged)


def named_devices(alerts: Iterable[Alert], devices: DeviceRegistry | None) -> list[Alert]:
    """The alerts with their devices' identities as known now (a name learnt after the
    first sighting names every alert of the device)."""
    if devices is None:
        return list(alerts)
    return [dataclasses.replace(alert, identity=devices.identity(alert.device) or alert.identity)
            for alert in alerts]
