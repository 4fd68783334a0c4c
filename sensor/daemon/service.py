"""`veilleuse run`: the live sensor. Capture -> detection -> alert book -> MQTT, with health.

Suricata (supervised, EVE tailed) or the scapy lite source captures on the
mirror interface; detection, the book and the publisher are the same as
offline. Every loop turn the daemon handles new records, then at intervals
rescoring beacons, measuring drops and writing its health (a JSON file that
`veilleuse status` reads, the retained state topic, systemd's STATUS and the
watchdog ping). The loop is the only thread that touches the engine.

The loop sleeps until the capture has records (``wait_for_records``: inotify
on EVE, or the lite source's queue) or the next chore is due, at most
``IDLE_TURN`` seconds: an alert leaves milliseconds after its record is
written, and an idle sensor costs next to nothing. Under load, turns are at
least ``BUSY_TURN`` apart so that a turn's fixed cost is shared by a batch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from sensor.alerts.book import AlertBook, AlertBookError, merge_sighting
from sensor.alerts.retention import apply_retention
from sensor.config import Config
from sensor.daemon.captures import Chore, LiveCapture
from sensor.daemon.clock import ClockProbe, SystemClock
from sensor.daemon.faults import DaemonFailure, LoopFaults
from sensor.daemon.health import (
    HEALTH_FILE,
    Health,
    HealthInputs,
    HealthReport,
    HealthThresholds,
    assess,
    health_file_text,
)
from sensor.daemon.mirror_direction import MirrorDirection
from sensor.daemon.notify import SystemdNotifier
from sensor.daemon.passive import PassiveWatch
from sensor.daemon.selftest import SELFTEST_DOMAIN, SelftestResult, SelftestRunner
from sensor.detect.engine import DetectionEngine
from sensor.detect.model import Alert, Severity
from sensor.devices.registry import DeviceRegistry
from sensor.errors import VeilleuseError
from sensor.evidence.keeper import EvidenceKeeper
from sensor.evidence.live import LiveEvidence
from sensor.evidence.store import apply_evidence_retention
from sensor.feeds.model import Feed, describe_feeds, feed_versions
from sensor.feeds.store import FeedStore
from sensor.files import is_disk_full, replace_file
from sensor.firstboot_report import (
    CONFIG_REFUSED,
    MIRROR_PORT_MISSING,
    REPORT_NAME,
    read_report,
)
from sensor.observations import DnsQuery
from sensor.outputs.commands import SELFTEST, Command
from sensor.outputs.delivery import AlertQueue, Delivery
from sensor.outputs.link import DeliveryFacts, SensorLink
from sensor.outputs.mqtt import MqttPublisher

log = logging.getLogger(__name__)

HEALTH_EVERY = 2.0
HEALTH_FILE_MODE = 0o640       # the veilleuse group (admins over SSH) reads `veilleuse status`
RUNTIME_DIRECTORY_MODE = 0o750
BEACON_EVERY = 60.0
DROPS_EVERY = 30.0
RETENTION_EVERY = 3600.0
NEW_ALERTS_SYNC_SECONDS = 1.0  # a power cut loses at most this much of the new alerts
EVIDENCE_EVERY = 5.0
IDLE_TURN = 0.5    # the longest sleep: how late a stop request can be noticed
BUSY_TURN = 0.005  # the shortest turn when records keep coming


class DetectionFactory(Protocol):
    """Feeds and the engine built from them, again on every feed update (``sensor.wiring``)."""

    @property
    def feed_files(self) -> Sequence[Path]:
        """The feed files given on the command line; empty: the installed feeds."""

    def load_feeds(self, *, required: bool = True) -> list[Feed]: ...

    def engine(self, feeds: Sequence[Feed],
               devices: DeviceRegistry | None = None) -> DetectionEngine:
        """``devices``: the replaced engine's registry (devices carry over a feed update)."""

    def store(self) -> FeedStore: ...


def _is_probe(name: str) -> bool:
    """A self-test probe's DNS name (ours, or `veilleuse selftest`'s)."""
    return name.endswith(SELFTEST_DOMAIN)


