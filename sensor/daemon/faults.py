"""Unexpected errors in the daemon's own loop: logged once, counted, reported, and survived.

The loop pings systemd's watchdog, so an error it did not plan for must not
stop it: the chore that raised is abandoned for this turn, the traceback is
logged once per distinct traceback, the error is counted and reported as the
health reason ``worker_error`` for ``report_seconds``. An error that keeps
coming back from the same place for ``give_up_after`` seconds is one the
process cannot get out of: ``check`` raises DaemonFailure, the daemon exits
with status 1 and systemd restarts it. Not the job of this module: the
worker threads' own errors (``sensor.workers``) or their liveness.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from sensor.errors import VeilleuseError

log = logging.getLogger(__name__)

QUIET_SECONDS = 300.0  # an error not seen again for this long has stopped recurring
REPEAT_LOG_SECONDS = 60.0


class DaemonFailure(VeilleuseError):
    """The daemon cannot go on; it exits with status 1 so that systemd restarts it."""


@dataclass(slots=True)
class _Streak:
    first: float
    last: float
    count: int
    logged: float
    text: str


class LoopFaults:
    """The loop's unexpected errors; ``record`` them inside the loop's ``except Exception``.

    >>> now = [0.0]
    >>> faults = LoopFaults(lambda: now[0], give_up_after=60.0)
    >>> try:
    ...     raise KeyError("x")
    ... except KeyError as error:
    ...     faults.record("turn", error)
    >>> faults.count, faults.problem() is not None
    (1, True)
    """

    def __init__(self, clock: Callable[[], float], give_up_after: float = 600.0,
                 report_seconds: float = 600.0) -> None:
        self._clock = clock
        self.give_up_after = give_up_after
        self.report_seconds = report_seconds
        self.count = 0
        self._seen: set[str] = set()
        self._streaks: dict[tuple[str, str, str, int], _Streak] = {}
        self._last: tuple[float, str] | None = None

    def record(self, chore: str, error: Exception) -> None:
        """Log (the traceback once per distinct one, repeats once a minute) and count."""
        now = self._clock()
        text = "".join(traceback.format_exception(error)).rstrip()
        frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
        where = (chore, type(error).__name__, frame.filename if frame else "",
                 (frame.lineno or 0) if frame else 0)
        self.count += 1
        summary = f"{type(error).__name__}: {error}"
        self._last = (now, f"{chore}: {summary}")
        streak = self._streaks.get(where)
        if streak is None or now - streak.last > QUIET_SECONDS:
            streak = self._streaks[where] = _Streak(now, now, 0, float("-inf"), summary)
        streak.last, streak.count, streak.text = now, streak.count + 1, summary
        if text not in self._seen:
            self._seen.add(text)
            streak.logged = now
            log.error("daemon loop (%s): unexpected error, the loop carries on; please report "
                      "this traceback in a Veilleuse issue:\n%s", chore, text)
        elif now - streak.logged >= REPEAT_LOG_SECONDS:
            streak.logged = now
            log.error("daemon loop (%s): the same unexpected error again (%s), %d time(s) "
                      "in %.0f s; the daemon exits if it goes on for %.0f s", chore, summary,
                      streak.count, now - streak.first, self.give_up_after)

    def problem(self) -> str | None:
        """A health detail while an error was recorded in the last ``report_seconds``."""
        if self._last is None or self._clock() - self._last[0] > self.report_seconds:
            return None
        return (f"daemon loop: {self.count} unexpected error(s), last: {self._last[1]} (the "
                "loop carries on; see the journal for the traceback)")

    def check(self) -> None:
        """DaemonFailure if one error has kept recurring for longer than ``give_up_after``."""
        now = self._clock()
        for (chore, *_), streak in self._streaks.items():
            if now - streak.last <= QUIET_SECONDS and \
                    streak.last - streak.first > self.give_up_after:
                raise DaemonFailure(
                    f"the daemon loop ({chore}) has failed with the same error for "
                    f"{streak.last - streak.first:.0f} s ({streak.count} times: {streak.text}); "
                    "exiting so that systemd restarts the sensor")
