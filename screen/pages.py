"""Draw the screen's pages: pure functions of the state and the view, on a 128x64 canvas.

The same code draws on the OLED, on luma's dummy device in the tests
(golden PNGs) and for the README pictures. Text is DejaVu (it draws French
accents), sized to be read from two metres on the headline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import IntEnum
from pathlib import Path

from PIL import ImageDraw, ImageFont

from screen.model import MAX_TEXT, ScreenState, clean_text
from sensor.errors import VeilleuseError
from sensor.messages import Catalogue

WIDTH, HEIGHT = 128, 64
MAX_SHOWN_COUNT = 9999
FONT_DIRECTORY = Path("/usr/share/fonts/truetype/dejavu")


class Page(IntEnum):
    """The pages, in the order a button press walks through them."""

    STATUS = 0
    RECENT = 1
    COUNTERS = 2
    NETWORK = 3
    FEEDS = 4

    def next(self) -> Page:
        return Page((self + 1) % len(Page))


class FontMissing(VeilleuseError):
    """The DejaVu fonts are not installed."""


@dataclass(frozen=True, slots=True)
class Fonts:
    headline: ImageFont.FreeTypeFont
    body: ImageFont.FreeTypeFont


def load_fonts(directory: Path = FONT_DIRECTORY) -> Fonts:
    try:
        return Fonts(ImageFont.truetype(str(directory / "DejaVuSans-Bold.ttf"), 15),
                     ImageFont.truetype(str(directory / "DejaVuSans.ttf"), 11))
    except OSError:
        raise FontMissing(f"DejaVu fonts not found in {directory}; install them with "
                          "`apt-get install fonts-dejavu-core`") from None


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    hostname: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class View:
    """What the person in front of the box chose, and the burn-in shift."""

    page: Page = Page.STATUS
    revealed: bool = False
    acknowledged: bool = False
    shift: tuple[int, int] = (0, 0)
    timezone: tzinfo = UTC


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont,
         width: int) -> str:
    """``text`` cleaned and cut (with …) to fit ``width`` pixels.

    A binary search on the length: a few measurements whatever the text, so a
    hostile 20,000-character name costs no more than a short one.
    """
    text = clean_text(text, MAX_TEXT)
    if draw.textlength(text, font=font) <= width:
        return text
    fits, too_long = 0, len(text)
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if draw.textlength(text[:middle] + "…", font=font) <= width:
            fits = middle
        else:
            too_long = middle
    return text[:fits] + "…"


def _count(value: int) -> str:
    """A counter as shown: never wider than ``9999+``."""
    return f"{MAX_SHOWN_COUNT}+" if value > MAX_SHOWN_COUNT else str(max(value, 0))


class _Canvas:
    """Lines of text under a headline, shifted as a block, plus page dots."""

    def __init__(self, draw: ImageDraw.ImageDraw, fonts: Fonts, view: View) -> None:
        self.draw, self.fonts, self.view = draw, fonts, view
        self.dx, self.dy = view.shift

    def headline(self, text: str) -> None:
        self.draw.text((self.dx, self.dy), _fit(self.draw, text, self.fonts.headline, 124),
                       font=self.fonts.headline, fill="white")

    def lines(self, texts: list[str]) -> None:
        for row, text in enumerate(texts[:3]):
            self.draw.text((self.dx, self.dy + 17 + row * 13),
                           _fit(self.draw, text, self.fonts.body, 124),
                           font=self.fonts.body, fill="white")

    def dots(self) -> None:
        for index in range(len(Page)):
            x = 50 + index * 6 + self.dx
            box = (x, 60 + self.dy - 1, x + 2, 62 + self.dy - 1)
            if index == self.view.page:
                self.draw.rectangle(box, fill="white")
            else:
                self.draw.rectangle(box, outline="white")


def _clock(seconds: float | None, view: View) -> str:
    if seconds is None:
        return "--:--"
    try:
        return datetime.fromtimestamp(seconds, view.timezone).strftime("%H:%M")
    except (ValueError, OverflowError, OSError):
        return "--:--"


def _status(canvas: _Canvas, state: ScreenState, view: View, texts: Catalogue) -> None:
    health = state.shown_health
    canvas.headline(texts.text(f"health.{health}"))
    if health == "starting":
        canvas.lines([texts.text("starting.line")])
    elif health == "ok":
        canvas.lines([texts.text("ok.line1"), texts.text("ok.line2")])
    elif health == "alert":
        severity = state.highest_severity or "high"
        count = state.alert_count or len(state.recent)
        canvas.lines([texts.text("alert.count", count=_count(count)),
                      texts.text("alert.level", severity=texts.text(f"severity.{severity}")),
                      texts.text("alert.seen") if view.acknowledged else
                      texts.text("alert.since", time=_clock(state.alert_since, view))])
    else:
        canvas.lines([texts.text(f"reason.{code}") if f"reason.{code}" in texts.messages
                      else texts.text("reason.unknown") for code in state.shown_reasons])


def _recent(canvas: _Canvas, state: ScreenState, view: View, texts: Catalogue) -> None:
    canvas.headline(texts.text("page.recent"))
    if not state.recent:
        canvas.lines([texts.text("page.recent.none")])
        return
    if not view.revealed:
        canvas.lines([*(f"{_clock(line.last_seen, view)}  "
                        f"{texts.text(f'severity.{line.severity}')}"
                        for line in state.recent[:2]), texts.text("page.recent.hidden")])
        return
    first, *others = state.recent
    canvas.lines([f"{_clock(first.last_seen, view)} {first.app or first.kind}",
                  f"   {first.device}",
                  *(f"{_clock(line.last_seen, view)} {line.app or line.kind}" for line in others)])


def _counters(canvas: _Canvas, state: ScreenState, view: View, texts: Catalogue) -> None:
    canvas.headline(texts.text("page.counters"))
    canvas.lines([texts.text("page.counters.alerts", count=_count(state.alert_count)),
                  texts.text("page.counters.pending", count=_count(state.counter("pending"))),
                  texts.text("page.counters.delivered",
                             count=_count(state.counter("delivered")))])


def _network(canvas: _Canvas, network: NetworkInfo, texts: Catalogue) -> None:
    canvas.headline(texts.text("page.network"))
    canvas.lines([network.hostname, *(network.addresses[:2] or
                                      (texts.text("page.network.none"),))])


def _feeds(canvas: _Canvas, state: ScreenState, texts: Catalogue) -> None:
    canvas.headline(texts.text("page.feeds"))
    canvas.lines([f"{version[:8]} {name}" for name, version in state.feeds] or
                 [texts.text("page.feeds.none")])


def render(draw: ImageDraw.ImageDraw, state: ScreenState, view: View, texts: Catalogue,
           fonts: Fonts, network: NetworkInfo) -> None:
    """Draw ``view.page`` of ``state`` (the canvas is cleared by the caller)."""
    canvas = _Canvas(draw, fonts, view)
    if view.page is Page.STATUS:
        _status(canvas, state, view, texts)
    elif view.page is Page.RECENT:
        _recent(canvas, state, view, texts)
    elif view.page is Page.COUNTERS:
        _counters(canvas, state, view, texts)
    elif view.page is Page.NETWORK:
        _network(canvas, network, texts)
    else:
        _feeds(canvas, state, texts)
    canvas.dots()
