"""The YAML configuration: defaults, the shipped file, and errors that name the line."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

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
    ("feeds:\n  sources:\n    - name: x\n      url: 'https://exa mple.org/x'\n", 4,
     "feeds.sources[0].url", "holds spaces or control characters"),
    ("feeds:\n  sources:\n    - name: x\n      url: 'https:///x.yaml'\n", 4,
     "feeds.sources[0].url", "needs a host"),
    ("feeds:\n  sources:\n    - name: x\n      url: 'http://a.example:99999/x'\n", 4,
     "feeds.sources[0].url", "a port from 1 to 65535"),
    ("mqtt:\n  url: tcp://127.0.0.1:1883\n", 2, "mqtt.url", "not an mqtt(s) URL"),
    ("mqtt:\n  url: 'mqtt://:1883'\n", 2, "mqtt.url", "needs a host"),
    ("mqtt:\n  url: 'mqtts://broker.example:0'\n", 2, "mqtt.url", "a port from 1 to 65535"),
    ("mqtt:\n  url: 'mqtts://broker.example/topic'\n", 2, "mqtt.url", "has no path"),
    ("mqtt:\n  url: 'mqtt://broker.example:'\n", 2, "mqtt.url", "a port from 1 to 65535"),
    ("mqtt:\n  url: 'mqtt://[::1:1883'\n", 2, "mqtt.url", "needs a host"),
    ("mqtt:\n  url: 'mqtt://bro$ker:1883'\n", 2, "mqtt.url",
     "'bro$ker' is neither a host name nor an IP address"),
    ("mqtt:\n  url: 'mqtts://-core.lan:8883'\n", 2, "mqtt.url", "neither a host name"),
    ("mqtt:\n  url: 'mqtts://core..lan:8883'\n", 2, "mqtt.url", "neither a host name"),
    ("mqtt:\n  url: 'mqtt://192.168.1.300:1883'\n", 2, "mqtt.url", "neither a host name"),
    ("local_broker:\n  url: 'mqtt://127.0.0.1:1883x'\n", 2, "local_broker.url",
     "a port from 1 to 65535"),
    ("mqtt:\n  url: 'mqtt://box:secret@192.0.2.1'\n", 2, "mqtt.url",
     "password in clear text to 192.0.2.1; use mqtts://"),
    ("feeds:\n  max_age_days: true\n", 2, "feeds.max_age_days", "valid integer"),
    ("feeds:\n  max_age_days: '14'\n", 2, "feeds.max_age_days", "valid integer"),
    ("feeds:\n  min_size_ratio: true\n", 2, "feeds.min_size_ratio", "valid number"),
    ("detection:\n  beacon:\n    score_threshold: .nan\n", 3,
     "detection.beacon.score_threshold", "finite number"),
    ("detection:\n  encrypted_dns: 'no'\n", 2, "detection.encrypted_dns", "valid boolean"),
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


@pytest.mark.parametrize("url", ["mqtt://127.0.0.1:1883", "mqtts://core.example.org:8883",
                                 "mqtt://[::1]:1883", "mqtt://broker", "mqtts://my_broker.lan"])
def test_well_formed_broker_urls_pass(tmp_path, url) -> None:
    path = tmp_path / "veilleuse.yaml"
    path.write_text(f"mqtt:\n  url: '{url}'\n")
    assert load_config(path).mqtt.url == url


def test_check_config_refuses_a_malformed_mqtt_url(tmp_path) -> None:
    path = tmp_path / "veilleuse.yaml"
    path.write_text("site: demo\nmqtt:\n  url: 'mqtts://core..lan:8883'\n")
    bad = subprocess.run([sys.executable, "-m", "sensor", "check-config", str(path)],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"veilleuse: error: {path}, line 3: key 'mqtt.url': "
                                 "'mqtts://core..lan:8883': 'core..lan' is neither a host "
                                 "name nor an IP address")


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


def _scalar_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()):
    """(path, type) of every int, float or bool key of the schema, sections included."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _scalar_keys(annotation, (*prefix, name))
        elif {int, float, bool} & {annotation, *getattr(annotation, "__args__", ())}:
            yield (*prefix, name), annotation


@pytest.mark.parametrize("wrong", [True, "1"])
def test_no_number_or_flag_accepts_a_boolean_or_text(tmp_path, wrong) -> None:
    keys = list(_scalar_keys(Config))
    assert len(keys) > 15
    for path, annotation in keys:
        if annotation is bool and wrong is True:
            continue
        text = yaml.safe_dump(functools.reduce(lambda value, key: {key: value},
                                               reversed(path), wrong))
        config = tmp_path / "veilleuse.yaml"
        config.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_config(config)
        assert (caught.value.key, caught.value.line) == (".".join(path), len(path)), text


def _secret(tmp_path: Path, name: str, mode: int) -> Path:
    path = tmp_path / name
    path.write_text("secret\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize(("url", "key", "mode", "message"), [
    ("mqtt://127.0.0.1:1883", "password_file", 0o644,
     "is readable or writable by other users (mode 0644); run `chmod 600 "),
    ("mqtts://broker.example:8883", "key_file", 0o640, "(mode 0640); run `chmod 600 "),
    ("mqtt://192.0.2.1:1883", "password_file", 0o600,
     "plain mqtt:// would send this password in clear text to 192.0.2.1; use mqtts://"),
    ("mqtt://localhost:1883", "ca_file", 0o644,
     "TLS files are only used with mqtts://, but the broker URL is mqtt://localhost:1883"),
    ("mqtt://127.0.0.1:1883", "key_file", 0o600, "TLS files are only used with mqtts://"),
])
def test_mqtt_secrets_are_private_and_never_sent_in_clear(tmp_path, url, key, mode,
                                                          message) -> None:
    secret = _secret(tmp_path, "secret", mode)
    path = tmp_path / "veilleuse.yaml"
    path.write_text(f"site: demo\nmqtt:\n  url: {url}\n  {key}: {secret}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.line, caught.value.key) == (4, f"mqtt.{key}")
    assert message in str(caught.value)


def test_mqtt_secrets_are_accepted_where_they_are_safe(tmp_path) -> None:
    password = _secret(tmp_path, "password", 0o600)
    local = tmp_path / "local.yaml"
    local.write_text(f"mqtt:\n  url: mqtt://[::1]:1883\n  password_file: {password}\n")
    assert load_config(local).mqtt.password_file == password
    remote = tmp_path / "remote.yaml"
    remote.write_text(f"mqtt:\n  url: mqtts://broker.example:8883\n"
                      f"  password_file: {password}\n"
                      f"  ca_file: {_secret(tmp_path, 'ca.pem', 0o644)}\n"
                      f"  cert_file: {_secret(tmp_path, 'cert.pem', 0o644)}\n"
                      f"  key_file: {_secret(tmp_path, 'key.pem', 0o600)}\n")
    assert load_config(remote).mqtt.key_file == tmp_path / "key.pem"
    missing = tmp_path / "missing.yaml"
    missing.write_text(f"mqtt:\n  url: mqtts://broker.example\n  ca_file: {tmp_path}/nope\n")
    with pytest.raises(ConfigError, match=r"line 3: key 'mqtt\.ca_file': Path does not point"):
        load_config(missing)
