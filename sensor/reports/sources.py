"""Where a device report's alerts come from: the box's alert book, or a capture's analysis.

Reads only: the report never writes to the alert book (it is not even created
when missing). Not the job of this module: analysing a capture
(``sensor.analysis``) or laying out the page (``sensor.reports.html``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from sensor.alerts.book import AlertBook, AlertBookError, StoredAlert, alert_of
from sensor.alerts.pseudonym import Pseudonymizer, load_or_create_secret
from sensor.config import Config
from sensor.daemon.clock import ClockProbe
from sensor.detect.model import Alert
from sensor.feeds.model import Feed, feed_versions
from sensor.feeds.store import FeedStore
from sensor.reports.device_page import ClockState, Provenance


def alert_from_stored(stored: StoredAlert) -> Alert:
    """The alert as the book holds it (``sensor.alerts.book.alert_of``: the book's reader)."""
    return alert_of(stored)


def read_book_alerts(path: Path) -> list[Alert]:
    """Every alert in the book at ``path``; an error that says so if there is no book."""
    if not path.exists():
        raise AlertBookError(f"{path}: no alert book here: this box has stored no alert yet, "
                             "or the configuration names another `alerts.database` "
                             "(pass --config, or --capture FILE to report on a capture)")
    book = AlertBook(path)
    try:
        return [alert_from_stored(stored) for stored in book.alerts()]
    finally:
        book.close()


def site_pseudonyms(config: Config) -> Pseudonymizer | None:
    """The site's pseudonyms, if it uses them and this user can read its key; else None.

    Only a convenience (matching ``dev-...`` names, showing one on the page),
    so a key that is absent or belongs to the veilleuse user is no error, and
    a report never creates it.
    """
    secret_file = config.privacy.secret_file
    if config.privacy.device_ids != "pseudonym" or not os.access(secret_file, os.R_OK):
        return None
    return Pseudonymizer(load_or_create_secret(secret_file))


def book_provenance(config: Config, generated_at: float, clock: ClockProbe) -> Provenance:
    """The footer of a page from the alert book: the installed feeds and the clock now."""
    store = FeedStore(config.feeds.directory)
    feeds = []
    for source in config.feeds.sources:
        info = store.info(source.name)
        if info is not None:
            feeds.append((source.name, info.version))
    return Provenance(generated_at=generated_at, sensor=config.sensor, site=config.site,
                      source=str(config.alerts.database), from_capture=False,
                      feeds=tuple(feeds),
                      clock=ClockState.SYNCHRONISED if clock() else ClockState.UNSYNCHRONISED)


def capture_provenance(config: Config, capture: Path, feeds: Sequence[Feed],
                       generated_at: float, damaged: str | None = None) -> Provenance:
    """The footer of a page from a capture file: the feeds it was analysed with."""
    return Provenance(generated_at=generated_at, sensor=config.sensor, site=config.site,
                      source=str(capture), from_capture=True,
                      feeds=tuple(feed_versions(feeds).items()),
                      clock=ClockState.CAPTURE, damaged=damaged)
