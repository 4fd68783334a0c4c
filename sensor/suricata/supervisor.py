"""Run Suricata on the mirror interface and keep it running: an explicit state machine.

STOPPED -> STARTING -> RUNNING; a crash goes to BACKOFF (1 s, 2 s, 4 s ... up
to ``backoff_max``) and is started again; ``max_quick_failures`` failures in a
row, each within ``startsecs`` of its start, go to FATAL (a broken config or
interface: restarting would only hide it). STARTING becomes RUNNING once the
command socket answers and the process has lived ``startsecs``. Every
transition is logged and kept in ``transitions``; intervals use the
monotonic clock. The configuration is checked with ``suricata -T`` before
every start; rules are reloaded through the socket, without a restart.
Not the job of this module: reading EVE records.
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
    rule_files: tuple[str, ...] = ()
    startsecs: float = 5.0
    start_timeout: float = 120.0
    max_quick_failures: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
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
        self._changed = threading.Condition()
        self.last_stats: InterfaceStats | None = None
        self._stats_at = float("-inf")
        self._requests: list[tuple[str, Callable[[], None], Callable[[bool, str], None]]] = []
        self.eve_path = settings.workdir / "eve.json"
        self.config_path = settings.workdir / "suricata.yaml"

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
        self.settings.workdir.mkdir(parents=True, exist_ok=True)
        text = render_suricata_config(self.settings.suricata, self.settings.workdir,
                                      self.settings.rule_files,
                                      interface=self.settings.interface,
                                      command_socket=self.control.socket_path)
        replace_file(self.config_path, text, durable=False)

    def test_configuration(self) -> None:
        """``suricata -T``: CaptureError with Suricata's own words if config or rules are bad."""
        result = subprocess.run([self._binary(), "-T", "-c", str(self.config_path), "-l",
                                 str(self.settings.workdir)], capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
            raise CaptureError(f"suricata rejects its configuration or rules:\n{tail}")

    def start(self) -> None:
        self.write_config()
        try:
            self.test_configuration()
        except CaptureError as error:
            self._to(SupervisorState.FATAL, str(error))
            return
        self.control.socket_path.unlink(missing_ok=True)
        log_file = (self.settings.workdir / "suricata.out").open("ab")
        self.process = subprocess.Popen(
            [self._binary(), "-c", str(self.config_path), f"--af-packet={self.settings.interface}",
             "-l", str(self.settings.workdir), "-k", "none"],
            stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "TZ": "UTC"})
        log_file.close()
        self._started_at = self._clock()
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

    def reload_rules(self) -> None:
        """After the rule files changed: test them, then reload without a restart."""
        self.test_configuration()
        self.control.reload_rules()
        log.info("suricata: rules reloaded without a restart")

    def request_reload(self, on_result: Callable[[bool, str], None]) -> None:
        """Ask the supervising thread to reload the rules; ``on_result(ok, message)`` follows.

        Only the supervising thread talks to Suricata, so the daemon's loop
        never waits on its socket.
        """
        self._requests.append(("rules reloaded without a restart", self.reload_rules,
                               on_result))

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
        if state is SupervisorState.BACKOFF and now >= self._retry_at:
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
        """Pending requests (rule reload, log reopen), then fresh interface counters."""
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
        self._quick_failures = 0
        self._to(SupervisorState.RUNNING, "ready on its command socket")

    def _failed(self, reason: str) -> None:
        quick = self._clock() - self._started_at < self.settings.startsecs or \
            self.state is SupervisorState.STARTING
        self._quick_failures = self._quick_failures + 1 if quick else 1
        if self._quick_failures >= self.settings.max_quick_failures:
            self._to(SupervisorState.FATAL, f"{reason}; {self._quick_failures} failed starts "
                     "in a row, giving up (check the interface and the logs)")
            return
        delay = min(self.settings.backoff_max,
                    self.settings.backoff_initial * 2 ** (self._quick_failures - 1))
        self._retry_at = self._clock() + delay
        self._to(SupervisorState.BACKOFF, f"{reason}; restarting in {delay:.0f} s")

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Start and supervise until ``stop``; then stop Suricata."""
        self.start()
        try:
            while not stop.wait(interval):
                self.poll()
        finally:
            self.stop()


def _describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
