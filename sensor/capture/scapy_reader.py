"""scapy as a capture source: read a pcap packet by packet with PcapReader.

Streams the file (constant memory); each packet goes through the shared
``PacketDecoder``. A packet scapy or the decoder cannot handle is counted and
skipped, never fatal. A damaged file is read up to the damage (found by
``scan_capture`` before scapy reads a byte, so a lying record length never
reaches scapy) and the damage is reported in ``stats.damaged``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from scapy.config import conf
from scapy.error import Scapy_Exception
from scapy.utils import PcapReader

from sensor.capture import scan_capture
from sensor.capture.packets import PacketDecoder
from sensor.capture.stats import SourceStats
from sensor.errors import CaptureError
from sensor.observations import Observation

log = logging.getLogger(__name__)


class ScapySource:
    """Reads a pcap or pcapng file with scapy."""

    name = "scapy"

    def __init__(self) -> None:
        self.stats = SourceStats(self.name)

    def read(self, pcap: Path) -> Iterator[Observation]:
        decoder = PacketDecoder()
        capture = scan_capture(pcap)
        unknown = sorted(set(capture.linktypes) - set(conf.l2types.num2layer))
        if unknown:
            raise CaptureError(f"{pcap}: scapy cannot decode link type "
                               f"{', '.join(map(str, unknown))}; use --source suricata or "
                               "--source tshark")
        try:
            reader = PcapReader(str(capture.path))
        except (OSError, Scapy_Exception) as error:
            raise CaptureError(f"{pcap}: cannot read this capture ({error})") from None
        self.stats.damaged = capture.damage
        with reader:
            try:
                for packet in islice(reader, capture.packets):
                    yield from decoder.decode_counted(packet, self.stats)
            except (Scapy_Exception, EOFError, struct.error, ValueError) as error:
                self.stats.damaged = f"scapy stopped after record {self.stats.records} " \
                    f"({type(error).__name__}: {error})"
        finishing = decoder.finish()
        self.stats.observations += len(finishing)
        yield from finishing
        log.info("%s", self.stats.summary())
