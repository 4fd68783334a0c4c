"""Capture sources: turn a pcap (or a live interface) into observation records.

Each source yields ``sensor.observations`` records and nothing else. Sources
never detect; they parse, and they count what they could not parse. Before
any engine runs, ``scan_capture`` walks the file's headers (no packet is
decoded): a file no engine can read fails at once with a clear error, and
damage part-way (a capture cut short, a record length that lies) is known
up front so the packets before it are still analysed and the damage reported.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sensor.errors import CaptureError

# First four bytes of pcap (both byte orders, micro- and nanosecond) and pcapng files.
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<",
               b"\xa1\xb2\x3c\x4d": ">"}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
CAPTURE_MAGICS = frozenset({*PCAP_MAGICS, PCAPNG_MAGIC})
MAX_RECORD = 262_144  # Wireshark's limit for a packet record (WTAP_MAX_PACKET_SIZE_STANDARD)
MAX_BLOCK = 16 * 1024 * 1024  # pcapng: no sane block is larger
LINKTYPE_LINUX_SLL2 = 276
# Link types Suricata 7 decodes; others that scapy knows (SLL2 from `tcpdump -i any`) fall
# back to the scapy source.
SURICATA_LINKTYPES = frozenset({0, 1, 9, 12, 14, 101, 113, 228, 229, 239})
# Link types Veilleuse can read at all (scapy's decoders for them, and Suricata's).
KNOWN_LINKTYPES = SURICATA_LINKTYPES | frozenset({108, LINKTYPE_LINUX_SLL2})


@dataclass(frozen=True, slots=True)
class CaptureFile:
    """What the headers of a capture file say, before any engine reads it."""

    path: Path
    format: str  # "pcap" or "pcapng"
    linktypes: tuple[int, ...]
    packets: int  # complete, plausible packet records before any damage
    damage: str | None  # why reading stops after ``packets`` records, or None
    end: int = 0  # bytes from the start that hold those records (the file's size if whole)

    def readable_by_suricata(self) -> bool:
        return all(linktype in SURICATA_LINKTYPES for linktype in self.linktypes)


def check_capture_file(path: Path | str) -> Path:
    """``path`` if it is a pcap or pcapng file; CaptureError naming it otherwise."""
    return scan_capture(path).path


def scan_capture(path: Path | str) -> CaptureFile:
    """Walk the headers of a pcap or pcapng file; CaptureError if no engine could read it.

    Errors: not a capture, a header cut short, an unknown link type, damage
    before the first packet. Damage after some packets is not an error here: it
    is ``damage``. A valid capture with no packet is not an error either: the
    sources read nothing from it and the command says so (``packets`` is 0).
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
            if magic not in CAPTURE_MAGICS:
                raise CaptureError(f"{path}: not a pcap or pcapng capture file")
            size = path.stat().st_size
            scanned = _scan_pcapng(handle, size) if magic == PCAPNG_MAGIC else \
                _scan_pcap(handle, PCAP_MAGICS[magic], size)
    except FileNotFoundError:
        raise CaptureError(f"{path}: no such capture file") from None
    except IsADirectoryError:
        raise CaptureError(f"{path}: is a directory, not a capture file") from None
    except OSError as error:
        raise CaptureError(f"{path}: cannot read it ({error.strerror})") from None
    except _Unreadable as error:
        raise CaptureError(f"{path}: {error}; it cannot be analysed") from None
    capture = CaptureFile(path, *scanned)
    unknown = sorted(set(capture.linktypes) - KNOWN_LINKTYPES)
    if unknown:
        raise CaptureError(f"{path}: link type {', '.join(map(str, unknown))} is not one "
                           "Veilleuse can decode (Ethernet, raw IP, Linux cooked and loopback "
                           "are); convert it with editcap or capture on an Ethernet "
                           "interface")
    if capture.packets == 0 and capture.damage:
        raise CaptureError(f"{path}: the capture holds no packet ({capture.damage})")
    return capture


class _Unreadable(Exception):
    """The file's own header is broken (internal to the scan)."""


def _scan_pcap(handle: BinaryIO, order: str,
               size: int) -> tuple[str, tuple[int, ...], int, str | None, int]:
    header = handle.read(20)
    if len(header) < 20:
        raise _Unreadable("the pcap file header is cut short")
    major, _, _, _, snaplen, network = struct.unpack(order + "HHiIII", header)
    if major != 2:
        raise _Unreadable(f"pcap version {major} is not 2 (a damaged header)")
    linktype = network & 0x0FFFFFFF
    limit = max(MAX_RECORD, min(snaplen, MAX_BLOCK))
    packets, offset = 0, 24
    while offset < size:
        record = handle.read(16)
        if len(record) < 16:
            return "pcap", (linktype,), packets, f"cut short in the header of record " \
                f"{packets + 1}", offset
        captured = struct.unpack(order + "IIII", record)[2]
        if captured > limit:
            return "pcap", (linktype,), packets, f"record {packets + 1} claims {captured} " \
                f"bytes (more than {limit}): the file is damaged there", offset
        if offset + 16 + captured > size:
            return "pcap", (linktype,), packets, f"cut short in the middle of record " \
                f"{packets + 1}", offset
        handle.seek(captured, 1)
        offset += 16 + captured
        packets += 1
    return "pcap", (linktype,), packets, None, size


_PACKET_BLOCKS = frozenset({2, 3, 6})  # obsolete packet, simple packet, enhanced packet


def _scan_pcapng(handle: BinaryIO, size: int) -> tuple[str, tuple[int, ...], int, str | None, int]:
    handle.seek(0)
    order, packets, offset = "<", 0, 0
    linktypes: list[int] = []
    while offset < size:
        head = handle.read(12)
        if len(head) < 12:
            return "pcapng", tuple(linktypes), packets, "cut short in a block header", offset
        kind = struct.unpack(order + "I", head[:4])[0]
        if kind == 0x0A0D0D0A:  # a section header says its byte order
            order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            if head[8:12] not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                raise _Unreadable("the pcapng section header is damaged")
        length = struct.unpack(order + "I", head[4:8])[0]
        if length < 12 or length % 4 or length > MAX_BLOCK:
            if not packets and not linktypes:
                raise _Unreadable(f"the first pcapng block claims {length} bytes")
            return "pcapng", tuple(linktypes), packets, f"a block after packet {packets} " \
                f"claims {length} bytes: the file is damaged there", offset
        if offset + length > size:
            return "pcapng", tuple(linktypes), packets, f"cut short in the middle of the " \
                f"block after packet {packets}", offset
        if kind == 1:  # interface description: its link type
            linktypes.append(struct.unpack(order + "H", head[8:10])[0])
        elif kind in _PACKET_BLOCKS:
            packets += 1
        handle.seek(offset + length)
        offset += length
    return "pcapng", tuple(linktypes), packets, None, size
