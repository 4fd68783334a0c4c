"""The live sensor's capture sources, as the daemon drives them: Suricata supervised, or scapy.

Each offers the same small interface to the daemon's loop (``start``,
``wait_for_records``, ``records``, ``commit``, ``running``, ``problem``...).
``wait_for_records`` is how the loop sleeps: it returns as soon as records may
be waiting, so an alert leaves milliseconds after its packet, and an idle
sensor does not spin. Not the job
of this module: detection, the alert book or health (``sensor.daemon.service``).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Collection
from pathlib import Path

from sensor.capture.eve_tail import EveTailer, rotated_path
from sensor.capture.scapy_live import ScapyLiveSource
from sensor.config import Config
from sensor.observations import Observation
from sensor.suricata.config import SuricataSettings
from sensor.suricata.supervisor import SupervisorSettings, SupervisorState, SuricataSupervisor
from sensor.workers import WorkerThread

log = logging.getLogger(__name__)

# The EVE position is saved at most this often (and on stop): it lives in RAM (/run), but
# writing it at every turn was most of an idle sensor's CPU. A crash reads again what was
# handled after the last save (at-least-once), it skips nothing.
OFFSET_SAVE_EVERY = 2.0


class SuricataCapture:
    """Suricata supervised on the interface, its EVE file tailed."""

    def __init__(self, config: Config, workdir: Path,
                 wanted: Collection[type] | None = None) -> None:
        # EVE holds who talked to whom: readable by the sensor alone.
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.supervisor = SuricataSupervisor(SupervisorSettings(
            interface=config.network.interface, workdir=workdir,
            suricata=SuricataSettings(binary=config.suricata.binary,
                                      home_net=config.network.home_net)))
        self.tailer = EveTailer(self.supervisor.eve_path, workdir / "eve.offset",
                                save_every=OFFSET_SAVE_EVERY, wanted=wanted)
        self._worker: WorkerThread | None = None

    def start(self, stop: threading.Event) -> None:
        self._worker = WorkerThread("suricata-supervisor", lambda: self.supervisor.run(stop))
        self._worker.start()

    def workers(self) -> list[WorkerThread]:
        """The threads the daemon keeps alive."""
        return [self._worker] if self._worker else []

    def disk_problems(self) -> list[str]:
        problems = []
        if self.tailer.disk_full:
            problems.append(f"cannot save the EVE position {self.tailer.offset_file} (reading "
                            "goes on; a restart now would read some records again)")
        return problems

    def worker_problem(self) -> str | None:
        return self.supervisor.errors.problem

    def wait_for_records(self, timeout: float) -> None:
        self.tailer.wait_for_lines(timeout)

    def records(self) -> list[Observation]:
        return list(self.tailer.read_available())

    def rotate_if_needed(self, limit_bytes: int) -> None:
        """Keep eve.json bounded: rename it past the limit and have Suricata reopen it.

        Only once the tailer has finished the previous rotated file, so at
        most two files exist and no record is deleted unread.
        """
        eve = self.supervisor.eve_path
        try:
            size = eve.stat().st_size
        except FileNotFoundError:
            return
        if size < limit_bytes or self.tailer.reading_rotated:
            return
        os.replace(eve, rotated_path(eve))

        def reopened(ok: bool, message: str) -> None:
            (log.info if ok else log.error)("suricata: eve.json rotated, %s", message)

        self.supervisor.request_reopen_logs(reopened)

    def commit(self) -> None:
        self.tailer.commit()

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

    def __init__(self, config: Config) -> None:
        self.source = ScapyLiveSource(config.network.interface)
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

    def disk_problems(self) -> list[str]:
        return []  # writes nothing

    def worker_problem(self) -> str | None:
        return None

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

    def commit(self) -> None:
        pass

    def rotate_if_needed(self, limit_bytes: int) -> None:
        pass  # no files

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
        pass
