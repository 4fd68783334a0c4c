"""Follow Suricata's eve.json as it grows, resuming from a saved offset after a restart.

At-least-once: the caller handles the observations of ``read_available``
then calls ``commit``, which saves the offset atomically; a crash in
between replays that batch (ids are stable, so replays are harmless), it
never skips one. A half-written last line waits for its end. A file that
shrank or was replaced (another inode) is read again from its start; one
truncated and regrown past the saved offset between two reads cannot be told
from growth (Suricata only appends; rotation replaces the file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sensor.capture.stats import SourceStats
from sensor.capture.suricata import read_eve_lines
from sensor.observations import Observation

MAX_BATCH_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Position:
    inode: int
    offset: int


class EveTailer:
    """Reads complete new lines of one EVE file; ``commit`` makes progress durable."""

    def __init__(self, path: Path, offset_file: Path, stats: SourceStats | None = None) -> None:
        self.path = path
        self.offset_file = offset_file
        self.stats = stats or SourceStats("suricata-eve")
        self.position = self._load()
        self._pending: Position | None = None

    def _load(self) -> Position:
        try:
            saved = json.loads(self.offset_file.read_text())
            return Position(int(saved["inode"]), int(saved["offset"]))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return Position(0, 0)

    def read_available(self) -> Iterator[Observation]:
        """Observations of the complete lines written since the last ``commit``."""
        try:
            with self.path.open("rb") as handle:
                status = os.fstat(handle.fileno())
                start = self.position.offset
                if status.st_ino != self.position.inode or status.st_size < start:
                    start = 0  # a new or truncated file
                handle.seek(start)
                chunk = handle.read(MAX_BATCH_BYTES)
        except FileNotFoundError:
            return
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._pending = Position(status.st_ino, start + len(complete))
        yield from read_eve_lines(complete.splitlines(), self.stats)

    def commit(self) -> None:
        """Save the position reached by the last ``read_available`` (atomically)."""
        if self._pending is None or self._pending == self.position:
            return
        temporary = self.offset_file.with_suffix(".tmp")
        temporary.write_text(json.dumps({"inode": self._pending.inode,
                                         "offset": self._pending.offset}))
        os.replace(temporary, self.offset_file)
        self.position = self._pending
