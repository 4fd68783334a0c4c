"""Retention: delete what is older than ``alerts.retention_days``, on a trusted clock.

Delivered alerts not seen for that long go from the book, and evidence
bundles made that long ago from the evidence store (``purge(older_than)``
on either).

"Not seen for N days" is measured with the wall clock. A box whose clock is
not synchronised (a Pi boots with the last time it saved, or a wrong clock
jumps forward) would delete alerts that are recent, so the purge waits until
the clock is synchronised. Undelivered alerts are never deleted (the book
guarantees it).
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Purgeable(Protocol):
    """The alert book or the evidence store: deletes what is older than a time."""

    def purge(self, older_than: float) -> int: ...


def apply_retention(book: Purgeable, retention_days: int, now: float, clock_synchronised: bool,
                    what: str = "delivered alert(s) not seen") -> int | None:
    """Purge what retention allows; the number deleted, or None when skipped (untrusted clock)."""
    if not clock_synchronised:
        log.info("retention: skipped, the system clock is not synchronised (%s would be "
                 "judged old by a wrong clock)", what)
        return None
    purged = book.purge(older_than=now - retention_days * 86_400)
    if purged:
        log.info("retention: deleted %d %s for %d days", purged, what, retention_days)
    return purged

