"""`veilleuse mirror apply`: the drop-ins it writes, and the real thing in network namespaces."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor.mirror import MirrorError, networkd_file, networkmanager_file, plan_mirror
from tests.conftest import require_tool, unavailable


def test_the_drop_ins_configure_nothing_on_the_mirror_port() -> None:
    network = networkd_file("eth1")
    for line in ("Name=eth1", "DHCP=no", "LinkLocalAddressing=no", "IPv6AcceptRA=no",
                 "LLMNR=no", "MulticastDNS=no", "ARP=no", "Promiscuous=yes",
                 "RequiredForOnline=no", "ActivationPolicy=up"):
        assert f"\n{line}\n" in network
    assert "unmanaged-devices=interface-name:eth1\n" in networkmanager_file("eth1")


@pytest.mark.parametrize("name", ["eth1\n[Network]", "", "a" * 16, "eth 1", "eth1/x"])
def test_a_name_that_is_not_an_interface_is_refused(name) -> None:
    with pytest.raises(MirrorError, match="is not an interface name"):
        plan_mirror(name)


def test_dry_run_prints_and_writes_nothing(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sensor", "mirror", "apply", "--dry-run", "--interface", "eth9",
         "--networkd-dir", str(tmp_path / "nd"), "--networkmanager-dir", str(tmp_path / "nm")],
        capture_output=True, text=True, check=True)
    assert f"# {tmp_path}/nd/10-veilleuse-mirror.network\n" in result.stdout
    assert 'iifname "eth9" counter drop' in result.stdout
    assert list(tmp_path.iterdir()) == []


def _in(namespace: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True,
                          text=True, check=check)


@pytest.fixture
def box() -> Iterator[tuple[str, str]]:
    """(sensor namespace, peer namespace): mirror m0 <-> p0, management a0 <-> b0."""
    if os.geteuid() != 0:
        unavailable("needs root to create network namespaces")
    require_tool("ip")
    require_tool("nft")
    sensor, peer = f"vms{os.getpid() % 10**6}", f"vmp{os.getpid() % 10**6}"
    setup = [["ip", "netns", "add", sensor], ["ip", "netns", "add", peer],
             ["ip", "-n", sensor, "link", "add", "m0", "type", "veth", "peer", "name", "p0",
              "netns", peer],
             ["ip", "-n", sensor, "link", "add", "a0", "type", "veth", "peer", "name", "b0",
              "netns", peer],
             ["ip", "-n", sensor, "address", "add", "10.77.0.1/24", "dev", "m0"],
             ["ip", "-n", sensor, "address", "add", "10.78.0.1/24", "dev", "a0"],
             ["ip", "-n", peer, "address", "add", "10.77.0.2/24", "dev", "p0"],
             ["ip", "-n", peer, "address", "add", "10.78.0.2/24", "dev", "b0"]]
    setup += [["ip", "-n", ns, "link", "set", dev, "up"]
              for ns, dev in ((sensor, "m0"), (sensor, "a0"), (sensor, "lo"), (peer, "p0"),
                              (peer, "b0"), (peer, "lo"))]
    try:
        for command in setup:
            subprocess.run(command, check=True, capture_output=True)
        yield sensor, peer
    finally:
        for namespace in (sensor, peer):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def _connects(peer: str, host: str, port: int) -> bool:
    """A TCP connection from the peer is answered (a dropped SYN times out: a negative)."""
    return _in(peer, sys.executable, "-c", "import socket, sys; socket.create_connection("
               f"('{host}', {port}), timeout=1)", check=False).returncode == 0


def test_apply_makes_the_mirror_port_passive_and_firewalled(tmp_path, box) -> None:
    sensor, peer = box
    config = tmp_path / "veilleuse.yaml"
    config.write_text(json.dumps({"network": {"interface": "m0"}}))
    apply = [sys.executable, "-m", "sensor", "--config", str(config), "mirror", "apply",
             "--networkd-dir", str(tmp_path / "nd"), "--networkmanager-dir", str(tmp_path / "nm")]
    assert _connects(peer, "10.77.0.1", 9) is False  # nothing listens yet: refused, not open
    first = _in(sensor, *apply)
    assert "mirror interface m0: set passive" in first.stdout
    _in(sensor, *apply)  # twice: the same single table, no error
    assert (tmp_path / "nd" / "10-veilleuse-mirror.network").read_text() == networkd_file("m0")
    assert (tmp_path / "nm" / "90-veilleuse-mirror.conf").read_text() == \
        networkmanager_file("m0")

    (link,) = json.loads(_in(sensor, "ip", "-d", "-j", "address", "show", "dev", "m0").stdout)
    assert link["addr_info"] == [], "no IPv4 nor IPv6 address left on the mirror port"
    assert link["promiscuity"] >= 1 and "NOARP" in link["flags"]
    assert "MULTICAST" not in link["flags"] and "UP" in link["flags"]
    ipv6 = {name: _in(sensor, "cat", f"/proc/sys/net/ipv6/conf/m0/{name}").stdout.strip()
            for name in ("disable_ipv6", "accept_ra", "autoconf")}
    assert ipv6 == {"disable_ipv6": "1", "accept_ra": "0", "autoconf": "0"}
    tables = _in(sensor, "nft", "list", "tables").stdout.splitlines()
    assert tables.count("table inet veilleuse") == 1

    # Suppose something still puts an address on the mirror port and answers ARP for it:
    # the firewall alone must keep it silent, while SSH on the management port works.
    _in(sensor, "ip", "address", "add", "10.77.0.1/24", "dev", "m0")
    mac = json.loads(_in(sensor, "ip", "-j", "link", "show", "m0").stdout)[0]["address"]
    _in(peer, "ip", "neighbour", "replace", "10.77.0.1", "lladdr", mac, "dev", "p0")
    listener = subprocess.Popen(
        ["ip", "netns", "exec", sensor, sys.executable, "-c",
         "import socket, threading\n"
         "def serve(port):\n"
         "    s = socket.create_server(('0.0.0.0', port))\n"
         "    while True: s.accept()[0].close()\n"
         "threading.Thread(target=serve, args=(2222,), daemon=True).start()\n"
         "serve(22)\n"])
    try:
        assert _until_listening(peer), "SSH on the management interface is allowed"
        assert not _connects(peer, "10.77.0.1", 22), "the mirror port accepts nothing"
        assert not _connects(peer, "10.78.0.1", 2222), "only SSH on the management port"
        assert not _pings(peer, "10.77.0.1"), "no echo reply from the mirror port"
        dropped = re.search(r'iifname "m0" counter packets (\d+)',
                            _in(sensor, "nft", "list", "chain", "inet", "veilleuse",
                                "input").stdout)
        assert dropped and int(dropped[1]) >= 2, "the rule itself dropped the SYN and the echo"
        assert _pings(peer, "10.78.0.1"), "ping works on the management port"
    finally:
        listener.kill()
        listener.wait()


def _pings(peer: str, host: str) -> bool:
    """An ICMP echo from the peer gets its reply within a second (scapy: no ping needed)."""
    return _in(peer, sys.executable, "-c", "import sys\n"
               "from scapy.layers.inet import ICMP, IP\nfrom scapy.sendrecv import sr1\n"
               f"sys.exit(0 if sr1(IP(dst='{host}') / ICMP(), timeout=1, verbose=0) else 1)",
               check=False).returncode == 0


def _until_listening(peer: str) -> bool:
    from tests.conftest import until

    return until(lambda: _connects(peer, "10.78.0.1", 22), 10)


def test_an_absent_interface_still_gets_its_drop_ins_and_rules(tmp_path, box) -> None:
    sensor, _ = box
    result = _in(sensor, sys.executable, "-m", "sensor", "mirror", "apply", "--interface",
                 "eth9", "--networkd-dir", str(tmp_path / "nd"), "--networkmanager-dir",
                 str(tmp_path / "nm"))
    assert "eth9: absent now" in result.stdout
    assert 'iifname "eth9"' in _in(sensor, "nft", "list", "table", "inet", "veilleuse").stdout
    assert Path(tmp_path / "nd" / "10-veilleuse-mirror.network").exists()


def test_the_interface_with_the_default_route_is_refused_and_left_alone(tmp_path, box) -> None:
    # A one-port mini-PC whose configuration still says its management port: installing
    # over SSH must not cut the box off.
    sensor, _ = box
    _in(sensor, "ip", "route", "add", "default", "via", "10.78.0.2", "dev", "a0")
    config = tmp_path / "veilleuse.yaml"
    config.write_text(json.dumps({"network": {"interface": "a0"}}))
    refused = _in(sensor, sys.executable, "-m", "sensor", "--config", str(config), "mirror",
                  "apply", "--networkd-dir", str(tmp_path / "nd"), "--networkmanager-dir",
                  str(tmp_path / "nm"), check=False)
    assert refused.returncode == 1
    assert "a0 carries this box's default route: it is the management interface" in \
        refused.stderr
    (link,) = json.loads(_in(sensor, "ip", "-j", "address", "show", "dev", "a0").stdout)
    assert [a["local"] for a in link["addr_info"] if a["family"] == "inet"] == ["10.78.0.1"]
    assert not (tmp_path / "nd").exists()
    assert _in(sensor, "nft", "list", "table", "inet", "veilleuse", check=False).returncode != 0
