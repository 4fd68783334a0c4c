"""Unexpected errors in a long-running worker thread: logged once, counted, then carried on.

A worker (the MQTT owner thread, the Suricata supervisor) that meets an
exception it did not plan for must neither die quietly nor spin: the pass is
abandoned, the traceback logged once per distinct traceback, the error
counted and kept as the worker's ``problem``, and the worker goes on after a
pause that grows with consecutive failures. Not the job of this module:
deciding what a worker does next (the worker's own loop does that).
"""

from __future__ import annotations

import logging
import threading
import traceback

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
