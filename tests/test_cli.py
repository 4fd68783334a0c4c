"""The `veilleuse` command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.scenarios import build_everything

REQUIRED_FIELDS = {"id", "kind", "severity", "device", "indicator", "observed", "app", "protocol",
                   "first_seen", "last_seen", "count", "advice"}


def veilleuse(*args: str, lang: str = "C.UTF-8") -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LANG": lang, "LC_ALL": "", "LC_MESSAGES": ""}
    return subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, env=environment, timeout=300, check=False)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_everything(tmp_path_factory.mktemp("cli") / "everything.pcap")[0]


def test_analyze_jsonl_gives_one_complete_alert_per_line(capture, echap_files) -> None:
    require_tool("suricata")
    result = veilleuse("analyze", str(capture), "--feed", str(echap_files[0]),
                       "--feed", str(echap_files[1]), "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 12
    for record in records:
        assert record.keys() >= REQUIRED_FIELDS
        assert set(record["advice"]) == {"fr", "en"}
        assert record["first_seen"].endswith("Z")
    high = records[0]
    assert (high["severity"], high["kind"], high["app"]) == ("high", "domain", "TheTruthSpy")
    assert "payload" not in json.dumps(records)


@pytest.mark.parametrize(("lang", "heading", "advice"), [
    ("fr_FR.UTF-8", "Analyse Veilleuse de", "Ne le désinstallez pas"),
    ("en_GB.UTF-8", "Veilleuse analysis of", "Do not uninstall it"),
])
def test_text_report_follows_the_locale(capture, echap_files, lang, heading, advice) -> None:
    result = veilleuse("analyze", str(capture), "--source", "scapy", "--feed",
                       str(echap_files[0]), lang=lang)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(heading)
    assert advice in result.stdout


def test_tshark_source_from_the_command_line(capture, echap_files) -> None:
    require_tool("tshark")
    result = veilleuse("analyze", str(capture), "--source", "tshark", "--format", "jsonl",
                       "--feed", str(echap_files[0]), "--feed", str(echap_files[1]))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 12


def test_errors_are_one_clear_line(tmp_path, echap_files) -> None:
    missing = veilleuse("analyze", str(tmp_path / "nope.pcap"), "--feed", str(echap_files[0]))
    assert missing.returncode == 1
    assert missing.stderr.strip().endswith("nope.pcap: no such capture file")
    assert "Traceback" not in missing.stderr
    no_feeds = veilleuse("--config", str(_config(tmp_path)), "analyze", str(tmp_path / "x.pcap"))
    assert no_feeds.returncode == 1
    assert "no indicator feed is installed; run `veilleuse feeds update`" in no_feeds.stderr


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "veilleuse.yaml"
    path.write_text(f"feeds:\n  directory: {tmp_path / 'feeds'}\n")
    return path


def test_demo_runs_without_network_or_hardware() -> None:
    require_tool("suricata")
    result = veilleuse("demo", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    kinds = sorted(json.loads(line)["kind"] for line in result.stdout.splitlines())
    assert kinds == ["beacon", "domain", "encrypted_dns", "ip", "ip", "watchware", "website"]


def test_feeds_status_says_what_to_do_when_nothing_is_installed(tmp_path) -> None:
    result = veilleuse("--config", str(_config(tmp_path)), "feeds", "status")
    assert result.returncode == 1
    assert "echap-stalkerware: not installed (run `veilleuse feeds update`)" in result.stdout
