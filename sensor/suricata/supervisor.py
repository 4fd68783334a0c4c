"""Run Suricata on the mirror interface and keep it running: an explicit state machine.

STOPPED -> STARTING -> RUNNING; a crash goes to BACKOFF (1 s, 2 s, 4 s ... up
to ``backoff_max``) and is started again; ``max_quick_failures`` failures in a
row, each within ``startsecs`` of its start, go to FATAL (a broken config or
interface, reported as such). FATAL never gives up for good: it is retried
slowly, after ``fatal_retry`` seconds growing to ``fatal_retry_max``, forever
(an interface that comes back, a disk that frees up). STARTING becomes
RUNNING once the command socket answers and the process has lived
``startsecs``. Every transition is logged and kept in ``transitions``;
intervals use the monotonic clock.

The configuration is checked with ``suricata -T`` before every start.
Suricata runs without rules and with its detection engine off: Veilleuse
detects in Python on the dns/tls/http/quic/flow records, and one rule per
listed domain would cost about 4 KB and 0.3 ms each at every start (1.7 GB
and two minutes for a 100k-domain feed) for alert records nobody reads.
``veilleuse rules`` exports the rules for people who run their own Suricata.
A feed update therefore needs nothing from Suricata: the daemon swaps its
matcher. Not the job of this module: reading EVE records.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sensor.errors import CaptureError, CaptureToolMissing
from sensor.files import replace_file
from sensor.suricata.config import SuricataSettings, render_suricata_config
from sensor.suricata.control import InterfaceStats, SuricataControl, SuricataControlError
from sensor.workers import WorkerErrors

log = logging.getLogger(__name__)


class SupervisorState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FATAL = "fatal"


@dataclass(frozen=True, slots=True)
class Transition:
    time: float
    old: SupervisorState
    new: SupervisorState
    reason: str


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    interface: str
    workdir: Path
    suricata: SuricataSettings = field(default_factory=SuricataSettings)
    startsecs: float = 5.0
    start_timeout: float = 120.0
    max_quick_failures: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    fatal_retry: float = 300.0
    fatal_retry_max: float = 600.0
    stats_every: float = 10.0


class SuricataSupervisor:
    """Call ``poll`` regularly (``run`` does); it drives every transition."""

    def __init__(self, settings: SupervisorSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self.state = SupervisorState.STOPPED
        self.transitions: list[Transition] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.control = SuricataControl(settings.workdir / "suricata.sock")
        self._started_at = 0.0
        self._retry_at = 0.0
        self._quick_failures = 0
        self._fatal_retries = 0
        self._changed = threading.Condition()
        self.last_stats: InterfaceStats | None = None
        self._stats_at = float("-inf")
        self._requests: list[tuple[str, Callable[[], None], Callable[[bool, str], None]]] = []
        self.eve_path = settings.workdir / "eve.json"
        self.config_path = settings.workdir / "suricata.yaml"
        self.errors = WorkerErrors("suricata supervisor")

    # -- transitions ------------------------------------------------------------------

    def _to(self, new: SupervisorState, reason: str) -> None:
        with self._changed:
            old, self.state = self.state, new
            self.transitions.append(Transition(self._clock(), old, new, reason))
            self._changed.notify_all()
        level = logging.ERROR if new in (SupervisorState.BACKOFF, SupervisorState.FATAL) \
            else logging.INFO
        log.log(level, "suricata: %s -> %s (%s)", old.value, new.value, reason)

    def wait_for_state(self, wanted: SupervisorState, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.state is wanted, timeout)

    # -- actions ------------------------------------------------------------------------

    def _binary(self) -> str:
        binary = shutil.which(self.settings.suricata.binary)
        if binary is None:
            raise CaptureToolMissing(self.settings.suricata.binary,
                                     "-t bookworm-backports suricata")
        return binary

    def write_config(self) -> None:
        """suricata.yaml for live capture on the interface, with the command socket."""
        self.settings.workdir.mkdir(parents=True, exist_ok=True)
        text = render_suricata_config(self.settings.suricata, self.settings.workdir,
                                      interface=self.settings.interface,
                                      command_socket=self.control.socket_path)
        replace_file(self.config_path, text, durable=False)

    def test_configuration(self) -> None:
        """``suricata -T``: CaptureError with Suricata's own words if the config is bad."""
        result = subprocess.run([self._binary(), "-T", "-c", str(self.config_path), "-l",
                                 str(self.settings.workdir)], capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
            raise CaptureError(f"suricata rejects its configuration:\n{tail}")

    def start(self) -> None:
        """Write and check the configuration, then start Suricata.

        A failure (a configuration Suricata rejects, a full disk, a missing
        binary) is a failed start: BACKOFF, then FATAL, and retried either way.
        """
        self._started_at = self._clock()
        try:
            self.write_config()
            self.test_configuration()
            self.control.socket_path.unlink(missing_ok=True)
            descriptor = os.open(self.settings.workdir / "suricata.out",
                                 os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(descriptor, "ab") as log_file:
                self.process = subprocess.Popen(
                    [self._binary(), "-c", str(self.config_path),
                     f"--af-packet={self.settings.interface}", "-l",
                     str(self.settings.workdir), "-k", "none"],
                    stdout=log_file, stderr=subprocess.STDOUT, umask=0o077,
                    env={**os.environ, "TZ": "UTC"})
        except (CaptureError, OSError) as error:
            self.process = None
            self._failed(f"suricata cannot start: {_reason(error)}", quick=True)
            return
        self._to(SupervisorState.STARTING, f"pid {self.process.pid}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.state is not SupervisorState.STOPPED:
            self._to(SupervisorState.STOPPED, "stopped")

    def request_reopen_logs(self, on_result: Callable[[bool, str], None]) -> None:
        """Ask the supervising thread to make Suricata reopen eve.json (after a rename)."""
        self._requests.append(("log files reopened",
                               lambda: self.control.command("reopen-log-files"), on_result))

    def interface_stats(self) -> InterfaceStats | None:
        if self.state is not SupervisorState.RUNNING:
            return None
        try:
            return self.control.interface_stats(self.settings.interface)
        except SuricataControlError as error:
            log.warning("%s", error)
            return None

    # -- the loop ---------------------------------------------------------------------

    def poll(self) -> SupervisorState:
        now = self._clock()
        state = self.state
        if state in (SupervisorState.BACKOFF, SupervisorState.FATAL) and now >= self._retry_at:
            self.start()
        elif state in (SupervisorState.STARTING, SupervisorState.RUNNING):
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                self._failed(f"suricata exited ({_describe(code)})")
            elif state is SupervisorState.STARTING:
                self._check_started(now)
            else:
                self._running_chores(now)
        return self.state

    def _running_chores(self, now: float) -> None:
        """Pending requests (log reopen), then fresh interface counters."""
        while self._requests:
            done, action, on_result = self._requests.pop(0)
            try:
                action()
                on_result(True, done)
            except (CaptureError, SuricataControlError) as error:
                on_result(False, str(error))
        if now - self._stats_at >= self.settings.stats_every:
            self._stats_at = now
            self.last_stats = self.interface_stats()

    def _check_started(self, now: float) -> None:
        if now - self._started_at > self.settings.start_timeout:
            if self.process is not None:
                self.process.kill()
                self.process.wait()
            self._failed("suricata did not become ready in time")
            return
        if now - self._started_at < self.settings.startsecs:
            return
        try:
            self.control.uptime()
        except SuricataControlError:
            return
        self._quick_failures = self._fatal_retries = 0
        self._to(SupervisorState.RUNNING, "ready on its command socket")

    def _failed(self, reason: str, quick: bool = False) -> None:
        quick = quick or self._clock() - self._started_at < self.settings.startsecs or \
            self.state is SupervisorState.STARTING
        self._quick_failures = self._quick_failures + 1 if quick else 1
        if self._quick_failures >= self.settings.max_quick_failures:
            delay = min(self.settings.fatal_retry_max,
                        self.settings.fatal_retry * 2 ** self._fatal_retries)
            self._fatal_retries += 1
            self._retry_at = self._clock() + delay
            self._to(SupervisorState.FATAL, f"{reason}; {self._quick_failures} failed starts "
                     f"in a row (check the interface and the logs); trying again in "
                     f"{delay:.0f} s")
            return
        delay = min(self.settings.backoff_max,
                    self.settings.backoff_initial * 2 ** (self._quick_failures - 1))
        self._retry_at = self._clock() + delay
        self._to(SupervisorState.BACKOFF, f"{reason}; restarting in {delay:.0f} s")

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Start and supervise until ``stop``; then stop Suricata.

        An unexpected error in a pass is logged, counted in ``errors`` (its
        ``problem`` is a health detail) and the loop carries on after a pause.
        """
        pause = interval
        try:
            while True:
                try:
                    if self.state is SupervisorState.STOPPED:
                        self.start()
                    else:
                        self.poll()
                except Exception as error:  # noqa: BLE001 - the worker boundary: report, go on
                    pause = self.errors.record(error)
                else:
                    self.errors.succeeded()
                    pause = interval
                if stop.wait(pause):
                    return
        finally:
            self.stop()


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    return str(error)


def _describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
