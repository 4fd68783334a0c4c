"""The sensor's health: ok / alert / degraded with reasons, from what the daemon measured.

The one place of the health policy, and of the health file's format
(``HEALTH_FILE``, read by `veilleuse status`). Pure functions of their
inputs, so every rule is tested without a network. "Degrade loudly": each
reason is a code the screen translates and a detail an operator can act on.
The live daemon assesses everything (``assess``); a publisher without a live
sensor (`veilleuse publish`, `analyze --mqtt`) knows only delivery
(``assess_delivery``). Not the job of this module: measuring.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

HEALTH_FILE = "health.json"
"""In the runtime directory; written by the live daemon, read by `veilleuse status`."""


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """What the daemon knows at one moment (times in seconds)."""

    capture_running: bool
    capture_problem: str | None
    drop_ratio: float
    seconds_since_traffic: float | None
    feeds_age_days: float | None
    delivery_problem: str | None
    serious_alerts: int
    broker_unreachable: str | None = None
    starting: bool = False
    clock_synchronised: bool = True
    seconds_since_start: float = 0.0
    mirror_problem: str | None = None
    # Most recent TCP connections seen in one direction only (sensor.daemon.mirror_direction).
    mirror_one_way: str | None = None
    disk_full: str | None = None
    alert_book_problem: str | None = None
    worker_problems: tuple[str, ...] = ()
    quarantined: str | None = None
    # Left by `veilleuse first-boot` (sensor.firstboot_report): the cause comes first.
    config_refused: str | None = None
    mirror_port_missing: str | None = None


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    max_drop_ratio: float = 0.05
    silent_after_seconds: float = 600.0
    stale_after_days: float = 14.0
    clock_grace_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class Health:
    state: str
    reasons: tuple[str, ...]
    details: tuple[str, ...]


def assess(inputs: HealthInputs, thresholds: HealthThresholds | None = None) -> Health:
    """``degraded`` with its reasons, else ``alert`` if a medium/high alert is stored, else ok.

    >>> assess(HealthInputs(True, None, 0.0, 1.0, 1.0, None, 0)).state
    'ok'
    """
    return _decide(_problems(inputs, thresholds or HealthThresholds()), inputs.starting,
                   inputs.serious_alerts)


def assess_delivery(refusal: str | None, serious_alerts: int) -> Health:
    """The health a publisher without a live sensor announces: delivery is all it knows.

    >>> assess_delivery("the broker refused an alert (Not authorized)", 2).reasons
    ('broker_refused_alert',)
    >>> assess_delivery(None, 2).state, assess_delivery(None, 0).state
    ('alert', 'ok')
    """
    return _decide([("broker_refused_alert", refusal)], False, serious_alerts)


def _decide(candidates: list[tuple[str, str | None]], starting: bool,
            serious_alerts: int) -> Health:
    """``degraded`` with the reasons that apply, else starting, alert or ok."""
    problems = [(code, detail) for code, detail in candidates if detail]
    if starting and not problems:
        return Health("starting", (), ())
    if problems:
        return Health("degraded", tuple(c for c, _ in problems), tuple(d for _, d in problems))
    if serious_alerts:
        return Health("alert", (), ())
    return Health("ok", (), ())


def _problems(inputs: HealthInputs, limits: HealthThresholds) -> list[tuple[str, str | None]]:
    """Every reason code with its detail (None when it does not apply), most important first."""
    down = not inputs.capture_running and not inputs.starting
    silent = inputs.capture_running and inputs.seconds_since_traffic is not None and \
        inputs.seconds_since_traffic > limits.silent_after_seconds
    stale = inputs.feeds_age_days is None or inputs.feeds_age_days > limits.stale_after_days
    unsynchronised = not inputs.clock_synchronised and \
        inputs.seconds_since_start > limits.clock_grace_seconds
    return [
        ("config_refused", inputs.config_refused),
        ("mirror_port_missing", inputs.mirror_port_missing),
        ("suricata_down", (inputs.capture_problem or "capture is not running") if down else None),
        ("disk_full", inputs.disk_full),
        ("alert_book_error", inputs.alert_book_problem),
        ("worker_error", "; ".join(inputs.worker_problems) or None),
        ("packet_drops", f"{inputs.drop_ratio:.1%} of packets dropped"
         if inputs.drop_ratio > limits.max_drop_ratio else None),
        ("no_traffic", f"no mirrored traffic for {(inputs.seconds_since_traffic or 0) / 60:.0f} "
         "min" if silent else None),
        ("mirror_one_way", inputs.mirror_one_way),
        ("feeds_stale", None if not stale else "no feed installed"
         if inputs.feeds_age_days is None else f"feeds are {inputs.feeds_age_days:.0f} days old"),
        ("clock_unsynchronised", "the system clock is not synchronised "
         f"{inputs.seconds_since_start / 60:.0f} min after start: alert times may be wrong and "
         "TLS to the core may fail; check that the box reaches an NTP server (timedatectl "
         "timesync-status)" if unsynchronised else None),
        ("mirror_not_passive", inputs.mirror_problem),
        ("broker_refused_alert", inputs.delivery_problem),
        ("broker_unreachable", inputs.broker_unreachable),
        ("alerts_quarantined", inputs.quarantined),
    ]


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What the health file says besides the health: no secrets and no device data,
    since the admins (the veilleuse group) read it."""

    time: float
    pid: int
    capture: str
    capturing: bool
    observations: int
    drop_ratio: float
    pending_alerts: int | None
    feeds: Mapping[str, str]


def health_file_text(health: Health, report: HealthReport) -> str:
    """The health file's JSON: the health's fields, then the report's."""
    return json.dumps({**asdict(health), **asdict(report), "feeds": dict(report.feeds)},
                      indent=2)


def read_health(path: Path) -> dict | None:
    """The health file as written, or None if there is none (or it is cut short)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
