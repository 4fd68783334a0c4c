"""What the screen knows, folded from MQTT messages by a pure function.

The screen may follow one sensor (on the appliance) or every sensor of a
site (a front-desk display): each sensor's reports are kept apart and the
screen shows the worst health, the summed counters and every recent alert.
Every payload is read through the wire contract (``sensor.wire.payloads``:
the JSON Schemas and the vocabulary they declare); the screen knows nothing
else of the sensor. ``apply_message`` never raises on bad input: a message
that breaks the contract leaves the state as it was and is counted, so a
stray publish cannot blank the shelter's screen. What it keeps is bounded and
clean: texts lose their control characters and are cut to ``MAX_TEXT``,
counters are clamped, lists are capped, and a health or severity word newer
than this screen's contract is kept as ``unknown`` (shown as such, never as
all clear) rather than dropped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import overload

from sensor.wire.payloads import HEALTH_STATES, SEVERITIES, InvalidPayload, read_payload

_WORST_FIRST = ("alert", "degraded", "ok", "starting")
UNKNOWN = "unknown"
SEVERITY_RANK = {**{severity: 2 * rank for rank, severity in enumerate(SEVERITIES)},
                 UNKNOWN: 2 * len(SEVERITIES) - 3}
"""The contract's severities in order, and an unknown one just below the highest."""
UNKNOWN_HEALTH_REASON = "unknown_health"
MAX_RECENT = 5
MAX_TEXT = 64           # characters kept of any text from a message
MAX_ITEMS = 16          # reasons, counters or feeds kept from one message
MAX_SENSORS = 64        # sensors a site screen follows
MAX_COUNTER = 10**9     # counters are clamped to 0..MAX_COUNTER
_MAX_TIME_TEXT = 64


