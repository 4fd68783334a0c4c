"""`veilleuse core-access apply`: the core's addresses for the sensor's hosts file and firewall."""

from __future__ import annotations

import socket

import pytest

from sensor.core_access import (
    MARKER,
    CoreAccess,
    CoreAccessError,
    allow,
    core_host,
    resolve,
    write_hosts,
)


@pytest.mark.parametrize(("url", "host"), [
    ("mqtt://127.0.0.1:1883", None), ("mqtt://localhost", None), ("mqtts://[::1]:8883", None),
    ("mqtts://core.example.org:8883", "core.example.org"), ("mqtt://192.0.2.7", "192.0.2.7"),
])
def test_only_a_core_beyond_the_box_needs_access(url, host) -> None:
    assert core_host(url) == host


def test_a_name_resolves_to_every_address_it_has() -> None:
    def lookup(host, port, type):
        assert (host, type) == ("core.example.org", socket.SOCK_STREAM)
        return [(socket.AF_INET6, type, 6, "", ("2001:db8::7", 0, 0, 0)),
                (socket.AF_INET, type, 6, "", ("192.0.2.7", 0)),
                (socket.AF_INET, type, 6, "", ("192.0.2.7", 0))]

    access = resolve("core.example.org", lookup=lookup)
    assert access.addresses == ("192.0.2.7", "2001:db8::7")
    assert access.allow_arguments() == ["IPAddressAllow=", "IPAddressAllow=localhost",
                                        "IPAddressAllow=192.0.2.7",
                                        "IPAddressAllow=2001:db8::7"]


def test_a_name_that_does_not_resolve_is_an_error_that_says_what_to_check() -> None:
    def lookup(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(CoreAccessError, match=r"does not resolve.*DNS"):
        resolve("core.invalid", lookup=lookup)


def test_an_address_literal_is_its_own_address() -> None:
    assert resolve("192.0.2.9").addresses == ("192.0.2.9",)


def test_the_hosts_file_is_rewritten_in_place_from_the_boxs_own(tmp_path) -> None:
    system = tmp_path / "etc-hosts"
    system.write_text("127.0.0.1 localhost\n::1 localhost")
    hosts = tmp_path / "run" / "hosts"
    write_hosts(CoreAccess("core.example.org", ("192.0.2.7",)), hosts, system)
    inode = hosts.stat().st_ino
    write_hosts(CoreAccess("core.example.org", ("192.0.2.8",)), hosts, system)
    assert hosts.stat().st_ino == inode, "the sensor's bind follows this very file"
    assert hosts.read_text() == ("127.0.0.1 localhost\n::1 localhost\n"
                                 f"192.0.2.8 core.example.org {MARKER}\n")


def test_allowing_reports_a_refusal_with_what_to_do() -> None:
    calls = []

    def refused(command, **kwargs):
        calls.append(command)
        return type("Completed", (), {"returncode": 1, "stderr": "Access denied"})()

    with pytest.raises(CoreAccessError, match=r"Access denied.*as root"):
        allow(CoreAccess("core.example.org", ("192.0.2.7",)), run=refused)
    assert calls[0][:4] == ["systemctl", "set-property", "--runtime", "veilleuse.service"]
