"""`veilleuse first-boot`: apply the ``veilleuse/`` folder of the boot partition, once.

A shelter volunteer has a laptop, a card reader and no keyboard for the Pi:
the FAT boot partition is what they can write. Before the sensor, the mirror
unit and the screen start, this reads ``/boot/firmware/veilleuse/``:

- ``core-ca.pem``, ``client.pem``, ``client.key``, ``mqtt.password`` are
  copied into /etc/veilleuse with tight modes, then overwritten and deleted
  from the FAT (anyone holding the card can read it);
- ``authorized_keys`` is added to the first user's (uid 1000, the one
  Raspberry Pi Imager creates); never to root's, whose SSH login the
  package refuses;
- ``veilleuse.yaml`` is validated as `veilleuse check-config` does and
  installed, with the mirror interface and the secrets' paths filled in where
  it does not name them; if it is invalid the installed defaults stay and
  the reason (file, line, key) goes to the health (CHECK BOX) through
  ``sensor.firstboot_report``;
- the NIC roles are chosen (``sensor.firstboot_nics``); with one wired port
  the box will not capture on it and says so;
- last, the folder is renamed ``veilleuse.applied/``: a second boot finds
  nothing to do. Every step can run again, so a power cut half-way is
  finished by the next boot.

Not touched: Raspberry Pi Imager's own files (firstrun.sh, user-data,
network-config, meta-data), which sit beside the folder, not in it.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sensor.config import load_config
from sensor.errors import ConfigError, VeilleuseError
from sensor.files import replace_file
from sensor.firstboot_config import Key, set_keys, value_of
from sensor.firstboot_nics import choose_roles, free_name
from sensor.firstboot_report import (
    CONFIG_REFUSED,
    MIRROR_PORT_MISSING,
    REPORT_NAME,
    FirstBootReport,
    SetupProblem,
    write_report,
)

log = logging.getLogger(__name__)

DEFAULT_BOOT_DIRECTORY = Path("/boot/firmware/veilleuse")
APPLIED_NAME = "veilleuse.applied"
CONFIG_NAME = "veilleuse.yaml"
KEYS_NAME = "authorized_keys"
FIRST_USER_UID = 1000
INTERFACE: Key = ("network", "interface")


@dataclass(frozen=True, slots=True)
class Secret:
    """A file of the folder moved to /etc/veilleuse: its config key, mode and owner.

    The private key and the password belong to the veilleuse user, mode 0600
    (the configuration refuses them readable by a group, as the package's
    local-broker.password); the client certificate is root:veilleuse 0640,
    the CA certificate public (0644).
    """

    name: str
    key: Key
    mode: int
    owner: str  # "service": veilleuse:veilleuse, "group": root:veilleuse, "root": root:root
    tls: bool = True


SECRETS = (Secret("core-ca.pem", ("mqtt", "ca_file"), 0o644, "root"),
           Secret("client.pem", ("mqtt", "cert_file"), 0o640, "group"),
           Secret("client.key", ("mqtt", "key_file"), 0o600, "service"),
           Secret("mqtt.password", ("mqtt", "password_file"), 0o600, "service", tls=False))


class FirstBootError(VeilleuseError):
    """First boot could not apply the folder; the next boot tries again."""


@dataclass(frozen=True, slots=True)
class Accounts:
    """The numeric owners first boot gives files: root's and the veilleuse user's."""

    root: tuple[int, int] = (0, 0)
    service: tuple[int, int] = (0, 0)

    @classmethod
    def from_system(cls, user: str = "veilleuse") -> Accounts:
        """Root and ``user``; not run as root (trying it out), the caller's own ids."""
        if os.geteuid() != 0:
            return cls((os.getuid(), os.getgid()), (os.getuid(), os.getgid()))
        try:
            return cls((0, 0), (pwd.getpwnam(user).pw_uid, grp.getgrnam(user).gr_gid))
        except KeyError:
            raise FirstBootError(f"the {user} user or group does not exist; install the "
                                 "veilleuse package first") from None

    def of(self, owner: str) -> tuple[int, int]:
        return {"service": self.service, "group": (self.root[0], self.service[1]),
                "root": self.root}[owner]


