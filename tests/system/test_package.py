"""The Debian package on a booted Debian 12: `apt install ./veilleuse_*.deb` gives a working sensor.

One container for the module, in the order a person goes: boot a fresh
bookworm with Veilleuse's dependencies, install the package, point it at the
mirror port (a veth pair) and at feeds (served on the box's loopback, as a
feed host would), then check what runs, what it detects, what it sends, and
finally that `apt purge` leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest
import yaml

from sensor.demo.traffic import Traffic
from tests.conftest import require_tool, until
from tests.system.appliance import configure, health, install, prepare
from tests.system.booted import BootedSystem
from tests.system.conftest import built_package

pytestmark = [pytest.mark.system, pytest.mark.timeout(1800)]

UNITS = ["veilleuse.service", "veilleuse-screen.service", "veilleuse-mirror.service",
         "veilleuse-feeds.timer"]
C2_NAME = "api.copy9.com"  # Echap: TheTruthSpy's server


@pytest.fixture(scope="module")
def box(tmp_path_factory, system_tools) -> Iterator[BootedSystem]:
    system = prepare(tmp_path_factory.mktemp("box"), built_package("amd64"))
    system.boot()
    try:
        yield system
    finally:
        system.poweroff()


@pytest.fixture(scope="module")
def installed(box: BootedSystem) -> None:
    """Install as a person would, configure the mirror port and feeds, start capturing."""
    install(box)
    # Fresh out of the box: no feed yet, the default interface absent. The sensor
    # runs and says so; it does not crash-loop.
    assert until(lambda: "feeds_stale" in health(box).get("reasons", []), 180), \
        box.journal("veilleuse.service")
    restarts = box.run(["systemctl", "show", "--property=NRestarts", "veilleuse.service"])
    assert restarts.stdout.strip() == "NRestarts=0", box.journal("veilleuse.service")
    shipped = yaml.safe_load(box.run(["cat", "/etc/veilleuse/veilleuse.yaml"]).stdout)
    assert shipped["mqtt"]["password_file"] == "/etc/veilleuse/local-broker.password"
    configure(box)


def test_install_enables_and_starts_every_unit(box, installed) -> None:
    for unit in UNITS:
        state = box.run(["systemctl", "is-active", unit], check=False).stdout.strip()
        assert state == "active", f"{unit}: {state}\n{box.journal(unit)}"
        enabled = box.run(["systemctl", "is-enabled", unit], check=False).stdout.strip()
        assert enabled == "enabled", f"{unit}: {enabled}"
    screen = box.journal("veilleuse-screen.service")
    assert "running without a display" in screen, screen  # no OLED here: says so, runs on


def test_no_unit_failed(box, installed) -> None:
    failed = box.run(["systemctl", "list-units", "--failed", "--plain", "--no-legend"]).stdout
    assert not failed.strip(), failed


def test_the_feeds_timer_is_scheduled_and_its_service_installed_the_feeds(box, installed) -> None:
    timer = box.run(["systemctl", "show", "veilleuse-feeds.timer",
                     "--property=NextElapseUSecRealtime,NextElapseUSecMonotonic"]).stdout
    assert re.search(r"=\S", timer), timer
    result = box.run(["systemctl", "show", "veilleuse-feeds.service", "--property=Result"])
    assert result.stdout.strip() == "Result=success", box.journal("veilleuse-feeds.service")
    assert set(health(box)["feeds"]) == {"echap-stalkerware", "echap-watchware"}


@pytest.mark.parametrize("unit", ["veilleuse.service", "veilleuse-screen.service",
                                  "veilleuse-mirror.service", "veilleuse-feeds.service"])
def test_each_unit_is_hardened(box, installed, unit) -> None:
    report = box.run(["systemd-analyze", "security", "--no-pager", unit]).stdout
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", report)
    assert found and float(found.group(1)) <= 2.0, report[-2000:]


def test_debians_own_suricata_is_masked_and_only_ours_captures(box, installed) -> None:
    assert box.run(["systemctl", "is-enabled", "suricata.service"],
                   check=False).stdout.strip() == "masked"
    assert box.run(["systemctl", "is-active", "suricata.service"],
                   check=False).stdout.strip() != "active"
    owners = box.run(["ps", "-C", "Suricata-Main,suricata", "-o", "user="]).stdout.split()
    assert owners and set(owners) == {"veilleuse"}, owners


def test_the_configuration_is_readable_by_the_service_only(box, installed) -> None:
    modes = box.run(["stat", "-c", "%a %U %G", "/etc/veilleuse", "/etc/veilleuse/veilleuse.yaml"])
    assert modes.stdout.split("\n")[:2] == ["750 root veilleuse", "640 root veilleuse"]


def test_a_non_root_admin_reads_the_status_over_ssh(box, installed) -> None:
    box.run(["useradd", "--create-home", "--groups", "veilleuse", "admin"])
    status = box.run(["runuser", "-u", "admin", "--", "veilleuse", "status"], check=False)
    assert status.returncode in (0, 1), status.stdout + status.stderr
    assert status.stdout.startswith("health: "), status.stdout


def test_the_local_broker_admits_only_the_sensor_and_the_screen(box, installed) -> None:
    anonymous = box.run(["mosquitto_sub", "-h", "127.0.0.1", "-t", "veilleuse/#", "-C", "1",
                         "-W", "5"], check=False)
    assert anonymous.returncode != 0 and "not authorised" in anonymous.stderr.lower(), \
        anonymous
    wrong = box.run(["mosquitto_pub", "-h", "127.0.0.1", "-u", "veilleuse", "-P", "guess",
                     "-t", "veilleuse/shelter-test/box1/state", "-r", "-m", "{}"], check=False)
    assert wrong.returncode != 0, wrong
    modes = box.run(["stat", "-c", "%a %U", "/etc/veilleuse/local-broker.password"]).stdout
    assert modes.strip() == "600 veilleuse"


def test_ssh_takes_keys_only(box, installed) -> None:
    effective = box.run(["sshd", "-T"]).stdout.lower()
    for line in ("passwordauthentication no", "kbdinteractiveauthentication no",
                 "permitrootlogin no"):
        assert line in effective.splitlines(), line


def test_selftest_passes_and_a_replayed_capture_reaches_the_broker(box, installed,
                                                                   tmp_path) -> None:
    box.run("systemd-run --unit=alert-listener --property=StandardOutput=file:/root/alerts.txt "
            "mosquitto_sub -h 127.0.0.1 -u veilleuse -v -t 'veilleuse/#' "
            "-P \"$(cat /etc/veilleuse/local-broker.password)\"")
    selftest = box.run(["veilleuse", "selftest", "--timeout", "90"], check=False, timeout=120)
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr + \
        box.journal("veilleuse.service")
    traffic = Traffic()
    traffic.dns(time.time(), "192.168.1.10", "192.168.1.1", C2_NAME,
                [(C2_NAME, "A", "203.0.113.50")])
    capture = traffic.write(tmp_path / "c2.pcap")
    subprocess.run([require_tool("tcpreplay"), "-q", "-i", box.mirror_host, str(capture)],
                   check=True, capture_output=True)

    def alerts() -> list[dict]:
        return _alerts(box, "/root/alerts.txt")

    assert until(lambda: any(a.get("observed") == C2_NAME for a in alerts()), 90), \
        box.journal("veilleuse.service")
    alert = next(a for a in alerts() if a.get("observed") == C2_NAME)
    assert (alert["kind"], alert["severity"], alert["app"]) == ("domain", "high", "TheTruthSpy")
    assert alert["device"].startswith("dev-"), "devices leave the box as pseudonyms"


def test_a_high_alert_keeps_evidence_that_only_the_helpline_opens(box, installed,
                                                                 tmp_path) -> None:
    """Under the hardened unit: Suricata's ring in /run, the cut, `age`, the announcement."""
    box.run("age-keygen -o /root/helpline-key.txt")
    public = box.run("age-keygen -y /root/helpline-key.txt").stdout.strip()
    config = yaml.safe_load(box.run(["cat", "/etc/veilleuse/veilleuse.yaml"]).stdout)
    config["evidence"] = {"recipients": [public], "window_seconds": 2}
    box.run("cat > /etc/veilleuse/veilleuse.yaml", input=yaml.safe_dump(config))
    box.run(["veilleuse", "check-config"])
    box.run(["systemctl", "restart", "veilleuse.service"])
    assert until(lambda: health(box).get("capture") == "running", 120), \
        box.journal("veilleuse.service")
    traffic = Traffic()
    device = "192.168.1.77"  # a device no earlier test used: a new alert
    traffic.dns(time.time(), device, "192.168.1.1", C2_NAME, [(C2_NAME, "A", "203.0.113.51")])
    traffic.tls(time.time() + 0.5, device, "203.0.113.51", C2_NAME)
    traffic.dns(time.time(), "192.168.1.78", "192.168.1.1", "www.example.org",
                [("www.example.org", "A", "203.0.113.80")])
    capture = traffic.write(tmp_path / "evidence.pcap")
    subprocess.run([require_tool("tcpreplay"), "-q", "-i", box.mirror_host, str(capture)],
                   check=True, capture_output=True)

    def bundles() -> list[str]:
        listed = box.run(["veilleuse", "evidence", "list"], check=False).stdout
        return [line.split()[0] for line in listed.splitlines() if "sha256" in line]

    assert until(lambda: bundles(), 180), box.journal("veilleuse.service")
    alert_id = bundles()[0]
    box.run(["veilleuse", "evidence", "export", alert_id, "--output", "/root/bundle.tar.age"])
    assert b"age-encryption.org" in box.root.joinpath("root", "bundle.tar.age").read_bytes()[:40]
    box.run("mkdir -p /root/opened && age -d -i /root/helpline-key.txt /root/bundle.tar.age"
            " | tar -x -C /root/opened")
    folder = box.run("ls -d /root/opened/*/").stdout.strip()
    box.run(f"cd {folder} && sha256sum -c SHA256SUMS")
    alert = json.loads(box.run(["cat", f"{folder}alert.json"]).stdout)
    assert alert["observed"] == C2_NAME and device in json.dumps(alert), alert
    packets = box.root.joinpath(folder.lstrip("/"), "packets.pcap")
    shown = subprocess.run([require_tool("tshark"), "-r", str(packets), "-T", "fields",
                            "-e", "ip.src", "-e", "ip.dst"], check=True, capture_output=True,
                           text=True).stdout
    addresses = set(shown.split())
    assert device in addresses and "192.168.1.78" not in addresses, shown
    assert until(lambda: any(a.get("evidence") for a in _alerts(box, "/root/alerts.txt")), 120), \
        "the announcement of the evidence was not published"


