"""Suricata as a capture source: ``suricata -r`` on a pcap, then its EVE records.

Offline only here; the live supervisor reuses ``read_eve_lines``. The pcap is
analysed to completion before records are read, so a Suricata failure is
reported (exit code and the end of its log) before any alert is produced.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from sensor.capture import check_capture_file
from sensor.capture.eve import EveRecordError, UnknownEventType, parse_eve_line
from sensor.capture.stats import SourceStats
from sensor.errors import CaptureError, CaptureToolMissing
from sensor.observations import Observation
from sensor.suricata.config import SuricataSettings, render_suricata_config

log = logging.getLogger(__name__)


def read_eve_lines(lines: Iterable[bytes | str], stats: SourceStats) -> Iterator[Observation]:
    """Observations of EVE lines; an unusable line is counted in ``stats``, never fatal."""
    for line in lines:
        if not line.strip():
            continue
        stats.records += 1
        try:
            observations = parse_eve_line(line)
        except UnknownEventType as error:
            stats.skip(f"unknown event_type {error.event_type}",
                       "this Suricata writes records Veilleuse does not know; "
                       "please open a Veilleuse issue with the Suricata version")
            continue
        except EveRecordError as error:
            stats.skip("malformed EVE record", str(error))
            continue
        stats.observations += len(observations)
        yield from observations


class SuricataSource:
    """Runs Suricata on a pcap with Veilleuse's generated configuration."""

    name = "suricata"

    def __init__(self, settings: SuricataSettings | None = None) -> None:
        self.settings = settings or SuricataSettings()
        self.stats = SourceStats(self.name)

    def read(self, pcap: Path) -> Iterator[Observation]:
        binary = shutil.which(self.settings.binary)
        if binary is None:
            raise CaptureToolMissing(self.settings.binary, "-t bookworm-backports suricata")
        with tempfile.TemporaryDirectory(prefix="veilleuse-suricata-") as workdir:
            eve = self._run(binary, check_capture_file(pcap), Path(workdir))
            with eve.open("rb") as lines:
                yield from read_eve_lines(lines, self.stats)
        log.info("%s", self.stats.summary())

    def _run(self, binary: str, pcap: Path, workdir: Path) -> Path:
        config = workdir / "suricata.yaml"
        config.write_text(render_suricata_config(self.settings, workdir))
        command = [binary, "-c", str(config), "-r", str(pcap), "-l", str(workdir),
                   "-k", "none", "--disable-detection"]
        environment = {**os.environ, "TZ": "UTC"}
        completed = subprocess.run(command, capture_output=True, text=True, env=environment,
                                   check=False)
        if completed.returncode != 0:
            tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-8:])
            raise CaptureError(f"suricata failed on {pcap} (exit {completed.returncode}):\n"
                               f"{tail}")
        eve = workdir / "eve.json"
        if not eve.exists():
            raise CaptureError(f"suricata wrote no EVE output for {pcap}; see {workdir}")
        return eve
