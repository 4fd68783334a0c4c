"""Replace a file atomically: readers see the old content or the new, never half of it.

Every file the sensor writes is private to its user (mode 0600 unless told
otherwise), whatever the process umask: alerts, offsets and health name
devices by their raw addresses.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

PRIVATE = 0o600


def replace_file(path: Path, content: bytes | str, *, durable: bool = True,
                 mode: int = PRIVATE) -> None:
    """Write ``content`` to a temporary file beside ``path``, then rename it over ``path``.

    ``durable`` also fsyncs the file and its directory, so a power cut keeps
    the new content; files rewritten every few seconds (health, offsets),
    where an older copy is harmless, skip it to spare the SD card. ``mode``
    is set exactly, whatever the umask (the temporary file starts at 0600).
    """
    data = content.encode() if isinstance(content, str) else content
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist; tighten it if it does.

    For files another library creates with the umask's mode (SQLite).
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE)
    try:
        if os.fstat(descriptor).st_mode & 0o077:
            os.fchmod(descriptor, PRIVATE)
    finally:
        os.close(descriptor)


def is_disk_full(error: OSError) -> bool:
    """True for "no space left on device" and "disk quota exceeded"."""
    return error.errno in (errno.ENOSPC, errno.EDQUOT)
