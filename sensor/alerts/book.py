"""The alert book: SQLite (WAL, synchronous=NORMAL), the source of truth for alerts.

The book and its -wal and -shm files are mode 0600 whatever the umask: they
hold raw device addresses.

An alert is committed here before anything is published; the outbox row
goes away only when the broker acknowledged that exact version. An alert
that changes while a copy is in flight gets a new version, so the older
acknowledgement does not retire the newer content.
Undelivered alerts are never purged. Not the job of this module: talking to
a broker (``sensor.outputs.mqtt``).

Sparing the SD card (docs/mqtt.md, "Card writes"): pages of 1 KiB (SQLite
writes whole pages, and a new alert touches a handful), outgoing payloads
compressed, no index but the primary keys, and ``synchronous=NORMAL``: a
commit goes to the WAL without an fsync. A crash of the sensor loses nothing
committed (the kernel has it); a power cut may lose what was committed since
the last ``sync`` (the daemon calls it within a second of new alerts, and
every ``daemon.alert_update_seconds`` otherwise), never more, and never leaves the book
damaged (the WAL's checksums end it at the last whole transaction).

It is also the one place sightings are merged into an alert
(``merge_sighting``): the book merges what it is given into its row, the
detection engine's running totals and the daemon's pending updates use the
same function, and nothing else adds counts up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sensor.detect.model import Alert, AlertKind, Severity
from sensor.devices.model import DeviceIdentity
from sensor.errors import VeilleuseError
from sensor.files import create_private

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    device TEXT NOT NULL,
    indicator TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    count INTEGER NOT NULL,
    record TEXT NOT NULL,
    updated_at REAL NOT NULL,
    delivered_at REAL,
    clock_synchronised INTEGER
);
CREATE TABLE IF NOT EXISTS outbox (
    alert_id TEXT PRIMARY KEY REFERENCES alerts(id),
    version INTEGER NOT NULL,
    payload TEXT NOT NULL,
    queued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS quarantine (
    outbox_rowid INTEGER,
    alert_id BLOB,
    version BLOB,
    payload BLOB,
    queued_at BLOB,
    reason TEXT NOT NULL,
    quarantined_at REAL NOT NULL
);
"""
SQLITE_FULL = 13
PAGE_SIZE = 1024  # bytes; SQLite's default is 4096
WAL_PAGES = 4096  # checkpoint past this: 4 MiB, SQLite's default bound in bytes


def _either_false(first: bool | None, second: bool | None) -> bool | None:
    """False once any sighting was stored on an unsynchronised clock; None for capture files."""
    if first is False or second is False:
        return False
    if first is True or second is True:
        return True
    return None


def merge_sighting(known: Alert | None, sighting: Alert) -> Alert:
    """``sighting`` (new sightings of one alert, ``count`` of them) merged into ``known``.

    The only merge of alerts. Order-independent (min, max, sum, union), so
    sources that emit records in another order give the same alerts: the
    earliest sighting gives ``observed``; the most severe wins; the latest
    non-empty details and identity win.
    """
    if known is None:
        return sighting
    if sighting.id != known.id:
        raise ValueError(f"cannot merge alert {sighting.id} into alert {known.id}")
    earliest = min((known.first_seen, known.observed), (sighting.first_seen, sighting.observed))
    return dataclasses.replace(
        known, severity=max(known.severity, sighting.severity, key=lambda s: s.rank),
        observed=earliest[1], protocols=tuple(sorted({*known.protocols, *sighting.protocols})),
        first_seen=earliest[0], last_seen=max(known.last_seen, sighting.last_seen),
        count=known.count + sighting.count, details=sighting.details or known.details,
        clock_synchronised=_either_false(known.clock_synchronised, sighting.clock_synchronised),
        addresses=tuple(sorted({*known.addresses, *sighting.addresses})),
        identity=sighting.identity or known.identity)


