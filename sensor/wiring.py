"""Turn a ``Config`` into the sensor's objects: the one place that builds them.

Sources, feeds, matcher and detection engine, the alert book and its queue,
the MQTT connections, the live capture (Suricata supervised and its EVE
tail, or the scapy sniffer) and the live daemon itself are built here, from
the config, and handed to the modules that use them: those modules take
built objects rather than build their own from the config. Not the job of
this module: doing anything with them (``sensor.analysis`` analyses a
capture file, ``sensor.daemon.service`` runs the live loop).

What each builder needs is imported when it is called (scapy, pyshark,
paho, the feed parsers): the screen and ``veilleuse tail`` import this
module for their MQTT settings and load none of the detection code.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sensor.config import Config
from sensor.errors import FeedError
from sensor.suricata.config import SuricataSettings

if TYPE_CHECKING:
    from sensor.alerts.book import AlertBook
    from sensor.alerts.pseudonym import Pseudonymizer
    from sensor.analysis import CaptureSource
    from sensor.daemon.captures import LiveCapture
    from sensor.daemon.clock import ClockProbe
    from sensor.daemon.notify import SystemdNotifier
    from sensor.daemon.service import SensorDaemon
    from sensor.detect.engine import DetectionEngine
    from sensor.devices.registry import DeviceRegistry
    from sensor.evidence.keeper import EvidenceKeeper
    from sensor.feeds.matcher import Allowlist, IndicatorMatcher
    from sensor.feeds.model import Feed, Indicator
    from sensor.feeds.store import FeedStore
    from sensor.outputs.delivery import AlertQueue, Delivery, SensorOutputs
    from sensor.outputs.link import SensorLink
    from sensor.outputs.mqtt import MqttPublisher
    from sensor.wire.topics import Topics

SOURCE_NAMES = ("suricata", "tshark", "scapy")
LIVE_SOURCE_NAMES = ("suricata", "scapy")

# The live capture's EVE position is saved at most this often (and on stop): it lives in
# RAM (/run), but writing it at every turn was most of an idle sensor's CPU. A crash reads
# again what was handled after the last save (at-least-once), it skips nothing.
OFFSET_SAVE_EVERY = 2.0


# -- offline sources ---------------------------------------------------------------------


def open_source(name: str, config: Config) -> CaptureSource:
    """The named source; imported on demand (scapy alone costs tens of MB of memory)."""
    if name == "suricata":
        from sensor.capture.suricata import SuricataSource

        return SuricataSource(suricata_settings(config))
    if name == "tshark":
        from sensor.capture.tshark import TsharkSource

        return TsharkSource()
    if name == "scapy":
        from sensor.capture.scapy_reader import ScapySource

        return ScapySource()
    raise ValueError(f"unknown source {name!r}; choose one of {', '.join(SOURCE_NAMES)}")


def suricata_settings(config: Config) -> SuricataSettings:
    return SuricataSettings(binary=config.suricata.binary, home_net=config.network.home_net)


# -- feeds and detection -----------------------------------------------------------------


def feed_store(config: Config) -> FeedStore:
    from sensor.feeds.store import FeedStore

    return FeedStore(config.feeds.directory)


def make_allowlist(entries: Iterable[str]) -> Allowlist:
    from sensor.feeds.matcher import Allowlist

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
    from sensor.feeds.store import load_feed_file

    if files:
        feeds = [load_feed_file(path) for path in files]
    else:
        feeds = feed_store(config).load([source.name for source in config.feeds.sources])
        if not feeds and required:
            raise FeedError(str(config.feeds.directory),
                            "no indicator feed is installed; run `veilleuse feeds update` "
                            "(needs internet access) or pass --feed FILE")
    feeds.extend(load_feed_file(path) for path in config.feeds.local)
    return feeds


def build_matcher(feeds: Sequence[Feed], config: Config,
                  extra: Sequence[Indicator] = ()) -> IndicatorMatcher:
    from sensor.feeds.matcher import IndicatorMatcher

    indicators = [indicator for feed in feeds for indicator in feed.indicators]
    return IndicatorMatcher([*indicators, *extra], make_allowlist(config.feeds.allowlist))


def build_engine(config: Config, matcher: IndicatorMatcher,
                 devices: DeviceRegistry | None = None) -> DetectionEngine:
    """The detectors the config asks for; ``devices`` carries learnt devices over a reload."""
    from sensor.detect.beacon import BeaconDetector, BeaconSettings
    from sensor.detect.encrypted_dns import EncryptedDnsDetector
    from sensor.detect.engine import DetectionEngine
    from sensor.detect.ioc import IocDetector
    from sensor.devices.registry import DeviceRegistry

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
class DetectionBuilder:
    """Feeds to engine, for a daemon that builds its engine again on every feed update.

    ``feed_files`` are the files given on the command line (empty: the
    installed feeds); ``extra`` are indicators added to every feed version
    (the self-test's).
    """

    config: Config
    feed_files: tuple[Path, ...] = ()
    extra: tuple[Indicator, ...] = ()

    def load_feeds(self, *, required: bool = True) -> list[Feed]:
        return load_feeds(self.config, self.feed_files, required=required)

    def engine(self, feeds: Sequence[Feed],
               devices: DeviceRegistry | None = None) -> DetectionEngine:
        """``devices``: the registry of the engine this one replaces (devices carry over)."""
        return build_engine(self.config, build_matcher(feeds, self.config, self.extra), devices)

    def store(self) -> FeedStore:
        return feed_store(self.config)


# -- alerts and MQTT ---------------------------------------------------------------------


def open_alert_book(config: Config) -> AlertBook:
    from sensor.alerts.book import AlertBook

    return AlertBook(config.alerts.database)


def pseudonymizer(config: Config) -> Pseudonymizer | None:
    if config.privacy.device_ids == "address":
        return None
    from sensor.alerts.pseudonym import Pseudonymizer, load_or_create_secret

    return Pseudonymizer(load_or_create_secret(config.privacy.secret_file))


def alert_queue(config: Config, book: AlertBook,
                wall_clock: Callable[[], float] = time.time,
                clock_synchronised: ClockProbe | None = None) -> AlertQueue:
    """The queue that writes alerts, and the payloads that will leave the box, to ``book``."""
    from sensor.outputs.delivery import AlertQueue

    return AlertQueue(book, config, pseudonymizer(config), wall_clock, clock_synchronised)


def topics(config: Config) -> Topics:
    from sensor.wire.topics import Topics

    return Topics(site=config.site, sensor=config.sensor, prefix=config.mqtt.topic_prefix)


def publisher(config: Config, book: AlertBook, url: str | None = None,
              role: str = "sensor", link: SensorLink | None = None) -> MqttPublisher:
    """The core's publisher; ``link`` is what it asks for health, feeds and commands.

    Without a link (``veilleuse publish``, ``analyze --mqtt``) it publishes
    alerts only and announces no health of a live sensor.
    """
    from sensor.outputs.mqtt import MqttPublisher
    from sensor.wire.broker import mqtt_settings

    return MqttPublisher(mqtt_settings(config, url, role), topics(config), book, link)


def sensor_outputs(config: Config, book: AlertBook,
                   link: SensorLink | None = None) -> SensorOutputs:
    """The live sensor's core publisher, and its copy for the screen unless one broker is both."""
    from sensor.outputs.delivery import SensorOutputs
    from sensor.outputs.link import DeliveryOnly
    from sensor.outputs.local import LocalMirror
    from sensor.wire.broker import core_is_local, local_settings

    link = link or DeliveryOnly()
    core = publisher(config, book, link=link)
    local = None if core_is_local(config) else LocalMirror(
        local_settings(config, "sensor-local"), topics(config), core.state_message, link)
    return SensorOutputs(core, local)


def open_delivery(config: Config, link: SensorLink, wall_clock: Callable[[], float] = time.time,
                  clock_synchronised: ClockProbe | None = None) -> Delivery:
    """The live sensor's alert book, the queue into it and the connections out of it."""
    from sensor.outputs.delivery import Delivery

    book = open_alert_book(config)
    return Delivery(book, alert_queue(config, book, wall_clock, clock_synchronised),
                    sensor_outputs(config, book, link))


def evidence_keeper(config: Config, wall_clock: Callable[[], float] = time.time,
                    clock_synchronised: ClockProbe | None = None) -> EvidenceKeeper:
    """What keeps the encrypted evidence of high alerts (nothing without a helpline key)."""
    from sensor.daemon.clock import SystemClock
    from sensor.evidence.keeper import EvidenceKeeper

    return EvidenceKeeper(config.evidence, pseudonyms=pseudonymizer(config),
                          wall_clock=wall_clock,
                          clock_synchronised=clock_synchronised or SystemClock())


# -- the live sensor ---------------------------------------------------------------------


def live_capture(config: Config, source: str = "suricata",
                 wanted: Collection[type] | None = None) -> LiveCapture:
    """Suricata supervised on ``network.interface`` with its EVE file tailed, or the sniffer.

    Suricata's files and the EVE offset live in RAM (``daemon.runtime_directory``):
    the SD card is written only for the alert book, the feeds and the pseudonym
    key. A reboot loses both the file and its offset together, so nothing is
    read twice or skipped. ``wanted``: the observation types detection looks at
    (``DetectionEngine.observed_types``); EVE records of other types are not built.
    """
    if source == "suricata":
        from sensor.capture.eve_tail import EveTailer
        from sensor.daemon.captures import SuricataCapture
        from sensor.evidence.live import ring_file_count, suricata_ring
        from sensor.suricata.supervisor import SupervisorSettings, SuricataSupervisor

        workdir = config.daemon.runtime_directory / "suricata"
        # EVE holds who talked to whom: readable by the sensor alone.
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        ring = ring_file_count(config.evidence.ring_megabytes) if config.evidence.recipients \
            else 0  # no helpline key: no packet is ever written
        supervisor = SuricataSupervisor(SupervisorSettings(
            interface=config.network.interface, workdir=workdir,
            suricata=dataclasses.replace(suricata_settings(config), evidence_ring_files=ring)))
        tailer = EveTailer(supervisor.eve_path, workdir / "eve.offset",
                           save_every=OFFSET_SAVE_EVERY, wanted=wanted)
        return SuricataCapture(supervisor, tailer,
                               max_eve_bytes=config.daemon.max_eve_megabytes * 2**20,
                               evidence_records=suricata_ring(workdir))
    if source == "scapy":
        from sensor.capture.scapy_live import ScapyLiveSource
        from sensor.daemon.captures import LiteCapture
        from sensor.evidence.live import FrameRing

        frames = FrameRing(config.evidence.ring_megabytes * 2**20) \
            if config.evidence.recipients else None  # no helpline key: no packet is kept
        return LiteCapture(ScapyLiveSource(config.network.interface, ring=frames),
                           frames.records if frames else lambda: (lambda: iter(())))
    raise ValueError(f"unknown live source {source!r}; choose one of "
                     f"{', '.join(LIVE_SOURCE_NAMES)}")


def sensor_daemon(config: Config, *, source: str = "suricata",
                  feed_files: Sequence[Path] = (), notifier: SystemdNotifier | None = None,
                  clock: Callable[[], float] = time.monotonic,
                  wall_clock: Callable[[], float] = time.time,
                  clock_synchronised: ClockProbe | None = None) -> SensorDaemon:
    """``veilleuse run``: the live daemon with its capture, detection and delivery built.

    The alert book and the MQTT connections are opened by ``run`` (on the
    daemon's thread), through ``open_delivery``.
    """
    from sensor.daemon.clock import SystemClock
    from sensor.daemon.selftest import SELFTEST_INDICATOR, run_selftest
    from sensor.daemon.service import SensorDaemon

    probe = clock_synchronised or SystemClock()
    detection = DetectionBuilder(config, tuple(feed_files), (SELFTEST_INDICATOR,))
    # What detection looks at depends on the detectors the config enables, not on feeds.
    wanted = detection.engine([]).observed_types
    return SensorDaemon(
        config, live_capture(config, source, wanted), detection,
        lambda link: open_delivery(config, link, wall_clock, probe),
        lambda: run_selftest(config, lambda: open_alert_book(config)),
        evidence_keeper(config, wall_clock, probe),
        notifier=notifier, clock=clock, wall_clock=wall_clock, clock_synchronised=probe)
