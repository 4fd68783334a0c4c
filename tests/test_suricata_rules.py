"""Rules compiled from the feeds: Suricata loads them and agrees with the Python matcher."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
from pathlib import Path

import pytest
import yaml

from sensor.analysis import analyze_capture
from sensor.config import Config
from sensor.feeds.echap import load_echap
from sensor.feeds.model import Category, Indicator, preference
from sensor.suricata.config import SuricataSettings, render_suricata_config
from sensor.suricata.rules import compile_rules, render_rules
from sensor.wiring import build_engine, open_source
from tests.scenarios import build_everything


def _run_suricata(binary: str, workdir: Path, rules: str, pcap: Path | None = None
                  ) -> subprocess.CompletedProcess[str]:
    (workdir / "veilleuse.rules").write_text(rules)
    config = workdir / "suricata.yaml"
    config.write_text(render_suricata_config(SuricataSettings(), workdir,
                                             [str(workdir / "veilleuse.rules")]))
    command = [binary, "-c", str(config), "-l", str(workdir), "-k", "none"]
    command += ["-r", str(pcap)] if pcap else ["-T", "-v"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TZ": "UTC"})


@pytest.fixture(scope="module")
def echap_rules(echap_feeds):
    return compile_rules(i for feed in echap_feeds for i in feed.indicators)


def test_every_rule_compiled_from_the_feeds_loads(tmp_path, suricata, echap_rules) -> None:
    result = _run_suricata(suricata, tmp_path, render_rules(echap_rules))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(echap_rules)} rules successfully loaded, 0 rules failed" in \
        result.stdout + result.stderr


def test_sids_come_from_the_indicator_not_its_position(echap_feeds, echap_rules) -> None:
    indicators = [i for feed in echap_feeds for i in feed.indicators]
    random.Random(7).shuffle(indicators)
    extra = Indicator("new-c2.example", Category.C2, "NewSpy")
    again = {(r.indicator.value, r.protocol): r.sid for r in compile_rules([extra, *indicators])}
    before = {(r.indicator.value, r.protocol): r.sid for r in echap_rules}
    assert {key: again[key] for key in before} == before
    assert len(set(again.values())) == len(again)


def test_feed_text_cannot_break_out_of_a_rule(tmp_path, suricata) -> None:
    hostile = Indicator('evil";sid:1;"x.example', Category.C2, 'App"; drop ip any any')
    rules = compile_rules([hostile])
    assert all("sid:1;" not in rule.text for rule in rules)
    result = _run_suricata(suricata, tmp_path, render_rules(rules))
    assert result.returncode == 0, result.stderr[-2000:]


def test_suricata_rules_and_the_python_matcher_agree(tmp_path, suricata, echap_matcher,
                                                     echap_rules) -> None:
    capture, _ = build_everything(tmp_path / "everything.pcap")
    result = _run_suricata(suricata, tmp_path, render_rules(echap_rules), capture)
    assert result.returncode == 0, result.stderr[-2000:]
    fired: dict[tuple[str, int, str], list[Indicator]] = {}
    for line in (tmp_path / "eve.json").read_text().splitlines():
        record = json.loads(line)
        if record["event_type"] == "alert":
            metadata = record["alert"]["metadata"]
            observation = (str(ipaddress.ip_address(record["src_ip"])), record["flow_id"],
                           metadata["veilleuse_protocol"][0])
            fired.setdefault(observation, []).append(Indicator(
                metadata["veilleuse_indicator"][0],
                Category(metadata["veilleuse_category"][0]), "?"))
    # Several rules may fire on one name; the matcher's choice is the preferred one.
    by_suricata = {(device, min(candidates, key=preference).value)
                   for (device, _, _), candidates in fired.items()}
    python = analyze_capture(capture, open_source("scapy", Config()),
                             build_engine(Config(), echap_matcher))
    by_python = {(a.device, a.indicator) for a in python.alerts
                 if a.kind.value in ("domain", "website", "watchware", "ip")
                 and "resolved_from" not in dict(a.details)}
    assert by_suricata == by_python


def test_a_listed_ip_and_a_listed_name_on_one_connection_both_alert(tmp_path, suricata) -> None:
    from sensor.demo.traffic import DEFAULT_START, Traffic

    traffic = Traffic()
    traffic.tls(DEFAULT_START, "192.168.1.10", "198.51.100.66", "api.demospy.example")
    capture = traffic.write(tmp_path / "both.pcap")
    rules = compile_rules([Indicator("198.51.100.66", Category.C2, "DemoSpy", is_ip=True),
                           Indicator("demospy.example", Category.C2, "DemoSpy")])
    result = _run_suricata(suricata, tmp_path, render_rules(rules), capture)
    assert result.returncode == 0, result.stderr[-2000:]
    fired = {json.loads(line)["alert"]["metadata"]["veilleuse_protocol"][0]
             for line in (tmp_path / "eve.json").read_text().splitlines()
             if json.loads(line)["event_type"] == "alert"}
    assert fired == {"ip", "tls"}


def test_rules_command_writes_a_loadable_rule_file(tmp_path, suricata, echap_files) -> None:
    import sys

    output = tmp_path / "veilleuse.rules"
    output.write_text("# the rules a running Suricata uses now\n")
    previous = output.stat().st_ino
    result = subprocess.run([sys.executable, "-m", "sensor", "rules", "--output", str(output),
                             *(arg for path in echap_files for arg in ("--feed", str(path)))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # Written beside, then renamed over: a Suricata reloading meanwhile reads one whole file.
    assert output.stat().st_ino != previous
    assert output.stat().st_mode & 0o777 == 0o644  # readable by the operator's Suricata
    text = output.read_text()
    assert text.startswith("# feeds: ") and "rules generated by Veilleuse" in text
    assert _run_suricata(suricata, tmp_path, text).returncode == 0


_HOSTILE_NAMES = [
    "a" * 8200 + ".example", "a" * 64 + ".example", ".".join(["a" * 63] * 4) + ".example",
    "a..b.example", ".lead.example", "..", ".", "", "   ", "com", "localhost",
    "evil\x00.example", "a.example\x00", "a\tb.example", "a\nb.example", "a\rb.example",
    "\x1b[31m.example", "a\x7f.example", "a\x85.example", "a\u2028b.example",
    "\u202eelpmaxe.evil", "a\u200bb.example", "\U0001F600.example",
    'evil".example', 'evil";sid:1;".example', "evil;.example", "a|b.example",
    "a\\b.example", "a b.example", "a(b).example", "a$b.example", "a!b.example",
    "a,b.example", "a'b.example", "a<b>.example", "a{b}.example", "a[b].example",
    "a#b.example", "a%b.example", "a&b.example", "a=b.example", "a?b.example",
    "a+b.example", "a~b.example", "a`b.example", "*.example.com", "a@b.example",
    "a:b.example", "a/b.example", "http://a.example/x", "-lead.example", "trail-.example",
    "10.0.0.0/8", "192.0.2.1:80",
]
_HOSTILE_IPS = [
    "fe80::1%eth0", "2001:db8::1%1", "10.0.0.0/8", "2001:db8::/32", "192.0.2.1/32",
    "192.0.2.1-192.0.2.9", "192.0.2.1:80", "[2001:db8::1]", "01.02.03.04", "1.2.3", "256.1.1.1",
    "0.0.0.0", "::", "127.0.0.1", "::1", "224.0.0.1", "ff02::1", "169.254.1.1", "fe80::1",
    "255.255.255.255", "240.0.0.1", "::ffff:192.0.2.1", "a.example", "192.0.2.1\x00",
    "192.0.2.1 192.0.2.2", "", "192.0.2.1,192.0.2.2", "!192.0.2.1", "$HOME_NET", "any",
    "[192.0.2.1,192.0.2.2]", "x" * 9000,
]
_NOT_TEXT = ["12345", "1.5", "true", "null", "[a.example, b.example]", "{a: 1}", "2024-01-01",
             "!!binary aGk="]
_GOOD = {"good.example": "good.example", "Bücher.Example.": "xn--bcher-kva.example",
         "_dmarc.example.org": "_dmarc.example.org", "a-b.example": "a-b.example",
         "a" * 63 + ".example": "a" * 63 + ".example",
         ".".join(["a" * 63] * 3) + "." + "b" * 61: ".".join(["a" * 63] * 3) + "." + "b" * 61,
         "198.51.100.7": "198.51.100.7", "2001:DB8::7": "2001:db8::7"}


def _quoted(value: str) -> str:
    return yaml.safe_dump(value, default_style='"', width=1_000_000).strip()


def _hostile_feed() -> tuple[bytes, list[int]]:
    """A feed with one value a line: the good ones, then every hostile one; and their lines."""
    rows = ["- name: " + _quoted("Hostile\nApp\x00" + "x" * 9000), "  type: stalkerware",
            "  c2:", "    domains:"]
    hostile_lines = []
    good_names = [v for v in _GOOD if ":" not in v and not v[0].isdigit()]
    good_ips = [v for v in _GOOD if v not in good_names]
    rows += [f"    - {_quoted(v)}" for v in good_names]
    for value in [*map(_quoted, _HOSTILE_NAMES), *_NOT_TEXT]:
        rows.append(f"    - {value}")
        hostile_lines.append(len(rows))
    rows += ["    ips:", *(f"    - {_quoted(v)}" for v in good_ips)]
    for value in [*map(_quoted, _HOSTILE_IPS), *_NOT_TEXT]:
        rows.append(f"    - {value}")
        hostile_lines.append(len(rows))
    return ("\n".join(rows) + "\n").encode(), hostile_lines


def test_hostile_feed_values_are_skipped_by_line_and_suricata_loads_the_rest(
        tmp_path, suricata) -> None:
    content, hostile_lines = _hostile_feed()
    assert len(hostile_lines) >= 90
    feed = load_echap(content, "hostile.yaml")
    assert {i.value for i in feed.indicators} == set(_GOOD.values())
    assert feed.rejected == len(hostile_lines)
    reported = {int(w.split(", line ")[1].split(":")[0]) for w in feed.warnings
                if ": skipped " in w}
    assert reported == set(hostile_lines)
    assert any("hostile.yaml, line 1: app name" in w for w in feed.warnings)
    assert all(len(w) < 400 for w in feed.warnings), "hostile values are cut in messages"
    rules = compile_rules(feed.indicators)
    result = _run_suricata(suricata, tmp_path, render_rules(rules))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(rules)} rules successfully loaded, 0 rules failed" in \
        result.stdout + result.stderr
