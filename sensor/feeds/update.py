"""Download feeds, validate them and install them without ever losing the last good copy.

A download that fails, does not parse, is empty, or shrank below the
configured share of the current copy is refused; the current copy stays.
Retries with back-off are urllib3's (``Retry``). A feed's warnings (values
skipped, keys ignored) are logged here, when a version is installed, and
nowhere else. The caller passes the store and the sources built
(``sensor.wiring`` reads them from the config): this package does not know
the config.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import urllib3
from urllib3.util.retry import Retry

from sensor.errors import FeedDownloadError, FeedError
from sensor.feeds.formats import load_feed
from sensor.feeds.model import FeedFormat
from sensor.feeds.store import FeedStore

log = logging.getLogger(__name__)

MAX_FEED_BYTES = 20 * 1024 * 1024
USER_AGENT = "veilleuse-feed-update/1"


class FeedSource(Protocol):
    """Where one feed comes from (the config's ``feeds.sources`` entries are such)."""

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def format(self) -> FeedFormat: ...


class UpdateStatus(StrEnum):
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class UpdateOutcome:
    """What happened to one feed."""

    name: str
    status: UpdateStatus
    message: str
    version: str | None = None


def make_http_pool(retries: int = 4, backoff: float = 1.0,
                   timeout: float = 30.0) -> urllib3.PoolManager:
    retry = Retry(total=retries, backoff_factor=backoff, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=frozenset({"GET"}), raise_on_status=False)
    return urllib3.PoolManager(retries=retry, timeout=urllib3.Timeout(total=timeout),
                               headers={"User-Agent": USER_AGENT})


def download(pool: urllib3.PoolManager, url: str) -> bytes:
    """The body of ``url``; FeedDownloadError on a network error, an HTTP error or a huge body."""
    try:
        response = pool.request("GET", url, preload_content=False)
    except urllib3.exceptions.HTTPError as error:
        raise FeedDownloadError(url, f"download failed: {error}") from None
    try:
        if response.status != 200:
            raise FeedDownloadError(url, f"the server answered HTTP {response.status}")
        body = response.read(MAX_FEED_BYTES + 1)
    finally:
        response.release_conn()
    if len(body) > MAX_FEED_BYTES:
        raise FeedDownloadError(url, f"larger than {MAX_FEED_BYTES} bytes; refusing it")
    return body


def update_feed(source: FeedSource, store: FeedStore, pool: urllib3.PoolManager, now: datetime,
                min_size_ratio: float) -> UpdateOutcome:
    try:
        content = download(pool, source.url)
        feed = load_feed(content, source.url, source.format)
    except FeedError as error:
        return UpdateOutcome(source.name, UpdateStatus.FAILED, str(error))
    current = store.info(source.name)
    if current is not None and current.version == feed.version \
            and current.format == source.format:
        return UpdateOutcome(source.name, UpdateStatus.UNCHANGED,
                             f"already at version {feed.version}", feed.version)
    if feed.indicator_count == 0:
        return UpdateOutcome(source.name, UpdateStatus.REFUSED,
                             "the download holds no indicator; keeping the current copy")
    if current is not None and feed.indicator_count < min_size_ratio * current.indicators:
        return UpdateOutcome(
            source.name, UpdateStatus.REFUSED,
            f"the download has {feed.indicator_count} indicators, under {min_size_ratio:.0%} of "
            f"the {current.indicators} in use; keeping the current copy (a truncated file?)")
    store.install(source.name, content, feed, source.url, now, source.format)
    for warning in feed.warnings:  # said here, once per version: analyses read it silently
        log.warning("%s", warning)
    notes = (f"; {len(feed.warnings)} warning(s) about its contents, listed by "
             "`veilleuse feeds status`" if feed.warnings else "")
    return UpdateOutcome(source.name, UpdateStatus.UPDATED,
                         f"{feed.indicator_count} indicators from {feed.app_count} apps{notes}",
                         feed.version)


def update_feeds(store: FeedStore, sources: Iterable[FeedSource], now: datetime, *,
                 min_size_ratio: float, pool: urllib3.PoolManager | None = None,
                 ) -> list[UpdateOutcome]:
    """Update every feed of ``sources``; one failing does not stop the others."""
    pool = pool or make_http_pool()
    outcomes = [update_feed(source, store, pool, now, min_size_ratio) for source in sources]
    for outcome in outcomes:
        level = logging.INFO if outcome.status in (UpdateStatus.UPDATED, UpdateStatus.UNCHANGED) \
            else logging.WARNING
        log.log(level, "feed %s: %s (%s)", outcome.name, outcome.status.value, outcome.message)
    return outcomes