def clean_text(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` on one line, without control characters, at most ``limit`` characters.

    >>> clean_text("Demo\\nSpy\\x00"), clean_text("x" * 100, 8)
    ('Demo Spy ', 'xxxxxxx…')
    """
    text = text[:limit + 1]
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class AlertLine:
    """One recent alert, with what the screen hides until a staff member asks."""

    id: str
    severity: str
    kind: str
    app: str | None
    device: str
    last_seen: float


@dataclass(frozen=True, slots=True)
class SensorReport:
    """The last word of one sensor: its state and whether it is online."""

    health: str = "starting"
    reasons: tuple[str, ...] = ()
    online: bool | None = None
    counters: tuple[tuple[str, int], ...] = ()
    feeds: tuple[tuple[str, str], ...] = ()
    time: float | None = None

    def __post_init__(self) -> None:
        if self.health not in HEALTH_STATES:
            raise ValueError(f"health must be one of {HEALTH_STATES}, not {self.health!r}")


@dataclass(frozen=True, slots=True)
class ScreenState:
    """Everything the pages show, for one sensor or a whole site."""

    sensors: tuple[tuple[str, SensorReport], ...] = ()
    recent: tuple[AlertLine, ...] = ()
    alert_since: float | None = None
    broker_connected: bool | None = None  # None: not connected yet
    ignored_messages: int = 0

    def _reports(self) -> list[SensorReport]:
        return [report for _, report in self.sensors]

    @property
    def health(self) -> str:
        states = {report.health for report in self._reports()} or {"starting"}
        return next(state for state in _WORST_FIRST if state in states)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r for report in self._reports() for r in report.reasons))

    @property
    def sensor_online(self) -> bool | None:
        online = [report.online for report in self._reports() if report.online is not None]
        return None if not online else all(online)

    @property
    def counters(self) -> tuple[tuple[str, int], ...]:
        total: dict[str, int] = {}
        for report in self._reports():
            for name, value in report.counters:
                total[name] = total.get(name, 0) + value
        return tuple(sorted(total.items()))

    @property
    def feeds(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted({feed for report in self._reports() for feed in report.feeds}))

    @property
    def highest_severity(self) -> str | None:
        if not self.recent:
            return None
        return max((line.severity for line in self.recent), key=SEVERITY_RANK.__getitem__)

    def counter(self, name: str) -> int:
        return dict(self.counters).get(name, 0)

    @property
    def alert_count(self) -> int:
        return self.counter("alerts_medium") + self.counter("alerts_high")

    @property
    def shown_health(self) -> str:
        """What the screen says: a lost broker or a stopped sensor is degraded, whatever it said."""
        if self.broker_connected is None:
            return "starting"
        return "degraded" if self.shown_reasons else self.health

    @property
    def shown_reasons(self) -> tuple[str, ...]:
        if self.broker_connected is False:
            return ("screen_broker_unreachable", *self.reasons)
        if self.sensor_online is False:
            return ("sensor_offline", *self.reasons)
        return self.reasons if self.health == "degraded" else ()

    def with_report(self, sensor: str, report: SensorReport) -> ScreenState:
        others = tuple((name, known) for name, known in self.sensors if name != sensor)
        return dataclasses.replace(self, sensors=tuple(sorted((*others, (sensor, report)))))

    def report(self, sensor: str) -> SensorReport:
        return dict(self.sensors).get(sensor, SensorReport())


def _seconds(value: object) -> float:
    """Seconds since the epoch of an ISO 8601 time with a zone; ValueError otherwise."""
    if not isinstance(value, str) or len(value) > _MAX_TIME_TEXT:
        raise ValueError("a time must be ISO 8601 text")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("a time needs its zone")
    try:
        return moment.timestamp()
    except (OverflowError, OSError):
        raise ValueError("a time out of range") from None


def _mapping(value: object, what: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object")
    return value


@overload
def _text(value: object, default: str) -> str: ...


@overload
def _text(value: object, default: None = None) -> str | None: ...


def _text(value: object, default: str | None = None) -> str | None:
    """Clean text, or ``default`` when ``value`` is not text."""
    return clean_text(value) if isinstance(value, str) else default


def _counter(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return min(max(value, 0), MAX_COUNTER)


def apply_message(state: ScreenState, topic: str, payload: bytes) -> ScreenState:
    """The state after one MQTT message on ``<prefix>/<site>/<sensor>/{state,status,alert}``."""
    try:
        levels = topic.split("/")
        sensor = clean_text(f"{levels[-3]}/{levels[-2]}")
        leaf = levels[-1]
        if leaf == "state":
            return _apply_state(state, sensor, read_payload(leaf, payload, new_words=True))
        if leaf == "status":
            message = read_payload(leaf, payload, new_words=True)
            report = dataclasses.replace(state.report(sensor),
                                         online=message["status"] == "online",
                                         time=_seconds(message["time"]))
            return _with_report(state, sensor, report)
        if leaf == "alert":
            return _apply_alert(state, read_payload(leaf, payload, new_words=True))
    except (InvalidPayload, ValueError, KeyError, TypeError, IndexError, RecursionError):
        pass
    return dataclasses.replace(state, ignored_messages=state.ignored_messages + 1)


def _with_report(state: ScreenState, sensor: str, report: SensorReport) -> ScreenState:
    if len(state.sensors) >= MAX_SENSORS and sensor not in dict(state.sensors):
        raise ValueError(f"more than {MAX_SENSORS} sensors")
    return state.with_report(sensor, report)


def _health(value: object) -> tuple[str, tuple[str, ...]]:
    """(health, extra reasons): an unknown health is shown degraded, with its own reason."""
    if value in HEALTH_STATES:
        return str(value), ()
    return "degraded", (UNKNOWN_HEALTH_REASON,)


def _apply_state(state: ScreenState, sensor: str, message: dict) -> ScreenState:
    time = _seconds(message["time"])
    health, extra = _health(message["health"])
    reasons = message.get("reasons") or []
    if not isinstance(reasons, list):
        raise ValueError("reasons must be a list")
    counters = {clean_text(str(k)): _counter(v)
                for k, v in list(_mapping(message["counters"], "counters").items())[:MAX_ITEMS]}
    feeds = _mapping(message.get("feeds") or {}, "feeds")
    report = dataclasses.replace(
        state.report(sensor), health=health,
        reasons=(*extra, *(clean_text(r) for r in reasons[:MAX_ITEMS] if isinstance(r, str))),
        counters=tuple(sorted((k, v) for k, v in counters.items() if v is not None)),
        feeds=tuple(sorted((clean_text(str(k)), _text(v, "?"))
                           for k, v in list(feeds.items())[:MAX_ITEMS])),
        time=time)
    updated = _with_report(state, sensor, report)
    since = state.alert_since if updated.health == "alert" else None
    if updated.health == "alert" and since is None:
        since = min((line.last_seen for line in state.recent), default=time)
    return dataclasses.replace(updated, alert_since=since)


def _apply_alert(state: ScreenState, message: dict) -> ScreenState:
    identifier = message["id"]
    if not isinstance(identifier, str | int) or isinstance(identifier, bool):
        raise ValueError("id must be text")
    severity = message["severity"]
    line = AlertLine(id=clean_text(str(identifier)),
                     severity=severity if isinstance(severity, str) and severity in SEVERITY_RANK
                     else UNKNOWN,
                     kind=_text(message["kind"], UNKNOWN), app=_text(message.get("app")),
                     device=_text(message["device"], "?"),
                     last_seen=_seconds(message["last_seen"]))
    others = [known for known in state.recent if known.id != line.id]
    recent = sorted([line, *others], key=lambda item: -item.last_seen)[:MAX_RECENT]
    since = state.alert_since
    if SEVERITY_RANK[line.severity] >= SEVERITY_RANK["medium"]:
        since = line.last_seen if since is None else min(since, line.last_seen)
    return dataclasses.replace(state, recent=tuple(recent), alert_since=since)
