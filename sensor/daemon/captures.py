"""The live sensor's capture sources, as the daemon drives them: Suricata supervised, or scapy.

``LiveCapture`` is what the daemon's loop needs of any of them: start and
stop, wait for records and take them, its threads, and its state for
health. ``wait_for_records`` is how the loop sleeps: it returns as soon as
records may be waiting, so an alert leaves milliseconds after its packet,
and an idle sensor does not spin. What only some captures can do is
declared, not left as empty methods: ``position`` (a saved reading position
that a restart resumes from; None when a restart has nothing to resume) and
``chores`` (housekeeping the loop runs for them, such as EVE rotation).
Both are built by ``sensor.wiring``. Not the job of this module: detection,
the alert book or health (``sensor.daemon.service``).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Protocol

from sensor.capture.eve import NameFilter
from sensor.capture.eve_tail import EveTailer
from sensor.capture.scapy_live import ScapyLiveSource
from sensor.evidence.window import Records
from sensor.observations import Observation
from sensor.suricata.supervisor import SupervisorState, SuricataSupervisor
from sensor.workers import WorkerThread

log = logging.getLogger(__name__)

Chore = tuple[str, float | None, Callable[[], object]]
"""(name, interval in seconds or None for every turn, action): one of the loop's chores."""


class CapturePosition(Protocol):
    """How far the daemon has handled a capture's records, saved so that a restart resumes there."""

    def commit(self) -> None:
        """Everything taken by ``records`` so far is handled (stored in the alert book)."""

    @property
    def disk_problem(self) -> str | None:
        """Why the position cannot be saved now (a full disk), for health; None if it can."""


class LiveCapture(Protocol):
    """A live capture as the daemon's loop drives it."""

    position: CapturePosition | None
    """The saved reading position; None when records are not on disk (the sniffer's queue)."""
    chores: tuple[Chore, ...]
    """Housekeeping the loop runs for this capture, isolated like its own chores."""
    evidence_records: Callable[[], Records]
    """The recent packets evidence is cut from (Suricata's pcap-log ring in RAM, or the
    sniffer's frame ring); nothing when no helpline key is set."""
    narrow: Callable[[NameFilter | None], None] | None
    """Tells the capture which DNS names detection looks at (the engine's
    ``dns_name_filter``), so that it builds no record of the others: Suricata's
    EVE records are read as text and can be dropped before they are built;
    None for a capture that parses its packets before any name is known."""
    reads_one_sided_tls: bool
    """Whether a ClientHello never answered (a mirror of one direction) still gives its
    server name: health says what a one-way mirror costs (``mirror_one_way``)."""

    def start(self, stop: threading.Event) -> None:
        """Start capturing in the capture's threads, until ``stop`` is set."""

    def stop(self) -> None:
        """After ``stop`` is set: wait for the capture to end and release what it holds."""

    def wait_for_records(self, timeout: float) -> None:
        """Return once records may be waiting, or after ``timeout`` seconds."""

    def records(self) -> list[Observation]:
        """The observations that arrived since the last call (a bounded batch)."""

    def workers(self) -> list[WorkerThread]:
        """The threads the daemon keeps alive."""

    def worker_problems(self) -> list[str]:
        """Unexpected errors in the capture's threads, and threads that died, for health."""

    def running(self) -> bool:
        """Capturing now."""

    def gave_up(self) -> bool:
        """Start-up failed for good for now (health stops saying "starting")."""

    def problem(self) -> str | None:
        """Why the capture is not running, in words, or None."""

    def drop_ratio(self) -> float | None:
        """Share of packets lost since start; None when not known yet."""

    def state_name(self) -> str:
        """The capture's state for the health file (``running``, ``backoff``...)."""


