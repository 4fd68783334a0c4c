"""scapy as a capture source: read a pcap record by record with RawPcapReader.

Streams the file (constant memory). Records are read raw (scapy's reader,
without dissection: dissecting every packet cost ~300 µs each) and each goes
through the shared ``PacketDecoder``, which reads headers itself and parses
only the payloads that may matter. A packet the decoder cannot handle is
counted and skipped, never fatal. A damaged file is read up to the damage (found by
``scan_capture`` before scapy reads a byte, so a lying record length never
reaches scapy) and the damage is reported in ``stats.damaged``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import cast

from scapy.config import conf
from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader

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
            reader = RawPcapReader(str(capture.path))
        except (OSError, Scapy_Exception) as error:
            raise CaptureError(f"{pcap}: cannot read this capture ({error})") from None
        self.stats.damaged = capture.damage
        with reader:
            try:
                for frame, linktype, time in islice(pcap_records(reader), capture.packets):
                    yield from decoder.decode_frame_counted(self.stats, linktype, frame, time)
            except (Scapy_Exception, EOFError, struct.error, ValueError) as error:
                self.stats.damaged = f"scapy stopped after record {self.stats.records} " \
                    f"({type(error).__name__}: {error})"
        finishing = decoder.finish()
        self.stats.observations += len(finishing)
        yield from finishing
        log.info("%s", self.stats.summary())


def pcap_records(reader: RawPcapReader) -> Iterator[tuple[bytes, int, float]]:
    """(frame, link type, time) for each record, in file order."""
    if isinstance(reader, RawPcapNgReader):
        for frame, meta in reader:  # scapy types the items as pcap's, not pcapng's
            ng = cast(RawPcapNgReader.PacketMetadata, meta)
            yield frame, ng.linktype, ((ng.tshigh << 32) + ng.tslow) / ng.tsresol
        return
    linktype, scale = reader.linktype, 1e9 if reader.nano else 1e6
    for frame, meta in reader:
        yield frame, linktype, meta.sec + meta.usec / scale
