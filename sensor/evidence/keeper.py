"""Keep the evidence of high alerts: cut the packets, bundle, encrypt, store, under the caps.

Used by ``veilleuse analyze`` (the packets come from the capture analysed)
and by the live sensor (from Suricata's pcap ring in RAM, see
docs/evidence.md). Without a recipient key nothing is kept, and that is
said once. A bundle that fails (no ``age``, the store full) is logged and
counted; the alert itself is never held back by its evidence.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

from sensor.alerts.pseudonym import Pseudonymizer
from sensor.config import EvidenceConfig
from sensor.detect.model import Alert, AlertKind, Severity
from sensor.evidence.bundle import (
    MANIFEST,
    ClockState,
    EvidenceError,
    bundle_files,
    encrypt,
    pack,
)
from sensor.evidence.store import EvidenceStore, StoredEvidence
from sensor.evidence.window import Records, cut_windows
from sensor.report import alert_record, all_catalogues

log = logging.getLogger(__name__)

MEGABYTE = 1_000_000


def needs_evidence(alert: Alert) -> bool:
    """High alerts get evidence (the sensor's own self-test never does)."""
    return alert.severity is Severity.HIGH and alert.kind is not AlertKind.SELFTEST


class EvidenceKeeper:
    """Turns high alerts and the capture files that hold their packets into kept bundles.

    ``clock_synchronised`` is asked once per batch (the box's clock when the
    bundles are made); ``failures`` counts bundles not kept (each is logged at
    ERROR; ``veilleuse analyze`` prints the count).
    """

    def __init__(self, config: EvidenceConfig, *, pseudonyms: Pseudonymizer | None,
                 wall_clock: Callable[[], float],
                 clock_synchronised: Callable[[], bool]) -> None:
        self.config = config
        self.store = EvidenceStore(config.directory)
        self._pseudonyms = pseudonyms
        self._wall_clock = wall_clock
        self._clock_synchronised = clock_synchronised
        self._said_disabled = False
        self.failures = 0

    @property
    def is_enabled(self) -> bool:
        """Evidence is kept only when a helpline key is configured."""
        return bool(self.config.recipients)

    def is_keeping(self) -> bool:
        """``is_enabled``; when not, says once (WARNING) that no evidence is kept."""
        if not self.is_enabled and not self._said_disabled:
            log.warning("evidence: no helpline key (evidence.recipients) is configured, so no "
                        "packets are kept for high alerts; see docs/evidence.md")
            self._said_disabled = True
        return self.is_enabled

    def keep(self, alerts: Iterable[Alert], records: Records,
             feeds: Mapping[str, str]) -> list[StoredEvidence]:
        """Bundle the high ones among ``alerts`` from the packets ``records()`` reads."""
        wanted = [alert for alert in alerts if needs_evidence(alert)]
        if not wanted:
            return []
        if not self.is_keeping():
            return []
        windows = cut_windows(records, wanted, window=self.config.window_seconds,
                              max_bytes=int(self.config.max_alert_megabytes * MEGABYTE))
        now = self._wall_clock()
        created = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        box_clock = self._clock_synchronised()
        catalogues = all_catalogues()
        kept = []
        for alert, window in zip(wanted, windows, strict=True):
            if window.packets == 0:
                log.info("evidence: no packet of alert %s is left to keep (the capture, or "
                         "the ring in RAM, holds none)", alert.id)
                continue
            clock = ClockState(alert.clock_synchronised, box_clock, created)
            files = bundle_files(window, alert_record(alert, catalogues), feeds, clock)
            try:
                ciphertext = encrypt(pack(alert.id, files, now), self.config.recipients)
                entry = self.store.put(
                    alert_id=alert.id, outgoing_id=self._outgoing_id(alert.id), created=now,
                    manifest_sha256=hashlib.sha256(files[MANIFEST]).hexdigest(),
                    packets=window.packets, truncated=window.truncated, ciphertext=ciphertext,
                    max_total_bytes=int(self.config.max_total_megabytes * MEGABYTE))
            except (EvidenceError, OSError) as error:
                self.failures += 1
                log.error("evidence: %s", error)
                continue
            log.info("evidence: kept %d packet(s) of alert %s (%d bytes encrypted%s) in %s",
                     entry.packets, alert.id, entry.size,
                     ", cut at the per-alert cap" if entry.truncated else "",
                     self.store.directory)
            kept.append(entry)
        return kept

    def _outgoing_id(self, alert_id: str) -> str:
        return alert_id if self._pseudonyms is None else self._pseudonyms.alert_id(alert_id)

    def announcement(self, alert_id: str) -> dict[str, object] | None:
        """What an alert's payload says of its evidence (size, digest), or None."""
        entry = self.store.get(alert_id)
        return None if entry is None else entry.announcement()
