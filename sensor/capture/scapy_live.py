"""The "lite" live source: scapy AsyncSniffer with a kernel BPF filter, for boxes without Suricata.

The kernel passes only what detection reads, so Python sees a small share
of the traffic: DNS, TCP connection starts (flows, listed IPs, beacons,
DNS over TLS), TLS handshake records, HTTP requests, the client's data
segments to ports 443 and 80 (a ClientHello or request headers that span
segments are reassembled from them), QUIC long-header packets and port
853, in IPv4, IPv6 (without extension headers) and 802.1Q-tagged frames;
and every GRE, VXLAN and IP-in-IP packet (ERSPAN and remote mirrors: the
decoder opens them). PPPoE and MPLS are decoded offline only (a filter
cannot shift its offsets for them and for VLAN tags), and so is Teredo (its
data packets use any UDP port). Frames are not
dissected by scapy (the socket hands them over as bytes) and go through the
same ``PacketDecoder`` as offline captures. The sniffer thread only queues
packets; a full queue drops the packet and counts it (``stats.skipped``), it
never blocks capture.
Flows are tracked from their SYN alone, so their byte counts are not kept.
"""

from __future__ import annotations

import logging
import queue
import socket as socket_module
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from scapy.config import conf
from scapy.error import Scapy_Exception
from scapy.packet import Packet
from scapy.sendrecv import AsyncSniffer

from sensor.capture.frames import LINKTYPE_ETHERNET
from sensor.capture.packets import PacketDecoder
from sensor.capture.stats import SourceStats
from sensor.errors import CaptureError
from sensor.observations import Observation

log = logging.getLogger(__name__)

_TCP_DATA_V4 = "tcp[((tcp[12:1] & 0xf0) >> 2)"
_TCP_DATA_V6 = "ip6[40 + ((ip6[52:1] & 0xf0) >> 2)"
_CORE = " or ".join([
    "udp port 53", "tcp port 53", "port 853",
    "(tcp[tcpflags] & tcp-syn != 0)",
    "(ip6 and ip6[6] = 6 and ip6[53] & 0x02 != 0)",
    f"(tcp and {_TCP_DATA_V4}:1] = 0x16)",
    f"(ip6 and ip6[6] = 6 and {_TCP_DATA_V6}:1] = 0x16)",
    f"(tcp and ({_TCP_DATA_V4}:4] = 0x47455420 or {_TCP_DATA_V4}:4] = 0x504f5354))",
    f"(ip6 and ip6[6] = 6 and ({_TCP_DATA_V6}:4] = 0x47455420 or "
    f"{_TCP_DATA_V6}:4] = 0x504f5354))",
    "((tcp dst port 443 or tcp dst port 80) and "
    "ip[2:2] - ((ip[0] & 0x0f) << 2) - ((tcp[12] & 0xf0) >> 2) > 0)",
    "(ip6 and ip6[6] = 6 and (ip6[42:2] = 443 or ip6[42:2] = 80) and "
    "ip6[4:2] - ((ip6[52] & 0xf0) >> 2) > 0)",
    "(udp dst port 443 and udp[8] & 0xc0 = 0xc0)",
    "(ip6 and ip6[6] = 17 and ip6[42:2] = 443 and ip6[48] & 0xc0 = 0xc0)",
])
# ``vlan`` shifts the offsets of everything after it in a filter, so it comes last.
LITE_FILTER = f"({_CORE}) or proto gre or ip proto 4 or ip proto 41 or udp dst port 4789 " \
    f"or (vlan and ({_CORE}))"


CAPTURE_BUFFER = 4 * 1024 * 1024  # scapy's 64 KiB holds ~30 frames: a burst overflows it
_SO_RCVBUFFORCE = getattr(socket_module, "SO_RCVBUFFORCE", 33)


def _enlarge_buffer(packet_socket: socket_module.socket) -> None:
    """A receive buffer that absorbs bursts; past net.core.rmem_max with CAP_NET_ADMIN."""
    for option in (_SO_RCVBUFFORCE, socket_module.SO_RCVBUF):
        try:
            packet_socket.setsockopt(socket_module.SOL_SOCKET, option, CAPTURE_BUFFER)
            return
        except OSError:
            continue


class FrameSink(Protocol):
    """Where the sniffer also puts each frame (the evidence ring, ``sensor.evidence.live``)."""

    def add(self, linktype: int, frame: bytes, time: float) -> None: ...


class ScapyLiveSource:
    """Sniffs an interface until ``stop`` is set; yields observations as they come."""

    name = "scapy-live"

    def __init__(self, interface: str, bpf: str = LITE_FILTER, queue_size: int = 50_000,
                 clock: Callable[[], float] = time.time, ring: FrameSink | None = None) -> None:
        self.interface = interface
        self.ring = ring  # the latest frames, kept for evidence (sensor.evidence.live)
        self.bpf = bpf
        self.stats = SourceStats(self.name)
        self._packets: queue.Queue[Packet] = queue.Queue(maxsize=queue_size)
        self._clock = clock
        self.started = threading.Event()

    def _enqueue(self, packet: Packet) -> None:
        try:
            self._packets.put_nowait(packet)
        except queue.Full:
            self.stats.skip("packet dropped: the analyzer is behind",
                            "increase the queue or lighten the filter")

    def read(self, stop: threading.Event) -> Iterator[Observation]:
        try:
            # Any: scapy types it SuperSocket, whose L2 listening kinds all have ``LL``
            socket: Any = conf.L2listen(iface=self.interface, filter=self.bpf)
        except (OSError, ValueError, Scapy_Exception) as error:
            raise CaptureError(f"cannot capture on {self.interface}: {error} (run as root or "
                               "with CAP_NET_RAW)") from None
        # Frames stay bytes (scapy's Raw): the decoder reads their headers itself, which
        # costs a tenth of scapy dissecting each one.
        linktype = conf.l2types.layer2num.get(socket.LL, LINKTYPE_ETHERNET)
        _enlarge_buffer(socket.ins)
        socket.LL = conf.raw_layer
        sniffer = AsyncSniffer(opened_socket=socket, store=False, prn=self._enqueue,
                               started_callback=self.started.set)
        sniffer.start()
        decoder = PacketDecoder()
        try:
            while not stop.is_set():
                try:
                    packet = self._packets.get(timeout=1.0)
                except queue.Empty:
                    yield from decoder.expire(self._clock())
                    continue
                yield from self._decode(decoder, linktype, packet)
        finally:
            if sniffer.running:
                sniffer.stop()
            socket.close()
        while not self._packets.empty():
            yield from self._decode(decoder, linktype, self._packets.get_nowait())
        yield from decoder.finish()
        log.info("%s", self.stats.summary())

    def _decode(self, decoder: PacketDecoder, linktype: int,
                packet: Packet) -> list[Observation]:
        frame = bytes(packet)
        if self.ring is not None:
            self.ring.add(linktype, frame, float(packet.time))
        return decoder.decode_frame_counted(self.stats, linktype, frame, float(packet.time))
