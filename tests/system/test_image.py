"""The Pi image's system layer, booted: the Debian-only twin (image/build-twin.sh).

The twin is Debian bookworm arm64 with the image's package list, the arm64 package
and image/system.sh, the script the pi-gen stage applies too. It boots here with
`systemd-nspawn --boot` under qemu-user, as the Pi's root would after the
firmware and kernel: a prepared `veilleuse/` folder stands in the FAT boot partition
(/boot/firmware), as a volunteer would write it from a laptop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import until
from tests.system.booted import REPO, BootedSystem, unpack
from tests.system.conftest import built_package
from tests.tls import make_authority, make_client_certificate

pytestmark = [pytest.mark.system, pytest.mark.timeout(3600)]

UNITS = ["veilleuse.service", "veilleuse-screen.service", "veilleuse-feeds.timer",
         "veilleuse-core-access.timer", "ssh.service", "mosquitto.service"]
# What qemu-user cannot emulate, and the Pi does natively (the amd64 package's booted
# test, tests/system/test_package.py, checks these natively): nftables' netlink
# socket (veilleuse-mirror.service's firewall), and AF_PACKET fanout (Suricata's
# capture: the sensor runs, says suricata_down, and exits `status` with 1).
QEMU_LIMITS = {"veilleuse-mirror.service": "Unable to initialize Netlink socket: "
                                           "Protocol not supported"}
SETTINGS = {"site": "shelter-pi", "sensor": "box7", "language": "fr",
            "network": {"interface": "mirror0"}}
QEMU_CREDENTIAL_UNITS = ["systemd-sysctl.service", "systemd-sysusers.service",
                         "systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service"]
ADMIN_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx9d3o7dJ1l1l7rQ0oWmZ0Qe4nE0V9n2b4o5kq1m0bZ "
             "volunteer@laptop")


def build_twin(deb: Path) -> Path:
    result = subprocess.run([str(REPO / "image" / "build-twin.sh"), str(deb)],
                            capture_output=True, text=True, timeout=3600, cwd=REPO)
    if result.returncode != 0:
        pytest.fail(f"image/build-twin.sh failed:\n{result.stdout[-3000:]}\n"
                    f"{result.stderr[-3000:]}")
    return REPO / result.stdout.strip().splitlines()[-1]


def without_credentials_under_qemu(root: Path) -> None:
    """Turn systemd's service credentials off in ``root``, for a boot under qemu-user only.

    qemu-user cannot make the mounts systemd 252 sets up for them (EINVAL, "Failed at
    step CREDENTIALS"); a Pi runs them natively. The twin's tarball stays as built.
    """
    for unit in QEMU_CREDENTIAL_UNITS:
        dropin = root / "etc" / "systemd" / "system" / f"{unit}.d"
        dropin.mkdir(parents=True, exist_ok=True)
        (dropin / "qemu-user.conf").write_text("[Service]\nLoadCredential=\n")


def _alerts(jsonl: str) -> list[tuple]:
    records = [json.loads(line) for line in jsonl.splitlines() if line.strip()]
    return sorted((r["id"], r["kind"], r["severity"], r["device"], r["indicator"], r["count"],
                   r["first_seen"], r["last_seen"]) for r in records)


@pytest.fixture(scope="module")
def twin(tmp_path_factory, system_tools) -> Path:
    return build_twin(built_package("arm64"))


@pytest.fixture(scope="module")
def pi(tmp_path_factory, twin: Path) -> Iterator[BootedSystem]:
    work = tmp_path_factory.mktemp("pi")
    root = unpack(twin, work / "root")
    folder = root / "boot" / "firmware" / "veilleuse"
    folder.mkdir()
    (folder / "veilleuse.yaml").write_text(yaml.safe_dump(SETTINGS))
    (work / "tls").mkdir()
    authority = make_authority(work / "tls")
    certificate, key = make_client_certificate(authority, work / "tls", "shelter-pi-box7")
    (folder / "core-ca.pem").write_bytes(authority.path.read_bytes())
    (folder / "client.pem").write_bytes(certificate.read_bytes())
    (folder / "client.key").write_bytes(key.read_bytes())
    (folder / "authorized_keys").write_text(ADMIN_KEY + "\n")
    without_credentials_under_qemu(root)
    suffix = str(os.getpid())[-6:]
    system = BootedSystem(root, name=f"vpi{suffix}", mirror_host=f"vph{suffix}",
                          console_log=work / "console.log")
    system.boot(timeout=1200)
    try:
        yield system
    finally:
        system.poweroff()


def test_first_boot_applies_the_folder_of_the_boot_partition(pi: BootedSystem) -> None:
    installed = yaml.safe_load(pi.run(["cat", "/etc/veilleuse/veilleuse.yaml"]).stdout)
    assert (installed["site"], installed["network"]["interface"]) == ("shelter-pi", "mirror0")
    # The folder named neither: the box keeps its login to its own broker.
    assert installed["local_broker"]["password_file"] == "/etc/veilleuse/local-broker.password"
    pi.run(["veilleuse", "check-config"])
    modes = pi.run(["stat", "-c", "%a %U:%G %n", "/etc/veilleuse/core-ca.pem",
                    "/etc/veilleuse/client.pem", "/etc/veilleuse/client.key",
                    "/etc/veilleuse/veilleuse.yaml", "/home/admin/.ssh/authorized_keys"])
    assert modes.stdout.splitlines() == [
        "644 root:root /etc/veilleuse/core-ca.pem",
        "640 root:veilleuse /etc/veilleuse/client.pem",
        "600 veilleuse:veilleuse /etc/veilleuse/client.key",
        "640 root:veilleuse /etc/veilleuse/veilleuse.yaml",
        "600 admin:admin /home/admin/.ssh/authorized_keys"]
    assert ADMIN_KEY in pi.run(["cat", "/home/admin/.ssh/authorized_keys"]).stdout
    # Anyone holding the card can read the FAT: the secret is gone from it.
    firmware = pi.run(["ls", "-A", "/boot/firmware", "/boot/firmware/veilleuse.applied"])
    assert "veilleuse.applied:" in firmware.stdout
    assert not {"core-ca.pem", "client.pem", "client.key"} & set(firmware.stdout.split())
    assert pi.run(["test", "-e", "/boot/firmware/veilleuse"], check=False).returncode == 1


def test_the_twin_boots_with_every_unit_active(pi: BootedSystem) -> None:
    for unit in UNITS:
        assert until(lambda unit=unit: pi.run(["systemctl", "is-active", unit],
                                              check=False).stdout.strip() == "active", 300), \
            pi.journal(unit)
    failed = pi.run(["systemctl", "--failed", "--no-legend", "--plain"]).stdout.split()
    for unit in (name for name in failed if name.endswith(".service")):
        assert unit in QEMU_LIMITS, pi.journal(unit)
        assert QEMU_LIMITS[unit] in pi.journal(unit), pi.journal(unit)


def test_ssh_takes_keys_only_and_each_box_makes_its_own_host_keys(pi: BootedSystem) -> None:
    effective = dict(line.split(" ", 1) for line in pi.run(["sshd", "-T"]).stdout.splitlines()
                     if " " in line)
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["permitrootlogin"] == "no"
    assert pi.run("ls /etc/ssh/ssh_host_ed25519_key").returncode == 0


def test_no_account_has_a_password_and_no_compiler_is_left(pi: BootedSystem) -> None:
    entries = [line.split(":") for line in pi.run(["cat", "/etc/shadow"]).stdout.splitlines()]
    # An empty field logs in with no password at all; "!" and "*" lock the account.
    assert [name for name, hashed, *_ in entries if not hashed or hashed[0] not in "!*"] == []
    found = pi.run("for tool in gcc cc c++ make gdb strace; do command -v $tool; done",
                   check=False).stdout.split()
    assert found == []


def test_the_card_is_spared_and_the_clock_is_kept(pi: BootedSystem) -> None:
    header = pi.run(["journalctl", "--header"]).stdout
    assert "/run/log/journal" in header and "/var/log/journal" not in header
    assert pi.run(["systemctl", "is-enabled", "systemd-timesyncd.service"]).stdout.strip() \
        == "enabled"


def test_the_pi_bits_i2c_lgpio_hostname_and_security_upgrades(pi: BootedSystem) -> None:
    assert pi.run(["cat", "/etc/modules-load.d/veilleuse-i2c.conf"]).stdout.strip() \
        == "i2c-dev"
    environment = pi.run(["systemctl", "show", "--property=Environment",
                          "veilleuse-screen.service"]).stdout
    assert "GPIOZERO_PIN_FACTORY=lgpio" in environment
    assert pi.run(["cat", "/etc/hostname"]).stdout.strip() == "veilleuse"
    apt = pi.run(["apt-config", "dump"]).stdout
    assert 'APT::Periodic::Unattended-Upgrade "1";' in apt
    assert '"origin=Veilleuse";' in apt
    assert "codename=${distro_codename}-security" in apt


def test_the_lite_sensor_gives_the_same_alerts_as_on_x86(pi: BootedSystem) -> None:
    pi.run("echo '{}' > /root/defaults.yaml")
    emulated = pi.run(["veilleuse", "--config", "/root/defaults.yaml", "demo", "--source",
                       "scapy", "--format", "jsonl"], timeout=1800)
    native = subprocess.run([sys.executable, "-m", "sensor", "demo", "--source", "scapy",
                             "--format", "jsonl"], capture_output=True, text=True, check=True,
                            timeout=600, cwd=REPO)
    assert _alerts(native.stdout), "the demo must give alerts"
    assert _alerts(emulated.stdout) == _alerts(native.stdout)



def test_the_pin_library_and_the_journal_binding_load_on_arm64(pi: BootedSystem) -> None:
    """The Pi 4/5 pin library and the journal binding (compiled for arm64 by the build)."""
    machine = pi.run(["/opt/veilleuse/venv/bin/python", "-c",
                      "import platform, lgpio, systemd.journal; print(platform.machine())"])
    assert machine.stdout.strip() == "aarch64"


def test_a_broken_folder_leaves_the_configuration_and_says_why(pi: BootedSystem) -> None:
    """Last: a reboot with a new folder whose veilleuse.yaml is broken."""
    before = pi.run(["cat", "/etc/veilleuse/veilleuse.yaml"]).stdout
    pi.poweroff()
    folder = pi.root / "boot" / "firmware" / "veilleuse"
    folder.mkdir()
    (folder / "veilleuse.yaml").write_text("site: shelter-pi\nnetwork:\n  interface: [mirror0\n")
    pi.boot(timeout=1200)
    assert pi.run(["test", "-d", "/boot/firmware/veilleuse.applied"], check=False).returncode == 0
    assert pi.run(["cat", "/etc/veilleuse/veilleuse.yaml"]).stdout == before
    status = pi.run(["veilleuse", "status"], check=False)
    assert status.returncode == 1
    assert "config_refused" in status.stdout, status.stdout + status.stderr
    assert "veilleuse.yaml, line " in status.stdout, status.stdout

