"""`veilleuse run`: the live sensor. Capture -> detection -> alert book -> MQTT, with health.

Suricata (supervised, EVE tailed) or the scapy lite source captures on the
mirror interface; detection, the book and the publisher are the same as
offline. Every loop turn the daemon handles new records, then at intervals
rescoring beacons, measuring drops and writing its health (a JSON file that
`veilleuse status` reads, the retained state topic, systemd's STATUS and the
watchdog ping). The loop is the only thread that touches the engine.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from sensor.alerts.book import AlertBook
from sensor.alerts.retention import apply_retention
from sensor.analysis import (
    build_engine,
    build_matcher,
    describe_feeds,
    feed_versions,
    load_feeds,
)
from sensor.capture.eve_tail import EveTailer, rotated_path
from sensor.capture.scapy_live import ScapyLiveSource
from sensor.config import Config
from sensor.daemon.clock import ClockProbe, SystemClock
from sensor.daemon.health import Health, HealthInputs, HealthThresholds, assess
from sensor.daemon.notify import SystemdNotifier
from sensor.daemon.passive import PassiveWatch
from sensor.daemon.selftest import (
    SELFTEST_DOMAIN,
    SELFTEST_INDICATOR,
    SelftestRunner,
    run_selftest,
)
from sensor.detect.model import Severity
from sensor.errors import VeilleuseError
from sensor.feeds.model import Feed
from sensor.feeds.store import FeedStore
from sensor.files import replace_file
from sensor.observations import DnsQuery, Observation
from sensor.outputs.delivery import AlertQueue, SensorOutputs, pseudonymizer
from sensor.outputs.mqtt import MqttPublisher
from sensor.suricata.config import SuricataSettings
from sensor.suricata.rules import compile_rules, render_rules
from sensor.suricata.supervisor import SupervisorSettings, SupervisorState, SuricataSupervisor

log = logging.getLogger(__name__)

HEALTH_EVERY = 2.0
HEALTH_FILE_MODE = 0o640       # the veilleuse group (admins over SSH) reads `veilleuse status`
RUNTIME_DIRECTORY_MODE = 0o750
BEACON_EVERY = 60.0
DROPS_EVERY = 30.0
RETENTION_EVERY = 3600.0


class SuricataCapture:
    """Suricata supervised on the interface, its EVE file tailed."""

    def __init__(self, config: Config, feeds: Sequence[Feed], workdir: Path) -> None:
        # EVE holds who talked to whom: readable by the sensor alone.
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.rules = workdir / "veilleuse.rules"
        self._write_rules(feeds)
        self.supervisor = SuricataSupervisor(SupervisorSettings(
            interface=config.network.interface, workdir=workdir,
            suricata=SuricataSettings(binary=config.suricata.binary,
                                      home_net=config.network.home_net),
            rule_files=(str(self.rules),)))
        self.tailer = EveTailer(self.supervisor.eve_path, workdir / "eve.offset")

    def _write_rules(self, feeds: Sequence[Feed]) -> None:
        text = render_rules(compile_rules(i for feed in feeds for i in feed.indicators),
                            header=", ".join(f"{f.name} {f.version}" for f in feeds))
        replace_file(self.rules, text, durable=False)

    def reload(self, feeds: Sequence[Feed]) -> None:
        """New rules for new feeds, loaded by the running Suricata (no restart, no gap)."""
        previous = self.rules.read_bytes()
        self._write_rules(feeds)

        def reloaded(ok: bool, message: str) -> None:
            if ok:
                log.info("suricata: %s", message)
            else:
                replace_file(self.rules, previous, durable=False)
                log.error("new rules not loaded, the previous ones stay: %s", message)

        # If Suricata is not running, its next start reads the new file.
        self.supervisor.request_reload(reloaded)

    def start(self, stop: threading.Event) -> None:
        threading.Thread(target=self.supervisor.run, args=(stop,), name="suricata-supervisor",
                         daemon=True).start()

    def records(self) -> list[Observation]:
        return list(self.tailer.read_available())

    def rotate_if_needed(self, limit_bytes: int) -> None:
        """Keep eve.json bounded: rename it past the limit and have Suricata reopen it.

        Only once the tailer has finished the previous rotated file, so at
        most two files exist and no record is deleted unread.
        """
        eve = self.supervisor.eve_path
        try:
            size = eve.stat().st_size
        except FileNotFoundError:
            return
        if size < limit_bytes or self.tailer.reading_rotated:
            return
        os.replace(eve, rotated_path(eve))

        def reopened(ok: bool, message: str) -> None:
            (log.info if ok else log.error)("suricata: eve.json rotated, %s", message)

        self.supervisor.request_reopen_logs(reopened)

    def commit(self) -> None:
        self.tailer.commit()

    def running(self) -> bool:
        return self.supervisor.state is SupervisorState.RUNNING

    def problem(self) -> str | None:
        transitions = self.supervisor.transitions
        if not transitions:
            return None
        if self.supervisor.state is SupervisorState.STARTING:
            return f"suricata is starting again ({transitions[-1].reason})"
        error = self.last_error()
        return transitions[-1].reason + (f"; suricata said: {error}" if error else "")

    def last_error(self) -> str | None:
        """The first error Suricata printed in its last run (e.g. the interface it cannot open)."""
        try:
            with (self.supervisor.settings.workdir / "suricata.out").open("rb") as output:
                output.seek(max(0, output.seek(0, os.SEEK_END) - 16_384))
                lines = output.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return None
        last_run = max((i for i, line in enumerate(lines) if "This is Suricata version" in line),
                       default=0)
        errors = [line[3:] for line in lines[last_run:] if line.startswith("E: ")]
        return errors[0] if errors else None

    def gave_up(self) -> bool:
        return self.supervisor.state is SupervisorState.FATAL

    def drop_ratio(self) -> float | None:
        stats = self.supervisor.last_stats  # refreshed by the supervising thread, no I/O here
        return None if stats is None else stats.drop_ratio

    def state_name(self) -> str:
        return self.supervisor.state.value

    def stop(self) -> None:
        self.supervisor.stop()


class LiteCapture:
    """The scapy lite source in a thread; its observations queued for the loop."""

    def __init__(self, config: Config) -> None:
        self.source = ScapyLiveSource(config.network.interface)
        self._queue: queue.Queue[Observation] = queue.Queue(maxsize=100_000)

    def start(self, stop: threading.Event) -> None:
        def pump() -> None:
            for observation in self.source.read(stop):
                self._queue.put(observation)

        threading.Thread(target=pump, name="scapy-live", daemon=True).start()

    def records(self) -> list[Observation]:
        batch = []
        while len(batch) < 10_000:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def commit(self) -> None:
        pass

    def reload(self, feeds: Sequence[Feed]) -> None:
        pass  # the lite source has no rules: the new matcher is all it needs

    def rotate_if_needed(self, limit_bytes: int) -> None:
        pass  # no files

    def running(self) -> bool:
        return self.source.started.is_set()

    def problem(self) -> str | None:
        return None if self.running() else "the sniffer has not started"

    def gave_up(self) -> bool:
        return False

    def drop_ratio(self) -> float | None:
        seen = self.source.stats.records + self.source.stats.skipped_total
        return self.source.stats.skipped_total / seen if seen else 0.0

    def state_name(self) -> str:
        return "running" if self.running() else "starting"

    def stop(self) -> None:
        pass


class SensorDaemon:
    def __init__(self, config: Config, *, source: str = "suricata",
                 feed_files: Sequence[Path] = (), notifier: SystemdNotifier | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 clock_synchronised: ClockProbe | None = None) -> None:
        self.config = config
        self.notifier = notifier or SystemdNotifier()
        self._clock, self._wall_clock = clock, wall_clock
        self._clock_synchronised = clock_synchronised or SystemClock()
        self.feeds = load_feeds(config, feed_files, required=False)
        if not self.feeds:
            log.warning("no indicator feed is installed yet: the sensor runs degraded "
                        "(feeds_stale) until `veilleuse feeds update` installs them (the "
                        "veilleuse-feeds timer runs it 5 minutes after boot, then daily)")
        self._feed_files = feed_files
        self.engine = build_engine(config, build_matcher(self.feeds, config, [SELFTEST_INDICATOR]))
        self.health_file = config.daemon.runtime_directory / "health.json"
        self.health = Health("starting", (), ())
        # Suricata's files and the EVE offset live in RAM (/run): the SD card is written
        # only for the alert book, the feeds and the pseudonym key. A reboot loses both
        # the file and its offset together, so nothing is read twice or skipped.
        self.capture = SuricataCapture(config, self.feeds,
                                       config.daemon.runtime_directory / "suricata") \
            if source == "suricata" else LiteCapture(config)
        self._last_traffic = self._started = clock()
        self._drop_ratio = 0.0
        self._observations = 0
        self._ready = False
        self._feeds_signature = self._signature()
        self.selftests = SelftestRunner(lambda: run_selftest(config))
        self.passive = PassiveWatch(config.network.interface)
        self._mirror_problem: str | None = None
        self._probes_seen = 0  # self-test queries captured, ours or `veilleuse selftest`'s

    # -- feeds --------------------------------------------------------------------------

    def _signature(self) -> tuple:
        if self._feed_files:
            return tuple((str(p), Path(p).stat().st_mtime_ns, Path(p).stat().st_size)
                         for p in self._feed_files)
        store = FeedStore(self.config.feeds.directory)
        return tuple(getattr(store.info(s.name), "version", None)
                     for s in self.config.feeds.sources)

    def _reload_feeds_if_changed(self, sender: MqttPublisher) -> None:
        signature = self._signature()
        if signature == self._feeds_signature:
            return
        self._feeds_signature = signature
        try:
            feeds = load_feeds(self.config, self._feed_files)
        except VeilleuseError as error:
            log.error("the updated feeds cannot be used, the current ones stay: %s", error)
            return
        self.feeds = feeds
        # Beacon timings start again; alert counts live on in the book.
        self.engine = build_engine(self.config, build_matcher(feeds, self.config,
                                                              [SELFTEST_INDICATOR]))
        self.capture.reload(feeds)
        sender.feed_versions = feed_versions(feeds)
        log.info("feeds updated (%s); detection and rules reloaded without a capture restart",
                 describe_feeds(feeds))

    # -- health -----------------------------------------------------------------------

    def _feeds_age_days(self) -> float | None:
        if self._feed_files:
            newest = max(Path(f).stat().st_mtime for f in self._feed_files)
            return (self._wall_clock() - newest) / 86_400
        store = FeedStore(self.config.feeds.directory)
        ages = [self._wall_clock() - info.downloaded.timestamp()
                for info in (store.info(s.name) for s in self.config.feeds.sources) if info]
        return max(ages) / 86_400 if ages else None

    def _check_health(self, book: AlertBook, sender: MqttPublisher) -> None:
        running = self.capture.running()
        since_start = self._clock() - self._started
        deadline = self.config.daemon.start_deadline_seconds
        # Start-up ends with the first capture, a definitive failure or the deadline:
        # after that, "not capturing" is a reason, never an endless "starting".
        starting = not (self._ready or running or self.capture.gave_up() or
                        since_start > deadline)
        problem = self.capture.problem()
        if not running and problem is None:
            problem = f"capture has not started {since_start:.0f} s after start"
        delivery = sender.health()
        severities = book.severity_counts()
        self.health = assess(HealthInputs(
            capture_running=running, capture_problem=problem,
            drop_ratio=self._drop_ratio,
            seconds_since_traffic=self._clock() - self._last_traffic,
            feeds_age_days=self._feeds_age_days(),
            delivery_problem=delivery.problem if sender.refusing else None,
            broker_unreachable=None if delivery.connected or starting else delivery.problem,
            serious_alerts=severities.get(Severity.MEDIUM.value, 0) +
            severities.get(Severity.HIGH.value, 0),
            starting=starting, clock_synchronised=self._clock_synchronised(),
            seconds_since_start=since_start, mirror_problem=self._mirror_problem),
            HealthThresholds(max_drop_ratio=self.config.daemon.max_drop_ratio,
                             silent_after_seconds=self.config.daemon.silent_after_minutes * 60,
                             stale_after_days=self.config.feeds.max_age_days,
                             clock_grace_seconds=self.config.daemon.clock_grace_seconds))
        self._write_health(book.pending_count(), running)
        summary = f"{self.health.state}: " + (", ".join(self.health.details) or
                                              f"{self._observations} records")
        if not self._ready and not starting:
            # READY=1 even when degraded: systemd must not kill and restart a sensor in a
            # loop over a wrong interface name; the status says what is wrong.
            self.notifier.ready(summary)
            self._ready = True
        self.notifier.status(summary)
        self.notifier.watchdog()

    def _write_health(self, pending: int, capturing: bool) -> None:
        """The health file: no secrets and no device data, since admins read it."""
        directory = self.health_file.parent
        directory.mkdir(mode=RUNTIME_DIRECTORY_MODE, parents=True, exist_ok=True)
        if directory.stat().st_uid == os.geteuid():
            directory.chmod(RUNTIME_DIRECTORY_MODE)
        record = {**asdict(self.health), "time": self._wall_clock(), "pid": os.getpid(),
                  "capture": self.capture.state_name(), "capturing": capturing,
                  "observations": self._observations,
                  "drop_ratio": self._drop_ratio, "pending_alerts": pending,
                  "feeds": feed_versions(self.feeds)}
        replace_file(self.health_file, json.dumps(record, indent=2), durable=False,
                     mode=HEALTH_FILE_MODE)

    # -- the loop ---------------------------------------------------------------------

    def _on_command(self, command: str) -> None:
        """Requests from the screen (the box's broker) or the core's operator (the core's
        broker; each broker's ACL decides who may): a self-test runs in the background and
        logs its result."""
        if command != "selftest":
            log.warning("unknown command %r ignored", command)
            return
        self.selftests.request()

    def _turn(self, alerts: AlertQueue, sender: MqttPublisher, rescore: bool) -> None:
        """One pass: new records through detection into the book, then the offset."""
        batch = self.capture.records()
        changed = [a for observation in batch for a in self.engine.observe(observation)]
        if rescore:
            changed.extend(self.engine.flush())
        alerts.add_all(changed)
        self.capture.commit()  # after the alerts are in the book: at-least-once
        if changed:
            sender.notify()
        if batch:
            self._last_traffic = self._clock()
            self._observations += len(batch)
            self._probes_seen += sum(isinstance(o, DnsQuery) and
                                     o.name.endswith(SELFTEST_DOMAIN) for o in batch)

    def run(self, stop: threading.Event) -> None:
        book = AlertBook(self.config.alerts.database)
        alerts = AlertQueue(book, self.config, pseudonymizer(self.config), self._wall_clock,
                            self._clock_synchronised)
        outputs = SensorOutputs(self.config, book)  # the core, and the box's broker
        sender = outputs.core
        sender.feed_versions = feed_versions(self.feeds)
        sender.health_source = lambda: (self.health.state, self.health.reasons,
                                        self.health.details)
        outputs.connect(alerts, self._on_command)
        outputs.start()
        capture_stop = threading.Event()
        self.capture.start(capture_stop)
        started = self._started = self._clock()
        due = {"health": started, "beacons": started + BEACON_EVERY, "drops": started,
               "feeds": started + self.config.daemon.feeds_check_seconds,
               "retention": started, "mirror": started}
        try:
            while not stop.wait(0.5):
                now = self._clock()
                self._turn(alerts, sender, rescore=now >= due["beacons"])
                if now >= due["beacons"]:
                    due["beacons"] = now + BEACON_EVERY
                if now >= due["drops"]:
                    self._drop_ratio = self.capture.drop_ratio() or self._drop_ratio
                    due["drops"] = now + DROPS_EVERY
                self.capture.rotate_if_needed(self.config.daemon.max_eve_megabytes * 2**20)
                if now >= due["feeds"]:
                    self._reload_feeds_if_changed(sender)
                    due["feeds"] = now + self.config.daemon.feeds_check_seconds
                if now >= due["mirror"]:
                    self._mirror_problem = self.passive.check(
                        max(self.selftests.started, self._probes_seen))
                    due["mirror"] = now + self.config.daemon.mirror_check_seconds
                if now >= due["retention"]:
                    apply_retention(book, self.config.alerts.retention_days,
                                    self._wall_clock(), self._clock_synchronised())
                    due["retention"] = now + RETENTION_EVERY
                if now >= due["health"]:
                    self._check_health(book, sender)
                    due["health"] = now + HEALTH_EVERY
        finally:
            self.notifier.stopping()
            capture_stop.set()
            self.capture.stop()
            outputs.stop()
            book.close()


def read_health(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


