"""tshark as a capture source, for laptops and cross-checks.

tshark prints the few fields Veilleuse needs, one tab-separated line a packet
(``-T fields``): no XML or JSON of the whole dissection is built and parsed,
which made the pyshark route cost about 2 ms a packet. tshark runs as a child
process that is terminated and reaped whatever happens (an error, the consumer
stopping, Ctrl-C).

tshark's exit status is checked: a crash or a capture tshark finds damaged
ends the run with the observations read so far and the reason in
``stats.damaged``, never a clean "no alert" and never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from sensor.capture import CaptureFile, scan_capture
from sensor.capture.stats import SourceStats
from sensor.capture.tshark_packets import AGGREGATOR, FIELDS, TsharkDecoder, TsharkFieldError
from sensor.errors import CaptureError, CaptureToolMissing
from sensor.observations import Observation

log = logging.getLogger(__name__)

# ICMP errors quote the IP and transport headers of the packet they answer: not a flow.
DISPLAY_FILTER = "((tcp || udp) && !icmp && !icmpv6) || icmpv6.type == 135 || " \
    "icmpv6.type == 136"  # and neighbour discovery, which names devices


def tshark_command(binary: str, pcap: Path) -> list[str]:
    """The tshark command line: every tcp/udp packet, the decoder's fields, all occurrences.

    Teredo (IPv6 in UDP) is decoded as Suricata does; tshark leaves it off by default.
    """
    command = [binary, "-r", str(pcap), "-n", "--enable-heuristic", "teredo_udp",
               "-Y", DISPLAY_FILTER, "-T", "fields",
               "-E", "separator=/t", "-E", "occurrence=a", "-E", f"aggregator={AGGREGATOR}",
               "-E", "quote=n"]
    for name in FIELDS:
        command += ["-e", name]
    return command


MINIMUM_VERSION = "3.0"  # the tls.* and quic.* fields read here (ssl.* before 3.0)


def locate_tshark(binary: str = "tshark") -> str:
    """tshark's path, found as pyshark finds it, and checked to be recent enough.

    The default name is looked up by pyshark (its config.ini ``tshark_path``, the
    PATH, Wireshark's install places on macOS and Windows: where a laptop has it);
    another name or path is taken as given.
    """
    from pyshark.tshark.tshark import (
        TSharkNotFoundException,
        TSharkVersionException,
        get_process_path,
        get_tshark_version,
    )

    try:
        found = get_process_path() if binary == "tshark" else shutil.which(binary)
    except TSharkNotFoundException:
        found = None
    if found is None:
        raise CaptureToolMissing(binary, "tshark")
    try:
        version = get_tshark_version(found)
    except (TSharkVersionException, subprocess.CalledProcessError, OSError) as error:
        raise CaptureError(f"{found} does not say which tshark it is ({error}); "
                           "install Wireshark's tshark or choose another --source") from None
    if version < type(version)(MINIMUM_VERSION):  # pyshark's packaging Version
        raise CaptureError(f"{found} is tshark {version}; Veilleuse needs {MINIMUM_VERSION} or "
                           "newer (apt-get install tshark) or choose another --source")
    return found


class TsharkSource:
    """Reads a capture file with tshark."""

    name = "tshark"

    def __init__(self, binary: str = "tshark") -> None:
        self.binary = binary
        self.stats = SourceStats(self.name)

    def read(self, pcap: Path) -> Iterator[Observation]:
        tshark = locate_tshark(self.binary)
        capture = scan_capture(pcap)
        self.stats.damaged = capture.damage
        decoder = TsharkDecoder()
        with tempfile.TemporaryFile() as errors, _readable_part(capture) as readable:
            process = subprocess.Popen(tshark_command(tshark, readable),
                                       stdout=subprocess.PIPE, stderr=errors, text=True,
                                       encoding="utf-8", errors="replace")
            try:
                yield from self._decode(process.stdout or (), decoder)  # a PIPE: never None
            finally:
                if process.poll() is None:
                    process.terminate()
                if process.stdout is not None:
                    process.stdout.close()
                process.wait()
            if process.returncode != 0:
                errors.seek(0)
                self._damaged(process.returncode, errors.read().decode(errors="replace"))
        observations = decoder.finish()
        self.stats.observations += len(observations)
        yield from observations
        log.info("%s", self.stats.summary())

    def _decode(self, lines: Iterable[str], decoder: TsharkDecoder) -> Iterator[Observation]:
        for line in lines:
            self.stats.records += 1
            try:
                observations = decoder.decode(line)
            except TsharkFieldError as error:
                self.stats.skip("undecodable packet", str(error))
                continue
            except Exception as error:  # noqa: BLE001 - the record boundary: count, go on
                self.stats.skip("malformed packet", f"{type(error).__name__}: {error}")
                continue
            self.stats.observations += len(observations)
            yield from observations

    def _damaged(self, code: int, text: str) -> None:
        reasons = [line.strip() for line in text.splitlines()
                   if line.strip() and not line.startswith("Running as user")]
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        reason = f"tshark failed ({how})" + (f": {reasons[-1]}" if reasons else "")
        self.stats.damaged = reason if self.stats.damaged is None else \
            f"{self.stats.damaged}; {reason}"


@contextlib.contextmanager
def _readable_part(capture: CaptureFile) -> Iterator[Path]:
    """The capture, or a copy of its records before the damage ``scan_capture`` found.

    tshark reads the first records of a pcap to tell its variant apart, so a
    lying second record makes it refuse the whole file: it is given only the
    part that can be read, and the damage is reported from the scan.
    """
    if capture.damage is None:
        yield capture.path
        return
    with tempfile.NamedTemporaryFile(prefix="veilleuse-readable-", suffix=f".{capture.format}") \
            as copy, capture.path.open("rb") as original:
        remaining = capture.end
        while remaining > 0:
            chunk = original.read(min(remaining, 1 << 20))
            if not chunk:
                break
            copy.write(chunk)
            remaining -= len(chunk)
        copy.flush()
        yield Path(copy.name)
