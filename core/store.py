"""The core's SQLite database: alerts, sensors, their events, the quarantine and the SIEM journal.

WAL, ``synchronous=FULL``: a committed batch survives a power cut, and the
ingest acknowledges messages only after the commit. Several processes may
share the file: every write is one ``BEGIN IMMEDIATE`` transaction and every
upsert is idempotent (an alert's older version never overwrites a newer one;
the same state twice changes nothing), so it does not matter which process
stores a message, nor how many times. Each stored change also writes a
``journal`` row in the same transaction; ``export_journal`` appends those
rows to the JSON-lines file and deletes them (at least once: a crash between
the append and the delete repeats lines). Not the job of this module: MQTT,
deciding what a payload means (``payloads``), or when a sensor is silent
(``conditions``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.conditions import OK, Condition, SensorView, condition_of
from core.errors import StoreError
from core.payloads import AlertMessage, Message, StateMessage, StatusMessage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    site TEXT NOT NULL, sensor TEXT NOT NULL, id TEXT NOT NULL,
    severity TEXT NOT NULL, kind TEXT NOT NULL, count INTEGER NOT NULL,
    last_seen REAL NOT NULL, queued_at REAL NOT NULL, payload TEXT NOT NULL,
    first_stored_at REAL NOT NULL, stored_at REAL NOT NULL, versions INTEGER NOT NULL,
    stored_by TEXT NOT NULL, PRIMARY KEY (site, sensor, id));
CREATE TABLE IF NOT EXISTS sensors (
    site TEXT NOT NULL, sensor TEXT NOT NULL, first_heard_at REAL NOT NULL,
    health TEXT, reasons TEXT NOT NULL DEFAULT '[]', state_time REAL, state_payload TEXT,
    state_received_at REAL, status TEXT, status_reason TEXT, status_time REAL,
    condition TEXT NOT NULL DEFAULT 'unknown', condition_reasons TEXT NOT NULL DEFAULT '[]',
    condition_since REAL, PRIMARY KEY (site, sensor));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, site TEXT NOT NULL,
    sensor TEXT NOT NULL, event TEXT NOT NULL, reasons TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, received_at REAL NOT NULL, topic TEXT NOT NULL,
    payload BLOB NOT NULL, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS quarantine_message ON quarantine (topic, payload);
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notifications (
    sent_at REAL NOT NULL, site TEXT NOT NULL, sensor TEXT NOT NULL);
"""

_UPSERT_ALERT = """
INSERT INTO alerts (site, sensor, id, severity, kind, count, last_seen, queued_at, payload,
                    first_stored_at, stored_at, versions, stored_by)
VALUES (:site, :sensor, :id, :severity, :kind, :count, :last_seen, :queued_at, :payload,
        :now, :now, 1, :writer)
ON CONFLICT (site, sensor, id) DO UPDATE SET
    severity = excluded.severity, kind = excluded.kind, count = excluded.count,
    last_seen = excluded.last_seen, queued_at = excluded.queued_at,
    payload = excluded.payload, stored_at = excluded.stored_at, versions = versions + 1,
    stored_by = excluded.stored_by
WHERE (excluded.count, excluded.last_seen) > (alerts.count, alerts.last_seen)
   OR ((excluded.count, excluded.last_seen) = (alerts.count, alerts.last_seen)
       AND json_extract(alerts.payload, '$.evidence') IS NULL
       AND json_extract(excluded.payload, '$.evidence') IS NOT NULL)
RETURNING versions
"""

SENSOR_EVENTS = {"silent": "high", "degraded": "medium", "recovered": "info"}


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Received:
    """One MQTT message as the ingest hands it over: parsed, or why it could not be."""

    topic: str
    payload: bytes
    message: Message | None
    problem: str | None = None
    retained: bool = False


@dataclass(frozen=True, slots=True)
class SensorEvent:
    site: str
    sensor: str
    event: str
    reasons: tuple[str, ...]
    time: float


@dataclass(slots=True)
class BatchOutcome:
    """What one stored batch changed."""

    new_alerts: list[AlertMessage] = field(default_factory=list)
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    states: int = 0
    events: list[SensorEvent] = field(default_factory=list)


