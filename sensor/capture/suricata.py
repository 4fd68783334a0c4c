"""Suricata as a capture source: ``suricata -r`` on a pcap, its EVE records as they come.

Offline only here; the live supervisor reuses ``read_eve_lines``. A Suricata
failure is reported with its exit code and the end of its log. The file is
checked first (``scan_capture``): Suricata exits 0, or waits a minute, on files
it cannot read. A link type Suricata 7 cannot decode (Linux cooked v2, from
``tcpdump -i any``) is read with the scapy source instead, and the log says so.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from sensor.capture import scan_capture
from sensor.capture.eve import EveRecordError, NameFilter, UnknownEventType, line_parser
from sensor.capture.stats import SourceStats
from sensor.errors import CaptureError, CaptureToolMissing
from sensor.observations import Observation
from sensor.suricata.config import SuricataSettings, render_suricata_config

log = logging.getLogger(__name__)


def read_eve_lines(lines: Iterable[bytes | str], stats: SourceStats,
                   wanted: Collection[type] | None = None,
                   names: NameFilter | None = None) -> Iterator[Observation]:
    """Observations of EVE lines; an unusable line is counted in ``stats``, never fatal.

    ``wanted``: the observation types to build (None: all), see ``eve.parse_eve_line``;
    ``names``: the DNS names detection looks at (None: all), see ``eve.line_parser``.
    """
    parse = line_parser(None if wanted is None else frozenset(wanted), names)
    records = observed = 0  # counted locally (every line passes here), added as we go out
    try:
        for line in lines:
            try:
                observations = parse(line)
            except UnknownEventType as error:
                records += 1
                stats.skip(f"unknown event_type {error.event_type}",
                           "this Suricata writes records Veilleuse does not know; "
                           "please open a Veilleuse issue with the Suricata version")
                continue
            except EveRecordError as error:
                if line and not line.isspace():  # a blank line is no record
                    records += 1
                    stats.skip("malformed EVE record", str(error))
                continue
            records += 1
            if observations:
                observed += len(observations)
                yield from observations
    finally:
        stats.records += records
        stats.observations += observed


class SuricataSource:
    """Runs Suricata on a pcap with Veilleuse's generated configuration.

    EVE records stream through a FIFO while Suricata runs, so analysis
    overlaps packet processing. A regular-file EVE output blocks when the
    pipe is full: a slow reader slows Suricata down, nothing is dropped.
    Runmode ``single``: reading a file, it was faster than ``autofp`` on two
    cores (bench/run.py measures both) and it leaves a core to the analyzer.
    """

    name = "suricata"

    def __init__(self, settings: SuricataSettings | None = None) -> None:
        self.settings = settings or SuricataSettings()
        self.stats = SourceStats(self.name)

    def read(self, pcap: Path) -> Iterator[Observation]:
        binary = shutil.which(self.settings.binary)
        if binary is None:
            raise CaptureToolMissing(self.settings.binary, "-t bookworm-backports suricata")
        capture = scan_capture(pcap)
        if capture.packets == 0:  # Suricata waits a minute on an empty file, then fails
            log.info("%s", self.stats.summary())
            return
        if not capture.readable_by_suricata():
            yield from self._read_with_scapy(capture.path, capture.linktypes)
            return
        self.stats.damaged = capture.damage
        with tempfile.TemporaryDirectory(prefix="veilleuse-suricata-") as name:
            workdir = Path(name)
            config = workdir / "suricata.yaml"
            config.write_text(render_suricata_config(self.settings, workdir))
            eve = workdir / "eve.json"
            os.mkfifo(eve, 0o600)
            # Hold a write end ourselves until Suricata exits: reads then block
            # instead of seeing end-of-file before Suricata has opened the FIFO.
            reader = os.open(eve, os.O_RDONLY | os.O_NONBLOCK)
            keeper = os.open(eve, os.O_WRONLY | os.O_NONBLOCK)
            os.set_blocking(reader, True)
            log_path = workdir / "suricata.log"
            with log_path.open("wb") as engine_log, os.fdopen(reader, "rb") as lines:
                process = subprocess.Popen(
                    [binary, "-c", str(config), "-r", str(pcap), "-l", str(workdir),
                     "-k", "none", "--disable-detection", "--runmode", "single"],
                    stdout=engine_log, stderr=subprocess.STDOUT, env={**os.environ, "TZ": "UTC"})
                closer = threading.Thread(target=_close_after_exit, args=(process, keeper),
                                          daemon=True)
                closer.start()
                try:
                    yield from read_eve_lines(lines, self.stats)
                finally:
                    if process.poll() is None:
                        process.terminate()
                    process.wait()
                    closer.join()
            if process.returncode != 0:
                tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-8:])
                raise CaptureError(f"suricata failed on {pcap} (exit {process.returncode}):\n"
                                   f"{tail}")
        log.info("%s", self.stats.summary())


    def _read_with_scapy(self, pcap: Path, linktypes: tuple[int, ...]) -> Iterator[Observation]:
        from sensor.capture.scapy_reader import ScapySource

        log.warning("%s: Suricata 7 cannot read link type %s (Linux cooked v2 is what "
                    "`tcpdump -i any` writes); reading it with the scapy source instead",
                    pcap, ", ".join(map(str, linktypes)))
        fallback = ScapySource()
        self.stats, self.name = fallback.stats, "scapy (Suricata cannot read this link type)"
        yield from fallback.read(pcap)


def _close_after_exit(process: subprocess.Popen[bytes], keeper: int) -> None:
    process.wait()
    os.close(keeper)
