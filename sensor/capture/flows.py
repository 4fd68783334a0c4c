"""Group packets into flows the way Suricata does, for the sources that see raw packets.

The client is whoever sent the first packet, but for a TCP SYN/ACK (the SYN
was missed), which Suricata also turns around: its receiver is the client. A
flow ends when it has been idle longer than its state's timeout (Suricata's
defaults, also written into the generated suricata.yaml), when a new TCP SYN
reuses a closed connection's ports, or when the capture ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sensor.observations import Endpoints, Flow, Transport

# (new, established, closed) idle timeouts in seconds, as in suricata.yaml.
TIMEOUTS: dict[str, tuple[float, float, float]] = {
    "tcp": (60.0, 600.0, 60.0),
    "udp": (30.0, 300.0, 300.0),
}
_SWEEP_EVERY = 10.0  # seconds of capture time between sweeps for idle flows

FlowKey = tuple[str, int, str, int, str]


@dataclass(slots=True)
class PacketSummary:
    """The few facts of a packet the flow table needs."""

    time: float
    source: str
    destination: str
    source_port: int
    destination_port: int
    transport: Transport
    length: int
    syn: bool = False
    ack: bool = False
    fin: bool = False
    rst: bool = False


@dataclass(slots=True)
class FlowState:
    endpoints: Endpoints
    start: float
    last: float
    packets: int = 0
    bytes: int = 0
    packets_to_client: int = 0
    bytes_to_client: int = 0
    replied: bool = False
    closed: bool = False
    hello_seen: bool = False
    # What the packet sources parse as the flow goes on (TCP streams, QUIC CRYPTO pieces);
    # released when the flow ends.
    application: dict[str, Any] = field(default_factory=dict)

    def release(self) -> None:
        """Free per-flow parsing state (reassembly buffers give their memory back)."""
        for value in self.application.values():
            close = getattr(value, "close", None)
            if close is not None:
                close()
        self.application.clear()

    def timeout(self) -> float:
        new, established, closed = TIMEOUTS[self.endpoints.transport]
        if self.closed:
            return closed
        return established if self.replied else new

    def to_flow(self) -> Flow:
        return Flow(time=self.start, endpoints=self.endpoints, end=self.last,
                    packets=self.packets, bytes=self.bytes,
                    packets_to_client=self.packets_to_client,
                    bytes_to_client=self.bytes_to_client)


def _key(summary: PacketSummary) -> FlowKey:
    a = (summary.source, summary.source_port)
    b = (summary.destination, summary.destination_port)
    low, high = (a, b) if a <= b else (b, a)
    return (low[0], low[1], high[0], high[1], summary.transport)


class FlowTracker:
    """Feed it packets in capture order; it yields each flow once it has ended."""

    def __init__(self) -> None:
        self._flows: dict[FlowKey, FlowState] = {}
        self._last_sweep = 0.0

    def __len__(self) -> int:
        return len(self._flows)

    def add(self, packet: PacketSummary) -> tuple[FlowState, list[Flow]]:
        """Account ``packet``; returns its flow state and the flows that ended before it."""
        ended = self._sweep(packet.time) if packet.time - self._last_sweep >= _SWEEP_EVERY \
            else []
        key = _key(packet)
        state = self._flows.get(key)
        if state is not None and self._starts_anew(state, packet):
            ended.append(_end(self._flows.pop(key)))
            state = None
        if state is None:
            if packet.syn and packet.ack:  # the SYN was missed: the SYN/ACK's receiver is
                endpoints = Endpoints(packet.destination, packet.source,  # the client
                                      packet.destination_port, packet.source_port,
                                      packet.transport)
            else:
                endpoints = Endpoints(packet.source, packet.destination, packet.source_port,
                                      packet.destination_port, packet.transport)
            state = FlowState(endpoints=endpoints, start=packet.time, last=packet.time)
            self._flows[key] = state
        state.packets += 1
        state.bytes += packet.length
        state.last = max(state.last, packet.time)
        if packet.source != state.endpoints.client or \
                packet.source_port != state.endpoints.client_port:
            state.replied = True
            state.packets_to_client += 1
            state.bytes_to_client += packet.length
        if packet.rst or (packet.fin and state.replied):
            state.closed = True
        return state, ended

    @staticmethod
    def _starts_anew(state: FlowState, packet: PacketSummary) -> bool:
        if packet.time - state.last > state.timeout():
            return True
        return state.closed and packet.syn and not packet.ack

    def expire(self, now: float) -> list[Flow]:
        """Flows idle past their timeout at ``now`` (a live source calls this when quiet)."""
        return self._sweep(now)

    def _sweep(self, now: float) -> list[Flow]:
        self._last_sweep = now
        idle = [key for key, state in self._flows.items() if now - state.last > state.timeout()]
        return [_end(self._flows.pop(key)) for key in idle]

    def finish(self) -> Iterator[Flow]:
        """Every flow still open, as the capture ends."""
        flows, self._flows = self._flows, {}
        for state in flows.values():
            yield _end(state)


def _end(state: FlowState) -> Flow:
    state.release()
    return state.to_flow()
