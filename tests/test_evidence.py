"""Evidence of high alerts: cut from the real analysis, encrypted with age, opened by real tools.

A scapy-built capture where device A calls a C2 of the demo feed (and does
other things) and device B does other traffic; `veilleuse analyze` keeps the
evidence; the `age` program decrypts it, `sha256sum -c` verifies its
manifest, tshark reads the capture inside.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import jsonschema
import pytest

from sensor.demo.scenario import demo_feed_path
from sensor.demo.traffic import DEFAULT_START, Traffic
from sensor.evidence.live import FrameRing, ring_file_count
from sensor.evidence.store import EvidenceStore, apply_evidence_retention
from sensor.suricata.config import SuricataSettings, render_suricata_config
from tests.broker import Core
from tests.conftest import REPO, require_tool

DEVICE_A, DEVICE_B, RESOLVER = "192.168.10.21", "192.168.10.22", "192.168.10.1"
C2_NAME, C2_ADDRESS, OTHER = "api.demospy.example", "203.0.113.66", "198.51.100.7"
WINDOW = 60.0


@pytest.fixture
def age_key(tmp_path: Path) -> tuple[Path, str]:
    """A helpline's key pair, made by age-keygen: (identity file, public key)."""
    keygen = require_tool("age-keygen")
    require_tool("age")
    identity = tmp_path / "helpline-key.txt"
    made = subprocess.run([keygen, "-o", str(identity)], capture_output=True, text=True,
                          check=True)
    return identity, made.stderr.split("Public key:")[1].strip()


def shelter_capture(path: Path) -> Path:
    """A calls the C2 (twice, ten minutes apart) and a benign site; B browses elsewhere."""
    traffic = Traffic()
    start = DEFAULT_START
    traffic.dns(start, DEVICE_A, RESOLVER, C2_NAME, [(C2_NAME, "A", C2_ADDRESS)])
    traffic.tls(start + 1, DEVICE_A, C2_ADDRESS, C2_NAME)
    traffic.dns(start + 2, DEVICE_A, RESOLVER, "www.library.example",
                [("www.library.example", "A", OTHER)], transaction_id=0x2222)
    traffic.tls(start + 3, DEVICE_A, OTHER, "www.library.example")
    traffic.dns(start + 1.5, DEVICE_B, RESOLVER, "news.example", [("news.example", "A", OTHER)],
                transaction_id=0x3333)
    traffic.http(start + 2.5, DEVICE_B, OTHER, "news.example")
    traffic.tls(start + 30, DEVICE_B, OTHER, "news.example")
    traffic.tls(start + 600, DEVICE_A, C2_ADDRESS, C2_NAME)
    return traffic.write(path)


