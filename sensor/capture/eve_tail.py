"""Follow Suricata's eve.json as it grows and rotates, resuming from a saved offset.

At-least-once: the caller handles the observations of ``read_available``
then calls ``commit``, which saves (inode, offset) atomically; a crash in
between replays that batch (ids are stable, so replays are harmless), it
never skips one. Reading goes on past a batch not committed yet (each line
is read once per run): ``commit`` then covers everything read so far. A
half-written last line waits for its end.

Rotation is this module's alone: ``rotate_if_needed`` renames ``eve.json``
to ``eve.json.1`` past a size, then has Suricata reopen its logs (through
the supervisor, which owns the command socket). The file being read stays
open, so it is read to its end before the tailer moves to the new
``eve.json``; after a restart in the middle, the saved inode is found again
under ``eve.json.1``. A file that shrank is read again from its start.

A full disk does not stop the tailer: the position is kept in memory,
``disk_full`` says so, and it is saved by the first ``commit`` that has room
(a crash meanwhile replays from the last saved position: nothing is skipped).

Waking: ``wait_for_lines`` blocks until the kernel says (inotify, on the
directory, so that a rotated or recreated file is seen too) that the EVE
file changed, so new records are read within milliseconds while an idle
sensor sleeps. Saving: with ``save_every``, ``commit`` saves at most that
often (and ``save`` on stop); the position on disk may then lag, which a
crash turns into records read again, never into records skipped.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from inotify_simple import INotify, flags

from sensor.capture.eve import NameFilter
from sensor.capture.stats import SourceStats
from sensor.capture.suricata import read_eve_lines
from sensor.files import is_disk_full, replace_file
from sensor.observations import Observation

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 4 * 1024 * 1024
# What tells the tailer that EVE grew, was recreated or rotated.
_WAKING = flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE


@dataclass(frozen=True, slots=True)
class Position:
    inode: int
    offset: int


def rotated_path(path: Path) -> Path:
    """Where ``rotate_if_needed`` moves a full EVE file (one generation is kept)."""
    return path.with_name(path.name + ".1")


ReopenLogs = Callable[[Callable[[bool, str], None]], None]
"""Asks the EVE writer to reopen its files, then calls back with (done, what it said)."""


class EveTailer:
    """Reads complete new lines of one EVE file; ``commit`` makes progress durable.

    ``wanted``: the observation types to build (None: all), usually the
    detection engine's ``observed_types``; records of other types are skipped.
    ``names``: the DNS names detection looks at (None: all), set again with
    each new engine (``narrow``); DNS records of other names are skipped.
    """

    def __init__(self, path: Path, offset_file: Path, stats: SourceStats | None = None, *,
                 save_every: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 wanted: Collection[type] | None = None) -> None:
        self.path = path
        self.wanted = wanted
        self.names: NameFilter | None = None
        self.offset_file = offset_file
        self.stats = stats or SourceStats("suricata-eve")
        self.position = self._saved = self._load()  # committed (what a restart resumes from)
        self._reading = self.position  # where the next read starts
        self._handle: BinaryIO | None = None
        self._pending: Position | None = None
        self._read_to = 0  # where the last read stopped, a half line included
        self.disk_full = False
        self._save_every, self._clock = save_every, clock
        self._save_due = clock()
        self._inotify: INotify | None = None
        self._unwatchable = False  # inotify refused once: poll from then on
        self._names = {path.name, rotated_path(path).name}

    def _load(self) -> Position:
        try:
            saved = json.loads(self.offset_file.read_text())
            return Position(int(saved["inode"]), int(saved["offset"]))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return Position(0, 0)

    def _open(self) -> None:
        """Open the file holding the saved position (the current or the rotated one)."""
        for candidate in (self.path, rotated_path(self.path)):
            try:
                handle = candidate.open("rb")
            except FileNotFoundError:
                continue
            if os.fstat(handle.fileno()).st_ino == self.position.inode:
                self._handle, self._reading = handle, self.position
                return
            handle.close()
        try:
            self._handle = self.path.open("rb")
        except FileNotFoundError:
            return
        self.position = self._reading = Position(os.fstat(self._handle.fileno()).st_ino, 0)

    def _switch_if_rotated(self) -> bool:
        """At the end of the open file: move to a newer eve.json if there is one.

        The committed position stays in the old file until the next ``commit``.
        """
        try:
            current = self.path.stat().st_ino
        except FileNotFoundError:
            return False  # renamed, Suricata has not reopened yet: keep reading the old one
        if self._handle is None or current == self._reading.inode:
            return False
        self._handle.close()
        self._handle = self.path.open("rb")
        self._reading = Position(os.fstat(self._handle.fileno()).st_ino, 0)
        return True

    def read_available(self) -> Iterator[Observation]:
        """Observations of the complete lines written since the last ``read_available``."""
        if self._handle is None:
            self._open()
            if self._handle is None:
                return
        while True:
            start = self._reading.offset
            if os.fstat(self._handle.fileno()).st_size < start:
                start = 0  # truncated
            self._handle.seek(start)
            chunk = self._handle.read(MAX_BATCH_BYTES)
            complete = chunk[:chunk.rfind(b"\n") + 1]
            if complete or not self._switch_if_rotated():
                break
        self._read_to = start + len(chunk)
        self._reading = self._pending = Position(self._reading.inode, start + len(complete))
        yield from read_eve_lines(complete.splitlines(), self.stats, self.wanted, self.names)

    def commit(self) -> None:
        """Everything read is handled: save the position reached, now or when due."""
        if self._pending is not None and self._pending != self.position:
            self.position = self._pending
        if self._clock() >= self._save_due:
            self.save()

    def save(self) -> None:
        """Save the committed position (atomically) if it is not on disk yet."""
        if self.position != self._saved or self.disk_full:
            self._commit_position()

    def _commit_position(self) -> None:
        try:
            replace_file(self.offset_file, json.dumps({"inode": self.position.inode,
                                                      "offset": self.position.offset}),
                         durable=False)
        except OSError as error:
            if not is_disk_full(error):
                raise
            if not self.disk_full:
                log.error("%s: cannot save the EVE position (%s); reading goes on and the "
                          "position is saved once the disk has room", self.offset_file,
                          error.strerror)
            self.disk_full = True
            return
        self._saved = self.position
        self._save_due = self._clock() + self._save_every
        if self.disk_full:
            log.info("%s: the EVE position is saved again", self.offset_file)
        self.disk_full = False

    @property
    def disk_problem(self) -> str | None:
        """Why the position cannot be saved now, for health; None when it can."""
        if not self.disk_full:
            return None
        return (f"cannot save the EVE position {self.offset_file} (reading goes on; a restart "
                "now would read some records again)")

    def rotate_if_needed(self, limit_bytes: int, reopen_logs: ReopenLogs) -> bool:
        """Keep the EVE file bounded: rename it past ``limit_bytes``, have its writer reopen it.

        Only once the previously rotated file is read and committed to its
        end, so at most two files exist and no record is deleted unread.
        True if the file was renamed.
        """
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        if size < limit_bytes or self.reading_rotated:
            return False
        os.replace(self.path, rotated_path(self.path))

        def reopened(ok: bool, message: str) -> None:
            (log.info if ok else log.error)("suricata: eve.json rotated, %s", message)

        reopen_logs(reopened)
        return True

    @property
    def reading_rotated(self) -> bool:
        """True while the tailer still reads a file that was renamed away."""
        try:
            return self.path.stat().st_ino != self.position.inode
        except FileNotFoundError:
            return True

    def wait_for_lines(self, timeout: float) -> None:
        """Return when the EVE file may hold new lines, or after ``timeout`` seconds.

        Without inotify (no watch left, another OS) this waits ``timeout``: the
        tailer then works by polling, only later.
        """
        deadline = time.monotonic() + timeout
        watch = self._watch()
        if watch is None:
            time.sleep(timeout)
            return
        watch.read(timeout=0)  # forget what the last read already covered
        if self._unread():
            return
        while (left := deadline - time.monotonic()) > 0:
            if any(event.name in self._names or event.mask & flags.Q_OVERFLOW
                   for event in watch.read(timeout=max(1, round(left * 1000)))):
                return

    def _watch(self) -> INotify | None:
        if self._inotify is None and not self._unwatchable:
            try:
                self._inotify = INotify()
                self._inotify.add_watch(self.path.parent, _WAKING)
            except OSError as error:
                self.close()
                if isinstance(error, FileNotFoundError):
                    return None  # no directory yet: nothing to read either
                self._unwatchable = True
                log.warning("%s: cannot watch for new EVE records (%s); reading them every "
                            "half second instead", self.path.parent, error.strerror)
                return None
        return self._inotify

    def _unread(self) -> bool:
        """True if the open file changed since the last read, or a newer file waits."""
        if self._handle is None:
            return self.path.exists()
        if os.fstat(self._handle.fileno()).st_size != self._read_to:
            return True
        try:
            return self.path.stat().st_ino != self._reading.inode
        except FileNotFoundError:
            return False  # renamed away, Suricata has not reopened yet

    def close(self) -> None:
        """Stop watching (the position is not saved: call ``save`` first)."""
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
