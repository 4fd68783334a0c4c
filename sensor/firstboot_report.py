"""What the last first boot could not do, kept in a small file the sensor's health reads.

`veilleuse first-boot` runs once, before the sensor and the screen start, and
has no screen of its own: a refused ``veilleuse.yaml`` or a box with no port
for the mirror must still reach the OLED (CHECK BOX) and `veilleuse status`.
It writes its problems here; the daemon turns them into health reasons
(``config_refused``, ``mirror_port_missing``) as long as they still hold. A
problem ends by itself when its cause is gone: the installed configuration
was changed since (an admin fixed it), or the awaited mirror interface now
exists (a USB adapter was plugged in). Not the job of this module: deciding
what is a problem (``sensor.firstboot``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from sensor.files import replace_file

log = logging.getLogger(__name__)

REPORT_NAME = "first-boot.json"
CONFIG_REFUSED = "config_refused"
MIRROR_PORT_MISSING = "mirror_port_missing"


@dataclass(frozen=True, slots=True)
class SetupProblem:
    """One problem of the first boot: a reason code, its detail, and what ends it.

    ``until_changed`` is a file and its modification time (ns) when the
    problem was found: a later change to the file ends the problem.
    ``until_interface`` is a network interface whose appearance ends it.
    """

    code: str
    detail: str
    until_changed: tuple[str, int] | None = None
    until_interface: str | None = None

    def __post_init__(self) -> None:
        if self.code not in (CONFIG_REFUSED, MIRROR_PORT_MISSING):
            raise ValueError(f"unknown first-boot problem code {self.code!r}")

    def holds(self, sys_net: Path) -> bool:
        """Whether the cause is still there."""
        if self.until_interface is not None and (sys_net / self.until_interface).exists():
            return False
        if self.until_changed is not None:
            path, mtime_ns = self.until_changed
            try:
                return Path(path).stat().st_mtime_ns == mtime_ns
            except OSError:
                return False
        return True


@dataclass(frozen=True, slots=True)
class FirstBootReport:
    """The problems of the last first boot (none: all was applied)."""

    problems: tuple[SetupProblem, ...] = ()

    def current(self, sys_net: Path = Path("/sys/class/net")) -> dict[str, str]:
        """Code -> detail of the problems that still hold."""
        return {p.code: p.detail for p in self.problems if p.holds(sys_net)}


def write_report(path: Path, report: FirstBootReport, *, mode: int = 0o640) -> None:
    """Replace the report atomically (readable by the sensor's group)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [{k: v for k, v in asdict(p).items() if v is not None} for p in report.problems]
    replace_file(path, json.dumps({"problems": records}, indent=1) + "\n", mode=mode)


def read_report(path: Path) -> FirstBootReport:
    """The report at ``path``; none (or an unreadable one, logged) is no problem."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))["problems"]
        return FirstBootReport(tuple(
            SetupProblem(r["code"], r["detail"],
                         tuple(r["until_changed"]) if "until_changed" in r else None,
                         r.get("until_interface")) for r in records))
    except FileNotFoundError:
        return FirstBootReport()
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("%s: unreadable first-boot report, ignored (%s)", path, error)
        return FirstBootReport()