class SuricataCapture:
    """Suricata supervised on the interface, its EVE file tailed.

    The tailer is the capture's ``position``; rotating eve.json past
    ``max_eve_bytes`` is its chore.
    """

    reads_one_sided_tls = False  # Suricata writes a tls record only for an answered hello

    def __init__(self, supervisor: SuricataSupervisor, tailer: EveTailer, *,
                 max_eve_bytes: int, evidence_records: Callable[[], Records]) -> None:
        self.supervisor = supervisor
        self.tailer = tailer
        self.evidence_records = evidence_records
        self.position: CapturePosition | None = tailer
        self.max_eve_bytes = max_eve_bytes
        self.chores: tuple[Chore, ...] = (("eve rotation", None, self.rotate_if_needed),)
        self.narrow: Callable[[NameFilter | None], None] | None = self._narrow
        self._worker: WorkerThread | None = None

    def _narrow(self, names: NameFilter | None) -> None:
        self.tailer.names = names

    def start(self, stop: threading.Event) -> None:
        self._worker = WorkerThread("suricata-supervisor", lambda: self.supervisor.run(stop))
        self._worker.start()

    def workers(self) -> list[WorkerThread]:
        """The threads the daemon keeps alive."""
        return [self._worker] if self._worker else []

    def worker_problems(self) -> list[str]:
        problems = [self.supervisor.errors.problem, *(w.problem for w in self.workers())]
        return [problem for problem in problems if problem]

    def wait_for_records(self, timeout: float) -> None:
        self.tailer.wait_for_lines(timeout)

    def records(self) -> list[Observation]:
        return list(self.tailer.read_available())

    def rotate_if_needed(self) -> None:
        """Keep eve.json under ``max_eve_bytes``: the tailer rotates it, Suricata reopens it."""
        self.tailer.rotate_if_needed(self.max_eve_bytes, self.supervisor.request_reopen_logs)

    def running(self) -> bool:
        return self.supervisor.state is SupervisorState.RUNNING

    def problem(self) -> str | None:
        transitions = self.supervisor.transitions
        if not transitions:
            return None
        if self.supervisor.state is SupervisorState.STARTING:
            return f"suricata is starting again ({transitions[-1].reason})"
        error = self.last_error()
        return transitions[-1].reason + (f"; suricata said: {error}" if error else "")

    def last_error(self) -> str | None:
        """The first error Suricata printed in its last run (e.g. the interface it cannot open)."""
        try:
            with (self.supervisor.settings.workdir / "suricata.out").open("rb") as output:
                output.seek(max(0, output.seek(0, os.SEEK_END) - 16_384))
                lines = output.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return None
        last_run = max((i for i, line in enumerate(lines) if "This is Suricata version" in line),
                       default=0)
        errors = [line[3:] for line in lines[last_run:] if line.startswith("E: ")]
        return errors[0] if errors else None

    def gave_up(self) -> bool:
        return self.supervisor.state is SupervisorState.FATAL

    def drop_ratio(self) -> float | None:
        stats = self.supervisor.last_stats  # refreshed by the supervising thread, no I/O here
        return None if stats is None else stats.drop_ratio

    def state_name(self) -> str:
        return self.supervisor.state.value

    def stop(self) -> None:
        self.supervisor.stop()
        self.tailer.save()  # what the daemon committed last
        self.tailer.close()


class LiteCapture:
    """The scapy lite source in a thread; its observations queued for the loop."""

    reads_one_sided_tls = True  # it parses each ClientHello as it passes

    def __init__(self, source: ScapyLiveSource,
                 evidence_records: Callable[[], Records]) -> None:
        self.source = source
        self.evidence_records = evidence_records
        self.position: CapturePosition | None = None  # the queue is in memory: nothing to resume
        self.chores: tuple[Chore, ...] = ()
        self.narrow: Callable[[NameFilter | None], None] | None = None
        self._queue: queue.Queue[Observation] = queue.Queue(maxsize=100_000)
        self._arrived = threading.Event()
        self._worker: WorkerThread | None = None

    def start(self, stop: threading.Event) -> None:
        def pump() -> None:
            self.source.started.clear()  # set again by the sniffer this run starts
            for observation in self.source.read(stop):
                self._queue.put(observation)
                self._arrived.set()

        self._worker = WorkerThread("scapy-live", pump)
        self._worker.start()

    def workers(self) -> list[WorkerThread]:
        return [self._worker] if self._worker else []

    def worker_problems(self) -> list[str]:
        return [w.problem for w in self.workers() if w.problem]

    def wait_for_records(self, timeout: float) -> None:
        if self._queue.empty():
            self._arrived.wait(timeout)
        self._arrived.clear()  # what arrived until now is in the queue: `records` takes it

    def records(self) -> list[Observation]:
        batch: list[Observation] = []
        while len(batch) < 10_000:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def running(self) -> bool:
        return self.source.started.is_set() and self._worker is not None and \
            self._worker.is_alive

    def problem(self) -> str | None:
        if self._worker is not None and self._worker.failure:
            return f"the sniffer stopped ({self._worker.failure})"
        return None if self.running() else "the sniffer has not started"

    def gave_up(self) -> bool:
        return False

    def drop_ratio(self) -> float | None:
        seen = self.source.stats.records + self.source.stats.skipped_total
        return self.source.stats.skipped_total / seen if seen else 0.0

    def state_name(self) -> str:
        return "running" if self.running() else "starting"

    def stop(self) -> None:
        """Nothing to release: the stop event given to ``start`` ends the sniffer."""
