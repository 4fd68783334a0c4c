"""Replace a file atomically: readers see the old content or the new, never half of it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_file(path: Path, content: bytes | str, *, durable: bool = True,
                 mode: int | None = None) -> None:
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
            if mode is not None:
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
