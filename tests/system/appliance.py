"""The installed appliance in a booted container: the steps a person takes, shared by the
installed-system tests and bench/appliance_bench.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from tests.conftest import ECHAP_DIR, until
from tests.system.booted import BootedSystem, rootfs_tarball, unpack

# Veilleuse's Depends and Recommends, preinstalled so that nothing inside the box
# needs the network (apt then only checks them).
RUNTIME_PACKAGES = ["systemd", "systemd-sysv", "dbus", "suricata/bookworm-backports",
                    "libhtp2/bookworm-backports", "mosquitto", "mosquitto-clients",
                    "fonts-dejavu-core", "iproute2", "nftables", "python3.11", "libsystemd0",
                    "ca-certificates", "openssh-server", "systemd-timesyncd", "procps", "age"]
# What the owner changes in the installed /etc/veilleuse/veilleuse.yaml: the mirror
# port, and feeds served on the box's loopback as a feed host would serve them.
SETTINGS = {
    "site": "shelter-test", "sensor": "box1", "language": "en",
    "network": {"interface": "mirror0"},
    "feeds": {"sources": [
        {"name": "echap-stalkerware", "url": "http://127.0.0.1:8000/ioc.yaml"},
        {"name": "echap-watchware", "url": "http://127.0.0.1:8000/watchware.yaml"}]},
}


def prepare(work: Path, deb: Path) -> BootedSystem:
    """A fresh bookworm root with the package and the feed files beside it, ready to boot."""
    root = unpack(rootfs_tarball("amd64", RUNTIME_PACKAGES), work / "root")
    (root / "root" / deb.name).write_bytes(deb.read_bytes())
    feeds = root / "srv" / "feeds"
    feeds.mkdir(parents=True)
    for name in ("ioc.yaml", "watchware.yaml"):
        (feeds / name).write_bytes((ECHAP_DIR / name).read_bytes())
    suffix = str(os.getpid())[-6:]
    return BootedSystem(root, name=f"vtest{suffix}", mirror_host=f"vmh{suffix}",
                        console_log=work / "console.log")


def install(box: BootedSystem) -> str:
    """`apt install ./veilleuse_*.deb`; its output."""
    deb = next(box.root.joinpath("root").glob("veilleuse_*.deb"))
    return box.run(f"DEBIAN_FRONTEND=noninteractive apt-get install -y /root/{deb.name}",
                   timeout=600).stdout


def configure(box: BootedSystem) -> None:
    """Point the box at its mirror port and feeds, update the feeds, wait for capture."""
    shipped = yaml.safe_load(box.run(["cat", "/etc/veilleuse/veilleuse.yaml"]).stdout)
    box.run("cat > /etc/veilleuse/veilleuse.yaml", input=yaml.safe_dump({**shipped, **SETTINGS}))
    box.run(["veilleuse", "check-config"])
    box.run(["systemd-run", "--unit=feed-host", "python3.11", "-m", "http.server", "8000",
             "--bind", "127.0.0.1", "--directory", "/srv/feeds"])
    assert until(lambda: box.run(["python3.11", "-c", "import socket; socket.create_connection"
                                  "(('127.0.0.1', 8000), 1)"], check=False).returncode == 0, 30)
    # What the daily timer runs; the sensor picks the new feeds up by itself.
    box.run(["systemctl", "start", "veilleuse-feeds.service"], timeout=300)
    box.run(["systemctl", "restart", "veilleuse-mirror.service", "veilleuse.service",
             "veilleuse-screen.service"])
    assert until(lambda: health(box).get("capture") == "running", 180), \
        box.journal("veilleuse.service")


def health(box: BootedSystem) -> dict:
    result = box.run(["cat", "/run/veilleuse/health.json"], check=False)
    try:
        return json.loads(result.stdout)
    except ValueError:
        return {}

