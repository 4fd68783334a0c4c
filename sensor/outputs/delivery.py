"""Queue alerts in the book with the payload that will leave the box, and publish them.

The glue between detection and the MQTT publisher; it receives them built
(``sensor.wiring`` builds them from the config). When the book's disk is
full, alerts wait in memory (up to ``MAX_HELD`` distinct alerts) and are
written, oldest first, as soon as it has room.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from sensor.alerts.book import AlertBook, AlertBookError, AlertBookFull
from sensor.alerts.pseudonym import Pseudonymizer
from sensor.alerts.retention import apply_retention
from sensor.config import Config
from sensor.detect.model import Alert
from sensor.outputs.link import DeliveryFacts
from sensor.outputs.local import LocalMirror
from sensor.outputs.mqtt import MqttPublisher
from sensor.outputs.outgoing import alert_payload
from sensor.report import all_catalogues

log = logging.getLogger(__name__)

MAX_HELD = 10_000


class AlertQueue:
    """Writes each new or updated alert, and its outgoing payload, to the book.

    ``clock_synchronised`` is the live sensor's clock probe, asked as each
    alert is stored; None for a capture file, whose times are the packets'.
    ``disk_full``, ``held`` and ``dropped`` are for health: while the disk is
    full, alerts wait in memory; past ``max_held`` distinct alerts, a new one
    is not kept (logged at ERROR and counted in ``dropped``) and is written
    with all its sightings the next time detection reports it. Any other
    AlertBookError is raised with nothing counted, so adding the alert again
    stores all its sightings.
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
        self._counted: dict[str, int] = {}
        self._held: dict[str, tuple[Alert, int]] = {}
        self.max_held = max_held
        self.dropped = 0
        self.disk_full = False
        self.on_stored: Callable[[str], None] | None = None
        """Called with each payload once it is in the book (the screen's copy)."""

    @property
    def held(self) -> int:
        """Alerts waiting in memory for room on the disk."""
        return len(self._held)

    def add(self, alert: Alert) -> None:
        """Store the sightings this alert gained since it was last added, and queue it."""
        added = alert.count - self._counted.get(alert.id, 0)
        self._counted[alert.id] = alert.count
        if self._held:
            self._hold(alert, added)
            return
        try:
            self._write(alert, added)
        except AlertBookFull as error:
            log.error("%s; alerts wait in memory (up to %d) until it has room", error,
                      self.max_held)
            self.disk_full = True
            self._hold(alert, added)
        except AlertBookError:
            self._counted[alert.id] -= added  # not stored: added again in full on a retry
            raise

    def _hold(self, alert: Alert, added: int) -> None:
        if alert.id in self._held:
            self._held[alert.id] = (alert, self._held[alert.id][1] + added)
        elif len(self._held) < self.max_held:
            self._held[alert.id] = (alert, added)
        else:
            self._counted[alert.id] -= added  # written in full when it is seen again
            self.dropped += 1
            log.error("DISK FULL: alert %s (%s %s) NOT KEPT: %d alerts already wait in memory; "
                      "%d not kept so far. Free space on the disk of %s now", alert.id,
                      alert.kind.value, alert.indicator, len(self._held), self.dropped,
                      self.book.path)

    def write_held(self) -> int:
        """Write the alerts waiting in memory, oldest first; returns how many were written."""
        written = 0
        for alert_id, (alert, added) in list(self._held.items()):
            try:
                self._write(alert, added)
            except AlertBookFull:
                return written
            del self._held[alert_id]
            written += 1
        if self.disk_full:
            log.info("alert book writable again: %d alert(s) written from memory", written)
        self.disk_full = False
        return written

    def _write(self, alert: Alert, added: int) -> None:
        now = self._clock()

        synchronised = None if self._clock_synchronised is None else \
            self._clock_synchronised()
        alert = dataclasses.replace(alert, clock_synchronised=synchronised)

        built: list[str] = []

        def payload(first_seen: float, last_seen: float, count: int,
                    clock_synchronised: bool | None) -> str:
            merged = dataclasses.replace(alert, first_seen=first_seen, last_seen=last_seen,
                                         count=count, clock_synchronised=clock_synchronised)
            built.append(alert_payload(merged, self._catalogues, site=self._config.site,
                                       sensor=self._config.sensor, pseudonyms=self._pseudonyms,
                                       queued_at=now))
            return built[-1]

        record = {**asdict(alert), "kind": alert.kind.value, "severity": alert.severity.value}
        self.book.record(alert.id, kind=alert.kind.value, severity=alert.severity.value,
                         device=alert.device, indicator=alert.indicator,
                         first_seen=alert.first_seen, last_seen=alert.last_seen,
                         count_added=added, record=json.dumps(record), payload=payload, now=now,
                         clock_synchronised=synchronised)
        if self.on_stored is not None and built:
            self.on_stored(built[-1])  # committed: the book has it, whatever the copy does

    def add_batch(self, alerts: Iterable[Alert]) -> None:
        """``add`` each, in one transaction of the book; one by one if that fails.

        One by one is ``add``'s own path (a full disk holds alerts in memory,
        another error propagates), so a batch changes the cost, not the outcome.
        """
        alerts = list(alerts)
        if self._held or len(alerts) < 2:
            self.add_all(alerts)
            return
        counted = dict(self._counted)
        try:
            with self.book.batch():
                for alert in alerts:
                    added = alert.count - self._counted.get(alert.id, 0)
                    self._counted[alert.id] = alert.count
                    self._write(alert, added)
        except AlertBookError:
            self._counted = counted
            self.add_all(alerts)

    def is_stored(self, alert_id: str) -> bool:
        """Whether this queue has stored (or holds) the alert: later sightings are updates."""
        return alert_id in self._counted

    def add_all(self, alerts: Iterable[Alert]) -> int:
        """``add`` each; alerts waiting in memory are written first, if there is room now."""
        if self._held:
            self.write_held()
        count = 0
        for alert in alerts:
            self.add(alert)
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
                    ) -> tuple[bool, DeliveryFacts]:
    """Publish the book's pending alerts, then apply retention; (all acknowledged, facts).

    ``clock_synchronised`` (``sensor.daemon.clock.SystemClock``) says whether
    the clock that finds alerts old can be trusted: if not, none is deleted.
    """
    sender.start()
    try:
        delivered = sender.wait_until_delivered(timeout)
    finally:
        sender.stop()
    apply_retention(book, retention_days, time.time(), clock_synchronised())
    return delivered, sender.facts()
