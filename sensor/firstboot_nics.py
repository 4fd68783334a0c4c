"""Which wired port is the mirror, from what the kernel shows in /sys/class/net.

On a Pi the on-board Ethernet is the management port (SSH, updates, the
core) and a USB 3 gigabit adapter goes into the switch's mirror (SPAN) port.
First boot runs before the network is up, so there is usually no route to
tell them apart: the bus decides (a USB device's path in /sys contains
``usb``), and a default route in /proc/net/route, when there is one, marks
the management port for sure. With a single wired port the box refuses to
make it the mirror: that is the port an admin reaches it by. Not the job
of this module: making the mirror passive (``sensor.mirror``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ARPHRD_ETHER = "1"


@dataclass(frozen=True, slots=True)
class WiredPort:
    name: str
    is_usb: bool


@dataclass(frozen=True, slots=True)
class NicRoles:
    """The chosen mirror port (None: none can be), the management port and why."""

    mirror: str | None
    management: str | None
    reason: str


def wired_ports(sys_net: Path) -> tuple[WiredPort, ...]:
    """Physical Ethernet interfaces, sorted by name: Wi-Fi, bridges and loopback are not."""
    ports = []
    for entry in sorted(sys_net.iterdir()) if sys_net.is_dir() else ():
        device = entry / "device"
        if not device.exists() or (entry / "wireless").exists() or \
                (entry / "phy80211").exists():
            continue
        try:
            if (entry / "type").read_text().strip() != ARPHRD_ETHER:
                continue
        except OSError:
            continue
        subsystem = device / "subsystem"
        paths = [os.path.realpath(device)]
        if subsystem.exists():
            paths.append(os.path.realpath(subsystem))
        ports.append(WiredPort(entry.name, any("/usb" in p for p in paths)))
    return tuple(ports)


def default_route_interfaces(route_table: Path) -> frozenset[str]:
    """Interfaces carrying an IPv4 default route (/proc/net/route: destination and mask 0)."""
    try:
        lines = route_table.read_text().splitlines()[1:]
    except OSError:
        return frozenset()
    return frozenset(fields[0] for fields in (line.split() for line in lines)
                     if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000")


def choose_roles(sys_net: Path, route_table: Path = Path("/proc/net/route")) -> NicRoles:
    """The mirror and management ports among the wired ones.

    Management: the port with the default route if there is one, else the
    on-board (non-USB) one, else the first. Mirror: a USB port that is not
    the management one (the first by name), else any other wired port.
    """
    ports = wired_ports(sys_net)
    names = [p.name for p in ports]
    if not ports:
        return NicRoles(None, None, "no wired network interface was found")
    routed = [n for n in names if n in default_route_interfaces(route_table)]
    on_board = [p.name for p in ports if not p.is_usb]
    management = (routed or on_board or names)[0]
    others = [p for p in ports if p.name != management]
    if not others:
        return NicRoles(None, management, f"{management} is the only wired interface and "
                        "the way to reach the box; plug a USB 3 gigabit adapter into the "
                        "switch's mirror (SPAN) port")
    mirror = ([p for p in others if p.is_usb] or others)[0]
    kind = "the USB adapter" if mirror.is_usb else "the other wired interface"
    return NicRoles(mirror.name, management, f"{mirror.name} ({kind}) is the mirror port, "
                    f"{management} the management port")


def free_name(sys_net: Path, prefix: str = "eth") -> str:
    """The first ``eth<N>`` (N >= 1) not present: what Raspberry Pi OS names a new adapter."""
    number = 1
    while (sys_net / f"{prefix}{number}").exists():
        number += 1
    return f"{prefix}{number}"
