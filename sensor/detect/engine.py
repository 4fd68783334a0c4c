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
from typing import Protocol, get_args

from sensor.detect.aggregate import SightingMaker
from sensor.detect.model import Alert, Finding
from sensor.devices.registry import DeviceRegistry
from sensor.observations import IDENTITY_TYPES, DnsAnswer, DnsQuery, Observation

log = logging.getLogger(__name__)

Handler = Callable[[Observation], Sequence[Finding]]


def _handler(detector: Detector, kind: type) -> Handler:
    """What the engine calls for ``kind``: the detector's declared handler, which returns a
    tuple, else its ``observe`` made into one (a generator runs inside the engine's try)."""
    declared: Handler | None = getattr(detector, "handlers", {}).get(kind)
    if declared is not None:
        return declared
    observe = detector.observe
    return lambda observation: tuple(observe(observation))


class Detector(Protocol):
    """What the engine needs of a detector.

    A detector may also declare ``observes``, the observation types it looks
    at (a tuple of classes): the engine then gives it only those, which
    spares a call per record in the hot path. Without it, it gets them all.
    It may also declare ``handlers``, a mapping of observation type to the
    function ``observe`` would call for it, returning a tuple: the engine then
    calls that function directly (one call per record instead of two, and no
    copy of what it returns).
    """

    name: str

    def observe(self, observation: Observation) -> Iterable[Finding]: ...

    def flush(self) -> Iterable[Finding]: ...


class DetectionEngine:
    """Feeds observations to the detectors that look at them; gives sightings, never totals."""

    def __init__(self, detectors: Sequence[Detector],
                 devices: DeviceRegistry | None = None) -> None:
        self._detectors = tuple(detectors)
        # Observation type -> (name, function) of the detectors that look at it, in their order.
        self._routes: dict[type, tuple[tuple[str, Handler], ...]] = {}
        self.devices = devices
        """Learns devices from identity observations; alerts are then keyed by device."""
        self._sightings = SightingMaker(devices)
        self.errors: Counter[str] = Counter()
        self._errors_logged: set[tuple[str, str]] = set()

    def observe(self, observation: Observation) -> list[Alert]:
        """This observation's sightings, as alerts of new sightings only.

        The hot path (every record): no closure, no generator, and only the
        detectors that look at this type of observation. Whoever keeps alerts
        merges them, with the alert book's rule (``sensor.alerts.book``): the
        book itself, or ``AlertTotals`` in memory.
        """
        routes = self._routes.get(type(observation))
        if routes is None:
            routes = self._route(type(observation))
        if not routes:  # identity records: the devices learn, detectors have nothing to find
            if self.devices is not None and isinstance(observation, IDENTITY_TYPES):
                self.devices.observe(observation)
            return []
        changed: list[Alert] = []
        for name, handle in routes:
            try:
                findings = handle(observation)
            except Exception as error:  # noqa: BLE001 - the record boundary
                self._record_error(name, error)
                continue
            if findings:
                changed += [self._sightings.sighting(finding) for finding in findings]
        return changed

    @property
    def observed_types(self) -> frozenset[type] | None:
        """The observation types some detector (or the device registry) looks at; None if
        one looks at them all.

        A source may skip building the others (``EveTailer(wanted=...)``):
        no detector would see them, so no alert can change.
        """
        kinds: set[type] = set(IDENTITY_TYPES) if self.devices is not None else set()
        for detector in self._detectors:
            observes = getattr(detector, "observes", None)
            if observes is None:
                return None
            kinds.update(kind for kind in get_args(Observation) if issubclass(kind, observes))
        return frozenset(kinds)

    @property
    def dns_name_filter(self) -> Callable[[str], bool] | None:
        """Whether a detector looks at a DNS name; None if one may look at every name.

        A source may then skip DNS records none of whose names is wanted
        (``EveTailer.names``): no detector would find anything in them. A
        detector that looks at DNS records says which names with
        ``wants_name``; one that does not makes this None. Changes with the
        feeds: ask again after building a new engine.
        """
        filters: list[Callable[[str], bool]] = []
        for detector in self._detectors:
            observes = getattr(detector, "observes", None)
            if observes is None:
                return None
            if issubclass(DnsQuery, observes) or issubclass(DnsAnswer, observes):
                wants_name = getattr(detector, "wants_name", None)
                if wants_name is None:
                    return None
                filters.append(wants_name)
        if len(filters) == 1:
            return filters[0]
        return lambda name: any(wants(name) for wants in filters)

    def _route(self, kind: type) -> tuple[tuple[str, Handler], ...]:
        routes = self._routes[kind] = () if issubclass(kind, IDENTITY_TYPES) else tuple(
            (detector.name, _handler(detector, kind)) for detector in self._detectors
            if issubclass(kind, getattr(detector, "observes", object)))
        return routes

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
