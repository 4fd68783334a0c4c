"""A session-shaped capture for benchmarks: long TLS sessions, few handshakes, few lookups.

The counterpart of ``mixed_traffic`` (event-dense: a lookup or a handshake
every few packets). Here 40 devices keep long encrypted sessions (streaming,
messaging, backups): about 500 packets per handshake, so what a sensor pays
per packet, not per event, decides its cost. One session in a hundred goes
to a listed C2 name, so there is something to find.
"""

from __future__ import annotations

import random
from pathlib import Path

from bench.mixed_traffic import C2_NAMES, SITES, write_sliced_capture
from sensor.demo.tls import change_cipher_spec_and_data, client_hello_record, server_hello_record
from sensor.demo.traffic import Traffic

GENERATOR_VERSION = 1
EXCHANGES = 120  # request/response pairs per session: 4 packets each
PACKETS_PER_SESSION = 4 * EXCHANGES + 12  # with the handshake, the close and the DNS lookup


def _record(size: int) -> bytes:
    """An opaque TLS application-data record of ``size`` bytes."""
    return b"\x17\x03\x03" + size.to_bytes(2, "big") + random.randbytes(size)


def _slice(arguments: tuple[int, int, float, float]) -> list[tuple[float, bytes]]:
    seed, sessions, start, length = arguments
    rng = random.Random(seed)
    random.seed(seed)
    traffic = Traffic()
    devices = [f"192.168.{10 + i // 200}.{10 + i % 200}" for i in range(40)]
    for index in range(sessions):
        now = start + length * index / sessions
        device = rng.choice(devices)
        name = rng.choice(C2_NAMES) if rng.random() < 0.01 else rng.choice(SITES)
        server = f"203.0.113.{rng.randrange(1, 250)}"
        traffic.dns(now, device, "192.168.10.1", name, [(name, "A", server)],
                    transaction_id=rng.randrange(65536))
        requests = [client_hello_record(name), change_cipher_spec_and_data()]
        requests += [_record(rng.randrange(60, 400)) for _ in range(EXCHANGES)]
        responses = [server_hello_record()]
        responses += [_record(rng.randrange(600, 1400)) for _ in range(EXCHANGES)]
        traffic.tcp_connection(now + 0.01, device, server, 443, requests, responses)
    return sorted(traffic.frames)


def build_session_capture(path: Path, packets: int) -> Path:
    """Write about ``packets`` packets to ``path`` (a new session every 0.5 s, overlapping)."""
    return write_sliced_capture(path, _slice, round(packets / PACKETS_PER_SESSION), 0.5)
