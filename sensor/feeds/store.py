"""The on-disk home of downloaded feeds: current copy, previous good copy, metadata.

Layout in the feeds directory, per feed name::

    <name>.yaml       the copy in use (``<name>.stix2.json``, ``<name>.misp.json``
                      for a STIX 2.1 or MISP source)
    <name>.yaml.prev  the copy it replaced (kept for a manual rollback)
    <name>.json       what we know of it: url, format, version, download time, counts

The copy in use is read in the format its metadata records, so a source
switched to another format keeps its old copy in use until an update of the
new format has been validated and installed.

Installing writes a temporary file in the same directory, fsyncs it and
renames it over the current copy, so a power cut leaves either the old or
the new file, never half of one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from sensor.errors import FeedError
from sensor.feeds.formats import FILE_SUFFIXES, detect_format, load_feed
from sensor.feeds.model import Feed, FeedFormat
from sensor.files import replace_file

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class FeedInfo:
    """Metadata of an installed feed."""

    name: str
    url: str
    version: str
    downloaded_at: str
    indicators: int
    apps: int
    format: FeedFormat = "echap"  # absent from metadata written before STIX and MISP
    warnings: tuple[str, ...] = ()  # what validation skipped or ignored, said at install

    @property
    def downloaded(self) -> datetime:
        return datetime.fromisoformat(self.downloaded_at)


def load_feed_file(path: Path | str, name: str | None = None,
                   feed_format: FeedFormat | None = None) -> Feed:
    """Read and validate one feed file; FeedError if missing or invalid.

    Without ``feed_format``, the format is recognised from the content
    (Echap YAML, STIX 2.1 bundle or MISP event).
    Its warnings are logged at DEBUG only (``veilleuse -vv``): they were said
    when the feed was installed, and this runs at every analysis and start.
    """
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise FeedError(str(path), f"cannot read the feed: {error.strerror}") from None
    feed = load_feed(content, name or str(path), feed_format or detect_format(content))
    for warning in feed.warnings:
        log.debug("%s", warning)
    return feed


class FeedStore:
    """Installed feeds in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def feed_path(self, name: str, feed_format: FeedFormat = "echap") -> Path:
        return self.directory / f"{name}{FILE_SUFFIXES[feed_format]}"

    def installed_path(self, name: str) -> tuple[Path, FeedFormat]:
        """The copy in use of ``name`` and its format, as its metadata records them."""
        info = self.info(name)
        feed_format = info.format if info is not None else "echap"
        return self.feed_path(name, feed_format), feed_format

    def info(self, name: str) -> FeedInfo | None:
        try:
            fields = json.loads((self.directory / f"{name}.json").read_text())
            return FeedInfo(**{**fields, "warnings": tuple(fields.get("warnings", ()))})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, AttributeError) as error:
            raise FeedError(str(self.directory / f"{name}.json"),
                            f"unreadable feed metadata ({error}); run `veilleuse feeds update`") \
                from None

    def load(self, names: list[str]) -> list[Feed]:
        """The installed feeds among ``names``, each in its format (missing ones are skipped)."""
        feeds = []
        for name in names:
            path, feed_format = self.installed_path(name)
            if path.exists():
                feeds.append(load_feed_file(path, name, feed_format))
        return feeds

    def install(self, name: str, content: bytes, feed: Feed, url: str, now: datetime,
                feed_format: FeedFormat = "echap") -> FeedInfo:
        """Make ``content`` the current copy, keeping the previous one as ``.prev``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        current = self.feed_path(name, feed_format)
        if current.exists():
            replace_file(current.with_name(current.name + ".prev"), current.read_bytes())
        replace_file(current, content)
        info = FeedInfo(name=name, url=url, version=feed.version,
                        downloaded_at=now.isoformat(), indicators=feed.indicator_count,
                        apps=feed.app_count, format=feed_format, warnings=feed.warnings)
        replace_file(self.directory / f"{name}.json",
                          json.dumps(asdict(info), indent=2).encode())
        return info
