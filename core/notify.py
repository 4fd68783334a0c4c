"""Tell people, through Apprise (e-mail, Matrix, Signal, ntfy...): high alerts and sensor events.

Only ``high`` alerts, never ``info`` nor ``selftest`` ones, only when an id is
first stored (not its later counts), and every sensor event (silent,
degraded, recovered). Rate-limited per sensor and overall, counted in the
shared database so that every ingest process shares the same budget; what
is over the limit is counted and logged, not sent. Without the site's
opt-in, texts hold no device, address, app name or alert text. Sending runs
in its own thread: a slow service never delays acknowledgements.
Notifications are best effort (at most once): the database and the JSON
lines are the record. Not the job of this module: deciding what is an event.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import apprise

from core.config import NotifyConfig
from core.errors import CoreError
from core.payloads import AlertMessage
from core.store import CoreStore, SensorEvent
from core.texts import TEXTS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Notification:
    site: str
    sensor: str
    title: str
    body: str


def should_notify(alert: AlertMessage) -> bool:
    """High alerts only; a self-test is never news.

    >>> should_notify(AlertMessage("s", "b", "0" * 20, "high", "selftest", 1, 0.0, 0.0, {}))
    False
    """
    return alert.severity == "high" and alert.kind != "selftest"


def alert_notification(alert: AlertMessage, language: str,
                       include_identity: bool) -> Notification:
    texts = TEXTS[language]
    values = {"site": alert.site, "sensor": alert.sensor, "kind": alert.kind,
              "severity": texts[alert.severity], "id": alert.id}
    body = texts["alert_body"].format(**values)
    if include_identity:
        payload = alert.payload
        body += "\n" + texts["alert_identity"].format(
            title=payload["title"][language], summary=payload["summary"][language],
            device=payload["device"], app=payload.get("app") or "-")
    return Notification(alert.site, alert.sensor, texts["alert_title"].format(**values), body)


def event_notification(event: SensorEvent, language: str) -> Notification:
    texts = TEXTS[language]
    values = {"site": event.site, "sensor": event.sensor,
              "reasons": ", ".join(event.reasons) or "-"}
    return Notification(event.site, event.sensor,
                        texts[f"{event.event}_title"].format(**values),
                        texts[f"{event.event}_body"].format(**values))


class Notifier:
    """A thread that rate-limits and sends; ``alert`` and ``event`` never block."""

    def __init__(self, config: NotifyConfig, database: Path,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._database = database
        self._clock = clock
        self._apprise = apprise.Apprise()
        for index, url in enumerate(config.urls):
            if not self._apprise.add(url):
                raise CoreError(f"notify.urls[{index}]: Apprise does not understand this URL "
                                "(see its wiki for the service's URL format)")
        self._queue: queue.Queue[Notification | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.suppressed = 0
        self.failed = 0

    @property
    def is_enabled(self) -> bool:
        return bool(self.config.urls)

    def alert(self, alert: AlertMessage) -> None:
        if self.is_enabled and should_notify(alert):
            self._queue.put(alert_notification(alert, self.config.language,
                                               self.config.include_identity))

    def event(self, event: SensorEvent) -> None:
        if self.is_enabled:
            self._queue.put(event_notification(event, self.config.language))

    def start(self) -> None:
        if self.is_enabled:
            self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        store = CoreStore(self._database)
        try:
            while (notification := self._queue.get()) is not None:
                try:
                    self._send(store, notification)
                except Exception:  # the record boundary: one notification, logged, counted
                    self.failed += 1
                    log.exception("a notification failed; ingest goes on")
        finally:
            store.close()

    def _send(self, store: CoreStore, notification: Notification) -> None:
        limits = self.config
        if not store.allow_notification(
                notification.site, notification.sensor, self._clock(),
                (limits.per_sensor.count, limits.per_sensor.window_seconds),
                (limits.overall.count, limits.overall.window_seconds)):
            self.suppressed += 1
            log.warning("notification about %s/%s not sent: over the rate limit (%d suppressed "
                        "so far)", notification.site, notification.sensor, self.suppressed)
            return
        if self._apprise.notify(title=notification.title, body=notification.body):
            self.sent += 1
        else:
            self.failed += 1
            log.error("a notification service refused or did not answer (see Apprise's log "
                      "above); %d failed so far", self.failed)
