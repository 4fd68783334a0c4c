"""The indicator records every feed format is turned into."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

FeedFormat = Literal["echap", "stix2", "misp"]
"""Echap's YAML, a STIX 2.1 bundle, a MISP event (JSON)."""


class Category(StrEnum):
    """What a listed indicator means; the order is precedence (first wins)."""

    C2 = "c2"                # command-and-control server of a stalkerware app
    WATCHWARE = "watchware"  # server of a monitoring app that does not hide itself
    WEBSITE = "website"      # vendor or download site of a stalkerware app
    SELFTEST = "selftest"    # the sensor's own test indicator (veilleuse selftest)

    @property
    def precedence(self) -> int:
        return list(Category).index(self)


@dataclass(frozen=True, slots=True)
class Indicator:
    """One listed domain or IP, with the app it belongs to."""

    value: str
    category: Category
    app: str
    is_ip: bool = False

    def __post_init__(self) -> None:
        if not self.value:
            raise ValueError("an indicator needs a value")
        if not self.app:
            raise ValueError(f"indicator {self.value!r} names no app")


def preference(indicator: Indicator) -> tuple[int, int]:
    """Sort key among indicators covering one name: most severe, then most specific, first.

    The matcher reports only this one; whoever reads Suricata's rule alerts
    (several rules can fire on one name) must apply the same choice.
    """
    return (indicator.category.precedence, -len(indicator.value))


@dataclass(frozen=True, slots=True)
class Feed:
    """A validated feed file: its indicators and a version derived from its bytes.

    ``warnings`` (skipped values, unknown keys...) are carried, not logged: the
    same file is read at every analysis and every start, so they are said once,
    when the feed is installed (``veilleuse feeds update``), and kept in its
    metadata for ``veilleuse feeds status``.
    """

    name: str
    version: str
    indicators: tuple[Indicator, ...]
    app_count: int
    rejected: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def indicator_count(self) -> int:
        return len(self.indicators)

    @property
    def label(self) -> str:
        """The feed's file name, for people (``name`` may be a path or a URL)."""
        return self.name.rsplit("/", 1)[-1]


def describe_feeds(feeds: Sequence[Feed]) -> str:
    """The feeds in use, for people: label, short version and indicator count of each."""
    return ", ".join(f"{feed.label} {feed.version[:8]} ({feed.indicator_count})"
                     for feed in feeds)


def feed_versions(feeds: Sequence[Feed]) -> dict[str, str]:
    """Feed label -> version, as the state topic and the health file show them."""
    return {feed.label: feed.version for feed in feeds}
