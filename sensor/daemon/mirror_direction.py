"""Whether the mirror carries both directions of the port, judged from recent TCP connections.

A SPAN session set to rx-only or tx-only is a common switch mistake: the
sensor still sees traffic, so nothing else in its health notices, but
Suricata never sees a TLS handshake complete and writes no TLS record for a
ClientHello without a session_ticket extension (docs/suricata-tls-records.md),
so those TLS server names are missed. A connection of which one side sent a
real session's worth (``MIN_PACKETS`` packets, ``MIN_BYTES`` bytes) and the
other not one packet was seen in one direction only (either one: a mirror
of the client's or of the server's side); unanswered SYN retries are too
small to count. When most of the recent ones are so, the
mirror is one-way. Times are the flows' own (observation time), so a replay
judges as the live sensor does. Not the job of this module: deciding the
health (``sensor.daemon.health``) or counting packets (the capture sources).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from sensor.observations import Flow, Observation

WINDOW_SECONDS = 600.0
MIN_PACKETS = 4      # from the busier side: more than a SYN and its retries
MIN_BYTES = 1_000    # from the busier side: SYN retries are ~60-80 bytes each
MIN_FLOWS = 20       # judged only on enough connections
ONE_WAY_SHARE = 0.9
MAX_KEPT = 4_096     # a busy network: the most recent connections are enough to judge


class MirrorDirection:
    """A sliding window of recent TCP connections, and whether they were seen one way.

    >>> from sensor.observations import Endpoints
    >>> def connection(t, answered):
    ...     return Flow(t, Endpoints("192.168.1.10", "203.0.113.9", 40000 + int(t), 443,
    ...                              "tcp"), t + 1, 12, 4000, *((6, 3000) if answered else (0, 0)))
    >>> mirror = MirrorDirection()
    >>> mirror.note([connection(t, answered=False) for t in range(30)])
    >>> mirror.problem() is not None
    True
    >>> mirror.note([connection(100 + t, answered=True) for t in range(30)])
    >>> mirror.problem() is None
    True
    """

    def __init__(self, consequence: str = "TLS server names are missed") -> None:
        self._consequence = consequence
        self._recent: deque[tuple[float, bool]] = deque(maxlen=MAX_KEPT)  # (end, one way)
        self._one_way = 0
        self._latest = float("-inf")

    def note(self, observations: Iterable[Observation]) -> None:
        """Take the TCP connections among ``observations`` (others are ignored)."""
        recent = self._recent
        for flow in observations:
            if type(flow) is not Flow:
                continue
            back, back_bytes = flow.packets_to_client, flow.bytes_to_client
            if back is None or back_bytes is None or flow.endpoints.transport != "tcp":
                continue  # a source that does not count directions (tshark), or UDP
            forth, forth_bytes = (flow.packets or 0) - back, (flow.bytes or 0) - back_bytes
            packets, size = (forth, forth_bytes) if forth_bytes >= back_bytes else \
                (back, back_bytes)
            if packets < MIN_PACKETS or size < MIN_BYTES:
                continue  # SYN retries, a port scan: no session to judge by
            one_way = not (forth and back)
            if len(recent) == recent.maxlen:
                self._one_way -= recent[0][1]
            recent.append((flow.end, one_way))
            self._one_way += one_way
            if flow.end > self._latest:
                self._latest = flow.end
        while recent and recent[0][0] < self._latest - WINDOW_SECONDS:
            self._one_way -= recent.popleft()[1]

    def problem(self) -> str | None:
        """What to tell the operator when the mirror is one-way; None when it is not."""
        total = len(self._recent)
        if total < MIN_FLOWS or self._one_way < ONE_WAY_SHARE * total:
            return None
        return (f"{self._one_way} of {total} TCP connections in the last "
                f"{WINDOW_SECONDS / 60:.0f} min were seen in one direction only: the switch "
                "mirrors one direction of the port; set its mirror session to both "
                f"directions (rx and tx). Until then {self._consequence}")