def _alerts(box: BootedSystem, path: str) -> list[dict]:
    """The alert payloads in a `mosquitto_sub -v` transcript."""
    lines = box.run(["cat", path], check=False).stdout.splitlines()
    return [json.loads(line.split(" ", 1)[1]) for line in lines
            if re.match(r"veilleuse/\S+/alert ", line)]


def test_the_mirror_interface_stays_passive(box, installed, tmp_path) -> None:
    addresses = json.loads(box.run(["ip", "-j", "address", "show", "dev", "mirror0"]).stdout)
    assert addresses[0]["addr_info"] == [], addresses
    assert "PROMISC" in addresses[0]["flags"], addresses
    ruleset = box.run(["nft", "list", "table", "inet", "veilleuse"]).stdout
    assert "mirror0" in ruleset, ruleset
    # What the box sends on the mirror port while it works and runs a self-test:
    # the self-test probe and nothing else.
    sent = tmp_path / "sent.pcap"
    sniffer = subprocess.Popen([require_tool("tcpdump"), "-i", box.mirror_host, "-Q", "in",
                                "-w", str(sent), "-U"], stderr=subprocess.PIPE)
    try:
        assert until(lambda: sent.exists() and sent.stat().st_size > 0, 10)
        box.run(["veilleuse", "selftest", "--timeout", "90"], timeout=120)
        box.run(["systemctl", "restart", "veilleuse-mirror.service", "veilleuse.service"])
        assert until(lambda: health(box).get("capture") == "running", 120)
    finally:
        sniffer.terminate()
        sniffer.wait(10)
    from scapy.layers.dns import DNSQR
    from scapy.utils import rdpcap

    packets = rdpcap(str(sent))
    assert packets, "the self-test probe must have gone out of the mirror port"
    names = [p[DNSQR].qname.decode() if p.haslayer(DNSQR) else p.summary() for p in packets]
    assert all(name.endswith("selftest.veilleuse.invalid.") for name in names), names