class AlertTotals:
    """Alerts merged in memory by the book's rule, for an analysis that keeps no book."""

    def __init__(self) -> None:
        self._alerts: dict[str, Alert] = {}

    def __len__(self) -> int:
        return len(self._alerts)

    def add(self, sightings: Iterable[Alert]) -> None:
        for sighting in sightings:
            self._alerts[sighting.id] = merge_sighting(self._alerts.get(sighting.id), sighting)

    def alerts(self) -> list[Alert]:
        """All alerts, most severe first, then by first sighting."""
        return sorted(self._alerts.values(),
                      key=lambda a: (-a.severity.rank, a.first_seen, a.device, a.indicator))


def alert_record_json(alert: Alert) -> str:
    """The JSON the book keeps of an alert (its ``record`` column)."""
    return json.dumps({**dataclasses.asdict(alert), "kind": alert.kind.value,
                       "severity": alert.severity.value})


def alert_of(stored: StoredAlert) -> Alert:
    """The alert a book row holds: counts and times from its columns, the rest from its record.

    Rows written before the book merged whole alerts kept only the latest
    record beside merged columns: the columns are the truth. AlertBookError
    if the record cannot be read.
    """
    try:
        data = json.loads(stored.record)
        identity = data.get("identity")
        return Alert(
            id=stored.id, kind=AlertKind(stored.kind), severity=Severity(stored.severity),
            device=stored.device, indicator=stored.indicator, observed=str(data["observed"]),
            app=data.get("app"), protocols=tuple(data["protocols"]),
            first_seen=stored.first_seen, last_seen=stored.last_seen, count=stored.count,
            details=tuple((str(key), str(value)) for key, value in data.get("details", ())),
            clock_synchronised=stored.clock_synchronised,
            addresses=tuple(str(address) for address in data.get("addresses", ())),
            identity=DeviceIdentity(**identity) if isinstance(identity, dict) else None)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise AlertBookError(f"alert {stored.id}: its stored record cannot be read ({error!r});"
                             " the book may come from a newer Veilleuse") from None


def compress_payload(payload: str) -> bytes:
    """An outgoing payload as the outbox keeps it: zlib, half the size (its fr/en texts).

    About 1.9 KiB of JSON becomes 0.9 KiB, which fits one 1 KiB page: fewer
    pages written for every new alert and every update.
    """
    return zlib.compress(payload.encode(), 6)


def decompress_payload(stored: object) -> str:
    """The payload of an outbox row: compressed, or text (rows an older version wrote).

    TypeError for another type, zlib.error or UnicodeDecodeError (a
    ValueError) for damaged bytes.
    """
    if isinstance(stored, bytes):
        return zlib.decompress(stored).decode()
    if isinstance(stored, str):
        return stored
    raise TypeError(f"a payload of type {type(stored).__name__}")


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


class AlertBookError(VeilleuseError):
    """The alert database cannot be opened or written."""


class AlertBookFull(AlertBookError):
    """The disk holding the alert book is full: nothing can be written until space is freed."""


def _write_error(path: Path, error: sqlite3.Error) -> AlertBookError:
    if getattr(error, "sqlite_errorcode", 0) & 0xFF == SQLITE_FULL:
        return AlertBookFull(f"{path}: the disk is full ({error}); free some space on it")
    return AlertBookError(f"{path}: write failed ({error})")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One alert version waiting for the broker's acknowledgement."""

    alert_id: str
    version: int
    payload: str
    attempts: int


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """The book's row for an alert, for status pages and the screen."""

    id: str
    kind: str
    severity: str
    device: str
    indicator: str
    first_seen: float
    last_seen: float
    count: int
    record: str
    delivered: bool
    clock_synchronised: bool | None


def read_recent_alerts(path: Path, limit: int = 5) -> list[StoredAlert]:
    """The alerts seen last, read-only (for ``veilleuse status`` beside a running sensor).

    AlertBookError if the book cannot be read (it is private to the veilleuse
    user: an admin in the veilleuse group reads the health, not the alerts).
    """
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro",
                                                uri=True)) as db:
            rows = db.execute(
                f"SELECT {_STORED_COLUMNS} FROM alerts a LEFT JOIN outbox o ON o.alert_id=a.id "
                "ORDER BY last_seen DESC LIMIT ?", (limit,)).fetchall()
    except sqlite3.Error as error:
        raise AlertBookError(f"{path}: cannot read the alert book ({error})") from None
    return [_stored_row(row) for row in rows]


