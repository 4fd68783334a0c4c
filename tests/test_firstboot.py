"""First boot from the boot partition: temporary directories stand in for /boot/firmware,
/etc, /var/lib and a fake /sys/class/net tree for the network ports (hardware is faked)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sensor.cli import main
from sensor.config import load_config
from sensor.daemon.health import HealthInputs, assess
from sensor.firstboot import (
    Accounts,
    FirstBootPaths,
    apply_first_boot,
    erase,
    install_authorized_keys,
)
from sensor.firstboot_config import set_keys
from sensor.firstboot_nics import choose_roles, wired_ports
from sensor.firstboot_report import read_report
from tests.conftest import REPO

AS_ROOT = os.geteuid() == 0
# As root the owners are checked for real; otherwise every file stays the caller's.
ACCOUNTS = Accounts((0, 0), (4242, 4243)) if AS_ROOT else \
    Accounts((os.getuid(), os.getgid()), (os.getuid(), os.getgid()))
ADMIN_UID = 1000 if AS_ROOT else os.getuid()
IMAGER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImager imager@laptop"
VOLUNTEER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIVolunteer volunteer@laptop"
IMAGER_FILES = {"firstrun.sh": b"#!/bin/bash\n# Raspberry Pi Imager\n",
                "user-data": b"#cloud-config\nhostname: veilleuse\n"}


def fake_ports(root: Path, ports: dict[str, str]) -> Path:
    """A /sys with ``ports`` (name -> "usb", "platform" or "wifi"); returns its class/net."""
    net = root / "sys" / "class" / "net"
    net.mkdir(parents=True, exist_ok=True)
    buses = {"usb": root / "sys" / "bus" / "usb", "platform": root / "sys" / "bus" / "platform"}
    for bus in buses.values():
        bus.mkdir(parents=True, exist_ok=True)
    for number, (name, kind) in enumerate(ports.items()):
        device = root / "sys" / "devices" / ("platform/scb/fd500000.pcie/usb2/2-1/2-1:1.0"
                                             if kind == "usb" else f"platform/fd58{number}.net")
        device.mkdir(parents=True, exist_ok=True)
        (device / "subsystem").symlink_to(buses["usb" if kind == "usb" else "platform"])
        (net / name).mkdir()
        (net / name / "device").symlink_to(device)
        (net / name / "type").write_text("1\n")
        if kind == "wifi":
            (net / name / "wireless").mkdir()
    return net


@pytest.fixture
def box(tmp_path: Path) -> FirstBootPaths:
    """A fresh box: package defaults installed, an Imager-customised boot partition."""
    firmware = tmp_path / "boot" / "firmware"
    (firmware / "veilleuse").mkdir(parents=True)
    for name, content in IMAGER_FILES.items():
        (firmware / name).write_bytes(content)
    etc = tmp_path / "etc" / "veilleuse"
    etc.mkdir(parents=True)
    (etc / "veilleuse.yaml").write_text((REPO / "config" / "veilleuse.yaml").read_text())
    home = tmp_path / "home" / "pi"
    home.mkdir(parents=True)
    passwd = tmp_path / "passwd"
    passwd.write_text(f"root:x:0:0:root:{tmp_path / 'root'}:/bin/bash\n"
                      f"pi:x:{ADMIN_UID}:{ADMIN_UID}:,,,:{home}:/bin/bash\n")
    return FirstBootPaths(boot=firmware / "veilleuse", etc=etc, state=tmp_path / "var",
                          sys_net=fake_ports(tmp_path, {"eth0": "platform", "eth1": "usb",
                                                        "wlan0": "wifi"}),
                          route_table=tmp_path / "route", passwd=passwd)


def write_secrets(folder: Path) -> None:
    for name in ("core-ca.pem", "client.pem", "client.key", "mqtt.password"):
        (folder / name).write_text(f"-----{name}-----\n")


def mode_and_owner(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


def test_a_valid_folder_is_installed_its_secrets_moved_and_it_is_applied_once(box) -> None:
    write_secrets(box.boot)
    (box.boot / "veilleuse.yaml").write_text(
        "# Refuge nord\nsite: refuge-nord\nmqtt:\n  url: mqtts://core.example.org:8883\n")
    outcome = apply_first_boot(box, ACCOUNTS, ADMIN_UID)

    assert outcome.applied and outcome.problems == ()
    config = load_config(box.config)  # as `veilleuse check-config` would
    assert (config.site, config.network.interface) == ("refuge-nord", "eth1")
    assert config.mqtt.ca_file == box.etc / "core-ca.pem"
    assert config.mqtt.key_file == box.etc / "client.key"
    assert box.config.read_text().startswith("# Refuge nord\n")
    service, group, root = ACCOUNTS.service, (ACCOUNTS.root[0], ACCOUNTS.service[1]), ACCOUNTS.root
    assert mode_and_owner(box.config) == (0o640, *group)
    assert mode_and_owner(box.etc / "core-ca.pem") == (0o644, *root)
    assert mode_and_owner(box.etc / "client.pem") == (0o640, *group)
    assert mode_and_owner(box.etc / "client.key") == (0o600, *service)
    assert mode_and_owner(box.etc / "mqtt.password") == (0o600, *service)
    assert (box.etc / "client.key").read_text() == "-----client.key-----\n"
    assert not box.boot.exists()
    assert sorted(p.name for p in box.applied.iterdir()) == ["veilleuse.yaml"]
    for name, content in IMAGER_FILES.items():
        assert (box.boot.parent / name).read_bytes() == content
    assert read_report(box.report).current(box.sys_net) == {}

    installed = box.config.stat().st_mtime_ns
    again = apply_first_boot(box, ACCOUNTS, ADMIN_UID)
    assert not again.applied and box.config.stat().st_mtime_ns == installed


def test_erasing_overwrites_the_bytes_in_place_before_deleting(tmp_path) -> None:
    secret = tmp_path / "client.key"
    secret.write_bytes(b"PRIVATE KEY")
    other_name = tmp_path / "same-file"
    os.link(secret, other_name)  # sees the same blocks after the unlink
    erase(secret)
    assert not secret.exists()
    assert other_name.read_bytes() == b"\0" * len(b"PRIVATE KEY")


def test_an_invalid_config_leaves_the_defaults_and_reports_key_and_line(box) -> None:
    write_secrets(box.boot)
    (box.boot / "veilleuse.yaml").write_text("site: refuge\nnetwork:\n  interfce: eth1\n")
    outcome = apply_first_boot(box, ACCOUNTS, ADMIN_UID)

    assert outcome.applied
    config = load_config(box.config)
    assert config.site == "shelter"  # the package's default
    assert config.network.interface == "eth1"  # yet never the management port
    assert "interface: \"eth1\"" in box.config.read_text()
    assert not (box.boot.parent / "veilleuse.applied" / "client.key").exists()
    problems = read_report(box.report).current(box.sys_net)
    assert list(problems) == ["config_refused"]
    assert "line 3" in problems["config_refused"]
    assert "network.interfce" in problems["config_refused"]

    health = assess(HealthInputs(True, None, 0.0, 1.0, 1.0, None, 0,
                                 config_refused=problems.get("config_refused")))
    assert (health.state, health.reasons[0]) == ("degraded", "config_refused")

    box.config.write_text(box.config.read_text() + "# fixed by the admin\n")
    os.utime(box.config, ns=(1, 1))
    assert read_report(box.report).current(box.sys_net) == {}


def test_a_filled_in_password_over_plain_mqtt_is_refused_not_installed(box) -> None:
    (box.boot / "mqtt.password").write_text("secret\n")
    (box.boot / "veilleuse.yaml").write_text("mqtt:\n  url: mqtt://core.example.org:1883\n")
    apply_first_boot(box, ACCOUNTS, ADMIN_UID)
    assert load_config(box.config).mqtt.url == "mqtt://127.0.0.1:1883"
    problem = read_report(box.report).current(box.sys_net)["config_refused"]
    assert "mqtt.password_file" in problem and "clear text" in problem


def test_with_one_wired_port_the_box_refuses_to_capture_on_it(box, tmp_path) -> None:
    box = FirstBootPaths(boot=box.boot, etc=box.etc, state=box.state,
                         sys_net=fake_ports(tmp_path / "one", {"eth0": "platform",
                                                               "wlan0": "wifi"}),
                         route_table=box.route_table, passwd=box.passwd)
    outcome = apply_first_boot(box, ACCOUNTS, ADMIN_UID)

    assert load_config(box.config).network.interface == "eth1"  # absent: nothing captured
    problems = read_report(box.report).current(box.sys_net)
    assert list(problems) == ["mirror_port_missing"]
    assert "eth0 is the only wired interface" in problems["mirror_port_missing"]
    assert any(step.key == "firstboot.no_mirror" for step in outcome.steps)
    health = assess(HealthInputs(False, "eth1: no such device", 0.0, None, 1.0, None, 0,
                                 mirror_port_missing=problems["mirror_port_missing"]))
    assert health.reasons[:2] == ("mirror_port_missing", "suricata_down")

    fake_ports(tmp_path / "one", {"eth1": "usb"})  # the adapter is plugged in later
    assert read_report(box.report).current(box.sys_net) == {}


def test_an_interface_named_in_the_folder_wins(box, tmp_path) -> None:
    box = FirstBootPaths(boot=box.boot, etc=box.etc, state=box.state,
                         sys_net=fake_ports(tmp_path / "one", {"eth0": "platform"}),
                         route_table=box.route_table, passwd=box.passwd)
    (box.boot / "veilleuse.yaml").write_text("network:\n  interface: eth0  # Wi-Fi admin\n")
    assert apply_first_boot(box, ACCOUNTS, ADMIN_UID).problems == ()
    assert load_config(box.config).network.interface == "eth0"


@pytest.mark.parametrize(("ports", "routes", "roles"), [
    ({"eth0": "platform", "eth1": "usb"}, (), ("eth1", "eth0")),
    ({"eth1": "usb", "eth0": "platform", "wlan0": "wifi"}, (), ("eth1", "eth0")),
    ({"eth0": "platform", "eth1": "usb"}, ("eth1",), ("eth0", "eth1")),
    ({"end0": "platform", "enx00e04c680001": "usb"}, (), ("enx00e04c680001", "end0")),
    ({"eth0": "platform"}, (), (None, "eth0")),
    ({"eth0": "usb"}, (), (None, "eth0")),
    ({"wlan0": "wifi"}, (), (None, None)),
])
def test_nic_roles(tmp_path, ports, routes, roles) -> None:
    net = fake_ports(tmp_path, ports)
    table = tmp_path / "route"
    table.write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\n" +
                     "".join(f"{n}\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\n"
                             for n in routes) +
                     "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\n")
    chosen = choose_roles(net, table)
    assert (chosen.mirror, chosen.management) == roles
    assert {p.name for p in wired_ports(net)} == {n for n, k in ports.items() if k != "wifi"}


def test_an_interrupted_first_boot_is_finished_by_the_next(box) -> None:
    write_secrets(box.boot)
    (box.boot / "authorized_keys").write_text(VOLUNTEER_KEY + "\n")
    (box.boot / "veilleuse.yaml").write_text("mqtt:\n  url: mqtts://core.example.org:8883\n")
    box.state.parent.mkdir(parents=True, exist_ok=True)
    box.state.write_text("not a directory yet")  # the report cannot be written: a crash
    with pytest.raises(OSError):
        apply_first_boot(box, ACCOUNTS, ADMIN_UID)
    assert box.boot.is_dir() and not (box.boot / "client.key").exists()

    box.state.unlink()
    outcome = apply_first_boot(box, ACCOUNTS, ADMIN_UID)
    assert outcome.applied and outcome.problems == ()
    assert load_config(box.config).mqtt.key_file == box.etc / "client.key"
    keys = (box.passwd.parent / "home" / "pi" / ".ssh" / "authorized_keys").read_text()
    assert keys == VOLUNTEER_KEY + "\n"  # once, although added by both runs


def test_a_secret_copied_but_not_yet_erased_is_erased_by_the_next_run(box) -> None:
    (box.boot / "client.key").write_text("new key\n")
    (box.etc / "client.key").write_text("new key\n")  # the copy made before the power cut
    apply_first_boot(box, ACCOUNTS, ADMIN_UID)
    assert mode_and_owner(box.etc / "client.key") == (0o600, *ACCOUNTS.service)
    assert not (box.applied / "client.key").exists()


def test_ssh_keys_are_added_to_the_first_user_keeping_imagers(box) -> None:
    home = box.passwd.parent / "home" / "pi"
    (home / ".ssh").mkdir(mode=0o755)
    (home / ".ssh" / "authorized_keys").write_text(IMAGER_KEY + "\n")
    source = box.boot / "authorized_keys"
    source.write_text(f"# keys of the shelter's admins\n{IMAGER_KEY}\n{VOLUNTEER_KEY}\n"
                      "this is not a key\n")
    step = install_authorized_keys(source, box.passwd, ADMIN_UID)

    assert dict(step.values) == {"count": "2", "user": "pi", "skipped": "1"}
    target = home / ".ssh" / "authorized_keys"
    assert target.read_text() == f"{IMAGER_KEY}\n{VOLUNTEER_KEY}\n"
    assert mode_and_owner(target) == (0o600, ADMIN_UID, ADMIN_UID)
    assert mode_and_owner(home / ".ssh") == (0o700, ADMIN_UID, ADMIN_UID)


def test_ssh_keys_are_not_given_to_root_without_a_first_user(box, tmp_path) -> None:
    box.passwd.write_text(f"root:x:0:0:root:{tmp_path / 'root'}:/bin/bash\n")
    source = box.boot / "authorized_keys"
    source.write_text(VOLUNTEER_KEY + "\n")
    step = install_authorized_keys(source, box.passwd, 1000)
    assert step.key == "firstboot.keys_no_user"
    assert not (tmp_path / "root").exists()


def test_setting_keys_keeps_comments_or_falls_back_to_a_dump() -> None:
    text = "site: a\nnetwork:\n    # our LAN\n    home_net: [10.0.0.0/8]\n"
    edited = set_keys(text, {("network", "interface"): "eth1"})
    assert edited == ("site: a\nnetwork:\n    interface: \"eth1\"\n    # our LAN\n"
                      "    home_net: [10.0.0.0/8]\n")
    flow = set_keys("network: {home_net: [10.0.0.0/8]}\n", {("network", "interface"): "eth1"})
    assert load_yaml(flow) == {"network": {"home_net": ["10.0.0.0/8"], "interface": "eth1"}}


def load_yaml(text: str) -> object:
    from sensor.yamlsource import parse_yaml

    return parse_yaml(text).data


def veilleuse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, env={**os.environ, "LANG": "C.UTF-8"}, timeout=60,
                          check=False)


def test_the_command_with_nothing_to_apply_says_so(tmp_path) -> None:
    result = veilleuse("first-boot", "--boot-dir", str(tmp_path / "veilleuse"), "--etc-dir",
                       str(tmp_path / "etc"), "--state-dir", str(tmp_path / "var"))
    assert result.returncode == 0, result.stderr
    assert "Nothing to apply" in result.stdout
    assert not (tmp_path / "etc").exists()


def test_the_command_applies_the_folder_and_status_shows_its_problem(
        box, monkeypatch, capsys) -> None:
    monkeypatch.setattr(Accounts, "from_system", classmethod(lambda cls: ACCOUNTS))
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    (box.boot / "veilleuse.yaml").write_text("language: de\n")
    status = main(["first-boot", "--boot-dir", str(box.boot), "--etc-dir", str(box.etc),
                   "--state-dir", str(box.state), "--sys-net-dir", str(box.sys_net)])
    printed = capsys.readouterr().out
    assert status == 0
    assert "veilleuse.yaml REFUSÉ" in printed and "line 1" in printed
    assert "veilleuse.applied" in printed

    config = box.state / "config.yaml"
    config.write_text(json.dumps({"daemon": {"state_directory": str(box.state),
                                             "runtime_directory": str(box.state / "run")}}))
    assert main(["--config", str(config), "status"]) == 3
    assert "config_refused (first boot)" in capsys.readouterr().out


def test_the_unit_runs_once_before_the_sensor_and_cannot_hold_the_boot() -> None:
    unit = (REPO / "config" / "systemd" / "veilleuse-firstboot.service").read_text()
    lines = set(unit.splitlines())
    assert "ConditionPathExists=/boot/firmware/veilleuse" in lines
    assert "Before=veilleuse.service veilleuse-mirror.service veilleuse-screen.service" in lines
    assert "Type=oneshot" in lines and "TimeoutStartSec=120" in lines
    assert not any(line.startswith(("Requires=", "RequiredBy=")) for line in lines)
    command = next(line for line in lines if line.startswith("ExecStart="))
    assert command.split()[1:] == ["first-boot"]
    assert "veilleuse-firstboot.service" in (REPO / "debian" / "veilleuse.install").read_text()


def test_the_box_keeps_its_own_broker_login_when_the_folder_does_not_name_one(box) -> None:
    """The package generated the local broker's password; a short file must not drop it."""
    password = box.etc / "local-broker.password"
    password.write_text("generated-at-install\n")
    password.chmod(0o600)
    packaged = box.config.read_text().replace("  username: null", "  username: veilleuse") \
        .replace("  password_file: null", f"  password_file: {password}")
    box.config.write_text(packaged)
    (box.boot / "veilleuse.yaml").write_text(
        "site: refuge-sud\nmqtt:\n  url: mqtts://core.example.org:8883\n")
    assert apply_first_boot(box, ACCOUNTS, ADMIN_UID).problems == ()
    config = load_config(box.config)
    assert (config.local_broker.username, config.local_broker.password_file) == \
        ("veilleuse", password)
    # mqtt goes to the core now: the box's login is not sent there.
    assert (config.mqtt.username, config.mqtt.password_file) == (None, None)

    box.config.write_text(packaged)
    box.applied.rename(box.boot)
    (box.boot / "veilleuse.yaml").write_text("site: refuge-sud\n")
    assert apply_first_boot(box, ACCOUNTS, ADMIN_UID).problems == ()
    config = load_config(box.config)
    assert (config.mqtt.username, config.mqtt.password_file) == ("veilleuse", password)


def test_a_refused_file_on_a_box_already_set_up_changes_nothing(box) -> None:
    (box.boot / "veilleuse.yaml").write_text("site: refuge-est\nnetwork:\n  interface: mirror9\n")
    assert apply_first_boot(box, ACCOUNTS, ADMIN_UID).problems == ()
    installed = box.config.read_text()
    box.boot.mkdir()
    (box.boot / "veilleuse.yaml").write_text("site: refuge-est\nnetwork: [\n")
    outcome = apply_first_boot(box, ACCOUNTS, ADMIN_UID)
    assert [problem.code for problem in outcome.problems] == ["config_refused"]
    assert "veilleuse.yaml, line 3: " in outcome.problems[0].detail  # where YAML gave up
    assert box.config.read_text() == installed  # no guessed interface over mirror9
