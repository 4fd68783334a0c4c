"""The device report's pictures in the docs, made from the demo capture by the real code.

``python -m sensor.reports.pictures docs/report`` writes ``device.en.png`` and
``device.fr.png``: the demo's phone, analysed with the scapy source and the
demo feed, rendered by ``sensor.reports.html`` and drawn by headless Chromium.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from sensor.analysis import AnalysisResult, analyze_capture
from sensor.command import run_command
from sensor.config import Config
from sensor.demo.scenario import PHONE, build_demo_capture, demo_feed_path
from sensor.demo.traffic import DEFAULT_START
from sensor.feeds.model import Feed
from sensor.messages import LANGUAGES, load_catalogue
from sensor.reports.browser import browser_screenshot
from sensor.reports.device_page import DevicePage, build_device_page
from sensor.reports.html import render_device_page
from sensor.reports.sources import capture_provenance
from sensor.wiring import build_engine, build_matcher, load_feeds, open_source

DEMO_GENERATED_AT = DEFAULT_START + 2 * 3600.0  # fixed, so the pictures do not change by themselves


def analyze_demo(workdir: Path) -> tuple[Path, list[Feed], AnalysisResult]:
    """The demo capture written in ``workdir``, its feeds, and its analysis by scapy."""
    config = Config()
    capture = build_demo_capture(workdir / "demo.pcap")
    feeds = load_feeds(config, [demo_feed_path()])
    result = analyze_capture(capture, open_source("scapy", config),
                             build_engine(config, build_matcher(feeds, config)))
    return capture, feeds, result


def demo_device_page(workdir: Path) -> DevicePage:
    """The page of the demo's phone (the DemoSpy stalkerware), from a real analysis."""
    capture, feeds, result = analyze_demo(workdir)
    provenance = capture_provenance(Config(), Path(capture.name), feeds, DEMO_GENERATED_AT)
    return build_device_page(result.alerts, PHONE, provenance)


def render_pictures(directory: Path) -> list[Path]:
    """``device.<lang>.png`` for each language in ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="veilleuse-report-") as workdir:
        page = demo_device_page(Path(workdir))
        for language in LANGUAGES:
            html = Path(workdir) / f"device.{language}.html"
            html.write_text(render_device_page(page, load_catalogue(language)),
                            encoding="utf-8")
            written.append(browser_screenshot(html, directory / f"device.{language}.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    directory = Path(arguments[0]) if arguments else Path("docs/report")

    def render() -> int:
        for path in render_pictures(directory):
            print(path)
        return 0

    return run_command("veilleuse-report-pictures", render)


if __name__ == "__main__":
    sys.exit(main())
