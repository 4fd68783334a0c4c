"""The image's build files, checked without building (pi-gen needs the Raspberry Pi archive).

What can be run here is: the Imager manifest generator on a real xz file, and the
pi-gen configuration read by bash the way pi-gen's build.sh reads it. The booted
twin (tests/system/test_image.py) checks what the system script does.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import subprocess
from pathlib import Path

from tests.conftest import REPO
from tests.system.appliance import RUNTIME_PACKAGES

IMAGE = REPO / "image"
STAGE = IMAGE / "pi-gen" / "stage-veilleuse"


def _sourced(path: Path, *names: str) -> dict[str, str]:
    """Variables after bash sources ``path``, as pi-gen's build.sh does with its config."""
    script = f"set -eu; source {path}; " + "; ".join(
        f'printf "%s=%s\\n" {name} "${{{name}:-}}"' for name in names)
    output = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                            check=True).stdout
    return dict(line.split("=", 1) for line in output.splitlines())


def test_the_manifest_describes_the_image_imager_will_verify(tmp_path: Path) -> None:
    content = bytes(range(256)) * 5000
    image = tmp_path / "veilleuse-0.2.0-arm64.img.xz"
    image.write_bytes(lzma.compress(content, format=lzma.FORMAT_XZ))
    result = subprocess.run(["python3", str(IMAGE / "imager_manifest.py"), str(image),
                             "--version", "0.2.0"], capture_output=True, text=True, check=True)
    (entry,) = json.loads(result.stdout)["os_list"]
    assert entry["extract_size"] == len(content)
    assert entry["extract_sha256"] == hashlib.sha256(content).hexdigest()
    assert entry["image_download_size"] == image.stat().st_size
    assert entry["image_download_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert entry["url"] == image.name and entry["name"] == "Veilleuse 0.2.0"
    # Imager offers its customisation (user, key, Wi-Fi) only for these init formats.
    assert entry["init_format"] == "systemd"
    assert set(entry["devices"]) == {"pi4-64bit", "pi5-64bit"}


def test_pi_gen_is_pinned_by_commit_and_builds_lite_then_veilleuse() -> None:
    build = (IMAGE / "build-pi.sh").read_text()
    assert re.search(r"^PI_GEN_COMMIT=[0-9a-f]{40}$", build, re.MULTILINE)
    assert 'STAGE_LIST=\\"stage0 stage1 stage2 stage-veilleuse\\"' in build
    config = _sourced(IMAGE / "pi-gen" / "config", "RELEASE", "DEPLOY_COMPRESSION",
                      "TARGET_HOSTNAME", "FIRST_USER_PASS", "ENABLE_SSH", "STAGE_LIST")
    assert config["RELEASE"] == "bookworm" and config["DEPLOY_COMPRESSION"] == "xz"
    assert config["TARGET_HOSTNAME"] == "veilleuse"
    assert config["FIRST_USER_PASS"] == "", "the image must not carry a password"
    assert config["ENABLE_SSH"] == "1"
    assert config["STAGE_LIST"] == "", "build-pi.sh sets the stage list"
    export = _sourced(STAGE / "EXPORT_IMAGE", "IMG_SUFFIX")
    assert export["IMG_SUFFIX"] == ""
    assert "copy_previous" in (STAGE / "prerun.sh").read_text()


def test_the_pi_stage_and_the_twin_apply_the_same_list_and_script() -> None:
    run = (STAGE / "00-veilleuse" / "00-run.sh").read_text()
    build = (IMAGE / "build-pi.sh").read_text()
    twin = (IMAGE / "build-twin.sh").read_text()
    assert "cp \"$deb\" image/packages.list image/system.sh \"$files/\"" in build
    assert "files/system.sh" in run and "sh /tmp/veilleuse-system.sh" in run
    assert "files/packages.list" in run
    assert "image/packages.list" in twin and "image/system.sh" in twin
    listed = {line for line in (IMAGE / "packages.list").read_text().splitlines()
              if line and not line.startswith("#")}
    # Everything the installed-package tests preinstall is in the image too.
    assert set(RUNTIME_PACKAGES) <= listed
