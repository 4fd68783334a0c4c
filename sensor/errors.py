"""The exceptions Veilleuse raises, one family, each saying what to do next."""

from __future__ import annotations

from pathlib import Path


class VeilleuseError(Exception):
    """Base of every error a person may have to act on."""


class ConfigError(VeilleuseError):
    """The YAML configuration is unreadable or invalid; names the file, line and key."""

    def __init__(self, path: Path | str, message: str, *, line: int | None = None,
                 key: str | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.key = key
        self.message = message
        where = str(self.path) + (f", line {line}" if line else "")
        what = f"key '{key}': " if key else ""
        super().__init__(f"{where}: {what}{message}")


class FeedError(VeilleuseError):
    """An indicator feed is missing, unreadable or fails validation."""

    def __init__(self, source: str, message: str, *, line: int | None = None,
                 key: str | None = None) -> None:
        self.source = source
        self.line = line
        self.key = key
        where = source + (f", line {line}" if line else "")
        what = f"key '{key}': " if key else ""
        super().__init__(f"{where}: {what}{message}")


class FeedDownloadError(FeedError):
    """A feed could not be downloaded; the last good copy stays in use."""


class CaptureError(VeilleuseError):
    """A capture source could not read its input or its engine failed."""


class CaptureToolMissing(CaptureError):
    """An external engine (suricata, tshark) is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        self.tool = tool
        super().__init__(
            f"'{tool}' was not found on PATH; install it (apt-get install {package}) "
            "or choose another --source")
