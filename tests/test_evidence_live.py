"""Live evidence: the sensor on a veth pair keeps, from its packet ring, a high alert's packets.

Suricata's pcap-log ring (in the runtime directory) and the lite sniffer's
frame ring are each tested: the shelter traffic of tests/test_evidence.py is
replayed with tcpreplay at the present time, the core receives the alert
announcing its evidence, and the bundle opens with age and tshark.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from sensor.demo.scenario import demo_feed_path
from sensor.evidence.store import EvidenceStore
from tests.broker import Core, Mosquitto
from tests.conftest import require_tool, until
from tests.daemons import sensor_config
from tests.test_evidence import (
    C2_ADDRESS,
    C2_NAME,
    DEVICE_B,
    OTHER,
    RESOLVER,
    age_key,  # noqa: F401 - the fixture
    open_bundle,
    shelter_capture,
    tshark_rows,
)


@pytest.mark.parametrize("source", ["suricata", "scapy"])
def test_the_live_sensor_keeps_evidence_from_its_ring(tmp_path, veth, age_key, tshark,  # noqa: F811
                                                      mosquitto_binary, source) -> None:
    if source == "suricata":
        require_tool("suricata")
    identity, public = age_key
    host, namespace = veth
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker", mosquitto_binary)
    broker.start()
    config = sensor_config(tmp_path, broker.url, host)
    settings = json.loads(config.read_text())
    settings["evidence"] = {"recipients": [public], "directory": str(tmp_path / "evidence"),
                            "window_seconds": 2}
    config.write_text(json.dumps(settings))
    health_file = tmp_path / "run" / "health.json"
    log = tmp_path / "daemon.log"
    core = Core(broker)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "sensor", "-v", "--config", str(config), "run", "--source",
         source, "--feed", str(demo_feed_path())],
        stdout=subprocess.DEVNULL, stderr=log.open("w"), umask=0o077)
    try:
        assert until(lambda: health_file.exists() and
                      json.loads(health_file.read_text()).get("capture") == "running", 90), \
            log.read_text()[-2000:]
        capture = shelter_capture(tmp_path / "shelter.pcap")
        subprocess.run(["ip", "netns", "exec", namespace, require_tool("tcpreplay"), "-q",
                        "--topspeed", "-i", host.replace("vlh", "vli"), str(capture)],
                       check=True, capture_output=True)
        assert core.wait_for(lambda c: any("evidence" in p for p in c.received), 90), \
            log.read_text()[-3000:]
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        core.close()
        broker.stop()
    assert code == 0, log.read_text()[-2000:]
    entries = EvidenceStore(tmp_path / "evidence").entries()
    announced = next(p for p in core.received if "evidence" in p)
    entry = next(e for e in entries if e.outgoing_id == announced["id"])
    folder = open_bundle(tmp_path / "evidence" / f"{entry.alert_id}.tar.age", identity,
                         tmp_path / "opened")
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder,
                          capture_output=True).returncode == 0
    rows = tshark_rows(folder / "packets.pcap", tshark)
    addresses = {address for row in rows for address in row[:2]}
    assert C2_ADDRESS in addresses or any(row[2] == C2_NAME for row in rows)
    assert addresses <= {"192.168.10.21", C2_ADDRESS, RESOLVER}
    assert DEVICE_B not in addresses and OTHER not in addresses
    assert json.loads((folder / "clock.json").read_text())["alert_clock_synchronised"] \
        is not None
