"""Offline analysis: one capture file, one source, the feeds, to a list of alerts.

This module wires the pieces together; it holds no detection logic itself.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sensor.alerts.book import AlertTotals
from sensor.capture.stats import SourceStats
from sensor.config import Config
from sensor.detect.beacon import BeaconDetector, BeaconSettings
from sensor.detect.encrypted_dns import EncryptedDnsDetector
from sensor.detect.engine import DetectionEngine
from sensor.detect.ioc import IocDetector
from sensor.detect.model import Alert
from sensor.devices.registry import DeviceRegistry
from sensor.errors import FeedError
from sensor.feeds.matcher import Allowlist, IndicatorMatcher
from sensor.feeds.model import Feed, Indicator
from sensor.feeds.store import FeedStore, load_feed_file
from sensor.observations import Observation

log = logging.getLogger(__name__)

SOURCE_NAMES = ("suricata", "tshark", "scapy")


class CaptureSource(Protocol):
    name: str
    stats: SourceStats

    def read(self, pcap: Path) -> Iterator[Observation]: ...


def open_source(name: str, config: Config) -> CaptureSource:
    """The named source; imported on demand (scapy alone costs tens of MB of memory)."""
    if name == "suricata":
        from sensor.capture.suricata import SuricataSource
        from sensor.suricata.config import SuricataSettings

        return SuricataSource(SuricataSettings(binary=config.suricata.binary,
                                               home_net=config.network.home_net))
    if name == "tshark":
        from sensor.capture.tshark import TsharkSource

        return TsharkSource()
    if name == "scapy":
        from sensor.capture.scapy_reader import ScapySource

        return ScapySource()
    raise ValueError(f"unknown source {name!r}; choose one of {', '.join(SOURCE_NAMES)}")


def make_allowlist(entries: Iterable[str]) -> Allowlist:
    domains, networks = [], []
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
            networks.append(entry)
        except ValueError:
            domains.append(entry)
    return Allowlist(domains, networks)


def load_feeds(config: Config, files: Sequence[Path] = (), *,
               required: bool = True) -> list[Feed]:
    """Feeds from ``files`` if given, else the installed ones; plus local indicators.

    The live sensor passes ``required=False``: a box fresh out of its box has no
    feed until its first update, and runs (degraded, ``feeds_stale``) until then.
    """
    if files:
        feeds = [load_feed_file(path) for path in files]
    else:
        store = FeedStore(config.feeds.directory)
        feeds = store.load([source.name for source in config.feeds.sources])
        if not feeds and required:
            raise FeedError(str(config.feeds.directory),
                            "no indicator feed is installed; run `veilleuse feeds update` "
                            "(needs internet access) or pass --feed FILE")
    feeds.extend(load_feed_file(path) for path in config.feeds.local)
    return feeds


def build_matcher(feeds: Sequence[Feed], config: Config,
                  extra: Sequence[Indicator] = ()) -> IndicatorMatcher:
    indicators = [indicator for feed in feeds for indicator in feed.indicators]
    return IndicatorMatcher([*indicators, *extra], make_allowlist(config.feeds.allowlist))


def build_engine(config: Config, matcher: IndicatorMatcher,
                 devices: DeviceRegistry | None = None) -> DetectionEngine:
    """The detectors the config asks for; ``devices`` carries learnt devices over a reload."""
    detection = config.detection
    detectors: list = [IocDetector(matcher, detection.resolved_ip_window_seconds)]
    if detection.encrypted_dns:
        addresses = detection.encrypted_dns_addresses
        detectors.append(EncryptedDnsDetector(matcher.allowlist) if addresses is None else
                         EncryptedDnsDetector(matcher.allowlist, addresses=addresses))
    detectors.append(BeaconDetector(
        config.network.home_net, matcher.allowlist,
        BeaconSettings(min_connections=detection.beacon.min_connections,
                       min_interval=detection.beacon.min_interval_seconds,
                       score_threshold=detection.beacon.score_threshold)))
    return DetectionEngine(detectors, DeviceRegistry() if devices is None else devices)


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    """The alerts of one capture and what it took to get them."""

    capture: Path
    source: str
    alerts: tuple[Alert, ...]
    records: int
    observations: int
    skipped: int
    detector_errors: int
    damaged: str | None = None
    """The capture is damaged: only the packets before the damage were analysed."""


def analyze_capture(capture: Path, source: CaptureSource,
                    engine: DetectionEngine) -> AnalysisResult:
    totals = AlertTotals()
    for observation in source.read(capture):
        totals.add(engine.observe(observation))
    totals.add(engine.flush())
    alerts = tuple(named_devices(totals.alerts(), engine.devices))
    log.info("analysed %s with %s: %d records, %d observations, %d skipped, %d alerts",
             capture, source.name, source.stats.records, engine.observations,
             source.stats.skipped_total, len(alerts))
    return AnalysisResult(capture=capture, source=source.name, alerts=alerts,
                          records=source.stats.records, observations=engine.observations,
                          skipped=source.stats.skipped_total,
                          detector_errors=sum(engine.errors.values()),
                          damaged=source.stats.damaged)


def named_devices(alerts: Iterable[Alert], devices: DeviceRegistry | None) -> list[Alert]:
    """The alerts with their devices' identities as known now (a name learnt after the
    first sighting names every alert of the device)."""
    if devices is None:
        return list(alerts)
    return [dataclasses.replace(alert, identity=devices.identity(alert.device) or alert.identity)
            for alert in alerts]


def describe_feeds(feeds: Sequence[Feed]) -> str:
    return ", ".join(f"{feed.label} {feed.version[:8]} ({feed.indicator_count})"
                     for feed in feeds)


def feed_versions(feeds: Sequence[Feed]) -> dict[str, str]:
    """Feed label -> version, as the state topic and the health file show them."""
    return {feed.label: feed.version for feed in feeds}
