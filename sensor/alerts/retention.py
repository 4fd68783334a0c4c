"""Retention: delete delivered alerts not seen for ``alerts.retention_days``, on a trusted clock.

"Not seen for N days" is measured with the wall clock. A box whose clock is
not synchronised (a Pi boots with the last time it saved, or a wrong clock
jumps forward) would delete alerts that are recent, so the purge waits until
the clock is synchronised. Undelivered alerts are never deleted (the book
guarantees it).
"""

from __future__ import annotations

import logging

from sensor.alerts.book import AlertBook

log = logging.getLogger(__name__)


def apply_retention(book: AlertBook, retention_days: int, now: float,
                    clock_synchronised: bool) -> int | None:
    """Purge what retention allows; the number deleted, or None when skipped (untrusted clock)."""
    if not clock_synchronised:
        log.info("retention: skipped, the system clock is not synchronised (alerts would be "
                 "judged old by a wrong clock)")
        return None
    purged = book.purge(older_than=now - retention_days * 86_400)
    if purged:
        log.info("retention: deleted %d delivered alert(s) not seen for %d days", purged,
                 retention_days)
    return purged
