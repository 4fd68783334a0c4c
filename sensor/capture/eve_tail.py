"""Follow Suricata's eve.json as it grows and rotates, resuming from a saved offset.

At-least-once: the caller handles the observations of ``read_available``
then calls ``commit``, which saves (inode, offset) atomically; a crash in
between replays that batch (ids are stable, so replays are harmless), it
never skips one. A half-written last line waits for its end.

Rotation (``eve.json`` renamed to ``eve.json.1``, then Suricata told to
reopen its logs): the file being read stays open, so it is read to its end
before the tailer moves to the new ``eve.json``; after a restart in the
middle, the saved inode is found again under ``eve.json.1``. A file that
shrank is read again from its start.

A full disk does not stop the tailer: the position is kept in memory,
``disk_full`` says so, and it is saved by the first ``commit`` that has room
(a crash meanwhile replays from the last saved position: nothing is skipped).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sensor.capture.stats import SourceStats
from sensor.capture.suricata import read_eve_lines
from sensor.files import is_disk_full, replace_file
from sensor.observations import Observation

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Position:
    inode: int
    offset: int


def rotated_path(path: Path) -> Path:
    return path.with_name(path.name + ".1")


class EveTailer:
    """Reads complete new lines of one EVE file; ``commit`` makes progress durable."""

    def __init__(self, path: Path, offset_file: Path, stats: SourceStats | None = None) -> None:
        self.path = path
        self.offset_file = offset_file
        self.stats = stats or SourceStats("suricata-eve")
        self.position = self._load()
        self._handle: BinaryIO | None = None
        self._pending: Position | None = None
        self.disk_full = False

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
                self._handle = handle
                return
            handle.close()
        try:
            self._handle = self.path.open("rb")
        except FileNotFoundError:
            return
        self.position = Position(os.fstat(self._handle.fileno()).st_ino, 0)

    def _switch_if_rotated(self) -> bool:
        """At the end of the open file: move to a newer eve.json if there is one."""
        try:
            current = self.path.stat().st_ino
        except FileNotFoundError:
            return False  # renamed, Suricata has not reopened yet: keep reading the old one
        if self._handle is None or current == self.position.inode:
            return False
        self._handle.close()
        self._handle = self.path.open("rb")
        self.position = Position(os.fstat(self._handle.fileno()).st_ino, 0)
        return True

    def read_available(self) -> Iterator[Observation]:
        """Observations of the complete lines written since the last ``commit``."""
        if self._handle is None:
            self._open()
            if self._handle is None:
                return
        while True:
            start = self.position.offset
            if os.fstat(self._handle.fileno()).st_size < start:
                start = 0  # truncated
            self._handle.seek(start)
            chunk = self._handle.read(MAX_BATCH_BYTES)
            complete = chunk[:chunk.rfind(b"\n") + 1]
            if complete or not self._switch_if_rotated():
                break
            self._commit_position()  # the new file starts at 0
        self._pending = Position(self.position.inode, start + len(complete))
        yield from read_eve_lines(complete.splitlines(), self.stats)

    def commit(self) -> None:
        """Save the position reached by the last ``read_available`` (atomically)."""
        if self._pending is not None and self._pending != self.position:
            self.position = self._pending
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
        if self.disk_full:
            log.info("%s: the EVE position is saved again", self.offset_file)
        self.disk_full = False

    @property
    def reading_rotated(self) -> bool:
        """True while the tailer still reads a file that was renamed away."""
        try:
            return self.path.stat().st_ino != self.position.inode
        except FileNotFoundError:
            return True
