"""Keyed pseudonyms for devices, so what leaves the box does not carry their addresses.

HMAC-SHA256 with a per-site secret: stable for a site (the core can follow a
device over time), meaningless elsewhere, and not reversible by trying every
private address, which a plain hash would be. Alert ids leave the box keyed
the same way, since the internal id is a hash of the device address.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from sensor.errors import VeilleuseError

SECRET_BYTES = 32


class PseudonymSecretError(VeilleuseError):
    """The pseudonym secret file is unreadable or too short."""


def load_or_create_secret(path: Path) -> bytes:
    """The site's secret; created (random, mode 0600) the first time."""
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(SECRET_BYTES)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return load_or_create_secret(path)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secret)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise PseudonymSecretError(f"{path}: cannot read the pseudonym secret "
                                   f"({error.strerror})") from None
    if len(secret) < 16:
        raise PseudonymSecretError(f"{path}: the pseudonym secret is shorter than 16 bytes; "
                                   "delete it to have a new one created")
    return secret


class Pseudonymizer:
    """Maps device addresses and alert ids to keyed, stable pseudonyms."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _digest(self, label: str, value: str) -> str:
        return hmac.new(self._secret, f"{label}|{value}".encode(), hashlib.sha256).hexdigest()

    def device(self, address: str) -> str:
        """``dev-`` and 12 hex digits (48 bits: collisions are negligible on one site)."""
        return "dev-" + self._digest("device", address)[:12]

    def alert_id(self, internal_id: str) -> str:
        return self._digest("alert", internal_id)[:20]