_STORED_COLUMNS = ("a.id, kind, severity, device, indicator, first_seen, last_seen, count, "
                   "record, o.alert_id IS NULL, clock_synchronised")


def _stored_row(row: tuple) -> StoredAlert:
    """A row of ``_STORED_COLUMNS`` (alerts joined with the outbox) as a StoredAlert."""
    return StoredAlert(*(*row[:9], bool(row[9]),  # delivered, clock_synchronised
                         None if row[10] is None else bool(row[10])))


class AlertBook:
    """Thread-safe: one connection, used under a lock (writes are small and rare)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for private in (self.path, *_sidecars(self.path)):
                if private == self.path or private.exists():
                    create_private(private)  # SQLite gives -wal and -shm the book's mode
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._set_page_size()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
            self._db.executescript(_SCHEMA)
            self._migrate()
        except (OSError, sqlite3.Error) as error:
            raise AlertBookError(f"{self.path}: cannot open the alert book ({error}); check "
                                 "that the directory exists and belongs to the veilleuse user") \
                from None
        self._lock = threading.RLock()  # re-entered by a batch's own transactions
        self._in_batch = False
        self._unsynced = False  # committed since the last ``sync``

    def _set_page_size(self) -> None:
        """``PAGE_SIZE`` for a new book; an older book is rewritten once with it (VACUUM).

        A book another process holds open (``veilleuse status``) keeps its
        pages until the next start: it works the same, it writes more.
        """
        if self._db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE:
            return
        has_tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if not has_tables:  # a new book: the size is taken at the first write
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            return
        try:  # the page size of a WAL database changes only out of WAL mode
            self._db.execute("PRAGMA journal_mode=DELETE")
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            self._db.execute("VACUUM")
            log.info("alert book %s: rewritten with pages of %d bytes (fewer bytes written "
                     "per alert)", self.path, PAGE_SIZE)
        except sqlite3.OperationalError as error:  # another connection holds it
            log.warning("alert book %s: keeps its pages of %d bytes for now (%s); it is "
                        "rewritten with %d-byte pages at a later start", self.path,
                        self._db.execute("PRAGMA page_size").fetchone()[0], error, PAGE_SIZE)

    def _migrate(self) -> None:
        """Bring a book an older version created to this version's schema."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(alerts)")}
        if "clock_synchronised" not in columns:
            self._db.execute("ALTER TABLE alerts ADD COLUMN clock_synchronised INTEGER")
        # Kept up to date on every write for a sort of a (usually empty) outbox.
        self._db.execute("DROP INDEX IF EXISTS outbox_queued")

    def close(self) -> None:
        """Close; SQLite then copies the WAL into the book and syncs both (nothing to lose)."""
        with self._lock:
            self._db.close()

    def sync(self) -> bool:
        """Make every committed transaction survive a power cut; False if none was waiting.

        With ``synchronous=NORMAL`` commits are not fsync'd one by one; this
        is the one fsync that covers them all: of the WAL, which is where
        they are (a checkpoint would also rewrite the book's pages, SQLite
        does that itself when the WAL reaches ``WAL_PAGES`` pages). Nothing is
        written when nothing was committed since the last call.
        """
        with self._lock:
            if not self._unsynced:
                return False
            wal = _sidecars(self.path)[0]
            try:
                descriptor = os.open(wal, os.O_RDONLY)
            except FileNotFoundError:  # checkpointed and removed: in the book already
                self._unsynced = False
                return True
            try:
                os.fsync(descriptor)
            except OSError as error:
                raise AlertBookError(f"{wal}: cannot sync the alert book ({error})") from None
            finally:
                os.close(descriptor)
            self._unsynced = False
            return True

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._in_batch:  # part of the batch's one transaction
                yield self._db
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
                self._unsynced = True
            except sqlite3.Error as error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise _write_error(self.path, error) from None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Several writes in one transaction: one commit, each page written once.

        The live sensor stores the new alerts of a loop turn this way, and the
        updates of known alerts once a minute, so that a busy network does not
        wear the SD card out. All or
        nothing: AlertBookError rolls the whole batch back.
        """
        with self._lock:
            if self._in_batch:
                yield
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._in_batch = True
                yield
                self._in_batch = False
                self._db.execute("COMMIT")
                self._unsynced = True
            except sqlite3.Error as error:
                self._in_batch = False
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise _write_error(self.path, error) from None
            except BaseException:
                self._in_batch = False
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as error:
                raise AlertBookError(f"{self.path}: read failed ({error}); the book may be "
                                     "damaged: `sqlite3 <book> 'PRAGMA integrity_check'` "
                                     "says where") from None

    def record(self, sighting: Alert, *, payload: Callable[[Alert], str], now: float) -> int:
        """Merge ``sighting`` into its alert and queue the payload; returns the queued version.

        ``sighting`` holds new sightings only (``count`` of them): several
        detection engines over time (restarts, feed reloads) add up instead of
        overwriting each other (``merge_sighting``). ``payload(merged)`` is
        built from the merged alert, in the same transaction.
        """
        alert_id = sighting.id
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_STORED_COLUMNS} FROM alerts a LEFT JOIN outbox o ON o.alert_id=a.id "
                "WHERE a.id=?", (alert_id,)).fetchone()
            try:
                known = None if row is None else alert_of(_stored_row(row))
            except AlertBookError as error:  # a damaged record
                log.error("alert book %s: %s; it is replaced by the new sightings", self.path,
                          error)
                known = None
            merged = merge_sighting(known, sighting)
            synchronised = merged.clock_synchronised
            db.execute(
                "INSERT INTO alerts (id, kind, severity, device, indicator, first_seen, "
                "last_seen, count, record, updated_at, clock_synchronised) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET severity=excluded.severity, "
                "first_seen=excluded.first_seen, last_seen=excluded.last_seen, "
                "count=excluded.count, record=excluded.record, updated_at=excluded.updated_at, "
                "clock_synchronised=excluded.clock_synchronised",
                (alert_id, merged.kind.value, merged.severity.value, merged.device,
                 merged.indicator, merged.first_seen, merged.last_seen, merged.count,
                 alert_record_json(merged), now,
                 None if synchronised is None else int(synchronised)))
            payload_text = compress_payload(payload(merged))
            row = db.execute("SELECT version FROM outbox WHERE alert_id=?",
                             (alert_id,)).fetchone()
            version = 1 if row is None else row[0] + 1
            db.execute(
                "INSERT INTO outbox (alert_id, version, payload, queued_at) VALUES (?,?,?,?) "
                "ON CONFLICT(alert_id) DO UPDATE SET version=excluded.version, "
                "payload=excluded.payload", (alert_id, version, payload_text, now))
        return version

    def pending(self, limit: int = 100, exclude: frozenset[str] = frozenset()) -> list[OutboxEntry]:
        """Oldest undelivered alerts first, skipping ids in ``exclude`` (already in flight).

        Oldest is the first queued: a row keeps its rowid when a newer
        version replaces it, and a new row gets a higher one.

        Rows are read one by one: a row that cannot be read or makes no sense
        (a damaged disk, a hand edit) is moved to the ``quarantine`` table,
        named in the log, and the others are still delivered.
        """
        with self._reading() as db:
            rowids = [row[0] for row in db.execute(
                "SELECT rowid FROM outbox ORDER BY rowid LIMIT ?", (limit + len(exclude),))]
        entries = []
        for rowid in rowids:
            entry = self._outbox_row(rowid)
            if entry is not None and entry.alert_id not in exclude:
                entries.append(entry)
        return entries[:limit]

    def _outbox_row(self, rowid: int) -> OutboxEntry | None:
        try:
            with self._lock:
                row = self._db.execute("SELECT alert_id, version, payload, attempts FROM outbox "
                                       "WHERE rowid=?", (rowid,)).fetchone()
            if row is None:
                return None  # delivered meanwhile
            alert_id, version, stored, attempts = row
            entry = OutboxEntry(alert_id, version, decompress_payload(stored), attempts)
            if not (isinstance(entry.alert_id, str) and isinstance(entry.version, int) and
                    isinstance(entry.attempts, int)):
                raise TypeError(f"a field has the wrong type: {row!r:.200}")
        except (sqlite3.Error, TypeError, ValueError, zlib.error) as error:
            self._quarantine(rowid, f"{type(error).__name__}: {error}")
            return None
        return entry

    def _quarantine(self, rowid: int, reason: str) -> None:
        """Move one unusable outbox row aside, whole and as raw bytes, and say so."""
        with self._transaction() as db:
            raw_id = db.execute("SELECT CAST(alert_id AS BLOB) FROM outbox WHERE rowid=?",
                                (rowid,)).fetchone()
            db.execute(
                "INSERT INTO quarantine SELECT rowid, CAST(alert_id AS BLOB), "
                "CAST(version AS BLOB), CAST(payload AS BLOB), CAST(queued_at AS BLOB), ?, ? "
                "FROM outbox WHERE rowid=?", (reason, time.time(), rowid))
            db.execute("DELETE FROM outbox WHERE rowid=?", (rowid,))
        alert_id = bytes(raw_id[0]).decode("utf-8", "replace") if raw_id and raw_id[0] else "?"
        log.error("alert book %s: outbox row %d (alert %s) is unreadable (%s); moved to its "
                  "quarantine table, the other alerts are delivered. Inspect it with: sqlite3 "
                  "%s 'SELECT * FROM quarantine'", self.path, rowid, alert_id, reason, self.path)

    def quarantined_count(self) -> int:
        """How many outbox rows were moved aside as unreadable (ever, in this book)."""
        with self._reading() as db:
            return db.execute("SELECT count(*) FROM quarantine").fetchone()[0]

    def mark_delivered(self, alert_id: str, version: int, now: float) -> bool:
        """Retire the outbox row if it still holds ``version``; False if it changed since."""
        return self.mark_all_delivered([(alert_id, version)], now) == 1

    def mark_all_delivered(self, acknowledged: list[tuple[str, int]], now: float) -> int:
        """``mark_delivered`` for many rows in one transaction (one commit); returns how many."""
        removed = 0
        with self._transaction() as db:
            for alert_id, version in acknowledged:
                if db.execute("DELETE FROM outbox WHERE alert_id=? AND version=?",
                              (alert_id, version)).rowcount:
                    db.execute("UPDATE alerts SET delivered_at=? WHERE id=?", (now, alert_id))
                    removed += 1
        return removed

    def mark_failed(self, alert_id: str, error: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE outbox SET attempts=attempts+1, last_error=? WHERE alert_id=?",
                       (error, alert_id))

    def severity_counts(self) -> dict[str, int]:
        """How many stored alerts there are of each severity."""
        with self._reading():
            return dict(self._db.execute(
                "SELECT severity, count(*) FROM alerts GROUP BY severity").fetchall())

    def pending_count(self, acknowledged: Iterable[tuple[str, int]] = ()) -> int:
        """Undelivered alerts; ``acknowledged`` (id, version) rows, waiting to be retired in
        a batch, are delivered and not counted."""
        with self._reading():
            count = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
            for alert_id, version in acknowledged:
                count -= self._db.execute("SELECT count(*) FROM outbox WHERE alert_id=? AND "
                                          "version=?", (alert_id, version)).fetchone()[0]
            return count

    def alerts(self) -> list[StoredAlert]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_STORED_COLUMNS} FROM alerts a LEFT JOIN outbox o ON o.alert_id=a.id "
                "ORDER BY last_seen DESC").fetchall()
        return [_stored_row(row) for row in rows]

    def purge(self, older_than: float) -> int:
        """Delete delivered alerts last seen before ``older_than``; undelivered ones stay."""
        with self._transaction() as db:
            return db.execute("DELETE FROM alerts WHERE last_seen < ? AND id NOT IN "
                              "(SELECT alert_id FROM outbox)", (older_than,)).rowcount
