"""Loading Echap-format feeds: the real files, and broken ones that must say where."""

from __future__ import annotations

import pytest

from sensor.errors import FeedError
from sensor.feeds.echap import load_echap
from tests.conftest import alias_bomb


def test_real_feeds_load_with_their_quirks_noted(echap_files) -> None:
    ioc = load_echap(echap_files[0].read_bytes(), "ioc.yaml")
    watchware = load_echap(echap_files[1].read_bytes(), "watchware.yaml")
    notes = "\n".join(ioc.warnings)
    assert ioc.app_count == 147 and watchware.app_count == 27
    assert ioc.indicator_count > 1500 and watchware.indicator_count > 50
    values = {i.value for i in ioc.indicators}
    assert {"72.167.46.196", "85.10.199.40"} <= values  # listed under the c2.ip spelling
    assert "app 'MobiStealth' lists c2.ip; read as c2.ips" in notes
    assert ioc.rejected == 2
    assert "line 4093: skipped [142].distribution[0]" in notes
    assert "is a URL; only domains and IPs can be matched on the wire" in notes


def test_version_changes_with_content_and_only_then(echap_files) -> None:
    content = echap_files[1].read_bytes()
    assert load_echap(content, "a").version == load_echap(content, "b").version
    assert load_echap(content + b"\n", "a").version != load_echap(content, "a").version


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    ("- name: X\n  type: stalkerware\n  c2:\n    domains: copy9.com\n", 4, "[0].c2.domains",
     "valid list"),
    ("- name: X\n  type: spyware\n", 2, "[0].type", "'stalkerware' or 'watchware'"),
    ("- name: X\n  type: stalkerware\n- type: watchware\n", 3, "[1].name", "Field required"),
    ("- name: X\n  type: [stalkerware\n", 3, None, "not valid YAML"),
    ("name: X\n", 1, None, "expected a list of apps"),
    ("- name: X\n  type: stalkerware\n  c2:\n    domains: [a.example]\n  c2: {}\n", 5, "[0].c2",
     "given twice in the same mapping"),
    ("- " + "[" * 70 + "]" * 70 + "\n", 1, None, "nested deeper than 64 levels"),
    ("- name: X\n  type: stalkerware\n  <<: {c2: {}}\n", 3, None, "merge keys (<<)"),
    ("- name: X\n  type: stalkerware\n---\n- name: Y\n", 3, None,
     "but found another document"),
    ("- !!python/object/apply:os.system ['true']\n", 1, None, "is not allowed here"),
    ("- name: !!python/name:os.system X\n  type: stalkerware\n", 1, None,
     "could not determine a constructor"),
    ("- name: X\n  type: stalkerware\n  {a: 1}: [b]\n", 3, None, "unhashable key"),
])
def test_broken_feed_names_line_and_key(text, line, key, message) -> None:
    with pytest.raises(FeedError) as caught:
        load_echap(text.encode(), "bad.yaml")
    assert caught.value.line == line
    assert caught.value.key == key
    assert message in str(caught.value)


def test_one_bad_value_is_skipped_not_the_feed() -> None:
    text = ("- name: X\n  type: stalkerware\n  c2:\n    domains:\n    - good.example\n"
            "    - 'bad name'\n    ips:\n    - 999.1.1.1\n")
    feed = load_echap(text.encode(), "x.yaml")
    notes = "\n".join(feed.warnings)
    assert [i.value for i in feed.indicators] == ["good.example"]
    assert feed.rejected == 2
    assert "x.yaml, line 6: skipped [0].c2.domains[1]" in notes
    assert "x.yaml, line 8: skipped [0].c2.ips[0]: not an IP address" in notes


def test_unknown_keys_are_reported_once() -> None:
    text = ("- name: X\n  type: stalkerware\n  telegram: [a]\n- name: Y\n  type: watchware\n"
            "  telegram: [b]\n")
    feed = load_echap(text.encode(), "x.yaml")
    notes = "\n".join(feed.warnings)
    assert feed.indicator_count == 0
    assert notes.count("unknown app keys ignored: telegram") == 1


@pytest.mark.timeout(10)
def test_an_alias_bomb_is_refused_at_its_first_alias() -> None:
    with pytest.raises(FeedError, match="aliases and anchors are not allowed") as caught:
        load_echap(alias_bomb(feed=True), "bomb.yaml")
    assert caught.value.line == 6
