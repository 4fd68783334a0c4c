"""The daemon notices a mirror interface that is no longer passive (address, packets sent)."""

from __future__ import annotations

import subprocess

from scapy.layers.l2 import Ether
from scapy.sendrecv import sendp

from sensor.alerts.book import AlertBook
from sensor.config import load_config
from sensor.daemon.passive import MirrorReading, PassiveWatch
from tests.conftest import until
from tests.daemons import daemon_in_thread, sensor_config


def test_a_probe_counted_after_its_packet_is_not_a_leak() -> None:
    readings = iter([MirrorReading(True, (), 100), MirrorReading(True, (), 101),
                     MirrorReading(True, (), 101), MirrorReading(True, (), 104),
                     MirrorReading(True, (), 104), MirrorReading(False)])
    watch = PassiveWatch("eth1", read=lambda name: next(readings))
    assert watch.check(probes=0) is None      # baseline
    assert watch.check(probes=0) is None      # a probe went out; capture has not seen it yet
    assert watch.check(probes=1) is None      # now it has: explained
    assert watch.check(probes=1) is None      # 3 more sent: judged at the next check
    assert "sent 3 packet(s) that were not self-test probes" in watch.check(probes=1)
    assert watch.check(probes=1) is None, "a missing interface is capture's problem"


def test_the_daemon_reports_a_mirror_port_that_talks(tmp_path, veth, echap_files) -> None:
    host, _ = veth
    # Checks slower than the health (every 2 s), so that each verdict shows in it.
    config_path = sensor_config(tmp_path, "mqtt://127.0.0.1:9", host, mirror_check_seconds=3)
    config = load_config(config_path)
    with daemon_in_thread(config_path, echap_files) as daemon:
        def reasons() -> tuple[str, ...]:
            return daemon.health.reasons

        def watched_for(checks: int) -> set[str]:
            """Every reason seen while the watch runs ``checks`` more times."""
            seen: set[str] = set()
            target = daemon.passive.checks + checks
            assert until(lambda: seen.update(reasons()) or daemon.passive.checks >= target, 30)
            return seen

        assert until(lambda: daemon.capture.running(), 30)
        assert daemon.selftests.request()
        book = AlertBook(config.alerts.database)
        assert until(lambda: any(a.kind == "selftest" for a in book.alerts()), 30)
        assert "mirror_not_passive" not in watched_for(3), "our own probe is not a leak"

        sendp([Ether(dst="ff:ff:ff:ff:ff:ff") / b"chatter"] * 3, iface=host, verbose=False)
        assert until(lambda: "mirror_not_passive" in reasons(), 30)
        detail = daemon.health.details[daemon.health.reasons.index("mirror_not_passive")]
        assert f"the mirror interface {host} is not passive: it sent 3 packet(s)" in detail
        assert until(lambda: "mirror_not_passive" not in reasons(), 30), "one burst, once"

        subprocess.run(["ip", "address", "add", "10.99.0.1/24", "dev", host], check=True)
        assert until(lambda: "mirror_not_passive" in reasons(), 30)
        assert "has the address(es) 10.99.0.1/24" in " ".join(daemon.health.details)
        book.close()
