"""The package's lock and units stay in step with the project (a forgotten re-lock fails here)."""

from __future__ import annotations

import re
import tomllib

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

LOCK = REPO / "packaging" / "requirements.lock"
RELOCK = ("uv pip compile pyproject.toml --universal --generate-hashes --python-version 3.11 "
          "--no-header -o packaging/requirements.lock")


def _locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes) from the lock file."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=\S)", LOCK.read_text()):
        found = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if found:
            entries[canonicalize_name(found.group(1))] = (
                found.group(2), re.findall(r"--hash=sha256:[0-9a-f]{64}", block))
    return entries


def test_every_runtime_dependency_is_pinned_with_hashes_in_the_lock() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    locked = _locked()
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in {LOCK.name}; run: {RELOCK}"
        version, hashes = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"{name}=={version} does not satisfy {requirement}; run: {RELOCK}"
        assert hashes, f"{name} has no hash in {LOCK.name}"


def test_the_pi_gets_a_working_pin_library() -> None:
    version, _ = _locked()["lgpio"]
    assert tuple(int(part) for part in version.split(".")[:3]) >= (0, 2, 2)
    marker = next(Marker(m) for m in re.findall(r"^lgpio==\S+ ; (.+?) \\$", LOCK.read_text(),
                                                re.M))
    assert marker.evaluate({"platform_machine": "aarch64", "sys_platform": "linux"})
    assert not marker.evaluate({"platform_machine": "x86_64", "sys_platform": "linux"})


def test_the_package_installs_every_shipped_unit() -> None:
    install = (REPO / "debian" / "veilleuse.install").read_text()
    for unit in (REPO / "config" / "systemd").iterdir():
        assert f"config/systemd/{unit.name} " in install, unit.name
