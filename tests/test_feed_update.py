"""`veilleuse feeds update` against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sensor.config import Config, FeedsConfig, FeedSource
from sensor.demo.traffic import DEFAULT_START, Traffic
from sensor.feeds.store import FeedStore
from sensor.feeds.update import UpdateStatus, make_http_pool, update_feeds
from sensor.wiring import load_feeds
from tests.conftest import alias_bomb
from tests.feedfiles import echap_style_stix, misp_attribute, misp_event

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SMALL = b"- name: X\n  type: stalkerware\n  c2:\n    domains: [a.example]\n"


class Routes:
    """path -> list of (status, body) answered in turn (the last one repeats)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, bytes]]] = {}
        self.hits: dict[str, int] = {}


@pytest.fixture
def server() -> Iterator[tuple[str, Routes]]:
    routes = Routes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            routes.hits[self.path] = routes.hits.get(self.path, 0) + 1
            answers = routes.answers.get(self.path, [(404, b"not found")])
            status, body = answers.pop(0) if len(answers) > 1 else answers[0]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    httpd.shutdown()
    thread.join(timeout=5)


def _config(base: str, tmp_path) -> FeedsConfig:
    return FeedsConfig(directory=tmp_path / "feeds",
                       sources=(FeedSource(name="stalkerware", url=f"{base}/ioc.yaml"),))


def _update(config: FeedsConfig):
    return update_feeds(FeedStore(config.directory), config.sources, NOW,
                        min_size_ratio=config.min_size_ratio,
                        pool=make_http_pool(retries=2, backoff=0.01, timeout=5))


def test_update_installs_then_keeps_the_previous_copy(server, tmp_path, echap_files) -> None:
    base, routes = server
    real = echap_files[0].read_bytes()
    routes.answers["/ioc.yaml"] = [(200, real)]
    config = _config(base, tmp_path)
    assert [o.status for o in _update(config)] == [UpdateStatus.UPDATED]
    store = FeedStore(config.directory)
    info = store.info("stalkerware")
    assert info.indicators > 1500 and info.downloaded == NOW
    assert store.feed_path("stalkerware").read_bytes() == real

    assert [o.status for o in _update(config)] == [UpdateStatus.UNCHANGED]
    bigger = real + b"\n- name: Extra\n  type: stalkerware\n  c2:\n    domains: [x.example]\n"
    routes.answers["/ioc.yaml"] = [(200, bigger)]
    assert [o.status for o in _update(config)] == [UpdateStatus.UPDATED]
    assert store.feed_path("stalkerware").read_bytes() == bigger
    assert (config.directory / "stalkerware.yaml.prev").read_bytes() == real


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("answer", "status", "message"), [
    ((200, SMALL), UpdateStatus.REFUSED, "under 50% of the"),
    ((200, b"[]\n"), UpdateStatus.REFUSED, "holds no indicator"),
    ((200, b"- name: [broken\n"), UpdateStatus.FAILED, "not valid YAML"),
    ((404, b"gone"), UpdateStatus.FAILED, "HTTP 404"),
    ((200, alias_bomb(feed=True)), UpdateStatus.FAILED,
     "line 6: YAML aliases and anchors are not allowed"),
])
def test_a_bad_download_never_replaces_the_good_copy(server, tmp_path, echap_files, answer,
                                                      status, message) -> None:
    base, routes = server
    real = echap_files[0].read_bytes()
    routes.answers["/ioc.yaml"] = [(200, real)]
    config = _config(base, tmp_path)
    _update(config)
    routes.answers["/ioc.yaml"] = [answer]
    (outcome,) = _update(config)
    assert outcome.status is status
    assert message in outcome.message
    assert FeedStore(config.directory).feed_path("stalkerware").read_bytes() == real


def test_transient_server_errors_are_retried(server, tmp_path) -> None:
    base, routes = server
    routes.answers["/ioc.yaml"] = [(503, b"busy"), (503, b"busy"), (200, SMALL)]
    (outcome,) = _update(_config(base, tmp_path))
    assert outcome.status is UpdateStatus.UPDATED
    assert routes.hits["/ioc.yaml"] == 3


def test_unreachable_server_fails_with_the_reason(tmp_path) -> None:
    config = FeedsConfig(directory=tmp_path,
                         sources=(FeedSource(name="x", url="http://127.0.0.1:9/ioc.yaml"),))
    (outcome,) = _update(config)
    assert outcome.status is UpdateStatus.FAILED
    assert "download failed" in outcome.message



