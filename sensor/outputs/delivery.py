"""Queue alerts in the book with the payload that will leave the box, and publish them.

The glue between detection and the MQTT publisher; it receives them built
(``sensor.wiring`` builds them from the config). When the book's disk is
full, alerts wait in memory (up to ``MAX_HELD`` distinct alerts) and are
written, oldest first, as soon as it has room.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sensor.alerts.book import AlertBook, AlertBookError, AlertBookFull, merge_sighting
from sensor.alerts.pseudonym import Pseudonymizer
from sensor.alerts.retention import apply_retention
from sensor.config import Config
from sensor.detect.model import Alert
from sensor.evidence.store import apply_evidence_retention
from sensor.outputs.link import DeliveryFacts
from sensor.outputs.local import LocalMirror
from sensor.outputs.mqtt import MqttPublisher
from sensor.outputs.outgoing import alert_payload
from sensor.report import all_catalogues

log = logging.getLogger(__name__)

MAX_HELD = 10_000


class AlertQueue:
    """Writes the sightings of each alert, and its outgoing payload, to the book.

    What it is given are sightings (``count`` new ones each, as the detection
    engine reports them); the book merges them into the stored alert
    (``merge_sighting``), so nothing here adds counts up but through that rule.
    ``clock_synchronised`` is the live sensor's clock probe, asked as each
    alert is stored; None for a capture file, whose times are the packets'.
    ``disk_full``, ``held`` and ``dropped`` are for health: while the disk is
    full, sightings wait in memory, merged per alert; past ``max_held``
    distinct alerts, a new one is not kept (logged at ERROR and counted in
    ``dropped``): the alert is written the next time detection reports it,
    without the sightings that were not kept. Any other AlertBookError is
    raised with nothing stored, so adding the same sightings again counts
    them once.
    """

    def __init__(self, book: AlertBook, config: Config, pseudonyms: Pseudonymizer | None,
                 wall_clock: Callable[[], float],
                 clock_synchronised: Callable[[], bool] | None = None,
                 max_held: int = MAX_HELD) -> None:
        self.book = book
        self._clock_synchronised = clock_synchronised
        self._config = config
        self._pseudonyms = pseudonyms
        self._catalogues = all_catalogues()
        self._clock = wall_clock
        self._stored: set[str] = set()
        self._held: dict[str, Alert] = {}
        self.max_held = max_held
        self.dropped = 0
        self.disk_full = False
        self.on_stored: Callable[[str], None] | None = None
        """Called with each payload once it is in the book (the screen's copy)."""
        self.evidence_of: Callable[[str], dict[str, object] | None] | None = None
        """The announcement of an alert's kept evidence (``EvidenceKeeper.announcement``)."""

    @property
    def held(self) -> int:
        """Alerts waiting in memory for room on the disk."""
        return len(self._held)

    def add(self, sighting: Alert) -> None:
        """Store these sightings of an alert, and queue the alert's payload."""
        if self._held:
            self._hold(sighting)
            return
        try:
            self._write(sighting)
        except AlertBookFull as error:
            log.error("%s; alerts wait in memory (up to %d) until it has room", error,
                      self.max_held)
            self.disk_full = True
            self._hold(sighting)

    def _hold(self, sighting: Alert) -> None:
        if sighting.id in self._held or len(self._held) < self.max_held:
            self._held[sighting.id] = merge_sighting(self._held.get(sighting.id), sighting)
            return
        self.dropped += 1
        log.error("DISK FULL: alert %s (%s %s) NOT KEPT: %d alerts already wait in memory; "
                  "%d not kept so far. Free space on the disk of %s now", sighting.id,
                  sighting.kind.value, sighting.indicator, len(self._held), self.dropped,
                  self.book.path)

    def write_held(self) -> int:
        """Write the alerts waiting in memory, oldest first; returns how many were written."""
        written = 0
        for alert_id, sighting in list(self._held.items()):
            try:
                self._write(sighting)
            except AlertBookFull:
                return written
            del self._held[alert_id]
            written += 1
        if self.disk_full:
            log.info("alert book writable again: %d alert(s) written from memory", written)
        self.disk_full = False
        return written

    def _write(self, sighting: Alert) -> None:
        now = self._clock()
        synchronised = None if self._clock_synchronised is None else \
            self._clock_synchronised()
        merged: list[Alert] = []

        evidence = None if self.evidence_of is None else self.evidence_of(sighting.id)

        def payload(alert: Alert) -> str:
            merged.append(alert)
            return alert_payload(alert, self._catalogues, site=self._config.site,
                                 sensor=self._config.sensor, pseudonyms=self._pseudonyms,
                                 queued_at=now, evidence=evidence,
                                 share_identity=self._config.privacy.share_device_identity)

        self.book.record(dataclasses.replace(sighting, clock_synchronised=synchronised),
                         payload=payload, now=now)
        self._stored.add(sighting.id)
        if self.on_stored is not None and merged:
            # Committed: the book has it, whatever the copy does. The screen's copy names
            # the device (it stays on the box's loopback broker).
            self.on_stored(alert_payload(merged[-1], self._catalogues, site=self._config.site,
                                         sensor=self._config.sensor,
                                         pseudonyms=self._pseudonyms, queued_at=now,
                                         evidence=evidence, on_box=True))

    def add_batch(self, sightings: dict[str, Alert]) -> None:
        """``add`` each, in one transaction of the book; one by one if that fails.

        Each one written leaves ``sightings``, so after an AlertBookError the
        mapping holds exactly what was not stored (adding it again counts
        nothing twice). One by one is ``add``'s own path (a full disk holds
        alerts in memory, another error propagates), so a batch changes the
        cost, not the outcome.
        """
        if self._held or len(sightings) < 2:
            self._add_each(sightings)
            return
        stored = set(self._stored)
        try:
            with self.book.batch():
                for sighting in sightings.values():
                    self._write(sighting)
        except AlertBookError:
            self._stored = stored  # rolled back: none of them was stored
            self._add_each(sightings)
        else:
            sightings.clear()

    def _add_each(self, sightings: dict[str, Alert]) -> None:
        if self._held:
            self.write_held()
        for alert_id in list(sightings):
            self.add(sightings[alert_id])
            del sightings[alert_id]

    def is_stored(self, alert_id: str) -> bool:
        """Whether this queue has stored (or holds) the alert: later sightings are updates."""
        return alert_id in self._stored or alert_id in self._held

    def add_all(self, sightings: Iterable[Alert]) -> int:
        """``add`` each; alerts waiting in memory are written first, if there is room now."""
        if self._held:
            self.write_held()
        count = 0
        for sighting in sightings:
            self.add(sighting)
            count += 1
        return count


@dataclass(frozen=True, slots=True)
class Delivery:
    """The live sensor's alert book, the queue into it and the connections out of it."""

    book: AlertBook
    alerts: AlertQueue
    outputs: SensorOutputs


class SensorOutputs:
    """The live sensor's two connections: the core (the durable delivery) and the box's broker.

    Alerts leave the book only on the core's PUBACK. The box's broker gets a
    best-effort copy for the screen (``local``, a ``LocalMirror``); when
    ``mqtt.url`` is the box's broker, ``local`` is None: the one publisher
    serves both and nothing is published twice. Self-test commands are taken
    from both: the screen writes them on the box's broker, the core's
    operator on the core (each broker's ACL decides who may).
    """

    def __init__(self, core: MqttPublisher, local: LocalMirror | None) -> None:
        self.core = core
        self.local = local

    def connect(self, alerts: AlertQueue) -> None:
        """Route stored alerts to the screen's copy."""
        if self.local is not None:
            alerts.on_stored = self.local.publish_alert

    def start(self) -> None:
        self.core.start()
        if self.local is not None:
            self.local.start()

    def stop(self) -> None:
        self.core.stop()
        if self.local is not None:
            self.local.stop()


def deliver_pending(sender: MqttPublisher, book: AlertBook, timeout: float, *,
                    retention_days: int, clock_synchronised: Callable[[], bool],
                    evidence_directory: Path | None = None) -> tuple[bool, DeliveryFacts]:
    """Publish the book's pending alerts, then apply retention; (all acknowledged, facts).

    ``clock_synchronised`` (``sensor.daemon.clock.SystemClock``) says whether
    the clock that finds alerts old can be trusted: if not, none is deleted.
    Evidence bundles in ``evidence_directory`` follow the alerts' retention.
    """
    sender.start()
    try:
        delivered = sender.wait_until_delivered(timeout)
    finally:
        sender.stop()
    trusted = clock_synchronised()
    apply_retention(book, retention_days, time.time(), trusted)
    if evidence_directory is not None:
        apply_evidence_retention(evidence_directory, retention_days, time.time(), trusted)
    return delivered, sender.facts()
