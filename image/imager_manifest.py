"""Write the Raspberry Pi Imager manifest (an ``os_list`` JSON) for a built image.

Imager shows the entry under "Use custom" when given the manifest's address, checks
the download and the written card against the two SHA-256 sums, and offers its own
customisation (user, SSH key, host name, Wi-Fi) because ``init_format`` says the image
runs Raspberry Pi OS's first-boot script under systemd.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import sys
from datetime import UTC, datetime
from pathlib import Path

CHUNK = 1 << 20


def manifest(image: Path, version: str, url: str | None = None) -> dict:
    """The manifest of ``image`` (an .img.xz): sizes and sums of the file and its content."""
    download, extracted = hashlib.sha256(), hashlib.sha256()
    extract_size = 0
    with image.open("rb") as compressed:
        for chunk in iter(lambda: compressed.read(CHUNK), b""):
            download.update(chunk)
    with lzma.open(image) as content:
        for chunk in iter(lambda: content.read(CHUNK), b""):
            extracted.update(chunk)
            extract_size += len(chunk)
    built = datetime.fromtimestamp(image.stat().st_mtime, UTC)
    return {"os_list": [{
        "name": f"Veilleuse {version}",
        "description": "Network sensor for shelters: spots stalkerware traffic on a "
                       "mirrored switch port (Raspberry Pi 4 and 5, 64-bit).",
        "url": url or image.name,
        "release_date": built.strftime("%Y-%m-%d"),
        "image_download_size": image.stat().st_size,
        "image_download_sha256": download.hexdigest(),
        "extract_size": extract_size,
        "extract_sha256": extracted.hexdigest(),
        "init_format": "systemd",
        "devices": ["pi5-64bit", "pi4-64bit"],
    }]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path, help="the built .img.xz")
    parser.add_argument("--version", required=True)
    parser.add_argument("--url", help="where the image will be downloaded from "
                                      "(default: its file name, beside the manifest)")
    arguments = parser.parse_args(argv)
    json.dump(manifest(arguments.image, arguments.version, arguments.url), sys.stdout,
              indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
