"""Is the mirror interface still passive? No address, and nothing sent but our own probes.

`veilleuse mirror apply` makes it passive at boot; something may undo it
later (a DHCP client, NetworkManager, an admin). An address means the box
can be reached from the shelter's own traffic; packets sent mean it speaks
on the mirror port. The self-test sends one probe out of it on purpose: the
daemon counts them, and a probe's packet is judged one check later, so that
a probe from `veilleuse selftest` (another process) is counted once capture
has seen it. A missing interface is not judged here: capture fails on it
and suricata_down says so.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MirrorReading:
    exists: bool
    addresses: tuple[str, ...] = ()
    tx_packets: int = 0


def read_mirror(interface: str, sys_directory: Path = Path("/sys")) -> MirrorReading:
    """Addresses (``ip -j address``) and the kernel's transmit counter of ``interface``."""
    try:
        tx = int((sys_directory / "class" / "net" / interface / "statistics" /
                  "tx_packets").read_text())
    except (FileNotFoundError, ValueError):
        return MirrorReading(False)
    shown = subprocess.run(["ip", "-j", "address", "show", "dev", interface],
                           capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        return MirrorReading(False)
    addresses = tuple(f"{a['local']}/{a['prefixlen']}" for link in json.loads(shown.stdout)
                      for a in link.get("addr_info", ()))
    return MirrorReading(True, addresses, tx)


class PassiveWatch:
    """Call ``check(probes)`` every minute or so; it returns the problem, or None."""

    def __init__(self, interface: str,
                 read: Callable[[str], MirrorReading] = read_mirror) -> None:
        self.interface = interface
        self._read = read
        self._settled: tuple[int, int] | None = None  # (tx, probes) already accounted for
        self._previous_tx = 0
        self._told_missing = False
        self.checks = 0

    def check(self, probes: int) -> str | None:
        """``probes``: self-test probes sent or seen so far (a count that only grows)."""
        self.checks += 1
        reading = self._read(self.interface)
        if not reading.exists:
            if not self._told_missing:
                log.warning("mirror interface %s does not exist: capture cannot run on it "
                            "(reported as suricata_down); its passivity is not checked",
                            self.interface)
                self._told_missing = True
            self._settled = None
            return None
        self._told_missing = False
        if self._settled is None:  # the first look (or the interface came back): a baseline
            self._settled, self._previous_tx = (reading.tx_packets, probes), reading.tx_packets
            unexplained = 0
        else:
            settled_tx, settled_probes = self._settled
            # What was sent up to the previous check, less every probe known by now.
            unexplained = (self._previous_tx - settled_tx) - (probes - settled_probes)
            if unexplained > 0:
                self._settled = (self._previous_tx, probes)
            self._previous_tx = reading.tx_packets
        problems = []
        if reading.addresses:
            problems.append(f"it has the address(es) {', '.join(reading.addresses)}")
        if unexplained > 0:
            problems.append(f"it sent {unexplained} packet(s) that were not self-test probes")
        if not problems:
            return None
        return (f"the mirror interface {self.interface} is not passive: {'; '.join(problems)}; "
                "run `veilleuse mirror apply` as root (veilleuse-mirror.service) and make sure "
                "nothing else configures it (DHCP client, NetworkManager)")
