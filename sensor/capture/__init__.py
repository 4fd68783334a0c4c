"""Capture sources: turn a pcap (or a live interface) into observation records.

Each source yields ``sensor.observations`` records and nothing else. Sources
never detect; they parse, and they count what they could not parse.
"""

from pathlib import Path

from sensor.errors import CaptureError

# First four bytes of pcap (both byte orders, micro- and nanosecond) and pcapng files.
CAPTURE_MAGICS = frozenset({b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                            b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a"})


def check_capture_file(path: Path | str) -> Path:
    """``path`` if it is a pcap or pcapng file; CaptureError naming it otherwise.

    Checked here because Suricata exits 0 on a file it cannot read.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        raise CaptureError(f"{path}: no such capture file") from None
    except OSError as error:
        raise CaptureError(f"{path}: cannot read it ({error.strerror})") from None
    if magic not in CAPTURE_MAGICS:
        raise CaptureError(f"{path}: not a pcap or pcapng capture file")
    return path
