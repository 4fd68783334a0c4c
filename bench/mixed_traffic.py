"""A large, realistic capture for benchmarks: 40 devices browsing, a few stalkerware hits.

Built in time slices on every core and cached on disk: scapy needs about
half a millisecond per frame, so 300k packets take a couple of minutes once.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import struct
from collections.abc import Callable
from pathlib import Path

from scapy.utils import PcapWriter

from sensor.demo.traffic import DEFAULT_START, DLT_EN10MB, Traffic

GENERATOR_VERSION = 1
SITES = [f"www.site{i}.example" for i in range(300)]
C2_NAMES = ["api.copy9.com", "push.thetruthspy.com", "mycloud-cs10.wisemo.com"]
PACKETS_PER_SESSION = 12.5  # an overestimate: the mix averages 10.5 (300000 asked gives 251,901);
# kept so the cached capture stays the one earlier figures were measured on. Benches print the
# packet count the file holds.


def _slice(arguments: tuple[int, int, float, float]) -> list[tuple[float, bytes]]:
    seed, sessions, start, length = arguments
    rng = random.Random(seed)
    traffic = Traffic()
    devices = [f"192.168.{10 + i // 200}.{10 + i % 200}" for i in range(40)]
    for index in range(sessions):
        now = start + length * index / sessions
        device = rng.choice(devices)
        roll = rng.random()
        name = rng.choice(C2_NAMES) if roll < 0.01 else rng.choice(SITES)
        server = f"203.0.{113 if roll < 0.5 else 112}.{rng.randrange(1, 250)}"
        if roll < 0.60:
            traffic.dns(now, device, "192.168.10.1", name, [(name, "A", server)])
            traffic.tls(now + 0.01, device, server, name)
        elif roll < 0.75:
            traffic.http(now, device, server, name, "/index.html")
        elif roll < 0.85:
            traffic.dns(now, device, "192.168.10.1", name, [(name, "A", server)])
            traffic.quic(now + 0.01, device, server, name)
        else:
            traffic.dns(now, device, "192.168.10.1", name, [(name, "A", server)],
                        transaction_id=rng.randrange(65536))
    return sorted(traffic.frames)


def build_mixed_capture(path: Path, packets: int) -> Path:
    """Write about ``packets`` packets to ``path`` (in time order, one session every 20 ms)."""
    return write_sliced_capture(path, _slice, int(packets / PACKETS_PER_SESSION), 0.02)


Slice = Callable[[tuple[int, int, float, float]], list[tuple[float, bytes]]]


def write_sliced_capture(path: Path, make_slice: Slice, sessions: int, spacing: float) -> Path:
    """``sessions`` sessions ``spacing`` seconds apart, built in time slices on every core.

    ``make_slice((seed, sessions, start, length))`` returns the slice's frames sorted.
    """
    workers = max(1, multiprocessing.cpu_count())
    slices = workers * 4
    per_slice = max(1, sessions // slices)
    length = per_slice * spacing
    jobs = [(seed, per_slice, DEFAULT_START + seed * length, length) for seed in range(slices)]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = PcapWriter(str(path), linktype=DLT_EN10MB, sync=False)
    try:
        writer.write_header(None)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for frames in pool.imap(make_slice, jobs):  # slices are in time order
                for time, frame in frames:
                    seconds, micro = divmod(round(time * 1_000_000), 1_000_000)
                    writer.write_packet(frame, sec=seconds, usec=micro)
    finally:
        writer.close()
    return path


def packet_count(pcap: Path) -> int:
    """Records in a classic pcap file (what the label says is what the file holds)."""
    count = 0
    with pcap.open("rb") as capture:
        header = capture.read(24)
        order = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        while len(record := capture.read(16)) == 16:
            capture.seek(struct.unpack(order + "IIII", record)[2], os.SEEK_CUR)
            count += 1
    return count
