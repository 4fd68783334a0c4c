"""What the retained state topic counts, and when it is published again.

The core's publisher and the copy for the screen publish the same state:
when what it says changes, and at least every ``interval`` seconds even if
it does not (a broker restarted without persistence forgets it). Not the
job of this module: the health the state carries (``sensor.daemon.health``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

from sensor.wire.payloads import SEVERITIES


def state_counters(severities: Mapping[str, int], pending: int, delivered: int,
                   refused: int) -> dict[str, int]:
    """The state topic's counters: alerts by severity, then delivery's.

    >>> state_counters({"high": 2}, 1, 3, 0)["alerts_high"]
    2
    """
    counters = {f"alerts_{severity}": severities.get(severity, 0) for severity in SEVERITIES}
    counters.update(pending=pending, delivered=delivered, refused=refused)
    return counters


class StateThrottle:
    """Says whether a state is worth publishing: it changed, or ``interval`` has passed."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval, self._clock = interval, clock
        self._sent: Hashable = None
        self._sent_at = float("-inf")

    def is_due(self, fingerprint: Hashable) -> bool:
        return fingerprint != self._sent or self._clock() - self._sent_at >= self.interval

    def sent(self, fingerprint: Hashable) -> None:
        self._sent, self._sent_at = fingerprint, self._clock()

    def forget(self) -> None:
        """The broker may have lost the retained state (it restarted): publish it again."""
        self._sent = None

