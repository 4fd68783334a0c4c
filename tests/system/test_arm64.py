"""The arm64 package (the Pi's) runs the lite sensor's analysis under qemu-user: same alerts as x86.

The arm64 root file system holds only what the package needs to run Python
(python3.11, libsystemd0); the package's own files are unpacked into it, and
`veilleuse demo --source scapy` runs there, emulated, as on a Raspberry Pi.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.system.booted import rootfs_tarball, unpack
from tests.system.conftest import built_package

pytestmark = [pytest.mark.system, pytest.mark.timeout(3600)]

ARM64_RUNTIME = ["python3.11", "libsystemd0", "ca-certificates"]


def _alerts(jsonl: str) -> list[tuple]:
    records = [json.loads(line) for line in jsonl.splitlines() if line.strip()]
    return sorted((r["id"], r["kind"], r["severity"], r["device"], r["indicator"], r["count"],
                   r["first_seen"], r["last_seen"]) for r in records)


def test_the_arm64_package_gives_the_same_alerts_as_x86(tmp_path, system_tools) -> None:
    deb = built_package("arm64")
    architecture = subprocess.run(["dpkg-deb", "--field", str(deb), "Architecture"],
                                  capture_output=True, text=True, check=True).stdout.strip()
    assert architecture == "arm64"
    root = unpack(rootfs_tarball("arm64", ARM64_RUNTIME), tmp_path / "root")
    # As dpkg would unpack it: the root's merged /lib -> /usr/lib link stays a link.
    files = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                           check=True).stdout
    subprocess.run(["tar", "-x", "--keep-directory-symlink", "-C", str(root)], input=files,
                   check=True)
    # The package's own configuration names files its postinst makes (unpacked here, not
    # installed): the demo runs on the built-in defaults, as on a laptop.
    (root / "root" / "defaults.yaml").write_text("{}\n")
    emulated = subprocess.run(
        [shutil.which("systemd-nspawn") or "systemd-nspawn", "--quiet", "--register=no",
         "--keep-unit", "--as-pid2", f"--directory={root}", "--private-network",
         "/opt/veilleuse/venv/bin/veilleuse", "--config", "/root/defaults.yaml", "demo",
         "--source", "scapy", "--format", "jsonl"],
        capture_output=True, text=True, timeout=1800)
    assert emulated.returncode == 0, emulated.stdout[-3000:] + emulated.stderr[-3000:]
    native = subprocess.run([sys.executable, "-m", "sensor", "demo", "--source", "scapy",
                             "--format", "jsonl"], capture_output=True, text=True, check=True,
                            timeout=600)
    assert _alerts(native.stdout), "the demo must give alerts"
    assert _alerts(emulated.stdout) == _alerts(native.stdout)
    machine = subprocess.run(
        [shutil.which("systemd-nspawn") or "systemd-nspawn", "--quiet", "--register=no",
         "--keep-unit", "--as-pid2", f"--directory={root}", "--private-network",
         "/opt/veilleuse/venv/bin/python", "-c",
         "import platform, lgpio, systemd.journal; print(platform.machine())"],
        capture_output=True, text=True, timeout=600)
    # The Pi 4/5 pin library and the journal binding (compiled for arm64 by the build) load.
    assert machine.stdout.strip() == "aarch64", machine.stderr
