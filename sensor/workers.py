"""Unexpected errors in a long-running worker thread: logged once, counted, then carried on.

A worker (the MQTT owner thread, the Suricata supervisor) that meets an
exception it did not plan for must neither die quietly nor spin: the pass is
abandoned, the traceback logged once per distinct traceback, the error
counted and kept as the worker's ``problem``, and the worker goes on after a
pause that grows with consecutive failures. Not the job of this module:
deciding what a worker does next (the worker's own loop does that).
``WorkerThread`` is for a worker's owner: it notices that the thread itself
has ended and starts it again.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger(__name__)


class WorkerErrors:
    """The unexpected errors of one worker; ``record`` inside its ``except Exception``.

    >>> errors = WorkerErrors("demo", pause_max=4.0)
    >>> try:
    ...     raise KeyError("x")
    ... except KeyError as error:
    ...     errors.record(error)
    1.0
    >>> errors.count, errors.problem
    (1, "demo: 1 unexpected error(s), last: KeyError: 'x' (the demo carries on)")
    >>> errors.succeeded(); errors.problem is None, errors.count
    (True, 1)
    """

    def __init__(self, name: str, pause_max: float = 30.0) -> None:
        self.name = name
        self.pause_max = pause_max
        self.count = 0
        self.last: str | None = None
        self._in_a_row = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def record(self, error: BaseException) -> float:
        """Log (the traceback once per distinct one), count; returns the pause before going on."""
        text = "".join(traceback.format_exception(error))
        with self._lock:
            self.count += 1
            self._in_a_row += 1
            self.last = f"{type(error).__name__}: {error}"
            first = text not in self._seen
            self._seen.add(text)
            pause = min(self.pause_max, 2.0 ** (self._in_a_row - 1))
        if first:
            log.error("%s: unexpected error, the %s carries on in %.0f s; please report "
                      "this traceback in a Veilleuse issue:\n%s", self.name, self.name, pause,
                      text.rstrip())
        else:
            log.error("%s: unexpected error again (%s, %d so far); carrying on in %.0f s",
                      self.name, self.last, self.count, pause)
        return pause

    def succeeded(self) -> None:
        """A pass went through: the problem is over (the count stays)."""
        with self._lock:
            self._in_a_row = 0

    @property
    def problem(self) -> str | None:
        """A health detail while the last pass failed, else None."""
        with self._lock:
            if not self._in_a_row:
                return None
            return (f"{self.name}: {self.count} unexpected error(s), last: {self.last} "
                    f"(the {self.name} carries on)")


class WorkerThread:
    """A daemon thread its owner restarts if it ends, with a growing pause between restarts.

    Its target should run until its stop event is set. Ending earlier (an
    exception that escaped the worker's own boundary, even a BaseException)
    is a death: logged with its traceback, kept as ``failure``, and reported by
    ``problem`` until ``report_seconds`` after the last restart.
    """

    def __init__(self, name: str, target: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic, pause_max: float = 60.0,
                 report_seconds: float = 600.0) -> None:
        self.name = name
        self._target = target
        self._clock = clock
        self.pause_max = pause_max
        self.report_seconds = report_seconds
        self.restarts = 0
        self.failure: str | None = None
        self._thread: threading.Thread | None = None
        self._restart_at = 0.0
        self._restarted_at = float("-inf")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._target()
        except BaseException as error:  # the thread ends here either way: say why
            self.failure = f"{type(error).__name__}: {error}"
            log.error("the %s thread stopped on an error; it is restarted", self.name,
                      exc_info=error)
        else:
            self.failure = "it returned"

    @property
    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def restart_if_dead(self) -> bool:
        """Start the thread again if it ended and its pause is over; True if restarted."""
        now = self._clock()
        if self._thread is None or self.is_alive or now < self._restart_at:
            return False
        self.restarts += 1
        self._restart_at = now + min(self.pause_max, 2.0 ** (self.restarts - 1))
        self._restarted_at = now
        log.error("the %s thread had stopped (%s): restarted (%d restart(s) so far)",
                  self.name, self.failure, self.restarts)
        self.start()
        return True

    @property
    def problem(self) -> str | None:
        """A health detail while the thread is dead or was restarted recently, else None."""
        if self._thread is not None and not self.is_alive:
            return f"the {self.name} thread stopped ({self.failure}); it is being restarted"
        if self._clock() - self._restarted_at <= self.report_seconds:
            return (f"the {self.name} thread stopped and was restarted {self.restarts} time(s) "
                    f"(last: {self.failure})")
        return None
