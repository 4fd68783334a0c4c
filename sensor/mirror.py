"""`veilleuse mirror apply`: keep the mirror interface passive, before the network comes up.

The mirror (SPAN) port sees the shelter's traffic; the box must never speak
on it: no address, no DHCP, no IPv6 autoconfiguration, no ARP or multicast
answers, nothing accepted from it. This module writes the systemd-networkd
and NetworkManager drop-ins that keep those daemons off the interface
(under /run: regenerated at every boot from the configuration), sets the
interface itself if it exists, and loads an nftables table that drops
everything arriving from it while leaving the management interface SSH,
DHCP and the ICMP a network needs. Run as root by a oneshot unit. Not the
job of this module: watching that it stays passive (``sensor.daemon.passive``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sensor.errors import VeilleuseError

_INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
NETWORKD_DIRECTORY = Path("/run/systemd/network")
NETWORKMANAGER_DIRECTORY = Path("/run/NetworkManager/conf.d")
NETWORKD_FILE = "10-veilleuse-mirror.network"
NETWORKMANAGER_FILE = "90-veilleuse-mirror.conf"
NFT_TABLE = "inet veilleuse"


class MirrorError(VeilleuseError):
    """The mirror interface could not be made passive."""


def check_interface_name(interface: str) -> str:
    """The name, if it is one Linux accepts (it is written into files and rules)."""
    if not _INTERFACE_NAME.match(interface):
        raise MirrorError(f"network.interface {interface!r} is not an interface name (1-15 "
                          "letters, digits, '.', '-' or '_'); fix it in the configuration")
    return interface


def networkd_file(interface: str) -> str:
    """systemd-networkd: bring the link up promiscuous, and configure nothing on it."""
    return f"""# Written by `veilleuse mirror apply`: the mirror port stays passive.
[Match]
Name={interface}

[Link]
ARP=no
Multicast=no
Promiscuous=yes
RequiredForOnline=no
ActivationPolicy=up

[Network]
DHCP=no
LinkLocalAddressing=no
IPv6AcceptRA=no
LLMNR=no
MulticastDNS=no
"""


def networkmanager_file(interface: str) -> str:
    """NetworkManager: leave the interface alone (no DHCP, no "Wired connection 1")."""
    return ("# Written by `veilleuse mirror apply`: the mirror port stays passive.\n"
            f"[keyfile]\nunmanaged-devices=interface-name:{interface}\n")


def nft_ruleset(interface: str) -> str:
    """Table ``inet veilleuse``, replaced as a whole in one transaction (idempotent).

    From the mirror port: nothing. Elsewhere: loopback, replies to our own
    connections, the ICMP/ICMPv6 a working network needs (errors, path MTU,
    neighbour discovery, router adverts, ping for diagnosis), DHCP client
    replies and SSH. The box routes nothing. Packet sockets (Suricata's
    capture, the self-test probe) are below nftables and unaffected.
    """
    return f"""table {NFT_TABLE}
