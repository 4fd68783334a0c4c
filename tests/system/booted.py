"""A Debian root file system booted with `systemd-nspawn --boot`, driven from the host.

The tests install and check Veilleuse the way a person would on a real box:
systemd is PID 1 inside, units start, fail and restart for real. Commands run
inside through `nsenter` into the container's namespaces (this machine has no
systemd-machined to offer `machinectl shell`). A veth pair stands in for the
switch's mirror port: its host end is where the tests replay captures and
listen for anything the box sends.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("VEILLEUSE_CACHE", "/var/cache/veilleuse"))
# PATH and locale inside: nothing of the host's environment leaks in.
INSIDE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb"}


class BootError(RuntimeError):
    """The container did not boot, or a command inside it failed."""


def rootfs_tarball(arch: str, packages: list[str], variant: str = "minbase") -> Path:
    """A cached bookworm root file system (scripts/rootfs.sh builds it once per package list)."""
    result = subprocess.run([str(REPO / "scripts" / "rootfs.sh"), arch, "bookworm", variant,
                             *packages], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise BootError(f"mmdebstrap failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def unpack(tarball: Path, destination: Path) -> Path:
    destination.mkdir(parents=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(destination, filter="fully_trusted")
    return destination


@dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


class BootedSystem:
    """One booted container; ``run`` executes a command inside as root."""

    def __init__(self, root: Path, *, name: str, mirror_host: str,
                 mirror_inside: str = "mirror0", console_log: Path) -> None:
        self.root, self.name = root, name
        self.mirror_host, self.mirror_inside = mirror_host, mirror_inside
        self.console_log = console_log
        self._process: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None

    def boot(self, timeout: float = 180) -> str:
        """Boot and wait until systemd says the boot finished; returns its state."""
        self.leader = None  # a reboot: the previous init is gone
        self._process = subprocess.Popen(
            [shutil.which("systemd-nspawn") or "systemd-nspawn", "--quiet", "--register=no",
             "--keep-unit", "--boot", f"--directory={self.root}", f"--machine={self.name}",
             "--private-network",
             f"--network-veth-extra={self.mirror_host}:{self.mirror_inside}",
             "--console=read-only"],
            stdin=subprocess.DEVNULL, stdout=self.console_log.open("wb"),
            stderr=subprocess.STDOUT)
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while self.leader is None and not deadline.wait(0.2):
                if self._process.poll() is not None:
                    raise BootError(f"systemd-nspawn exited:\n{self.console_tail()}")
                self.leader = _descendant_named(self._process.pid, "systemd")
            if self.leader is None:
                raise BootError(f"no systemd in the container:\n{self.console_tail()}")
            state = ""
            while not state and not deadline.is_set():
                # Empty until systemd inside has opened its bus ("Failed to connect").
                state = self.run(["systemctl", "is-system-running", "--wait"],
                                 timeout=max(1.0, timeout), check=False).stdout.strip()
                deadline.wait(0 if state else 0.2)
        finally:
            timer.cancel()
        subprocess.run(["ip", "link", "set", self.mirror_host, "up"], check=True)
        if state not in ("running", "degraded"):
            raise BootError(f"boot did not finish ({state}):\n{self.console_tail()}")
        return state

    def run(self, command: list[str] | str, *, timeout: float = 120, check: bool = True,
            input: str | None = None) -> Completed:
        if self.leader is None:
            raise BootError("the container is not booted")
        argv = ["sh", "-c", command] if isinstance(command, str) else command
        result = subprocess.run(
            ["nsenter", f"--target={self.leader}", "--mount", "--uts", "--ipc", "--net",
             "--pid", "--root", "--", "env", "-i", "--chdir=/",
             *(f"{k}={v}" for k, v in INSIDE_ENV.items()), *argv],
            capture_output=True, text=True, timeout=timeout, input=input)
        completed = Completed(result.returncode, result.stdout, result.stderr)
        if check and result.returncode != 0:
            shown = command if isinstance(command, str) else shlex.join(command)
            raise BootError(f"`{shown}` exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                            f"{result.stderr[-3000:]}")
        return completed

    def journal(self, unit: str | None = None, lines: int = 80) -> str:
        command = ["journalctl", "--no-pager", "-n", str(lines)]
        if unit:
            command += ["-u", unit]
        return self.run(command, check=False).stdout

    def console_tail(self) -> str:
        try:
            return self.console_log.read_bytes()[-4000:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def poweroff(self, timeout: float = 90) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        # systemd-nspawn turns SIGTERM into a clean shutdown of the container.
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(30)
        # A container killed mid-shutdown leaves its host end of the veth behind.
        subprocess.run(["ip", "link", "delete", self.mirror_host], capture_output=True)


def _descendant_named(pid: int, name: str) -> int | None:
    """The first process named ``name`` below ``pid`` (nspawn forks before exec'ing init)."""
    pending = [pid]
    while pending:
        current = pending.pop(0)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for child in map(int, children):
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == name:
                    return child
            except FileNotFoundError:
                continue
            pending.append(child)
    return None
