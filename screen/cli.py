"""``veilleuse-screen``: run the status screen, or render its pages as PNG pictures."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from PIL import Image, ImageDraw

from screen.display import HEIGHT, WIDTH, DisplayUnavailable, create_display
from screen.model import ScreenState
from screen.pages import View, load_fonts, render
from screen.samples import NETWORK, samples
from sensor.command import run_command
from sensor.config import DEFAULT_CONFIG_PATH, Config, load_config
from sensor.messages import LANGUAGES, load_catalogue

log = logging.getLogger("veilleuse.screen")


def render_picture(state: ScreenState, view: View, language: str) -> Image.Image:
    """One page as a 1-bit 128x64 image, drawn by the same code as the OLED."""
    image = Image.new("1", (WIDTH, HEIGHT))
    render(ImageDraw.Draw(image), state, view, load_catalogue(language, "screen.locales"),
           load_fonts(), NETWORK)
    return image


def render_docs(directory: Path, scale: int = 3) -> list[Path]:
    """Every sample page in every language, at 1:1 (golden) and enlarged (README)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for language in LANGUAGES:
        for name, (state, view) in samples().items():
            image = render_picture(state, view, language)
            path = directory / f"{name}.{language}.png"
            image.save(path, optimize=True)
            image.resize((WIDTH * scale, HEIGHT * scale), Image.Resampling.NEAREST).save(
                directory / f"{name}.{language}.x{scale}.png", optimize=True)
            written.append(path)
    return written


def _config(path: Path | None) -> Config:
    if path is not None:
        return load_config(path)
    return load_config(DEFAULT_CONFIG_PATH) if DEFAULT_CONFIG_PATH.exists() else Config()


def run(config: Config) -> int:
    from screen.app import ScreenApp, ScreenSettings
    from screen.controls import Controls
    from sensor.wire.broker import local_settings
    from sensor.wire.topics import Topics

    settings = config.screen
    problem = None
    try:
        display = create_display(settings.driver, i2c_port=settings.i2c_port,
                                 i2c_address=settings.i2c_address, rotation=settings.rotation,
                                 contrast=settings.contrast)
    except DisplayUnavailable as error:
        display, problem = None, str(error)
        log.warning("running without a display: %s", error)
    topics = Topics(site=config.site, sensor=config.sensor, prefix=config.mqtt.topic_prefix)
    app = ScreenApp(topics, load_catalogue(config.language, "screen.locales"),
                    load_fonts(), display, ScreenSettings(
                        reveal_seconds=settings.reveal_seconds,
                        blank_after_seconds=settings.blank_after_seconds),
                    follow_site=settings.follow == "site")
    try:
        app.controls = Controls(settings.button_pin, settings.led_pin, app.gesture)
    except Exception as error:  # noqa: BLE001 - gpiozero raises many kinds when there is no GPIO
        log.warning("running without button and LED: %s", error)
    app.connect(local_settings(config, role="screen"), problem)  # the box's own broker
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        app.run(stop)
    finally:
        app.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="veilleuse-screen", description=__doc__)
    parser.add_argument("--config", type=Path, help="configuration file")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="show the sensor's state on the OLED")
    docs = commands.add_parser("render-docs", help="render every page as PNG pictures")
    docs.add_argument("directory", type=Path, nargs="?", default=Path("docs/screen"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    def act() -> int:
        if args.command == "render-docs":
            for path in render_docs(args.directory):
                print(path)
            return 0
        return run(_config(args.config))

    return run_command("veilleuse-screen", act)


if __name__ == "__main__":
    sys.exit(main())