def write_config(tmp_path: Path, recipients: list[str], **evidence: object) -> Path:
    settings = {"recipients": recipients, "directory": str(tmp_path / "evidence"),
                "window_seconds": WINDOW, **evidence}
    config = {"evidence": settings,
              "alerts": {"database": str(tmp_path / "alerts.sqlite")},
              "privacy": {"secret_file": str(tmp_path / "pseudonym.key")}}
    path = tmp_path / "veilleuse.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def veilleuse(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensor", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def analyze(tmp_path: Path, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    capture = shelter_capture(tmp_path / "shelter.pcap")
    result = veilleuse(config, "analyze", str(capture), "--source", "scapy", "--feed",
                       str(demo_feed_path()), "--format", "jsonl", *extra)
    assert result.returncode == 0, result.stderr
    return result


def high_alerts(result: subprocess.CompletedProcess[str]) -> list[dict]:
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    return [alert for alert in alerts if alert["severity"] == "high"]


def open_bundle(bundle: Path, identity: Path, into: Path) -> Path:
    """``age -d`` then untar, as a helpline would; the bundle's folder."""
    plain = subprocess.run(["age", "-d", "-i", str(identity), str(bundle)],
                           capture_output=True, check=True).stdout
    into.mkdir()
    (into / "bundle.tar").write_bytes(plain)
    with tarfile.open(into / "bundle.tar") as archive:
        # The "data" filter where this Python has it (3.11.4+; Debian's 3.11.2 has not).
        archive.extractall(into, **({"filter": "data"} if hasattr(tarfile, "data_filter")
                                    else {}))
    (folder,) = [p for p in into.iterdir() if p.is_dir()]
    return folder


def tshark_rows(pcap: Path, tshark: str) -> list[list[str]]:
    fields = ["ip.src", "ip.dst", "dns.qry.name", "tls.handshake.extensions_server_name"]
    command = [tshark, "-r", str(pcap), "-T", "fields"]
    for name in fields:
        command += ["-e", name]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return [line.split("\t") for line in result.stdout.splitlines()]


def test_bundle_decrypts_verifies_and_holds_only_the_c2_traffic(tmp_path, age_key,
                                                                tshark) -> None:
    identity, public = age_key
    config = write_config(tmp_path, [public])
    result = analyze(tmp_path, config)
    alerts = high_alerts(result)
    assert {a["indicator"] for a in alerts} >= {"api.demospy.example"}
    assert all(a["device"] == DEVICE_A for a in alerts)
    listing = veilleuse(config, "evidence", "list")
    assert listing.returncode == 0, listing.stderr
    domain = next(a for a in alerts if a["kind"] == "domain")
    assert domain["id"] in listing.stdout
    exported = tmp_path / "exported.tar.age"
    done = veilleuse(config, "evidence", "export", domain["id"], "--output", str(exported))
    assert done.returncode == 0, done.stderr
    assert exported.read_bytes().startswith(b"age-encryption.org/v1")

    folder = open_bundle(exported, identity, tmp_path / "opened")
    verified = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder,
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert sorted(line.split(": ")[0] for line in verified.stdout.splitlines()) == sorted(
        ["packets.pcap", "alert.json", "feeds.json", "clock.json", "evidence.json"])
    assert json.loads((folder / "alert.json").read_text())["id"] == domain["id"]
    feeds = json.loads((folder / "feeds.json").read_text())
    assert list(feeds) == ["feed.yaml"] and feeds["feed.yaml"]
    assert json.loads((folder / "clock.json").read_text())["alert_clock_synchronised"] is None

    rows = tshark_rows(folder / "packets.pcap", tshark)
    addresses = {address for row in rows for address in row[:2]}
    assert addresses <= {DEVICE_A, C2_ADDRESS, RESOLVER}
    assert DEVICE_B not in addresses and OTHER not in addresses
    assert any(row[2] == C2_NAME for row in rows)  # the lookup
    assert any(row[3] == C2_NAME for row in rows)  # the TLS hello, both connections
    assert all(row[2] in ("", C2_NAME) for row in rows)  # none of A's other lookups
    evidence = json.loads((folder / "evidence.json").read_text())
    assert evidence["packets"] == len(rows) and not evidence["truncated"]


def test_no_key_keeps_nothing(tmp_path, age_key) -> None:
    config = write_config(tmp_path, [])
    result = analyze(tmp_path, config)
    assert high_alerts(result)
    assert not (tmp_path / "evidence").exists()
    listing = veilleuse(config, "evidence", "list")
    assert "no helpline key is configured" in listing.stdout
    assert "0 bundle(s)" in listing.stdout
    missing = veilleuse(config, "evidence", "export", "0" * 20)
    assert missing.returncode == 1
    assert "no evidence is kept for alert 00000000000000000000" in missing.stderr


def test_per_alert_cap_cuts_the_packets(tmp_path, age_key, tshark) -> None:
    identity, public = age_key
    cap = 1_000
    config = write_config(tmp_path, [public], max_alert_megabytes=cap / 1e6)
    analyze(tmp_path, config)
    store = EvidenceStore(tmp_path / "evidence")
    entries = store.entries()
    assert entries and all(entry.truncated for entry in entries)
    folder = open_bundle(tmp_path / "evidence" / f"{entries[0].alert_id}.tar.age", identity,
                         tmp_path / "opened")
    pcap = folder / "packets.pcap"
    assert 24 < pcap.stat().st_size <= cap
    assert len(tshark_rows(pcap, tshark)) == entries[0].packets
    assert json.loads((folder / "evidence.json").read_text())["truncated"] is True


def test_total_cap_keeps_the_older_evidence(tmp_path, age_key) -> None:
    _, public = age_key
    config = write_config(tmp_path, [public], max_total_megabytes=0.004)
    result = analyze(tmp_path, config)
    entries = EvidenceStore(tmp_path / "evidence").entries()
    assert len(entries) < len(high_alerts(result))
    assert sum(entry.size for entry in entries) <= 4_000
    assert "NOT KEPT" in result.stderr and "evidence.max_total_megabytes" in result.stderr


def test_retention_deletes_old_bundles_on_a_synchronised_clock(tmp_path, age_key) -> None:
    _, public = age_key
    analyze(tmp_path, write_config(tmp_path, [public]))
    directory = tmp_path / "evidence"
    kept = EvidenceStore(directory).entries()
    assert kept
    later = max(entry.created for entry in kept) + 91 * 86_400
    assert apply_evidence_retention(directory, 90, later, clock_synchronised=False) is None
    assert EvidenceStore(directory).entries() == kept
    assert apply_evidence_retention(directory, 90, later - 2 * 86_400, True) == 0
    assert apply_evidence_retention(directory, 90, later, True) == len(kept)
    assert EvidenceStore(directory).entries() == []
    assert not list(directory.glob("*.age"))


def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads((REPO / "docs" / "schemas" / "alert.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_published_alert_announces_the_evidence_and_nothing_more(tmp_path, age_key,
                                                                 broker) -> None:
    _, public = age_key
    config = write_config(tmp_path, [public])
    core = Core(broker)
    try:
        result = analyze(tmp_path, config, "--mqtt", broker.url, "--mqtt-timeout", "30")
        store = EvidenceStore(tmp_path / "evidence")
        entries = {entry.outgoing_id: entry for entry in store.entries()}
        assert core.wait_for(lambda c: c.ids() >= set(entries), 30)
    finally:
        core.close()
    validator = _validator()
    announced = [payload for payload in core.received if "evidence" in payload]
    assert {payload["id"] for payload in announced} == set(entries)
    assert len(entries) == len(high_alerts(result))
    for payload in core.received:
        validator.validate(payload)
    for payload in announced:
        entry = entries[payload["id"]]
        bundle = tmp_path / "evidence" / f"{entry.alert_id}.tar.age"
        assert payload["evidence"] == {"size": bundle.stat().st_size,
                                       "sha256": hashlib.sha256(bundle.read_bytes()).hexdigest()}
    assert not any("evidence" in p for p in core.received if p["severity"] != "high")
    # The helpline has only the published id: the export by it matches the announced digest.
    payload = announced[0]
    copy = tmp_path / "from-the-box.tar.age"
    done = veilleuse(config, "evidence", "export", payload["id"], "--output", str(copy))
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == payload["evidence"]["sha256"]


def test_a_value_that_is_not_an_age_key_is_a_config_error(tmp_path) -> None:
    config = write_config(tmp_path, ["age1...the-helpline-key"])
    checked = veilleuse(config, "check-config")
    assert checked.returncode == 2
    assert "is not an age public key" in checked.stderr
    assert "evidence" in checked.stderr and "recipients" in checked.stderr


def test_the_lite_sniffer_ring_keeps_only_its_latest_bytes() -> None:
    ring = FrameRing(max_bytes=1_000)
    for n in range(30):
        ring.add(1, bytes([n]) * 100, float(n))
    kept = ring.snapshot()
    assert sum(len(record.frame) for record in kept) <= 1_000
    assert [record.time for record in kept] == [float(n) for n in range(20, 30)]
    assert list(ring.records()()) == kept  # what the cut reads, twice alike


def test_suricata_accepts_its_evidence_ring(tmp_path, suricata) -> None:
    settings = SuricataSettings(binary=suricata, evidence_ring_files=ring_file_count(32))
    config = tmp_path / "suricata.yaml"
    config.write_text(render_suricata_config(settings, tmp_path))
    tested = subprocess.run([suricata, "-T", "-c", str(config), "-l", str(tmp_path)],
                            capture_output=True, text=True)
    assert tested.returncode == 0, tested.stderr + tested.stdout
    assert "evidence.pcap" in config.read_text() and "max-files: 8" in config.read_text()
    without = render_suricata_config(SuricataSettings(binary=suricata), tmp_path)
    assert "pcap-log" not in without  # no helpline key: no packet is ever written
