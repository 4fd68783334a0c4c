"""The on-disk home of downloaded feeds: current copy, previous good copy, metadata.

Layout in the feeds directory, per feed name::

    <name>.yaml       the copy in use
    <name>.yaml.prev  the copy it replaced (kept for a manual rollback)
    <name>.json       what we know of it: url, version, download time, counts

Installing writes a temporary file in the same directory, fsyncs it and
renames it over the current copy, so a power cut leaves either the old or
the new file, never half of one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from sensor.errors import FeedError
from sensor.feeds.echap import load_echap
from sensor.feeds.model import Feed
from sensor.files import replace_file


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """Metadata of an installed feed."""

    name: str
    url: str
    version: str
    downloaded_at: str
    indicators: int
    apps: int

    @property
    def downloaded(self) -> datetime:
        return datetime.fromisoformat(self.downloaded_at)


def load_feed_file(path: Path | str, name: str | None = None) -> Feed:
    """Read and validate one Echap-format file; FeedError if missing or invalid."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise FeedError(str(path), f"cannot read the feed: {error.strerror}") from None
    return load_echap(content, name or str(path))


class FeedStore:
    """Installed feeds in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def feed_path(self, name: str) -> Path:
        return self.directory / f"{name}.yaml"

    def info(self, name: str) -> FeedInfo | None:
        try:
            return FeedInfo(**json.loads((self.directory / f"{name}.json").read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as error:
            raise FeedError(str(self.directory / f"{name}.json"),
                            f"unreadable feed metadata ({error}); run `veilleuse feeds update`") \
                from None

    def load(self, names: list[str]) -> list[Feed]:
        """The installed feeds among ``names`` (missing ones are skipped)."""
        return [load_feed_file(self.feed_path(name), name) for name in names
                if self.feed_path(name).exists()]

    def install(self, name: str, content: bytes, feed: Feed, url: str, now: datetime) -> FeedInfo:
        """Make ``content`` the current copy, keeping the previous one as ``.prev``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        current = self.feed_path(name)
        if current.exists():
            replace_file(current.with_suffix(".yaml.prev"), current.read_bytes())
        replace_file(current, content)
        info = FeedInfo(name=name, url=url, version=feed.version,
                        downloaded_at=now.isoformat(), indicators=feed.indicator_count,
                        apps=feed.app_count)
        replace_file(self.directory / f"{name}.json",
                          json.dumps(asdict(info), indent=2).encode())
        return info
