"""scapy as a capture source: read a pcap packet by packet with PcapReader.

Streams the file (constant memory); each packet goes through the shared
``PacketDecoder``. A packet scapy or the decoder cannot handle is counted and
skipped, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from scapy.error import Scapy_Exception
from scapy.utils import PcapReader

from sensor.capture import check_capture_file
from sensor.capture.packets import PacketDecodeError, PacketDecoder
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
        pcap = check_capture_file(pcap)
        try:
            reader = PcapReader(str(pcap))
        except (OSError, Scapy_Exception) as error:
            raise CaptureError(f"{pcap}: cannot read this capture ({error})") from None
        with reader:
            for packet in reader:
                self.stats.records += 1
                try:
                    observations = decoder.decode(packet)
                except PacketDecodeError as error:
                    self.stats.skip("undecodable packet", str(error))
                    continue
                except Exception as error:  # noqa: BLE001 - the record boundary: count, go on
                    self.stats.skip("malformed packet", f"{type(error).__name__}: {error}")
                    continue
                self.stats.observations += len(observations)
                yield from observations
        finishing = decoder.finish()
        self.stats.observations += len(finishing)
        yield from finishing
        log.info("%s", self.stats.summary())
