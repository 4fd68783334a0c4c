"""`veilleuse core-access apply`: the sensor may reach the core, and nothing else beyond the box.

The sensor's unit denies every IP address but loopback (``IPAddressDeny=any``),
so neither a compromised sensor nor a bug can talk to the internet. The core
is named by a host name, which only DNS turns into addresses, and DNS lies
beyond the box too. This oneshot (root, once the network is online, then
hourly: an address that changes is followed) resolves the host of
``mqtt.url`` and

- rewrites, in place, a hosts file the sensor's unit binds over its own
  /etc/hosts (``BindReadOnlyPaths=``): the sensor resolves the core's name
  without DNS, and TLS still checks that name against the certificate;
- allows exactly those addresses to the sensor's unit, live, with
  ``systemctl set-property --runtime`` (no restart, no daemon-reload).

A core on this box's own broker (the default) needs nothing. A name that
does not resolve leaves the previous addresses in place and fails loudly.
Not the job of this module: the mirror port's firewall (``sensor.mirror``).
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sensor.config import is_loopback_host
from sensor.errors import VeilleuseError

HOSTS_FILE = Path("/run/veilleuse-core/hosts")
SENSOR_UNIT = "veilleuse.service"
MARKER = "# veilleuse core-access"


class CoreAccessError(VeilleuseError):
    """The core's addresses could not be found or allowed."""


@dataclass(frozen=True, slots=True)
class CoreAccess:
    """The core's host name and the addresses the sensor may reach it at."""

    host: str
    addresses: tuple[str, ...]

    def hosts_lines(self) -> str:
        return "".join(f"{address} {self.host} {MARKER}\n" for address in self.addresses)

    def allow_arguments(self) -> list[str]:
        """set-property assignments: the empty one resets the unit file's list first."""
        return ["IPAddressAllow=", "IPAddressAllow=localhost",
                *(f"IPAddressAllow={address}" for address in self.addresses)]


def core_host(url: str) -> str | None:
    """The core's host in ``mqtt.url``, or None when the core is this box's own broker."""
    host = urlsplit(url).hostname or ""
    return None if not host or is_loopback_host(host) else host


def resolve(host: str, port: int = 0,
            lookup: Callable[..., Sequence[tuple]] = socket.getaddrinfo) -> CoreAccess:
    """Every address ``host`` has now (an address literal is its own)."""
    try:
        return CoreAccess(host, (str(ipaddress.ip_address(host)),))
    except ValueError:
        pass
    try:
        answers = lookup(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise CoreAccessError(f"the core's host {host!r} (mqtt.url) does not resolve "
                              f"({error}); the sensor keeps the addresses it had. Check the "
                              "box's DNS and the name, then `systemctl start "
                              "veilleuse-core-access`") from None
    addresses = sorted({str(ipaddress.ip_address(answer[4][0].split("%")[0]))
                        for answer in answers})
    if not addresses:
        raise CoreAccessError(f"the core's host {host!r} has no address")
    return CoreAccess(host, tuple(addresses))


def write_hosts(access: CoreAccess, hosts_file: Path = HOSTS_FILE,
                system_hosts: Path = Path("/etc/hosts")) -> None:
    """The box's /etc/hosts plus the core's lines, written in place.

    In place, not renamed: the sensor's unit binds this very file (its inode)
    over its /etc/hosts, so a new file would go unseen until a restart.
    """
    base = [line for line in system_hosts.read_text().splitlines(keepends=True)
            if MARKER not in line] if system_hosts.exists() else []
    text = "".join(base) + ("" if not base or base[-1].endswith("\n") else "\n")
    hosts_file.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with hosts_file.open("a+", encoding="utf-8") as handle:
        handle.seek(0)
        handle.truncate()
        handle.write(text + access.hosts_lines())
    hosts_file.chmod(0o644)


def allow(access: CoreAccess, unit: str = SENSOR_UNIT,
          run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> None:
    result = run(["systemctl", "set-property", "--runtime", unit, *access.allow_arguments()],
                 capture_output=True, text=True)
    if result.returncode != 0:
        raise CoreAccessError(f"systemctl set-property {unit} failed: "
                              f"{result.stderr.strip() or result.returncode}; run `veilleuse "
                              "core-access apply` as root")
