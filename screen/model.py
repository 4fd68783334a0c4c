"""What the screen knows, folded from MQTT messages by a pure function.

The screen may follow one sensor (on the appliance) or every sensor of a
site (a front-desk display): each sensor's reports are kept apart and the
screen shows the worst health, the summed counters and every recent alert.
``apply_message`` never raises on bad input: a malformed or unknown message
leaves the state as it was and is counted, so a stray publish cannot blank
the shelter's screen.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime

HEALTH_STATES = ("starting", "ok", "alert", "degraded")
_WORST_FIRST = ("alert", "degraded", "ok", "starting")
SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3}
MAX_RECENT = 5


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


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def apply_message(state: ScreenState, topic: str, payload: bytes) -> ScreenState:
    """The state after one MQTT message on ``<prefix>/<site>/<sensor>/{state,status,alert}``."""
    try:
        levels = topic.split("/")
        sensor = f"{levels[-3]}/{levels[-2]}"
        message = json.loads(payload)
        schema = message["schema"]
        if topic.endswith("/state") and schema.startswith("veilleuse.state/"):
            return _apply_state(state, sensor, message)
        if topic.endswith("/status") and schema.startswith("veilleuse.status/"):
            report = dataclasses.replace(state.report(sensor),
                                         online=message["status"] == "online",
                                         time=_seconds(message["time"]))
            return state.with_report(sensor, report)
        if topic.endswith("/alert") and schema.startswith("veilleuse.alert/"):
            return _apply_alert(state, message)
    except (ValueError, KeyError, TypeError, IndexError):
        pass
    return dataclasses.replace(state, ignored_messages=state.ignored_messages + 1)


def _apply_state(state: ScreenState, sensor: str, message: dict) -> ScreenState:
    time = _seconds(message["time"])
    report = dataclasses.replace(
        state.report(sensor), health=message["health"],
        reasons=tuple(str(r) for r in message.get("reasons", ())),
        counters=tuple(sorted((str(k), int(v)) for k, v in message["counters"].items())),
        feeds=tuple(sorted((str(k), str(v)) for k, v in message.get("feeds", {}).items())),
        time=time)
    updated = state.with_report(sensor, report)
    since = state.alert_since if updated.health == "alert" else None
    if updated.health == "alert" and since is None:
        since = min((line.last_seen for line in state.recent), default=time)
    return dataclasses.replace(updated, alert_since=since)


def _apply_alert(state: ScreenState, message: dict) -> ScreenState:
    line = AlertLine(id=str(message["id"]), severity=str(message["severity"]),
                     kind=str(message["kind"]), app=message.get("app"),
                     device=str(message["device"]), last_seen=_seconds(message["last_seen"]))
    if line.severity not in SEVERITY_RANK:
        raise ValueError(line.severity)
    others = [known for known in state.recent if known.id != line.id]
    recent = sorted([line, *others], key=lambda item: -item.last_seen)[:MAX_RECENT]
    since = state.alert_since
    if SEVERITY_RANK[line.severity] >= SEVERITY_RANK["medium"]:
        since = line.last_seen if since is None else min(since, line.last_seen)
    return dataclasses.replace(state, recent=tuple(recent), alert_since=since)
