"""The exceptions the core raises, one family, each saying what to do next."""

from __future__ import annotations

from pathlib import Path


class CoreError(Exception):
    """Base of every error a person may have to act on."""


class CoreConfigError(CoreError):
    """The core's YAML configuration is unreadable or invalid; names the file, line and key."""

    def __init__(self, path: Path | str, message: str, *, line: int | None = None,
                 key: str | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.key = key
        self.message = message
        where = str(self.path) + (f", line {line}" if line else "")
        what = f"key '{key}': " if key else ""
        super().__init__(f"{where}: {what}{message}")


class StoreError(CoreError):
    """The core's database cannot be opened or written."""