delete table {NFT_TABLE}
table {NFT_TABLE} {{
    chain input {{
        type filter hook input priority filter; policy drop;
        iifname "{interface}" counter drop comment "the mirror port accepts nothing"
        iif "lo" accept
        ct state established,related accept
        ct state invalid drop
        icmp type {{ destination-unreachable, time-exceeded, parameter-problem, \
echo-request }} accept
        icmpv6 type {{ destination-unreachable, packet-too-big, time-exceeded, \
parameter-problem, echo-request, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, \
mld-listener-query }} accept
        udp sport 67 udp dport 68 accept comment "DHCP client"
        udp sport 547 udp dport 546 accept comment "DHCPv6 client"
        tcp dport 22 accept comment "SSH"
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
    }}
    chain output {{
        type filter hook output priority filter; policy accept;
        oifname "{interface}" counter drop comment "nothing leaves by the mirror port"
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class MirrorPlan:
    """Everything ``apply`` will do, so ``--dry-run`` prints exactly that."""

    interface: str
    files: tuple[tuple[Path, str], ...]
    settings: tuple[tuple[Path, str], ...]   # /proc/sys files and their value
    commands: tuple[tuple[str, ...], ...]
    ruleset: str

    def describe(self) -> str:
        parts = [f"# {path}\n{text}" for path, text in self.files]
        parts.append("\n".join(f"echo {value} > {path}" for path, value in self.settings) or
                     f"# {self.interface} does not exist now: only the files and the rules")
        parts.append("\n".join(" ".join(command) for command in self.commands))
        parts.append(f"# nft -f - <<EOF\n{self.ruleset}EOF")
        return "\n".join(part for part in parts if part) + "\n"


def plan_mirror(interface: str, *, networkd_directory: Path = NETWORKD_DIRECTORY,
                networkmanager_directory: Path = NETWORKMANAGER_DIRECTORY,
                sys_directory: Path = Path("/sys"), proc_sys: Path = Path("/proc/sys")
                ) -> MirrorPlan:
    interface = check_interface_name(interface)
    files = ((networkd_directory / NETWORKD_FILE, networkd_file(interface)),
             (networkmanager_directory / NETWORKMANAGER_FILE, networkmanager_file(interface)))
    settings: tuple[tuple[Path, str], ...] = ()
    commands: tuple[tuple[str, ...], ...] = ()
    if (sys_directory / "class" / "net" / interface).exists():
        ipv6 = proc_sys / "net" / "ipv6" / "conf" / interface
        # IPv6 off first: it removes the link-local address before the link is up.
        settings = ((ipv6 / "accept_ra", "0"), (ipv6 / "autoconf", "0"),
                    (ipv6 / "disable_ipv6", "1"))
        commands = (("ip", "link", "set", "dev", interface, "up", "promisc", "on", "arp", "off",
                     "multicast", "off"),
                    ("ip", "address", "flush", "dev", interface))
    return MirrorPlan(interface, files, settings, commands, nft_ruleset(interface))


def apply_mirror(plan: MirrorPlan,
                 run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> None:
    """Write the drop-ins, set the interface, load the rules; MirrorError says what failed.

    Refused, with nothing changed, when the interface carries this box's
    default route: that is the management interface (SSH, updates, the core),
    and making it passive would cut the box off, mid-install over SSH too.
    """
    if plan.commands and carries_default_route(plan.interface, run):
        raise MirrorError(f"network.interface {plan.interface} carries this box's default "
                          "route: it is the management interface, not the mirror port, and is "
                          "left as it is. Set network.interface to the port plugged into the "
                          "switch's mirror (SPAN) port, then `systemctl restart "
                          "veilleuse-mirror veilleuse`")
    for path, text in plan.files:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as error:
            raise MirrorError(f"{path}: cannot write it ({error.strerror}); run `veilleuse "
                              "mirror apply` as root") from None
    for path, value in plan.settings:
        try:
            path.write_text(value)
        except OSError as error:
            raise MirrorError(f"{path}: cannot set it to {value} ({error.strerror}); run as "
                              "root, with IPv6 support in the kernel") from None
    for command in plan.commands:
        _run(run, command)
    if shutil.which("nft") is None:
        raise MirrorError("nft is not installed: the mirror port is not firewalled; install "
                          "it with `apt-get install nftables`")
    _run(run, ("nft", "-f", "-"), stdin=plan.ruleset)


def carries_default_route(interface: str,
                          run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run
                          ) -> bool:
    """Whether an IPv4 or IPv6 default route leaves through ``interface``."""
    for family in ("-4", "-6"):
        try:
            result = run(["ip", "-j", family, "route", "show", "default"], capture_output=True,
                         text=True, check=False)
        except FileNotFoundError:
            raise MirrorError("ip is not installed (iproute2)") from None
        try:
            routes = json.loads(result.stdout or "[]") if result.returncode == 0 else []
        except ValueError:
            routes = []
        if any(isinstance(route, dict) and route.get("dev") == interface for route in routes):
            return True
    return False


def _run(run: Callable[..., subprocess.CompletedProcess[str]], command: Sequence[str],
         stdin: str | None = None) -> None:
    try:
        result = run(list(command), input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise MirrorError(f"{command[0]} is not installed (iproute2 / nftables)") from None
    if result.returncode != 0:
        raise MirrorError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
