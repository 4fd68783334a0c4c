"""The alert book's rows on their way to the broker, tracked by MQTT message id.

A row is in flight from its publish until the PUBACK for that message id;
only a successful PUBACK retires it, in one transaction per batch of
PUBACKs: every ``retire_every`` seconds, or once a window of
``max_in_flight`` is acknowledged, and when the publisher stops. Until then
the acknowledged versions are delivered (not counted as pending, not offered
again); a crash before the batch is written only sends them again at the
next start (same id: a harmless duplicate), which spares the SD card a
commit per alert. A refused one waits with a growing delay before it is
offered again; a copy never acknowledged is forgotten after ``ack_timeout``
and offered again (same id, so a duplicate is harmless). When the book
cannot record a retirement (a full disk), the acknowledged versions stay in
memory, are not offered again, and are retired once the disk allows.

Not the job of this module: the connection, or what a refusal means for the
health (the publisher reports it as a fact).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from paho.mqtt.reasoncodes import ReasonCode

from sensor.alerts.book import AlertBook, AlertBookFull, OutboxEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """How many rows may be in flight, how long to wait for a PUBACK or after a refusal,
    and how long acknowledged rows may wait to be retired together."""

    max_in_flight: int = 100
    ack_timeout: float = 60.0
    retry_backoff_max: float = 300.0
    retire_every: float = 5.0


@dataclass(frozen=True, slots=True)
class _InFlight:
    alert_id: str
    version: int
    sent_at: float


class Outbox:
    """Which rows of ``book`` are in flight, waiting after a refusal, or to be retired."""

    def __init__(self, book: AlertBook, limits: OutboxLimits, topic: str,
                 clock: Callable[[], float], wall_clock: Callable[[], float]) -> None:
        self.book, self.limits, self._topic = book, limits, topic
        self._clock, self._wall_clock = clock, wall_clock
        self._in_flight: dict[int, _InFlight] = {}
        self._retry_after: dict[str, float] = {}
        self._refusals: dict[str, int] = {}
        self._acknowledged: list[tuple[str, int]] = []
        self._unretired: dict[str, int] = {}
        self._retire_due = clock() + limits.retire_every
        self.disk_full = False
        """The book's disk is full: acknowledged alerts wait in memory to be retired."""
        self.delivered = 0
        self.last_refusal: str | None = None

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def unretired(self) -> int:
        """Acknowledged alerts whose retirement is not written yet (kept in memory)."""
        return len(self._unretired)

    @property
    def retiring(self) -> int:
        """Acknowledged rows waiting for their batch to be retired."""
        return len(self._acknowledged)

    def pending_count(self) -> int:
        """The book's undelivered rows, those acknowledged and waiting to be retired aside."""
        return self.book.pending_count(list(self._acknowledged))

    def sendable(self) -> list[OutboxEntry]:
        """The rows to publish now: pending, and neither in flight, waiting nor acknowledged."""
        room = self.limits.max_in_flight - len(self._in_flight)
        if room <= 0:
            return []
        now = self._clock()
        busy = {entry.alert_id for entry in self._in_flight.values()}
        waiting = {alert_id for alert_id, when in self._retry_after.items() if when > now}
        acknowledged = set(self._acknowledged)  # a newer version of one is sent at once
        rows = self.book.pending(limit=room + len(acknowledged),
                                 exclude=frozenset(busy | waiting | self._unretired.keys()))
        return [row for row in rows if (row.alert_id, row.version) not in acknowledged][:room]

    def sent(self, mid: int, row: OutboxEntry) -> None:
        self._in_flight[mid] = _InFlight(row.alert_id, row.version, self._clock())

    def acknowledged(self, mid: int, reason: ReasonCode) -> bool | None:
        """True for a delivery, False for a refusal, None for a message that is not a row's
        (the status or state topic, or an alert already offered again)."""
        entry = self._in_flight.pop(mid, None)
        if entry is None:
            return None
        if reason.is_failure:
            self._refused(entry, reason)
            return False
        self._retry_after.pop(entry.alert_id, None)
        self._refusals.pop(entry.alert_id, None)
        self._acknowledged.append((entry.alert_id, entry.version))
        return True

    def _refused(self, entry: _InFlight, reason: ReasonCode) -> None:
        self.last_refusal = f"{self._topic}: {reason}"
        tries = self._refusals[entry.alert_id] = self._refusals.get(entry.alert_id, 0) + 1
        self.book.mark_failed(entry.alert_id, str(reason))
        delay = min(self.limits.retry_backoff_max, 2.0 ** min(tries, 16))
        self._retry_after[entry.alert_id] = self._clock() + delay
        if tries == 1:
            log.error("the broker refused alert %s on %s: %s; it stays in the book and is "
                      "retried in %.0f s (check the broker's ACL for this sensor)",
                      entry.alert_id, self._topic, reason, delay)

    def retire(self, *, now: bool = False) -> None:
        """One transaction for every PUBACK since the last batch, when one is due (or ``now``).

        Due every ``retire_every`` seconds, or as soon as ``max_in_flight``
        acknowledgements wait. If the book cannot be written (a full disk),
        the acknowledged versions stay in memory, are not published again,
        and are retired on a later call (each call tries again).
        """
        if not self._acknowledged and not self._unretired:
            return
        due = now or self.disk_full or self._clock() >= self._retire_due or \
            len(self._acknowledged) >= self.limits.max_in_flight
        if not due:
            return
        self._retire_due = self._clock() + self.limits.retire_every
        self._unretired.update(self._acknowledged)
        self._acknowledged = []
        try:
            self.delivered += self.book.mark_all_delivered(list(self._unretired.items()),
                                                           self._wall_clock())
        except AlertBookFull as error:
            if not self.disk_full:
                log.error("%s; %d acknowledged alert(s) are remembered in memory and retired "
                          "once space is freed (they are not sent again)", error,
                          len(self._unretired))
            self.disk_full = True
            return
        if self.disk_full:
            log.info("alert book writable again: %d acknowledged alert(s) retired",
                     len(self._unretired))
        self._unretired.clear()
        self.disk_full = False

    def expire(self) -> None:
        """Forget copies never acknowledged; they are published again (same id)."""
        now = self._clock()
        stale = [mid for mid, entry in self._in_flight.items()
                 if now - entry.sent_at > self.limits.ack_timeout]
        for mid in stale:
            del self._in_flight[mid]