@dataclass(frozen=True, slots=True)
class FirstBootPaths:
    """Where everything is; tests point them into a temporary directory."""

    boot: Path = DEFAULT_BOOT_DIRECTORY
    etc: Path = Path("/etc/veilleuse")
    state: Path = Path("/var/lib/veilleuse")
    sys_net: Path = Path("/sys/class/net")
    route_table: Path = Path("/proc/net/route")
    passwd: Path = Path("/etc/passwd")

    @property
    def applied(self) -> Path:
        return self.boot.with_name(APPLIED_NAME)

    @property
    def config(self) -> Path:
        return self.etc / CONFIG_NAME

    @property
    def report(self) -> Path:
        return self.state / REPORT_NAME


@dataclass(frozen=True, slots=True)
class Step:
    """One thing done or found, as a message key of sensor/locales and its values."""

    key: str
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FirstBootOutcome:
    applied: bool
    steps: tuple[Step, ...]
    problems: tuple[SetupProblem, ...] = ()


def apply_first_boot(paths: FirstBootPaths, accounts: Accounts,
                     first_user_uid: int = FIRST_USER_UID) -> FirstBootOutcome:
    """Apply ``paths.boot`` if it exists, then rename it; nothing to do otherwise."""
    if not paths.boot.is_dir():
        return FirstBootOutcome(False, (Step("firstboot.nothing", {"folder": str(paths.boot)}),))
    steps: list[Step] = []
    installed = _install_secrets(paths, accounts, steps)
    keys = paths.boot / KEYS_NAME
    if keys.is_file():
        steps.append(install_authorized_keys(keys, paths.passwd, first_user_uid))
    problems = _install_config(paths, accounts, installed, steps)
    write_report(paths.report, FirstBootReport(problems))
    os.chown(paths.report, *accounts.of("group"))
    if paths.applied.exists():
        shutil.rmtree(paths.applied)  # an earlier folder: its secrets were erased already
    paths.boot.rename(paths.applied)
    _sync_directory(paths.boot.parent)
    steps.append(Step("firstboot.renamed", {"folder": str(paths.applied)}))
    return FirstBootOutcome(True, tuple(steps), problems)


def _install_secrets(paths: FirstBootPaths, accounts: Accounts,
                     steps: list[Step]) -> dict[Secret, Path]:
    """Move each secret present on the FAT (or installed by an interrupted run) to /etc."""
    installed = {}
    for secret in SECRETS:
        source, target = paths.boot / secret.name, paths.etc / secret.name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            replace_file(target, source.read_bytes(), mode=secret.mode)
            os.chown(target, *accounts.of(secret.owner))
            erase(source)
            steps.append(Step("firstboot.secret", {"name": secret.name, "path": str(target)}))
        if target.is_file():
            installed[secret] = target
    return installed


def erase(path: Path) -> None:
    """Overwrite ``path`` with zeros, flush it to the medium, then delete it.

    Best effort: FAT may put a rewritten cluster elsewhere and an SD card's
    controller remaps blocks, so old bytes can survive in the flash (see
    docs/hardware.md). It still keeps them from the file system, where any
    laptop would read them.
    """
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.write(b"\0" * size)
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def install_authorized_keys(source: Path, passwd: Path, first_user_uid: int) -> Step:
    """Add the keys of ``source`` to the first user's authorized_keys.

    Keys already there (Raspberry Pi Imager may have put one) are kept, none is
    added twice; lines that are not public keys are skipped and counted.
    Without that user (not created yet), nothing is installed and the step
    says so: root's keys would be useless, the package's sshd refuses root.
    """
    user = first_user(passwd, first_user_uid)
    if user is None:
        return Step("firstboot.keys_no_user", {"uid": str(first_user_uid)})
    name, uid, gid, home = user
    lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    good = [key for key in keys if _is_public_key(key)]
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(ssh, 0o700)
    os.chown(ssh, uid, gid)
    target = ssh / "authorized_keys"
    existing = target.read_text(encoding="utf-8").splitlines() if target.exists() else []
    merged = list(dict.fromkeys([*existing, *good]))
    replace_file(target, "".join(f"{line}\n" for line in merged), mode=0o600)
    os.chown(target, uid, gid)
    return Step("firstboot.keys", {"count": str(len(good)), "user": name,
                                   "skipped": str(len(keys) - len(good))})


def _is_public_key(line: str) -> bool:
    """An OpenSSH public key line: an optional options field, a key type, base64 data."""
    fields = line.split()
    types = [i for i, f in enumerate(fields) if f.startswith(("ssh-", "ecdsa-", "sk-"))]
    return bool(types) and len(fields) > types[0] + 1


