"""Turn values found in a JSON feed (STIX 2.1, MISP) into checked indicators.

Each value goes through the same checks as Echap's YAML (``indicator_domain``,
``indicator_ip``): a hostile one is skipped, counted and reported with where
it sits in its file (an object id, an attribute uuid), the rest loads. What a
format carries that cannot be matched on the wire (file hashes, app ids,
certificates) is counted and reported once per feed, never an error.
Not the job of this module: reading any format; the loaders say what each
value is and where it was.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sensor.errors import FeedError
from sensor.feeds.echap import clean_app_name, feed_version
from sensor.feeds.model import Category, Feed, Indicator
from sensor.feeds.names import shown
from sensor.feeds.values import ValueKind, checked_indicator


def parse_json(content: bytes, name: str) -> Any:
    """The JSON document in ``content``; FeedError with the line if it is not JSON."""
    try:
        return json.loads(content.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise FeedError(name, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise FeedError(name, f"not valid JSON: {error.msg}", line=error.lineno) from None
    except RecursionError:
        raise FeedError(name, "JSON nested too deeply to be a feed") from None


def object_label(value: object) -> str:
    """An id or uuid from the file, as it can be shown in a message about it."""
    if isinstance(value, str) and value.isprintable() and 0 < len(value) <= 80:
        return value
    return shown(value)


class FeedBuilder:
    """Collects the checked indicators of one feed file, with its warnings and counts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rejected = 0
        self._indicators: dict[tuple[str, bool, Category, str], Indicator] = {}
        self._warnings: list[str] = []
        self._ignored: Counter[str] = Counter()
        self._apps: dict[str, str] = {}

    def app(self, raw: object, where: str) -> str:
        """``raw`` as a clean app name (reported once if it had to be cleaned).

        Without a name, the feed's file name stands for the app, so an alert still
        says where its indicator came from.
        """
        text = raw if isinstance(raw, str) and raw.strip() else self.name.rsplit("/", 1)[-1]
        if text not in self._apps:
            self._apps[text] = clean_app_name(text)
            if self._apps[text] != text:
                self.warn(where, f"app name {shown(text)} cleaned to {self._apps[text]!r}")
        return self._apps[text]

    def add(self, raw: Any, kind: ValueKind, category: Category, app: str, where: str) -> None:
        """Check ``raw`` and keep it, or count and report it with ``where``."""
        try:
            indicator = checked_indicator(raw, kind, category, app)
        except ValueError as error:
            self.rejected += 1
            self.warn(where, f"skipped: {error}")
            return
        key = (indicator.value, indicator.is_ip, indicator.category, indicator.app)
        self._indicators.setdefault(key, indicator)

    def ignore(self, what: str) -> None:
        """Count one thing the sensor cannot match on the wire (reported once, with the count)."""
        self._ignored[what] += 1

    def warn(self, where: str, message: str) -> None:
        self._warnings.append(f"{self.name}, {where}: {message}")

    def feed(self, content: bytes) -> Feed:
        """The validated feed, with its warnings and one line per ignored kind (not logged)."""
        warnings = list(self._warnings)
        if self._ignored:
            counts = ", ".join(f"{count} {what}" for what, count in sorted(self._ignored.items()))
            warnings.append(f"{self.name}: ignored what cannot be matched on the wire: {counts}")
        indicators = tuple(self._indicators.values())
        return Feed(name=self.name, version=feed_version(content), indicators=indicators,
                    app_count=len({i.app for i in indicators}), rejected=self.rejected,
                    warnings=tuple(warnings))
