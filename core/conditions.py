"""Whether a sensor is watching: ``ok``, ``silent`` or ``degraded``, from what it last said.

A pure function of the sensor's last state and status and of the time, so
the ingest (which raises events on a change) and ``veilleuse-core status``
agree. Silent wins over degraded: a sensor that does not speak cannot be
trusted to report its health. Not the job of this module: storing events.
"""

from __future__ import annotations

from dataclasses import dataclass

OK, SILENT, DEGRADED = "ok", "silent", "degraded"


@dataclass(frozen=True, slots=True)
class SensorView:
    """What the store knows of one sensor."""

    site: str
    sensor: str
    health: str | None
    reasons: tuple[str, ...]
    state_received_at: float | None
    """The core's clock when the newest state arrived (not the sensor's, which may be wrong),
    or when the sensor was first heard of if it has sent no state yet."""
    status: str | None
    status_reason: str | None


@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    reasons: tuple[str, ...]

    @property
    def is_bad(self) -> bool:
        return self.name != OK


def condition_of(view: SensorView, now: float, silent_after: float) -> Condition:
    """The sensor's condition at ``now``.

    >>> view = SensorView("s", "b", "degraded", ("packet_drops",), 100.0, "online", None)
    >>> condition_of(view, 110.0, 300.0)
    Condition(name='degraded', reasons=('packet_drops',))
    >>> condition_of(view, 401.0, 300.0)
    Condition(name='silent', reasons=('no_state',))
    """
    if view.status == "offline":
        return Condition(SILENT, (f"offline: {view.status_reason or 'no reason given'}",))
    if view.state_received_at is None or now - view.state_received_at > silent_after:
        return Condition(SILENT, ("no_state",))
    if view.health == DEGRADED:
        return Condition(DEGRADED, view.reasons)
    return Condition(OK, ())