class CoreStore:
    """One connection to the database; use one per thread (sqlite3's rule).

    ``writer`` (the ingest's client id) is recorded with each alert it stores.
    """

    def __init__(self, path: Path | str, busy_timeout: float = 60.0, writer: str = "") -> None:
        self.path = Path(path)
        self.writer = writer
        deadline = time.monotonic() + busy_timeout
        while True:
            db = None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
                self._db = db
                return
            except (OSError, sqlite3.Error) as error:
                if db is not None:
                    db.close()
                # Switching a new database to WAL does not wait on SQLite's busy handler:
                # two connections opening it at once (the ingest and its notifier) get
                # "database is locked" at once. Wait for the other, as the timeout says.
                busy = isinstance(error, sqlite3.OperationalError) and "locked" in str(error)
                if not busy or time.monotonic() >= deadline:
                    raise StoreError(f"cannot open the core database {self.path}: {error}; "
                                     "check store.database and that this user may write "
                                     "there") from None
                time.sleep(0.05)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._db.in_transaction:
            yield self._db
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing -------------------------------------------------------------------

    def store_batch(self, batch: Iterable[Received], now: float,
                    silent_after: float) -> BatchOutcome:
        """Store every message of ``batch`` in one transaction; then it may be acknowledged."""
        outcome = BatchOutcome()
        touched: set[tuple[str, str]] = set()
        with self._transaction():
            for received in batch:
                message = received.message
                if message is None:
                    if self._quarantine(received, now):
                        outcome.quarantined += 1
                    else:
                        outcome.unchanged += 1
                    continue
                touched.add((message.site, message.sensor))
                self._heard(message.site, message.sensor, now)
                if isinstance(message, AlertMessage):
                    self._store_alert(message, now, outcome)
                elif isinstance(message, StateMessage):
                    outcome.states += self._store_state(message, now, received.retained)
                else:
                    self._store_status(message)
            outcome.events = self._update_conditions(touched, now, silent_after)
        return outcome

    def check_sensors(self, now: float, silent_after: float) -> list[SensorEvent]:
        """Raise the events of sensors whose condition changed (silence needs no message)."""
        with self._transaction():
            keys = [(row[0], row[1]) for row in self._db.execute(
                "SELECT site, sensor FROM sensors")]
            return self._update_conditions(keys, now, silent_after)

    def _journal(self, record: dict[str, Any]) -> None:
        self._db.execute("INSERT INTO journal (line) VALUES (?)",
                         (json.dumps(record, ensure_ascii=False, sort_keys=True),))

    def _quarantine(self, received: Received, now: float) -> bool:
        """Keep a message that cannot be stored; False if this one is already kept.

        The broker delivers again what was in flight when a connection ended (MQTT's
        at-least-once): a redelivered message changes nothing, as for alerts.
        """
        if self._db.execute("SELECT 1 FROM quarantine WHERE topic = ? AND payload = ?",
                            (received.topic, received.payload)).fetchone():
            return False
        self._db.execute("INSERT INTO quarantine (received_at, topic, payload, reason) "
                         "VALUES (?, ?, ?, ?)",
                         (now, received.topic, received.payload, received.problem or "?"))
        self._journal({"type": "quarantine", "stored_at": iso(now), "topic": received.topic,
                       "reason": received.problem, "size": len(received.payload)})
        return True

    def _heard(self, site: str, sensor: str, now: float) -> None:
        self._db.execute("INSERT INTO sensors (site, sensor, first_heard_at) VALUES (?, ?, ?) "
                         "ON CONFLICT DO NOTHING", (site, sensor, now))

    def _store_alert(self, alert: AlertMessage, now: float, outcome: BatchOutcome) -> None:
        row = self._db.execute(_UPSERT_ALERT, {
            "site": alert.site, "sensor": alert.sensor, "id": alert.id,
            "severity": alert.severity, "kind": alert.kind, "count": alert.count,
            "last_seen": alert.last_seen, "queued_at": alert.queued_at, "now": now,
            "writer": self.writer,
            "payload": json.dumps(alert.payload, ensure_ascii=False, sort_keys=True)}).fetchone()
        if row is None:
            outcome.unchanged += 1
            return
        new = row[0] == 1
        if new:
            outcome.new_alerts.append(alert)
        else:
            outcome.updated += 1
        self._journal({"type": "alert", "change": "new" if new else "update",
                       "stored_at": iso(now), "site": alert.site, "sensor": alert.sensor,
                       "id": alert.id, "severity": alert.severity, "kind": alert.kind,
                       "count": alert.count, "alert": alert.payload})

    def _store_state(self, state: StateMessage, now: float, retained: bool) -> int:
        """Newer by the sensor's time; a live (not retained) state also wins if its clock went back.

        A retained state seen again after a restart is not news: its arrival
        time is then the earlier of now and the state's own time.
        """
        received_at = min(now, state.time) if retained else now
        cursor = self._db.execute(
            "UPDATE sensors SET health = ?, reasons = ?, state_time = ?, state_payload = ?, "
            "state_received_at = ? WHERE site = ? AND sensor = ? AND (state_time IS NULL OR "
            "? > state_time OR (? AND ? != state_time))",
            (state.health, json.dumps(list(state.reasons)), state.time,
             json.dumps(state.payload, sort_keys=True), received_at, state.site, state.sensor,
             state.time, not retained, state.time))
        return cursor.rowcount

    def _store_status(self, status: StatusMessage) -> None:
        """The last one to arrive wins: a last will carries the time it was set, not sent."""
        self._db.execute("UPDATE sensors SET status = ?, status_reason = ?, status_time = ? "
                         "WHERE site = ? AND sensor = ?",
                         (status.status, status.reason, status.time, status.site,
                          status.sensor))

    def _update_conditions(self, keys: Iterable[tuple[str, str]], now: float,
                           silent_after: float) -> list[SensorEvent]:
        events = []
        for site, sensor in sorted(keys):
            view, stored = self._view(site, sensor)
            condition = condition_of(view, now, silent_after)
            if stored == condition:
                continue
            self._db.execute("UPDATE sensors SET condition = ?, condition_reasons = ?, "
                             "condition_since = ? WHERE site = ? AND sensor = ?",
                             (condition.name, json.dumps(list(condition.reasons)), now, site,
                              sensor))
            if condition.name == OK and stored.name in ("unknown", OK):
                continue  # first heard of and well: nothing to say
            event = SensorEvent(site, sensor, "recovered" if condition.name == OK else
                                condition.name, condition.reasons, now)
            self._db.execute("INSERT INTO events (time, site, sensor, event, reasons) "
                             "VALUES (?, ?, ?, ?, ?)",
                             (now, site, sensor, event.event, json.dumps(event.reasons)))
            self._journal({"type": "sensor_event", "stored_at": iso(now), "site": site,
                           "sensor": sensor, "event": event.event,
                           "severity": SENSOR_EVENTS[event.event],
                           "reasons": list(event.reasons)})
            events.append(event)
        return events

    def _view(self, site: str, sensor: str) -> tuple[SensorView, Condition]:
        row = self._db.execute(
            "SELECT health, reasons, coalesce(state_received_at, first_heard_at), status, "
            "status_reason, condition, condition_reasons FROM sensors WHERE site = ? AND "
            "sensor = ?", (site, sensor)).fetchone()
        view = SensorView(site, sensor, row[0], tuple(json.loads(row[1])), row[2], row[3],
                          row[4])
        return view, Condition(row[5], tuple(json.loads(row[6])))

    # -- the SIEM journal ----------------------------------------------------------

    def export_journal(self, path: Path, chunk: int = 5000) -> int:
        """Append pending journal lines to ``path`` (fsync'd), then forget them; how many."""
        exported = 0
        while True:
            with self._transaction():
                rows = self._db.execute("SELECT seq, line FROM journal ORDER BY seq LIMIT ?",
                                        (chunk,)).fetchall()
                if not rows:
                    return exported
                _append_lines(path, [line for _, line in rows])
                self._db.execute("DELETE FROM journal WHERE seq <= ?", (rows[-1][0],))
            exported += len(rows)

    def journal_pending(self) -> int:
        return self._db.execute("SELECT count(*) FROM journal").fetchone()[0]

    # -- notifications' rate limit -------------------------------------------------

    def allow_notification(self, site: str, sensor: str, now: float,
                           per_sensor: tuple[int, float], overall: tuple[int, float]) -> bool:
        """Count one notification about ``site/sensor`` if both windows have room (shared)."""
        with self._transaction():
            self._db.execute("DELETE FROM notifications WHERE sent_at < ?",
                             (now - max(per_sensor[1], overall[1]),))
            total = self._db.execute("SELECT count(*) FROM notifications WHERE sent_at >= ?",
                                     (now - overall[1],)).fetchone()[0]
            mine = self._db.execute("SELECT count(*) FROM notifications WHERE sent_at >= ? AND "
                                    "site = ? AND sensor = ?",
                                    (now - per_sensor[1], site, sensor)).fetchone()[0]
            if total >= overall[0] or mine >= per_sensor[0]:
                return False
            self._db.execute("INSERT INTO notifications VALUES (?, ?, ?)", (now, site, sensor))
            return True

    # -- reading -------------------------------------------------------------------

    def sensors(self) -> list[tuple[SensorView, float | None]]:
        """Every sensor's view, with the sensor's own time of its last state."""
        rows = self._db.execute("SELECT site, sensor FROM sensors ORDER BY site, sensor")
        return [(self._view(site, sensor)[0], self._state_time(site, sensor))
                for site, sensor in rows.fetchall()]

    def _state_time(self, site: str, sensor: str) -> float | None:
        return self._db.execute("SELECT state_time FROM sensors WHERE site = ? AND sensor = ?",
                                (site, sensor)).fetchone()[0]

    def severity_counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT severity, count(*) FROM alerts GROUP BY severity"))

    def alert(self, site: str, sensor: str, alert_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT payload FROM alerts WHERE site = ? AND sensor = ? AND "
                               "id = ?", (site, sensor, alert_id)).fetchone()
        return None if row is None else json.loads(row[0])

    def alert_counts(self) -> dict[tuple[str, str, str], int]:
        """(site, sensor, id) -> the stored count."""
        return {(site, sensor, alert_id): count for site, sensor, alert_id, count in
                self._db.execute("SELECT site, sensor, id, count FROM alerts")}

    def events(self) -> list[SensorEvent]:
        return [SensorEvent(site, sensor, event, tuple(json.loads(reasons)), time)
                for time, site, sensor, event, reasons in self._db.execute(
                    "SELECT time, site, sensor, event, reasons FROM events ORDER BY seq")]

    def quarantined(self) -> list[tuple[str, str]]:
        """(topic, reason) of every quarantined payload."""
        return list(self._db.execute("SELECT topic, reason FROM quarantine ORDER BY seq"))


def _append_lines(path: Path, lines: list[str]) -> None:
    """One ``write`` in O_APPEND mode, then fsync: whole lines, even with other writers."""
    data = ("\n".join(lines) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