def test_the_sensor_reaches_a_core_beyond_the_box_by_its_name(box, installed) -> None:
    # A core broker at an address beyond loopback's 127.0.0.0/8 (put on lo: the
    # container has no other network), known by name to the box.
    box.run("ip address add 10.99.0.1/32 dev lo && echo '10.99.0.1 core.test' >> /etc/hosts")
    box.run("printf 'listener 1884 10.99.0.1\\nallow_anonymous true\\n' > /root/core.conf")
    box.run(["systemd-run", "--unit=core-broker", "mosquitto", "-c", "/root/core.conf"])
    box.run("systemd-run --unit=core-listener --property=StandardOutput=file:/root/core.txt "
            "mosquitto_sub -h 10.99.0.1 -p 1884 -v -t 'veilleuse/#'")
    config = yaml.safe_load(box.run(["cat", "/etc/veilleuse/veilleuse.yaml"]).stdout)
    config["mqtt"].update(url="mqtt://core.test:1884", username=None, password_file=None)
    box.run("cat > /etc/veilleuse/veilleuse.yaml", input=yaml.safe_dump(config))
    box.run(["veilleuse", "check-config"])
    box.run(["systemctl", "start", "veilleuse-core-access.service"])
    allowed = box.run(["systemctl", "show", "--property=IPAddressAllow",
                       "veilleuse.service"]).stdout
    assert "10.99.0.1" in allowed and "127.0.0.0/8" in allowed, allowed
    hosts = box.run(["cat", "/run/veilleuse-core/hosts"]).stdout
    system_hosts = box.run(["cat", "/etc/hosts"]).stdout
    assert hosts == system_hosts + "10.99.0.1 core.test # veilleuse core-access\n", hosts
    box.run(["systemctl", "restart", "veilleuse.service"])
    assert until(lambda: health(box).get("capture") == "running", 120)
    selftest = box.run(["veilleuse", "selftest", "--timeout", "90"], check=False, timeout=120)
    assert selftest.returncode == 0 and "core" in selftest.stdout, \
        selftest.stdout + box.journal("veilleuse.service")
    assert until(lambda: any(a.get("kind") == "selftest" for a in _alerts(box, "/root/core.txt")),
                 30), box.run(["cat", "/root/core.txt"]).stdout
    # Back to the box's own broker for what follows.
    config["mqtt"].update(url="mqtt://127.0.0.1:1883", username="veilleuse",
                          password_file="/etc/veilleuse/local-broker.password")
    box.run("cat > /etc/veilleuse/veilleuse.yaml", input=yaml.safe_dump(config))
    box.run(["systemctl", "restart", "veilleuse.service"])


def test_purge_stops_everything_and_removes_the_state(box, installed) -> None:
    box.run("DEBIAN_FRONTEND=noninteractive apt-get purge -y veilleuse", timeout=300)
    processes = box.run(["ps", "-e", "-o", "user=,comm="]).stdout
    assert not [line for line in processes.splitlines() if line.split()[0] == "veilleuse"], \
        processes
    assert "suricata" not in processes.lower(), processes
    for path in ("/var/lib/veilleuse", "/etc/veilleuse", "/opt/veilleuse", "/run/veilleuse"):
        assert box.run(["test", "-e", path], check=False).returncode == 1, path
    assert box.run(["nft", "list", "table", "inet", "veilleuse"], check=False).returncode != 0
    assert box.run(["systemctl", "is-enabled", "suricata.service"],
                   check=False).stdout.strip() != "masked"

