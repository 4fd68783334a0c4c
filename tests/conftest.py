"""Shared fixtures: the real Echap feeds (read from ../shared), tools, and capture builders."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from sensor.feeds.matcher import IndicatorMatcher
from sensor.feeds.model import Feed
from sensor.feeds.store import load_feed_file
from tests.broker import Mosquitto

REPO = Path(__file__).resolve().parent.parent
ECHAP_DIR = Path(os.environ.get("VEILLEUSE_ECHAP_DIR",
                                REPO.parent / "shared" / "data" / "stalkerware-indicators"))


def alias_bomb(feed: bool = False) -> bytes:
    """A "billion laughs" YAML file of about 500 bytes: 9**9 strings once its aliases expand.

    ``feed=True`` shapes it as a list of apps (a feed), else as a mapping (a configuration).
    """
    rows = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    rows += [f"&{name} [{','.join([f'*{previous}'] * 9)}]"
             for previous, name in zip("abcdefgh", "bcdefghi", strict=True)]
    if feed:
        return "".join(f"- name: X\n  type: stalkerware\n  websites: {row}\n"
                       for row in rows).encode()
    return "".join(f"{name}: {row}\n" for name, row in zip("abcdefghi", rows, strict=True)).encode()


def unavailable(message: str) -> NoReturn:
    """In CI a missing prerequisite fails the test; on a developer's machine it skips it."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def until(condition: Callable[[], object], timeout: float, every: float = 0.25) -> bool:
    """True as soon as ``condition()`` is truthy; False at the deadline.

    For state that changes in another process or thread with no event to wait
    on (a file another process writes, a counter Suricata refreshes).
    """
    ticker = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        ticker.wait(every)
    return bool(condition())


def require_tool(name: str) -> str:
    """The tool's path, or ``unavailable``."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (scripts/setup.sh installs it)")
    return path


@pytest.fixture(scope="session")
def echap_files() -> list[Path]:
    files = [ECHAP_DIR / "ioc.yaml", ECHAP_DIR / "watchware.yaml"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        unavailable(f"Echap feeds not found: {missing}; set VEILLEUSE_ECHAP_DIR")
    return files


@pytest.fixture(scope="session")
def echap_feeds(echap_files: list[Path]) -> list[Feed]:
    return [load_feed_file(path) for path in echap_files]


@pytest.fixture(scope="session")
def echap_matcher(echap_feeds: list[Feed]) -> IndicatorMatcher:
    return IndicatorMatcher(i for feed in echap_feeds for i in feed.indicators)


@pytest.fixture
def suricata() -> str:
    return require_tool("suricata")


@pytest.fixture
def tshark() -> str:
    return require_tool("tshark")


@pytest.fixture
def veth(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(host-side interface, namespace) of a veth pair whose other end is in the namespace.

    Names differ per test: scapy caches interfaces by name, so a second pair
    under the same name would be sniffed through a stale index. The host end
    is passive as `veilleuse mirror apply` leaves a mirror port (no IPv6, ARP
    or multicast), so it sends nothing the sensor would call a leak.
    """
    if os.geteuid() != 0:
        unavailable("needs root to create a network namespace")
    require_tool("ip")
    suffix = hashlib.sha1(f"{os.getpid()} {request.node.nodeid}".encode()).hexdigest()[:8]
    namespace, host, inner = f"vl{suffix}", f"vlh{suffix}", f"vli{suffix}"
    commands = [["ip", "netns", "add", namespace],
                ["ip", "link", "add", host, "type", "veth", "peer", "name", inner, "netns",
                 namespace],
                ["sysctl", "-q", "-w", f"net.ipv6.conf.{host}.disable_ipv6=1"],
                ["ip", "link", "set", host, "arp", "off", "multicast", "off", "up"],
                ["ip", "-n", namespace, "link", "set", inner, "up"]]
    for command in commands:
        subprocess.run(command, check=True, capture_output=True)
    yield host, namespace
    subprocess.run(["ip", "link", "del", host], capture_output=True)
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


class SmallDisk:
    """A real small tmpfs: ``fill`` takes every free byte, ``free`` gives them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        """Write until the kernel says ENOSPC (big blocks first, then small ones)."""
        import errno

        descriptor = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for block in (1 << 16, 4096, 512, 1):
                while True:
                    try:
                        os.write(descriptor, bytes(block))
                    except OSError as error:
                        if error.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(descriptor)
        assert os.statvfs(self.path).f_bavail == 0

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 16 MiB tmpfs mounted for this test only (root needed)."""
    if os.geteuid() != 0:
        unavailable("needs root to mount a tmpfs")
    path = tmp_path / "disk"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(path)],
                   check=True, capture_output=True)
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def mosquitto_binary() -> str:
    return require_tool("mosquitto")


@pytest.fixture
def broker(tmp_path: Path, mosquitto_binary: str) -> Iterator[Mosquitto]:
    """A real Mosquitto on 127.0.0.1 (a free port), for this test only."""
    directory = tmp_path / "broker"
    directory.mkdir()
    server = Mosquitto(directory, mosquitto_binary)
    server.start()
    yield server
    server.stop()


def sighting(alert_id: str = "a", *, first_seen: float = 1.0, last_seen: float = 1.0,
             count: int = 1, clock_synchronised: bool | None = None):
    """An alert of ``count`` new sightings, as the book's ``record`` takes them."""
    from sensor.detect.model import Alert, AlertKind, Severity

    return Alert(id=alert_id, kind=AlertKind.DOMAIN, severity=Severity.HIGH,
                 device="192.168.1.10", indicator="copy9.com", observed="copy9.com", app=None,
                 protocols=("dns",), first_seen=first_seen, last_seen=last_seen, count=count,
                 clock_synchronised=clock_synchronised)
