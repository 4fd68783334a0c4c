"""Count what a source read and what it could not use, telling the operator once per reason."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class SourceStats:
    """Counters one source run keeps; ``skipped`` maps a reason to how often it happened."""

    source: str
    records: int = 0
    observations: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    damaged: str | None = None
    """Why reading stopped early (the records before it were read), or None."""

    def skip(self, reason: str, detail: str = "") -> None:
        """Count an unusable record; the first of each reason is logged with a next step."""
        self.skipped[reason] += 1
        if self.skipped[reason] == 1:
            log.warning("%s: skipped a record (%s%s); later ones of this kind are only counted "
                        "and reported in the summary", self.source, reason,
                        f": {detail}" if detail else "")

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in self.skipped.most_common())
        return (f"{self.source}: {self.records} records, {self.observations} observations, "
                f"{self.skipped_total} skipped" + (f" ({reasons})" if reasons else "") +
                (f"; damaged: {self.damaged}" if self.damaged else ""))
