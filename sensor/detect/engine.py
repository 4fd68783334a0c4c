"""Run every detector on every observation and merge their findings into alerts.

Detectors are independent units with one contract (``observe``, ``flush``);
one that raises on a record is logged once per distinct error, counted, and
skipped for that record only: the others and the next records go on.
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from sensor.detect.aggregate import SightingMaker
from sensor.detect.model import Alert, Finding
from sensor.devices.registry import DeviceRegistry
from sensor.observations import IDENTITY_TYPES, Observation

log = logging.getLogger(__name__)


class Detector(Protocol):
    """What the engine needs of a detector."""

    name: str

    def observe(self, observation: Observation) -> Iterable[Finding]: ...

    def flush(self) -> Iterable[Finding]: ...


class DetectionEngine:
    """Feeds observations to detectors; ``alerts()`` gives the merged result."""

    def __init__(self, detectors: Sequence[Detector],
                 devices: DeviceRegistry | None = None) -> None:
        self._detectors = tuple(detectors)
        self.devices = devices
        """Learns devices from identity observations; alerts are then keyed by device."""
        self._sightings = SightingMaker(devices)
        self.observations = 0
        self.errors: Counter[str] = Counter()
        self._errors_logged: set[tuple[str, str]] = set()

    def observe(self, observation: Observation) -> list[Alert]:
        """This observation's sightings, as alerts of new sightings only (the hot path).

        Whoever keeps alerts merges them, with the alert book's rule
        (``sensor.alerts.book``): the book itself, or ``AlertTotals`` in memory.
        """
        self.observations += 1
        if isinstance(observation, IDENTITY_TYPES):  # detectors have nothing to find there
            if self.devices is not None:
                self.devices.observe(observation)
            return []
        changed: list[Alert] = []
        for detector in self._detectors:
            try:
                findings = list(detector.observe(observation))
            except Exception as error:  # noqa: BLE001 - the record boundary
                self._record_error(detector.name, error)
                continue
            changed.extend(self._sightings.sighting(finding) for finding in findings)
        return changed

    def flush(self) -> list[Alert]:
        """Sightings from detectors that judge series (beaconing); at the end or periodically."""
        return [self._sightings.sighting(finding) for finding in
                self._run(lambda detector: detector.flush())]

    def _run(self, call: Callable[[Detector], Iterable[Finding]]) -> Iterator[Finding]:
        for detector in self._detectors:
            try:
                findings = list(call(detector))
            except Exception as error:  # noqa: BLE001 - the record boundary
                self._record_error(detector.name, error)
                continue
            yield from findings

    def _record_error(self, detector: str, error: Exception) -> None:
        self.errors[detector] += 1
        where = traceback.extract_tb(error.__traceback__)[-1]
        signature = (detector, f"{type(error).__name__}@{where.filename}:{where.lineno}")
        if signature not in self._errors_logged:
            self._errors_logged.add(signature)
            log.error("detector %s failed on a record and skipped it (%s: %s); further errors "
                      "of this kind are only counted. Please report this as a Veilleuse bug.",
                      detector, type(error).__name__, error, exc_info=error)
