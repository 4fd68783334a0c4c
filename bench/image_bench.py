"""The Pi image's twin (needs root): build time, size, first boot to READY=1, under emulation.

Builds the Debian-only twin of the image's root (image/build-twin.sh: Debian
bookworm arm64 under qemu-user, the same package list, package and system
script as the pi-gen image), then measures:
1. the build time, with the mmdebstrap base cached (and cold with --cold, which
   deletes the cached base first: about ten minutes more);
2. its size: installed (the root file system), and compressed as the image is
   (xz -6, the pi-gen setting) with and without what only the twin has;
3. first boot to READY=1 with a `veilleuse/` folder on the stand-in boot
   partition (applied by veilleuse-firstboot.service before the sensor starts),
   and a second boot, both with `systemd-nspawn --boot` under qemu-user: an
   emulated Cortex-A72 on this PC, not a Pi; the Pi's firmware and kernel
   stages are not in these figures.

Run: `sudo .venv/bin/python bench/image_bench.py [--cold]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from tests.conftest import until  # noqa: E402
from tests.system.booted import BootedSystem, unpack  # noqa: E402
from tests.system.conftest import built_package  # noqa: E402
from tests.system.test_image import build_twin, without_credentials_under_qemu  # noqa: E402


def _base_tarball() -> Path:
    packages = [line for line in (REPO / "image" / "packages.list").read_text().splitlines()
                if line and not line.startswith("#")]
    output = subprocess.run([str(REPO / "scripts" / "rootfs.sh"), "arm64", "bookworm",
                             "minbase", *packages], capture_output=True, text=True,
                            check=True).stdout
    return Path(output.strip().splitlines()[-1])


def _boot_to_ready(box: BootedSystem) -> float:
    started = time.monotonic()
    box.boot(timeout=1200)
    assert until(lambda: box.run(["systemctl", "is-active", "veilleuse.service"],
                                 check=False).stdout.strip() == "active", 600, every=0.2)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true",
                        help="delete the cached mmdebstrap base first (about 10 more minutes)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (mmdebstrap, systemd-nspawn)")
    deb = built_package("arm64")
    if args.cold:
        _base_tarball().unlink()
    started = time.monotonic()
    twin = build_twin(deb)
    build_seconds = time.monotonic() - started
    with tempfile.TemporaryDirectory(prefix="veilleuse-image-") as work:
        root = unpack(twin, Path(work) / "root")
        installed = int(subprocess.run(["du", "-sxb", str(root)], capture_output=True,
                                       text=True, check=True).stdout.split()[0])
        compressed = len(subprocess.run(["xz", "-6", "-T0", "-c", str(twin)],
                                        capture_output=True, check=True).stdout)
        without_credentials_under_qemu(root)
        folder = root / "boot" / "firmware" / "veilleuse"
        folder.mkdir()
        (folder / "veilleuse.yaml").write_text(yaml.safe_dump(
            {"site": "bench", "sensor": "pi", "network": {"interface": "mirror0"}}))
        box = BootedSystem(root, name=f"vib{os.getpid()}"[-12:],
                           mirror_host=f"vibh{os.getpid()}"[-14:],
                           console_log=Path(work) / "console.log")
        try:
            first = _boot_to_ready(box)
            box.poweroff()
            second = _boot_to_ready(box)
        finally:
            box.poweroff()
    print(f"twin build (image/build-twin.sh, base {'cold' if args.cold else 'cached'}): "
          f"{build_seconds:.0f} s")
    print(f"twin root: installed {installed / 2**20:.0f} MiB; xz -6 {compressed / 2**20:.0f} "
          f"MiB (the Pi image adds Raspberry Pi OS's firmware and kernel)")
    print(f"boot to READY=1 under qemu-user: first boot (folder applied) {first:.1f} s; "
          f"second boot {second:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
