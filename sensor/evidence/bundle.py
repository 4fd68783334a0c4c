"""One alert's evidence as a tar archive with a SHA-256 manifest, encrypted to age recipients.

The archive holds, under ``veilleuse-evidence-<alert id>/``: ``packets.pcap``
(the packet window), ``alert.json`` (the alert's record, unpseudonymized:
the bundle is for the helpline), ``feeds.json`` (the feed versions the
alert was found with), ``clock.json`` (whether its times can be trusted),
``evidence.json`` (how the packets were chosen) and ``SHA256SUMS``, the
manifest in ``sha256sum`` format (``sha256sum -c SHA256SUMS`` verifies every
file). Its own SHA-256 is kept beside the bundle and shown by
``veilleuse evidence list``.

Encryption is the ``age`` program (Debian's package ``age``), fed through a
pipe: the archive only exists in this process's memory, never in clear on
the disk. Why the program rather than the ``pyrage`` binding: it is the very
tool a helpline opens the bundle with (``age -d -i key.txt``), it comes with
Debian's security updates, and the sensor's virtualenv gains no compiled
wheel to lock and rebuild for arm64. The cost, a process per bundle, is
nothing at the rate of high alerts.
Non-job: choosing packets (``window``), where bundles live (``store``).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sensor.errors import VeilleuseError
from sensor.evidence.window import PacketWindow

MANIFEST = "SHA256SUMS"
AGE_TIMEOUT = 60.0


class EvidenceError(VeilleuseError):
    """Evidence could not be encrypted or stored."""


@dataclass(frozen=True, slots=True)
class ClockState:
    """Whether the times in a bundle can be trusted, as the sensor knew it."""

    alert_clock_synchronised: bool | None  # the alert's: None when times are a capture's
    box_clock_synchronised: bool  # the box's clock when the bundle was made
    created: str  # ISO 8601 UTC, by the box's clock

    def describe(self) -> dict[str, object]:
        return {"alert_clock_synchronised": self.alert_clock_synchronised,
                "box_clock_synchronised": self.box_clock_synchronised,
                "bundle_created": self.created,
                "meaning": "alert_clock_synchronised null: the alert's times are the capture "
                           "file's packet times; false: the live sensor's clock was not "
                           "synchronised (NTP) for at least one sighting, times may be wrong"}


def _json(value: object) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def bundle_files(window: PacketWindow, record: Mapping[str, object],
                 feeds: Mapping[str, str], clock: ClockState) -> dict[str, bytes]:
    """The bundle's files by name, the manifest last."""
    files = {"packets.pcap": window.pcap, "alert.json": _json(record),
             "feeds.json": _json(dict(feeds)), "clock.json": _json(clock.describe()),
             "evidence.json": _json(window.describe())}
    files[MANIFEST] = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n"
                              for name, data in files.items()).encode()
    return files


def pack(alert_id: str, files: Mapping[str, bytes], mtime: float) -> bytes:
    """A tar archive of ``files`` under ``veilleuse-evidence-<alert_id>/`` (modes 0600)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"veilleuse-evidence-{alert_id}/{name}")
            info.size, info.mtime, info.mode = len(data), int(mtime), 0o600
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def age_binary() -> str:
    """The age program; EvidenceError saying how to install it when absent."""
    found = shutil.which("age")
    if found is None:
        raise EvidenceError("the `age` program is not installed, so evidence cannot be "
                            "encrypted and none is kept; install it: apt install age")
    return found


def encrypt(plaintext: bytes, recipients: Sequence[str]) -> bytes:
    """``plaintext`` encrypted to every recipient (age's binary format), through a pipe."""
    if not recipients:
        raise EvidenceError("no age recipient: evidence is never kept in clear")
    command = [age_binary()]
    for recipient in recipients:
        command += ["-r", recipient]
    try:
        result = subprocess.run(command, input=plaintext, capture_output=True,
                                timeout=AGE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EvidenceError(f"age did not encrypt the evidence ({error})") from None
    if result.returncode != 0 or not result.stdout.startswith(b"age-encryption.org/"):
        raise EvidenceError("age refused to encrypt the evidence: "
                            f"{result.stderr.decode(errors='replace').strip()}")
    return result.stdout
