"""Open a report in headless Chromium: its DOM as the browser built it, or a picture of it.

For the tests (is the page right once a real browser has parsed it?) and
for the pictures in the docs. Not the sensor's job at run time: the box has
no browser; an advocate opens the page on her own computer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

from sensor.errors import VeilleuseError

BROWSER_NAMES = ("chromium", "chromium-browser")
WHITE = (255, 255, 255)


class BrowserMissing(VeilleuseError):
    """Headless Chromium is not installed."""


def find_chromium() -> str:
    """The Chromium program's path; BrowserMissing says what to install."""
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise BrowserMissing("chromium was not found on PATH; install it (apt-get install "
                         "chromium; scripts/setup.sh does)")


def _run(page: Path, *options: str, timeout: float = 120.0) -> str:
    """Chromium headless on ``page``, with a throw-away profile; its standard output."""
    with tempfile.TemporaryDirectory(prefix="veilleuse-chromium-") as profile:
        command = [find_chromium(), "--headless", "--disable-gpu", "--hide-scrollbars",
                   "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
                   *(["--no-sandbox"] if os.geteuid() == 0 else []),  # refused as root
                   *options, page.resolve().as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    if done.returncode != 0:
        raise VeilleuseError(f"chromium failed on {page} (exit {done.returncode}): "
                             f"{done.stderr.strip()[-500:]}")
    return done.stdout


def browser_dom(page: Path) -> str:
    """The page's DOM after Chromium parsed it (and ran any script, were there one)."""
    return _run(page, "--dump-dom")


def browser_screenshot(page: Path, picture: Path, width: int = 900,
                       height: int = 4000) -> Path:
    """A PNG of the page as Chromium draws it, ``width`` wide, cut below its last content.

    Headless Chromium draws only its window: the window is made taller than
    the page, and the white below the content is trimmed off.
    """
    _run(page, f"--window-size={width},{height}", f"--screenshot={picture.resolve()}")
    with Image.open(picture) as drawn:
        image = drawn.convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, WHITE)).getbbox()
    if box is not None:
        image = image.crop((0, 0, width, min(height, box[3] + 24)))
    image.quantize(256).save(picture, optimize=True)  # a third of the size, same look
    return picture
