"""Queue alerts in the book with the payload that will leave the box, and publish them.

The glue between detection and the MQTT publisher, built from the config.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict

from sensor.alerts.book import AlertBook
from sensor.alerts.pseudonym import Pseudonymizer, load_or_create_secret
from sensor.alerts.retention import apply_retention
from sensor.config import Config
from sensor.daemon.clock import ClockProbe, SystemClock
from sensor.detect.model import Alert
from sensor.errors import VeilleuseError
from sensor.outputs.mqtt import MqttPublisher, MqttSettings, PublisherHealth
from sensor.outputs.payloads import alert_payload
from sensor.outputs.topics import Topics
from sensor.report import all_catalogues


class AlertQueue:
    """Writes each new or updated alert, and its outgoing payload, to the book.

    ``clock_synchronised`` is the live sensor's clock probe, asked as each
    alert is stored; None for a capture file, whose times are the packets'.
    """

    def __init__(self, book: AlertBook, config: Config, pseudonyms: Pseudonymizer | None,
                 wall_clock: Callable[[], float],
                 clock_synchronised: ClockProbe | None = None) -> None:
        self.book = book
        self._clock_synchronised = clock_synchronised
        self._config = config
        self._pseudonyms = pseudonyms
        self._catalogues = all_catalogues()
        self._clock = wall_clock
        self._counted: dict[str, int] = {}

    def add(self, alert: Alert) -> None:
        """Store the sightings this alert gained since it was last added, and queue it."""
        now = self._clock()
        added = alert.count - self._counted.get(alert.id, 0)
        self._counted[alert.id] = alert.count

        synchronised = None if self._clock_synchronised is None else \
            self._clock_synchronised()
        alert = dataclasses.replace(alert, clock_synchronised=synchronised)

        def payload(first_seen: float, last_seen: float, count: int,
                    clock_synchronised: bool | None) -> str:
            merged = dataclasses.replace(alert, first_seen=first_seen, last_seen=last_seen,
                                         count=count, clock_synchronised=clock_synchronised)
            return alert_payload(merged, self._catalogues, site=self._config.site,
                                 sensor=self._config.sensor, pseudonyms=self._pseudonyms,
                                 queued_at=now)

        record = {**asdict(alert), "kind": alert.kind.value, "severity": alert.severity.value}
        self.book.record(alert.id, kind=alert.kind.value, severity=alert.severity.value,
                         device=alert.device, indicator=alert.indicator,
                         first_seen=alert.first_seen, last_seen=alert.last_seen,
                         count_added=added, record=json.dumps(record), payload=payload, now=now,
                         clock_synchronised=synchronised)

    def add_all(self, alerts: Iterable[Alert]) -> int:
        count = 0
        for alert in alerts:
            self.add(alert)
            count += 1
        return count


def pseudonymizer(config: Config) -> Pseudonymizer | None:
    if config.privacy.device_ids == "address":
        return None
    return Pseudonymizer(load_or_create_secret(config.privacy.secret_file))


def mqtt_settings(config: Config, url: str | None = None) -> MqttSettings:
    mqtt = config.mqtt
    password = None
    if mqtt.password_file is not None:
        try:
            password = mqtt.password_file.read_text().strip()
        except OSError as error:
            raise VeilleuseError(f"{mqtt.password_file}: cannot read the MQTT password "
                                 f"({error.strerror})") from None
    return MqttSettings.from_url(
        url or mqtt.url, username=mqtt.username, password=password,
        ca_file=str(mqtt.ca_file) if mqtt.ca_file else None,
        cert_file=str(mqtt.cert_file) if mqtt.cert_file else None,
        key_file=str(mqtt.key_file) if mqtt.key_file else None,
        client_id=f"veilleuse-{config.site}-{config.sensor}",
        session_expiry=mqtt.session_expiry_seconds)


def topics(config: Config) -> Topics:
    return Topics(site=config.site, sensor=config.sensor, prefix=config.mqtt.topic_prefix)


def publisher(config: Config, book: AlertBook, url: str | None = None) -> MqttPublisher:
    return MqttPublisher(mqtt_settings(config, url), topics(config), book)



def deliver_pending(config: Config, book: AlertBook, url: str | None, timeout: float,
                    feed_versions: dict[str, str] | None = None,
                    clock_synchronised: ClockProbe | None = None) -> tuple[bool, PublisherHealth]:
    """Publish the book's pending alerts, then apply retention; (all acknowledged, health)."""
    sender = publisher(config, book, url)
    sender.feed_versions = feed_versions or {}
    sender.start()
    try:
        delivered = sender.wait_until_delivered(timeout)
    finally:
        sender.stop()
    apply_retention(book, config.alerts.retention_days, time.time(),
                    (clock_synchronised or SystemClock())())
    return delivered, sender.health()