def _misp_feed(count: int) -> bytes:
    return misp_event("Stalkerware C2 seen by the helpline", [
        misp_attribute("domain", f"c2-{n}.spy.example") for n in range(count)])


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("feed_format", "path", "suffix"), [
    ("stix2", "/stalkerware.stix2", ".stix2.json"),
    ("misp", "/events/5f1c.json", ".misp.json"),
])
def test_stix_and_misp_sources_install_atomically_and_refuse_truncation(
        server, tmp_path, echap_files, feed_format, path, suffix) -> None:
    base, routes = server
    if feed_format == "stix2":
        first = echap_style_stix(echap_files[0].parent / "network.csv")
        bundle = json.loads(first)
        second = json.dumps({**bundle, "objects": bundle["objects"][:-3]}).encode()
        truncated = json.dumps({**bundle, "objects": bundle["objects"][:300]}).encode()
    else:
        first, second, truncated = _misp_feed(200), _misp_feed(199), _misp_feed(40)
    config = FeedsConfig(directory=tmp_path / "feeds", sources=(
        FeedSource(name="helpline", url=f"{base}{path}", format=feed_format),))
    store = FeedStore(config.directory)

    routes.answers[path] = [(200, first)]
    assert [o.status for o in _update(config)] == [UpdateStatus.UPDATED]
    installed = config.directory / f"helpline{suffix}"
    assert installed.read_bytes() == first
    version = store.info("helpline").version
    assert store.info("helpline").format == feed_format
    # What the running sensor reloads from: the store's feeds, read in their format.
    (feed,) = load_feeds(Config(feeds=config))
    assert feed.indicator_count == store.info("helpline").indicators > 150

    routes.answers[path] = [(200, second)]
    assert [o.status for o in _update(config)] == [UpdateStatus.UPDATED]
    assert installed.read_bytes() == second
    assert (config.directory / f"helpline{suffix}.prev").read_bytes() == first
    assert store.info("helpline").version != version  # the daemon's cue to reload

    for answer, status, message in [(truncated, UpdateStatus.REFUSED, "under 50% of the"),
                                     (second[:len(second) // 2], UpdateStatus.FAILED,
                                      "not valid JSON")]:
        routes.answers[path] = [(200, answer)]
        (outcome,) = _update(config)
        assert (outcome.status, message in outcome.message) == (status, True), outcome.message
        assert installed.read_bytes() == second
    assert sorted(p.name for p in config.directory.iterdir()) == [
        "helpline.json", f"helpline{suffix}", f"helpline{suffix}.prev"]


def test_a_source_switched_to_stix_keeps_its_yaml_until_the_stix_installs(
        server, tmp_path, echap_files) -> None:
    base, routes = server
    routes.answers["/ioc.yaml"] = [(200, echap_files[0].read_bytes())]
    routes.answers["/ioc.stix2"] = [(404, b"not yet")]
    config = _config(base, tmp_path)
    _update(config)
    switched = FeedsConfig(directory=config.directory, sources=(
        FeedSource(name="stalkerware", url=f"{base}/ioc.stix2", format="stix2"),))
    assert [o.status for o in _update(switched)] == [UpdateStatus.FAILED]
    (feed,) = load_feeds(Config(feeds=switched))
    assert feed.indicator_count > 1500  # still the YAML copy, read as YAML

    routes.answers["/ioc.stix2"] = [(200, echap_style_stix(echap_files[0].parent /
                                                           "network.csv"))]
    assert [o.status for o in _update(switched)] == [UpdateStatus.UPDATED]
    (feed,) = load_feeds(Config(feeds=switched))
    assert FeedStore(config.directory).info("stalkerware").format == "stix2"
    assert {i.category.value for i in feed.indicators} == {"c2"}


def test_a_feeds_warnings_are_said_at_install_and_not_at_each_analysis(
        server, tmp_path, echap_files, caplog) -> None:
    """ioc.yaml has four quirks: said once by `feeds update`, listed by `feeds status`."""
    base, routes = server
    routes.answers["/ioc.yaml"] = [(200, echap_files[0].read_bytes())]
    config = _config(base, tmp_path)
    with caplog.at_level(logging.WARNING):
        (outcome,) = _update(config)
    said = [r.getMessage() for r in caplog.records if r.name == "sensor.feeds.update"
            and r.levelno == logging.WARNING]
    assert len(said) == 4 and "app 'MobiStealth' lists c2.ip; read as c2.ips" in said[0]
    assert "4 warning(s) about its contents, listed by `veilleuse feeds status`" \
        in outcome.message
    assert FeedStore(config.directory).info("stalkerware").warnings == tuple(said)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert [o.status for o in _update(config)] == [UpdateStatus.UNCHANGED]
    assert not caplog.records  # the same version is not said again

    path = tmp_path / "veilleuse.yaml"
    path.write_text(f"feeds:\n  directory: {config.directory}\n  sources:\n"
                    f"    - name: stalkerware\n      url: {base}/ioc.yaml\n")
    capture = Traffic()
    capture.dns(DEFAULT_START, "192.168.1.10", "192.168.1.1", "copy9.com")
    capture.write(tmp_path / "one.pcap")
    analysis = _veilleuse("--config", str(path), "analyze", "--source", "scapy",
                          "--format", "jsonl", str(tmp_path / "one.pcap"))
    assert analysis.returncode == 0, analysis.stderr
    assert json.loads(analysis.stdout)["indicator"] == "copy9.com"
    assert analysis.stderr == ""
    status = _veilleuse("--config", str(path), "feeds", "status")
    assert [line for line in status.stdout.splitlines() if line.startswith("  warning: ")] == [
        f"  warning: {warning}" for warning in said]


def test_the_demo_feed_has_nothing_to_say() -> None:
    result = _veilleuse("demo", "--source", "scapy", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def _veilleuse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, timeout=120, check=False)
