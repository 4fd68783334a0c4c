"""The YAML configuration: defaults, the shipped file, and errors that name the line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sensor.config import Config, load_config
from sensor.config_docs import render_config_docs
from sensor.errors import ConfigError
from tests.conftest import REPO, alias_bomb


def test_shipped_config_is_valid_and_equals_the_defaults() -> None:
    assert load_config(REPO / "config" / "veilleuse.yaml") == Config()


def test_empty_file_gives_the_defaults(tmp_path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    assert load_config(path) == Config()


@pytest.mark.parametrize(("text", "line", "key", "message"), [
    ("site: demo\ndetection:\n  beacon:\n    min_conections: 3\n", 4,
     "detection.beacon.min_conections", "unknown key"),
    ("site: demo\nnetwork:\n  home_net:\n    - 10.0.0.0/8\n    - 300.1.1.1/8\n", 5,
     "network.home_net[1]", "not an IP network: '300.1.1.1/8'"),
    ("site: Demo Shelter\n", 1, "site", "lower-case letters"),
    ("language: de\n", 1, "language", "'fr' or 'en'"),
    ("feeds:\n  allowlist: ['not a name!']\n", 2, "feeds.allowlist[0]",
     "neither a domain name nor an IP network"),
    ("feeds:\n  sources:\n    - name: x\n      url: ftp://example.org/x\n", 4,
     "feeds.sources[0].url", "not an http(s) URL"),
    ("detection:\n  beacon:\n    score_threshold: 2\n", 3, "detection.beacon.score_threshold",
     "less than or equal to 1"),
    ("site: demo\nmqtt:\n  url: mqtt://127.0.0.1\n  url: mqtt://192.0.2.1\n", 4, "mqtt.url",
     "given twice in the same mapping"),
])
def test_invalid_config_names_line_and_key(tmp_path, text, line, key, message) -> None:
    path = tmp_path / "veilleuse.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.line, caught.value.key) == (line, key)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}, line {line}: key '{key}': ")


def test_yaml_syntax_error_names_the_line(tmp_path) -> None:
    path = tmp_path / "veilleuse.yaml"
    path.write_text("site: demo\nfeeds:\n  allowlist: [a.example\n")
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        load_config(path)
    assert caught.value.line == 4


def test_check_config_exits_0_or_2_with_the_line(tmp_path) -> None:
    good = subprocess.run([sys.executable, "-m", "sensor", "check-config",
                           str(REPO / "config" / "veilleuse.yaml")], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    bad_path = tmp_path / "bad.yaml"
    bad_path.write_text("site: demo\nsensr: box1\n")
    bad = subprocess.run([sys.executable, "-m", "sensor", "check-config", str(bad_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (f"veilleuse: error: {bad_path}, line 2: key 'sensr': unknown "
                                  "key (a typo?); see docs/configuration.md for the valid keys")


def test_configuration_reference_is_up_to_date() -> None:
    assert (REPO / "docs" / "configuration.md").read_text() == render_config_docs(), \
        "regenerate it: veilleuse config-docs > docs/configuration.md"


@pytest.mark.timeout(10)
def test_an_alias_bomb_is_refused_at_its_first_alias(tmp_path) -> None:
    path = tmp_path / "veilleuse.yaml"
    path.write_bytes(alias_bomb())
    with pytest.raises(ConfigError, match=r"aliases and anchors are not allowed \(found \*a\)") \
            as caught:
        load_config(path)
    assert caught.value.line == 2
