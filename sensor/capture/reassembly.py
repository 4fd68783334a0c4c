"""In-order TCP byte streams, one per flow direction, bounded in memory.

Why: a ClientHello with a post-quantum key share (~1.8 KB, every current
Chrome and Android WebView) always spans two segments; so may HTTP headers
and DNS-over-TCP messages. A ``Stream`` puts the segments of one direction
back in sequence order (retransmissions and overlaps trimmed, segments that
arrive early held until the gap fills) and hands out the bytes in order.
Bounds: each stream holds at most ``MAX_STREAM`` bytes and ``MAX_PENDING``
early segments, and all streams of a reader share a ``ReassemblyBudget``;
past a bound the stream gives up (``failed``) and says why. A stream lives
in its flow's state, so flow expiry frees it. Non-job: what the bytes mean.
"""

from __future__ import annotations

MAX_STREAM = 65_536  # bytes buffered per direction: a ClientHello is at most 16 KB or so
MAX_PENDING = 64  # out-of-order segments held per direction
DEFAULT_BUDGET = 32 * 1024 * 1024  # bytes buffered across every stream of one reader
_MASK = 0xFFFFFFFF


class ReassemblyBudget:
    """Bytes all streams of one reader may hold together (a Pi has little memory)."""

    def __init__(self, limit: int = DEFAULT_BUDGET) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        self.used -= size


class Stream:
    """One direction of a TCP connection; ``add`` segments, ``data`` holds the bytes in order.

    The consumer removes what it has used with ``consume`` and calls ``close``
    when it needs no more (that frees the buffer and ignores later segments).
    """

    __slots__ = ("_budget", "_held", "_next", "_pending", "closed", "data", "failed")

    def __init__(self, budget: ReassemblyBudget) -> None:
        self._budget = budget
        self._next: int | None = None
        self._pending: dict[int, bytes] = {}
        self._held = 0  # bytes taken from the budget (data + pending)
        self.data = bytearray()
        self.failed: str | None = None
        self.closed = False

    def start(self, syn_sequence: int) -> None:
        """The SYN's sequence number: data starts right after it."""
        if self._next is None:
            self._next = (syn_sequence + 1) & _MASK

    def add(self, sequence: int, payload: bytes) -> bool:
        """Account one segment; True if ``data`` grew."""
        if self.closed or not payload:
            return False
        if self._next is None:
            self._next = sequence  # mid-stream: the first data seen starts the stream
        ahead = (sequence - self._next) & _MASK
        if ahead and ahead < 0x80000000:  # early: hold it until the gap fills
            self._hold_early(sequence, payload)
            return False
        if ahead:  # a retransmission, maybe overlapping new bytes
            payload = payload[(self._next - sequence) & _MASK:]
            if not payload:
                return False
        if not self._append(payload, self._next):
            return False
        self._flush_pending()
        return True

    def _flush_pending(self) -> None:
        """Append the held segments the stream has now reached, in order."""
        while self._pending and not self.closed and self._next is not None:
            expected = self._next
            reached = [start for start in self._pending
                       if (expected - start) & _MASK < 0x80000000]
            if not reached:
                return
            start = reached[0]
            piece = self._pending.pop(start)
            self._release(len(piece))
            piece = piece[(expected - start) & _MASK:]
            if piece and not self._append(piece, expected):
                return

    def _hold_early(self, sequence: int, payload: bytes) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._fail("too many segments out of order")
        elif sequence not in self._pending and self._hold(len(payload)):
            self._pending[sequence] = payload

    def consume(self, size: int) -> None:
        """Forget the first ``size`` bytes of ``data`` (the consumer has read them)."""
        del self.data[:size]
        self._release(size)

    def close(self) -> None:
        """No more bytes are wanted: free everything."""
        if not self.closed:
            self.closed = True
            self._budget.give_back(self._held)
            self._held = 0
            self.data = bytearray()
            self._pending.clear()

    def _append(self, payload: bytes, position: int) -> bool:
        """Add ``payload``, which starts at sequence ``position`` (the stream's next byte)."""
        if len(self.data) + len(payload) > MAX_STREAM:
            self._fail(f"more than {MAX_STREAM} bytes buffered")
            return False
        if not self._hold(len(payload)):
            return False
        self.data += payload
        self._next = (position + len(payload)) & _MASK
        return True

    def _hold(self, size: int) -> bool:
        if not self._budget.take(size):
            self._fail("the reassembly memory budget is spent")
            return False
        self._held += size
        return True

    def _release(self, size: int) -> None:
        self._held -= size
        self._budget.give_back(size)

    def _fail(self, reason: str) -> None:
        self.failed = reason
        self.close()
