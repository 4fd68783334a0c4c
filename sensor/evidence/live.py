"""The live sensor's evidence: where recent packets are kept, and when a window is cut.

Packets come from Suricata's ``pcap-log`` ring (files in the runtime
directory, in RAM, rotated by Suricata: ``ring_files``) or, with the scapy
lite source, from ``FrameRing``, a ring of the latest frames in memory. Both
are bounded by ``evidence.ring_megabytes``: what is older is gone, which is
the point (nothing of the shelter's traffic is kept but a high alert's).

A high alert's window ends ``window_seconds`` after its sighting, so the cut
waits that long (``LiveEvidence.collect``), and a little more for
Suricata's buffered writes. Non-job: the cut itself (``window``), bundles.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from sensor.detect.model import Alert
from sensor.evidence.keeper import EvidenceKeeper, needs_evidence
from sensor.evidence.store import StoredEvidence
from sensor.evidence.window import Record, Records, file_records
from sensor.suricata.config import RING_FILE, RING_FILE_MEGABYTES

log = logging.getLogger(__name__)

FLUSH_GRACE = 5.0  # seconds after a window's end before it is cut: Suricata's write buffer
_RING_SUFFIX = re.compile(rf"^{re.escape(RING_FILE)}\.(\d+)$")


def ring_file_count(megabytes: int) -> int:
    """How many of Suricata's 4 MiB ring files make ``evidence.ring_megabytes`` (2 at least)."""
    return max(2, megabytes // RING_FILE_MEGABYTES)


def ring_files(directory: Path) -> list[Path]:
    """Suricata's ring files in ``directory``, oldest first."""
    found = []
    for path in directory.glob(f"{RING_FILE}.*"):
        match = _RING_SUFFIX.match(path.name)
        if match:
            found.append((int(match.group(1)), path.name, path))
    return [path for _, _, path in sorted(found)]


class FrameRing:
    """The latest frames the lite sniffer saw, up to ``max_bytes`` (thread-safe).

    The sniffer's thread adds, the daemon's loop takes a snapshot to cut from.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._frames: collections.deque[tuple[float, int, bytes]] = collections.deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, linktype: int, frame: bytes, time: float) -> None:
        with self._lock:
            self._frames.append((time, linktype, frame))
            self._bytes += len(frame)
            while self._bytes > self.max_bytes and self._frames:
                self._bytes -= len(self._frames.popleft()[2])

    def snapshot(self) -> list[Record]:
        with self._lock:
            frames = list(self._frames)
        return [Record(index, time, linktype, frame)
                for index, (time, linktype, frame) in enumerate(frames)]

    def records(self) -> Records:
        """The ring as ``cut_windows`` reads it: one snapshot, read twice."""
        frames = self.snapshot()
        return lambda: iter(frames)


class LiveEvidence:
    """Notes new high alerts; once their window has passed, has the keeper bundle them.

    One bundle per alert, from the window of the sighting that made it (and
    of the later ones in that window): later sightings keep the bundle.
    ``records`` gives the packet source at cut time (the ring files as they
    are then, or the frame ring's snapshot); ``clock`` is monotonic;
    ``clock_synchronised`` is asked as an alert is noted, as the alert queue
    asks it when it stores the alert (the bundle says whether its times hold).
    """

    def __init__(self, keeper: EvidenceKeeper, records: Callable[[], Records],
                 clock: Callable[[], float], clock_synchronised: Callable[[], bool]) -> None:
        self.keeper = keeper
        self._records = records
        self._clock = clock
        self._clock_synchronised = clock_synchronised
        self._pending: dict[str, tuple[float, Alert]] = {}
        self._noted: set[str] = set()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence")
        self._cutting: Future[list[StoredEvidence]] | None = None
        self._in_cut: list[Alert] = []

    @property
    def pending(self) -> int:
        """Alerts waiting for their window to pass, or being cut."""
        return len(self._pending) + (self._cutting is not None)

    def note(self, alerts: Iterable[Alert]) -> None:
        """New or updated alerts: the high ones without evidence yet are cut later."""
        alerts = [alert for alert in alerts
                  if needs_evidence(alert) and alert.id not in self._noted]
        if not alerts or not self.keeper.is_keeping():
            return
        due = self._clock() + self.keeper.config.window_seconds + FLUSH_GRACE
        synchronised = self._clock_synchronised()
        for alert in alerts:
            self._noted.add(alert.id)
            if self.keeper.store.get(alert.id) is None:  # kept before a restart: done
                self._pending[alert.id] = (due, dataclasses.replace(
                    alert, clock_synchronised=synchronised))

    def collect(self, feeds: Mapping[str, str]) -> list[tuple[Alert, StoredEvidence]]:
        """Start cutting the alerts whose window has passed; the bundles finished since,
        with the alert each was cut for.

        The cut reads the whole ring (seconds of CPU on a busy one), so it runs
        in one worker thread, never in the daemon's loop: the loop keeps
        handling records and pinging the watchdog meanwhile. A cut that fails
        is logged and counted, like a bundle that is not kept.
        """
        finished: list[tuple[Alert, StoredEvidence]] = []
        if self._cutting is not None and self._cutting.done():
            cut = {alert.id: alert for alert in self._in_cut}
            try:
                finished = [(cut[entry.alert_id], entry) for entry in self._cutting.result()
                            if entry.alert_id in cut]
            except Exception as error:  # noqa: BLE001 - a failed cut loses its bundles only
                self.keeper.failures += 1
                log.error("evidence: cutting packets failed (%s: %s)", type(error).__name__,
                          error)
            self._cutting, self._in_cut = None, []
        now = self._clock()
        ready = [alert for due, alert in self._pending.values() if due <= now]
        if ready and self._cutting is None:
            for alert in ready:
                del self._pending[alert.id]
            self._in_cut = ready
            self._cutting = self._worker.submit(self.keeper.keep, ready, self._records(),
                                                dict(feeds))
        return finished

    @property
    def is_cutting(self) -> bool:
        return self._cutting is not None

    def close(self) -> None:
        """Stop: a cut under way finishes (it is bounded by the ring); none starts."""
        self._worker.shutdown(wait=True, cancel_futures=True)


def suricata_ring(directory: Path) -> Callable[[], Records]:
    """The ring files of ``directory`` as they are when called."""
    return lambda: file_records(ring_files(directory))