def first_user(passwd: Path, uid: int) -> tuple[str, int, int, Path] | None:
    """(name, uid, gid, home) of the user with ``uid`` in a passwd file, if there is one."""
    for line in passwd.read_text(encoding="utf-8").splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and fields[2] == str(uid) and fields[3].isdigit():
            return fields[0], uid, int(fields[3]), Path(fields[5])
    return None


def _install_config(paths: FirstBootPaths, accounts: Accounts, installed: dict[Secret, Path],
                    steps: list[Step]) -> tuple[SetupProblem, ...]:
    """Validate and install the folder's veilleuse.yaml, or keep the defaults and say why."""
    source = paths.boot / CONFIG_NAME
    refused: ConfigError | None = None
    if source.is_file():
        try:
            load_config(source)
        except ConfigError as error:
            refused = error
    text = source.read_text(encoding="utf-8") if source.is_file() and refused is None else \
        paths.config.read_text(encoding="utf-8") if paths.config.is_file() else ""
    values: dict[Key, str] = {}
    problems = []
    if refused is None and source.is_file():
        tls = str(value_of(text, ("mqtt", "url"))).startswith("mqtts://")
        values.update({s.key: str(path) for s, path in installed.items()
                       if (tls or not s.tls) and value_of(text, s.key) is None})
        values.update(_box_login(text, paths.config, values))
    named = refused is None and source.is_file() and value_of(text, INTERFACE) is not None
    # A refused file on a box set up by an earlier folder keeps that set-up as it is.
    kept = refused is not None and paths.applied.exists()
    if not (named or kept):
        roles = choose_roles(paths.sys_net, paths.route_table)
        if roles.mirror is None:
            waiting = free_name(paths.sys_net)
            values[INTERFACE] = waiting
            problems.append(SetupProblem(MIRROR_PORT_MISSING, f"{roles.reason}; "
                                         f"network.interface is set to {waiting}, used once it "
                                         "appears", until_interface=waiting))
            steps.append(Step("firstboot.no_mirror", {"reason": roles.reason,
                                                      "interface": waiting}))
        else:
            values[INTERFACE] = roles.mirror
            steps.append(Step("firstboot.mirror", {"reason": roles.reason}))
    candidate = set_keys(text, values)
    try:
        _validate(candidate, paths.etc)
    except ConfigError as error:
        if refused is not None or not source.is_file():
            raise FirstBootError(f"the installed configuration {paths.config} does not "
                                 f"validate with the mirror interface set: {error}") from None
        # A filled-in value made it invalid (say, a password file over mqtt:// to the core).
        refused = ConfigError(source, f"{error.message} (a value first boot fills in from the "
                              "folder's files)", key=error.key)
        candidate = set_keys(paths.config.read_text(encoding="utf-8")
                             if paths.config.is_file() else "", {INTERFACE: values[INTERFACE]}
                             if INTERFACE in values else {})
    paths.config.parent.mkdir(parents=True, exist_ok=True)
    replace_file(paths.config, candidate, mode=0o640)
    os.chown(paths.config, *accounts.of("group"))
    if refused is not None:
        detail = f"{refused}; {paths.config} stays as it was"
        problems.insert(0, SetupProblem(CONFIG_REFUSED, detail, until_changed=(
            str(paths.config), paths.config.stat().st_mtime_ns)))
        steps.append(Step("firstboot.config_refused", {"reason": str(refused)}))
    elif source.is_file():
        steps.append(Step("firstboot.config", {"path": str(paths.config)}))
    return tuple(problems)


def _box_login(text: str, installed: Path, values: dict[Key, str]) -> dict[Key, str]:
    """The installed file's login to the box's own broker, where ``text`` does not name one.

    The package generated that password at install (the local broker admits nobody
    else); a folder's file that names only the site and the mirror port must not
    log the sensor out of its own broker.
    """
    if not installed.is_file():
        return {}
    current = installed.read_text(encoding="utf-8")
    sections = ["local_broker"]
    if value_of(text, ("mqtt", "url")) in (None, value_of(current, ("mqtt", "url"))):
        sections.append("mqtt")  # still the box's broker, not the core
    carried = {}
    for section in sections:
        for name in ("username", "password_file"):
            key = (section, name)
            kept = value_of(current, key)
            if key not in values and value_of(text, key) is None and kept is not None:
                carried[key] = str(kept)
    return carried


def _validate(text: str, directory: Path) -> None:
    """ConfigError unless ``text`` is a valid configuration (as `veilleuse check-config`)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".yaml", encoding="utf-8",
                                     prefix=".first-boot.") as handle:
        handle.write(text)
        handle.flush()
        load_config(handle.name)
