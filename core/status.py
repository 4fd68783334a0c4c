"""``veilleuse-core status``: every sensor's condition and last state, and alert counts.

Reads the database only (no broker), so it also works while ingest is down.
Not the job of this module: raising events (ingest does, once).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.conditions import Condition, SensorView, condition_of
from core.store import CoreStore, iso

SEVERITIES = ("high", "medium", "low", "info")


@dataclass(frozen=True, slots=True)
class SensorLine:
    view: SensorView
    condition: Condition
    age: float | None
    state_time: float | None


def sensor_lines(store: CoreStore, now: float, silent_after: float) -> list[SensorLine]:
    return [SensorLine(view, condition_of(view, now, silent_after),
                       None if view.state_received_at is None else now - view.state_received_at,
                       state_time)
            for view, state_time in store.sensors()]


def format_status(lines: list[SensorLine], counts: dict[str, int]) -> str:
    """The report a person reads; one line per sensor, then the counts."""
    rows = []
    for line in lines:
        view = line.view
        age = "-" if line.age is None else f"{line.age:.0f} s ago"
        reasons = ", ".join(line.condition.reasons)
        sensor_time = "-" if line.state_time is None else iso(line.state_time)
        rows.append(f"{view.site}/{view.sensor}: {line.condition.name.upper()}"
                    f"{f' ({reasons})' if reasons else ''}; health {view.health or '-'}, "
                    f"status {view.status or '-'}, last state {age} (sensor time "
                    f"{sensor_time})")
    if not rows:
        rows.append("no sensor heard of yet")
    rows.append("alerts: " + ", ".join(f"{severity} {counts.get(severity, 0)}"
                                       for severity in SEVERITIES))
    return "\n".join(rows)
