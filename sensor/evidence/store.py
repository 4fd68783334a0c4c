"""Where encrypted bundles live: one ``<alert id>.tar.age`` each, with a small clear index file.

The index file (``<alert id>.json``) holds only what may be announced or
listed without the helpline's key: ids, size, SHA-256 digests, packet count,
creation time. Writes go to a temporary file renamed into place, so a power
cut leaves the old bundle or the new one, never half of one. Non-job:
making bundles (``bundle``); retention's clock rule is ``sensor.alerts.retention``'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from sensor.alerts.retention import apply_retention
from sensor.evidence.bundle import EvidenceError

log = logging.getLogger(__name__)

SUFFIX = ".tar.age"
_ID = re.compile(r"^[0-9a-f]{20}$")


class EvidenceStoreFull(EvidenceError):
    """A bundle would take the store past its size cap: it is not kept."""


@dataclass(frozen=True, slots=True)
class StoredEvidence:
    """What is known, in clear, of one kept bundle."""

    alert_id: str
    outgoing_id: str  # the alert's id as it leaves the box (pseudonymous unless opted out)
    created: float  # UNIX seconds, the box's clock
    size: int  # bytes of the encrypted bundle
    sha256: str  # of the encrypted bundle: what MQTT announces
    manifest_sha256: str  # of SHA256SUMS inside it
    packets: int
    truncated: bool

    def __post_init__(self) -> None:
        for name in ("alert_id", "outgoing_id"):
            if not _ID.match(getattr(self, name)):
                raise ValueError(f"{name} {getattr(self, name)!r} is not an alert id")
        if self.size < 0 or self.packets < 0:
            raise ValueError("size and packets are counts")

    def announcement(self) -> dict[str, object]:
        """What MQTT may say of it: that it exists, its size and digest."""
        return {"size": self.size, "sha256": self.sha256}


class EvidenceStore:
    """The bundles in ``directory`` (created 0700 on first write)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _bundle(self, alert_id: str) -> Path:
        return self.directory / f"{alert_id}{SUFFIX}"

    def _index(self, alert_id: str) -> Path:
        return self.directory / f"{alert_id}.json"

    def entries(self) -> list[StoredEvidence]:
        """Every kept bundle, oldest first; an index file that cannot be read is skipped."""
        if not self.directory.is_dir():
            return []
        found = []
        for index in sorted(self.directory.glob("*.json")):
            try:
                entry = StoredEvidence(**json.loads(index.read_text()))
            except (OSError, ValueError, TypeError) as error:
                log.warning("evidence: %s unreadable (%s); skipped", index, error)
                continue
            if self._bundle(entry.alert_id).exists():
                found.append(entry)
        return sorted(found, key=lambda entry: (entry.created, entry.alert_id))

    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.entries())

    def get(self, alert_id: str) -> StoredEvidence | None:
        """The bundle of this alert (its id on the box), reading its index file alone.

        What the alert queue asks for every alert it stores: one small read.
        """
        if not _ID.match(alert_id):
            return None
        try:
            entry = StoredEvidence(**json.loads(self._index(alert_id).read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as error:
            log.warning("evidence: %s unreadable (%s)", self._index(alert_id), error)
            return None
        return entry if self._bundle(alert_id).exists() else None

    def find(self, alert_id: str) -> StoredEvidence | None:
        """The bundle of this alert, by its id on the box or as it left the box."""
        for entry in self.entries():
            if alert_id in (entry.alert_id, entry.outgoing_id):
                return entry
        return None

    def put(self, *, alert_id: str, outgoing_id: str, created: float, manifest_sha256: str,
            packets: int, truncated: bool, ciphertext: bytes,
            max_total_bytes: int) -> StoredEvidence:
        """Keep ``ciphertext``, replacing this alert's older bundle; EvidenceStoreFull: no room."""
        entry = StoredEvidence(alert_id=alert_id, outgoing_id=outgoing_id, created=created,
                               size=len(ciphertext), sha256=hashlib.sha256(ciphertext).hexdigest(),
                               manifest_sha256=manifest_sha256, packets=packets,
                               truncated=truncated)
        previous = self.find(entry.alert_id)
        used = self.total_bytes() - (previous.size if previous else 0)
        if used + entry.size > max_total_bytes:
            raise EvidenceStoreFull(
                f"evidence of alert {entry.alert_id} ({entry.size} bytes) NOT KEPT: the "
                f"evidence store {self.directory} holds {used} of {max_total_bytes} bytes "
                "(evidence.max_total_megabytes); export and delete older bundles or raise "
                "the cap")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_atomically(self._bundle(entry.alert_id), ciphertext)
        _write_atomically(self._index(entry.alert_id),
                          json.dumps(asdict(entry), sort_keys=True).encode())
        return entry

    def export(self, alert_id: str, output: Path) -> StoredEvidence:
        """Copy the encrypted bundle to ``output``; EvidenceError if there is none."""
        entry = self.find(alert_id)
        if entry is None:
            raise EvidenceError(f"no evidence is kept for alert {alert_id} in "
                                f"{self.directory}; `veilleuse evidence list` shows what is")
        shutil.copyfile(self._bundle(entry.alert_id), output)
        return entry

    def purge(self, older_than: float) -> int:
        """Delete bundles created before ``older_than`` (UNIX seconds); how many were."""
        purged = 0
        for entry in self.entries():
            if entry.created < older_than:
                self._bundle(entry.alert_id).unlink(missing_ok=True)
                self._index(entry.alert_id).unlink(missing_ok=True)
                purged += 1
        return purged


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def apply_evidence_retention(directory: Path, retention_days: int, now: float,
                             clock_synchronised: bool) -> int | None:
    """Retention (``sensor.alerts.retention``) on the bundles of ``directory``, by their age."""
    return apply_retention(EvidenceStore(directory), retention_days, now, clock_synchronised,
                           what="evidence bundle(s) made")