class SensorDaemon:
    """The live loop over built parts (``sensor.wiring.sensor_daemon`` builds them).

    ``open_delivery`` opens the alert book and the MQTT connections (whose
    publishers see the daemon through the link it is given) when ``run``
    starts, on the daemon's thread; ``selftest`` runs one self-test
    (in a thread of ``SelftestRunner``).
    """

    def __init__(self, config: Config, capture: LiveCapture, detection: DetectionFactory,
                 open_delivery: Callable[[SensorLink], Delivery],
                 selftest: Callable[[], SelftestResult], evidence: EvidenceKeeper, *,
                 notifier: SystemdNotifier | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 clock_synchronised: ClockProbe | None = None) -> None:
        self.config = config
        self.notifier = notifier or SystemdNotifier()
        self._clock, self._wall_clock = clock, wall_clock
        self._clock_synchronised = clock_synchronised or SystemClock()
        self._detection, self._open_delivery = detection, open_delivery
        self.feeds = detection.load_feeds(required=False)
        if not self.feeds:
            log.warning("no indicator feed is installed yet: the sensor runs degraded "
                        "(feeds_stale) until `veilleuse feeds update` installs them (the "
                        "veilleuse-feeds timer runs it 5 minutes after boot, then daily)")
        self._feed_files = detection.feed_files
        self.engine = detection.engine(self.feeds)
        self.health_file = config.daemon.runtime_directory / HEALTH_FILE
        self.health = Health("starting", (), ())
        # What `veilleuse first-boot` could not do (a refused veilleuse.yaml, no mirror port).
        self.first_boot = read_report(config.daemon.state_directory / REPORT_NAME)
        self.capture = capture
        self._narrow_capture()
        self._last_traffic = self._started = clock()
        self._drop_ratio = 0.0
        self._observations = 0
        self._busy = False  # the last turn had records: the next one comes soon
        self._ready = False
        self._feeds_signature = self._signature()
        self.selftests = SelftestRunner(selftest)
        self.passive = PassiveWatch(config.network.interface)
        self._mirror_problem: str | None = None
        self.mirror_direction = MirrorDirection(
            "what servers send is missed, DNS answers among it (the lite sniffer still reads "
            "TLS server names)"
            if capture.reads_one_sided_tls else "TLS server names are missed (the lite "
            "sniffer, `veilleuse run --source scapy`, reads them)")
        self._probes_seen = 0  # self-test queries captured, ours or `veilleuse selftest`'s
        self.faults = LoopFaults(clock, give_up_after=config.daemon.error_limit_seconds)
        self._unstored: list[Alert] = []  # alerts the book refused: stored before reading on
        self._new_unsynced = False  # new alerts committed, not yet fsync'd (book.sync)
        # Sightings of stored alerts, the latest version of each, written together.
        self._updates: dict[str, Alert] = {}
        self._updates_due = clock() + config.daemon.alert_update_seconds
        self._book_problem: str | None = None
        self._health_unwritten: str | None = None
        self._evidence_keeper = evidence
        self.evidence: LiveEvidence | None = None  # set by ``run`` (docs/evidence.md)

    # -- feeds --------------------------------------------------------------------------

    def _signature(self) -> tuple:
        if self._feed_files:
            return tuple((str(p), Path(p).stat().st_mtime_ns, Path(p).stat().st_size)
                         for p in self._feed_files)
        store = self._detection.store()
        return tuple(getattr(store.info(s.name), "version", None)
                     for s in self.config.feeds.sources)

    def _reload_feeds_if_changed(self) -> None:
        signature = self._signature()
        if signature == self._feeds_signature:
            return
        self._feeds_signature = signature
        try:
            feeds = self._detection.load_feeds()
        except VeilleuseError as error:
            log.error("the updated feeds cannot be used, the current ones stay: %s", error)
            return
        self.feeds = feeds
        # Beacon timings start again; alert counts live on in the book, devices carry over.
        self.engine = self._detection.engine(feeds, self.engine.devices)
        self._narrow_capture()
        log.info("feeds updated (%s); detection reloaded without a capture restart",
                 describe_feeds(feeds))

    def _sync_new_alerts(self, book: AlertBook) -> None:
        """New alerts survive a power cut within a second: the box may be unplugged (by
        anyone) right after a phone called a C2, with the core out of reach. Updates of
        known alerts wait for the book's own sync (``daemon.alert_update_seconds``)."""
        if self._new_unsynced:
            self._new_unsynced = False
            book.sync()

    def _narrow_capture(self) -> None:
        """Tell the capture which DNS names this engine looks at (it skips the others), and
        the self-test's probes, which the mirror check counts whatever the feeds list."""
        names = self.engine.dns_name_filter
        if self.capture.narrow is not None:
            self.capture.narrow(None if names is None else
                                lambda name: names(name) or _is_probe(name))

    # -- health -----------------------------------------------------------------------

    def _feeds_age_days(self) -> float | None:
        if self._feed_files:
            newest = max(Path(f).stat().st_mtime for f in self._feed_files)
            return (self._wall_clock() - newest) / 86_400
        store = self._detection.store()
        ages = [self._wall_clock() - info.downloaded.timestamp()
                for info in (store.info(s.name) for s in self.config.feeds.sources) if info]
        return max(ages) / 86_400 if ages else None

    def _check_health(self, book: AlertBook, alerts: AlertQueue, sender: MqttPublisher) -> None:
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
        delivery = sender.facts()
        severities = book.severity_counts()
        setup = self.first_boot.current()
        self.health = assess(HealthInputs(
            capture_running=running, capture_problem=problem,
            drop_ratio=self._drop_ratio,
            seconds_since_traffic=self._clock() - self._last_traffic,
            feeds_age_days=self._feeds_age_days(),
            delivery_problem=delivery.problem if delivery.refusing else None,
            broker_unreachable=None if delivery.connected or starting else delivery.problem,
            serious_alerts=severities.get(Severity.MEDIUM.value, 0) +
            severities.get(Severity.HIGH.value, 0),
            starting=starting, clock_synchronised=self._clock_synchronised(),
            seconds_since_start=since_start, mirror_problem=self._mirror_problem,
            mirror_one_way=self.mirror_direction.problem(),
            disk_full=self._disk_full(alerts, delivery), alert_book_problem=self._book_problem,
            worker_problems=self._worker_problems(sender),
            config_refused=setup.get(CONFIG_REFUSED),
            mirror_port_missing=setup.get(MIRROR_PORT_MISSING),
            quarantined=None if not delivery.quarantined else
            f"{delivery.quarantined} unreadable alert(s) moved to the quarantine table of "
            f"{book.path}, not delivered; look at them with `sqlite3 {book.path} 'SELECT * "
            "FROM quarantine'`, report them, then delete them there"),
            HealthThresholds(max_drop_ratio=self.config.daemon.max_drop_ratio,
                             silent_after_seconds=self.config.daemon.silent_after_minutes * 60,
                             stale_after_days=self.config.feeds.max_age_days,
                             clock_grace_seconds=self.config.daemon.clock_grace_seconds))
        self._write_health(delivery.pending, running)
        summary = f"{self.health.state}: " + (", ".join(self.health.details) or
                                              f"{self._observations} records")
        if not self._ready and not starting:
            # READY=1 even when degraded: systemd must not kill and restart a sensor in a
            # loop over a wrong interface name; the status says what is wrong.
            self.notifier.ready(summary)
            self._ready = True
        self.notifier.status(summary)
        self.notifier.watchdog()

    def _disk_full(self, alerts: AlertQueue, delivery: DeliveryFacts) -> str | None:
        problems = []
        if alerts.disk_full or alerts.held:
            problems.append(f"the alert book's disk is full ({self.config.alerts.database}): "
                            f"{alerts.held} alert(s) wait in memory")
            if alerts.dropped:
                problems.append(f"{alerts.dropped} ALERT(S) NOT KEPT (more than "
                                f"{alerts.max_held} waited in memory), see the journal")
        if delivery.disk_full:
            problems.append(f"{delivery.unretired} delivered alert(s) cannot be marked so "
                            "(kept in memory, not sent again)")
        position = self.capture.position
        if position is not None and position.disk_problem:
            problems.append(position.disk_problem)
        if self._health_unwritten:
            problems.append(self._health_unwritten)
        return "; ".join(problems) + "; free space on that disk" if problems else None

    def _worker_problems(self, sender: MqttPublisher) -> tuple[str, ...]:
        problems = [*self.capture.worker_problems(), sender.errors.problem,
                    self.faults.problem()]
        return tuple(p for p in problems if p)

    def _report_without_health(self, pending: int | None) -> None:
        """Health could not be assessed: say so everywhere rather than repeat the last one."""
        details = tuple(d for d in (self.faults.problem(),) if d) or ("health check failed",)
        self.health = Health("degraded", ("worker_error",), details)
        try:
            self._write_health(pending, self.capture.running())
        except Exception as error:  # noqa: BLE001 - the loop's boundary: report, go on
            self.faults.record("health file", error)
        self.notifier.status(f"degraded: {details[0]}")
        self.notifier.watchdog()  # the loop turns; a lasting error ends it (faults.check)

    def _write_health(self, pending: int | None, capturing: bool) -> None:
        """The health file: no secrets and no device data, since admins read it.

        A full disk (/run can fill too) is reported as disk_full, not fatal.
        """
        text = health_file_text(self.health, HealthReport(
            time=self._wall_clock(), pid=os.getpid(), capture=self.capture.state_name(),
            capturing=capturing, observations=self._observations, drop_ratio=self._drop_ratio,
            pending_alerts=pending, feeds=feed_versions(self.feeds)))
        directory = self.health_file.parent
        try:
            directory.mkdir(mode=RUNTIME_DIRECTORY_MODE, parents=True, exist_ok=True)
            if directory.stat().st_uid == os.geteuid():
                directory.chmod(RUNTIME_DIRECTORY_MODE)
            replace_file(self.health_file, text, durable=False, mode=HEALTH_FILE_MODE)
        except OSError as error:
            if not is_disk_full(error):
                raise
            if self._health_unwritten is None:
                log.error("%s: cannot write the health file (%s); `veilleuse status` will say "
                          "the sensor is not running, the state topic says disk_full",
                          self.health_file, error.strerror)
            self._health_unwritten = f"cannot write {self.health_file} ({error.strerror})"
            return
        self._health_unwritten = None

    # -- the loop ---------------------------------------------------------------------

    def handle_command(self, command: Command) -> None:
        """Requests from the screen (the box's broker) or the core's operator (the core's
        broker; each broker's ACL decides who may): a self-test runs in the background and
        logs its result."""
        if command.name != SELFTEST:
            log.warning("unknown command %r ignored", command.name)
            return
        self.selftests.request()

    def _turn(self, alerts: AlertQueue, sender: MqttPublisher, rescore: bool) -> bool:
        """One pass: new records through detection into the book, then the offset.

        Alerts the book refuses (an AlertBookError other than a full disk) stay
        in memory with the offset unsaved, and nothing new is read until they
        are stored: at-least-once, nothing skipped, nothing counted twice.
        True if records came.
        """
        if self._unstored and not self._store(alerts, sender, []):
            return False
        batch = self.capture.records()
        changed = [a for observation in batch for a in self.engine.observe(observation)]
        if rescore:
            changed.extend(self.engine.flush())
        if batch:
            self._last_traffic = self._clock()
            self._observations += len(batch)
            self._probes_seen += sum(isinstance(o, DnsQuery) and
                                     _is_probe(o.name) for o in batch)
            self.mirror_direction.note(batch)
        self._store(alerts, sender, changed)
        if self.evidence is not None:
            self.evidence.note(changed)
        return bool(batch)

    def _store(self, alerts: AlertQueue, sender: MqttPublisher, changed: list[Alert],
               flush: bool = False) -> bool:
        """Store new alerts now and updates when due; commit the offset once all are in.

        A new alert is in the book before anything else happens to it (the
        turn's new alerts in one transaction; ``book.sync`` makes them survive
        a power cut, every ``daemon.alert_update_seconds``). More
        sightings of a stored one only change its count and last seen: they
        wait, the latest version of each, and are written in one transaction
        every ``daemon.alert_update_seconds`` (one commit, each page once),
        while the capture position waits with them (at-least-once).
        """
        new: dict[str, Alert] = {}
        for sighting in changed:  # merged per alert, by the book's rule, until written
            pending = self._updates if alerts.is_stored(sighting.id) else new
            pending[sighting.id] = merge_sighting(pending.get(sighting.id), sighting)
        waiting = self._unstored + list(new.values())
        unstored: dict[str, Alert] = {}  # the turn's new alerts, written in one transaction
        for alert in waiting:
            unstored[alert.id] = merge_sighting(unstored.get(alert.id), alert)
        updated = bool(self._updates) and (flush or self._clock() >= self._updates_due)
        try:
            alerts.add_all([])  # writes alerts held by a full disk, if it has room now
            self._new_unsynced |= bool(unstored)
            alerts.add_batch(unstored)  # each one written leaves the mapping
            if updated:
                # Each leaves the mapping once written: after an error, what is left was not.
                alerts.add_batch(self._updates)
                self._updates_due = self._clock() + self.config.daemon.alert_update_seconds
        except AlertBookError as error:
            self._unstored = list(unstored.values())
            problem = (f"{error}; {len(self._unstored)} alert(s) wait in memory and the capture "
                       "position is not saved until they are stored")
            if self._book_problem is None:
                log.error("the alert book refused an alert: %s", problem)
            self._book_problem = problem
            return False
        if self._book_problem:
            log.info("the alert book takes alerts again: %d stored from memory", len(waiting))
        self._unstored, self._book_problem = [], None
        if not self._updates and self.capture.position is not None:
            self.capture.position.commit()  # after the alerts are in the book: at-least-once
        if waiting or updated:
            sender.notify()
        return True

    def _keep_workers_alive(self, sender: MqttPublisher) -> None:
        """Restart a capture thread that died; a dead publisher cannot be: exit, systemd
        restarts the sensor (the watchdog is never pinged with a dead worker)."""
        for worker in self.capture.workers():
            worker.restart_if_dead()
        if not sender.is_alive:
            raise DaemonFailure("the MQTT publisher's thread stopped (see the error above); "
                                "exiting so that systemd restarts the sensor (alerts are "
                                "kept in the book)")

    def _chores(self, book: AlertBook, alerts: AlertQueue, sender: MqttPublisher,
                due: dict[str, float]) -> list[Chore]:
        """(name, interval or None for every turn, action), in the order a turn runs them.

        The capture's own chores (EVE rotation) come after the records and drops.
        """
        daemon = self.config.daemon

        def records() -> None:
            self._busy = self._turn(alerts, sender,
                                    rescore=self._due(due, "beacons", BEACON_EVERY))

        def drops() -> None:
            self._drop_ratio = self.capture.drop_ratio() or self._drop_ratio

        def mirror() -> None:
            self._mirror_problem = self.passive.check(max(self.selftests.started,
                                                          self._probes_seen))

        def feeds() -> None:
            self._reload_feeds_if_changed()

        return [
            ("records", None, records),
            ("drops", DROPS_EVERY, drops),
            *self.capture.chores,
            ("feeds", daemon.feeds_check_seconds, feeds),
            ("mirror check", daemon.mirror_check_seconds, mirror),
            ("book sync", daemon.alert_update_seconds, book.sync),
            ("new alerts sync", NEW_ALERTS_SYNC_SECONDS, lambda: self._sync_new_alerts(book)),
            ("retention", RETENTION_EVERY, lambda: apply_retention(
                book, self.config.alerts.retention_days, self._wall_clock(),
                self._clock_synchronised())),
            ("evidence", EVIDENCE_EVERY, self._collect_evidence),
            ("evidence retention", RETENTION_EVERY, lambda: apply_evidence_retention(
                self.config.evidence.directory, self.config.alerts.retention_days,
                self._wall_clock(), self._clock_synchronised())),
        ]

    def _collect_evidence(self) -> None:
        """Bundle the windows that have passed; the next write of each alert announces it."""
        if self.evidence is None or not self.evidence.pending:
            return
        for alert, _ in self.evidence.collect(feed_versions(self.feeds)):
            # No new sighting (count 0): the next update re-announces the alert, with its bundle.
            pending = self._updates.get(alert.id)
            self._updates[alert.id] = merge_sighting(pending, dataclasses.replace(alert, count=0))

    def _pause(self, due: dict[str, float]) -> float:
        """How long the loop may sleep: until the next chore (the health ping...) is due."""
        now, soonest = self._clock(), min(due.values())
        if self._updates and self._updates_due > now:  # past due: the book refused them
            soonest = min(soonest, self._updates_due)
        return min(IDLE_TURN, max(0.0, soonest - now))

    def _wait_for_records(self, stop: threading.Event, timeout: float) -> None:
        """The capture's wait; if it fails, a plain one (reading reports the error)."""
        try:
            self.capture.wait_for_records(timeout)
        except Exception as error:  # noqa: BLE001 - the loop's boundary: report, go on
            self.faults.record("waiting for records", error)
            stop.wait(timeout)

    def _due(self, due: dict[str, float], name: str, every: float) -> bool:
        """True once ``name`` is due, and then not again for ``every`` seconds."""
        now = self._clock()
        if now < due[name]:
            return False
        due[name] = now + every
        return True

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: DaemonFailure (exit 1, systemd restarts) only for what cannot heal.

        Any other error in a chore is logged once, counted, reported as
        worker_error, and the loop goes on (``LoopFaults``).
        """
        # The book, the queue into it, the core and the box's broker.
        delivery = self._open_delivery(_DaemonLink(self))
        book, alerts, outputs = delivery.book, delivery.alerts, delivery.outputs
        sender = outputs.core
        outputs.connect(alerts)
        self.evidence = LiveEvidence(self._evidence_keeper, self.capture.evidence_records,
                                     self._clock, self._clock_synchronised)
        alerts.evidence_of = self.evidence.keeper.announcement
        outputs.start()
        capture_stop = threading.Event()
        self.capture.start(capture_stop)
        started = self._started = self._clock()
        due = {"health": started, "beacons": started + BEACON_EVERY, "drops": started,
               "feeds": started + self.config.daemon.feeds_check_seconds,
               "evidence": started, "retention": started, "evidence retention": started,
               "mirror check": started}
        chores = self._chores(book, alerts, sender, due)
        for name, every, _ in chores:  # the capture's own, on an interval
            if every is not None:
                due.setdefault(name, started)
        try:
            failed = False
            while not (stop.wait(BUSY_TURN) if self._busy else stop.is_set()):
                self._busy = False
                if failed:  # records may wait unread: the wait would not wait, the loop spin
                    stop.wait(self._pause(due))
                else:
                    self._wait_for_records(stop, self._pause(due))
                if stop.is_set():
                    break
                failed = False
                for name, every, action in chores:
                    if every is not None and not self._due(due, name, every):
                        continue
                    try:
                        action()
                    except Exception as error:  # noqa: BLE001 - the loop's boundary: report, go on
                        self.faults.record(name, error)
                        failed = True
                self._keep_workers_alive(sender)
                if self._due(due, "health", HEALTH_EVERY):
                    try:
                        self._check_health(book, alerts, sender)
                    except Exception as error:  # noqa: BLE001 - the loop's boundary: report, go on
                        self.faults.record("health", error)
                        self._report_without_health(None)
                self.faults.check()
        finally:
            self.notifier.stopping()
            self._store(alerts, sender, [], flush=True)  # the waiting sightings
            capture_stop.set()
            self.capture.stop()
            outputs.stop()
            if self.evidence is not None:
                self.evidence.close()
            book.close()


class _DaemonLink:
    """The live daemon as its publishers see it (``sensor.outputs.link.SensorLink``).

    The health announced is the one the loop last assessed; commands arrive
    on the publishers' threads and only queue a request.
    """

    takes_commands = True

    def __init__(self, daemon: SensorDaemon) -> None:
        self._daemon = daemon

    def health(self, delivery: DeliveryFacts, severities: Mapping[str, int]) -> Health:
        return self._daemon.health

    def feed_versions(self) -> Mapping[str, str]:
        return feed_versions(self._daemon.feeds)

    def command(self, command: Command) -> None:
        self._daemon.handle_command(command)
