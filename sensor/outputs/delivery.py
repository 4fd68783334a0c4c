"""Queue alerts in the book with the payload that will leave the box, and publish them.

The glue between detection and the MQTT publisher, built from the config.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict

from sensor.alerts.book import AlertBook
from sensor.alerts.pseudonym import Pseudonymizer, load_or_create_secret
from sensor.config import Config
from sensor.detect.model import Alert
from sensor.errors import VeilleuseError
from sensor.outputs.mqtt import MqttPublisher, MqttSettings
from sensor.outputs.payloads import alert_payload
from sensor.outputs.topics import Topics
from sensor.report import all_catalogues


class AlertQueue:
    """Writes each new or updated alert, and its outgoing payload, to the book."""

    def __init__(self, book: AlertBook, config: Config, pseudonyms: Pseudonymizer | None,
                 wall_clock: Callable[[], float]) -> None:
        self.book = book
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

        def payload(first_seen: float, last_seen: float, count: int) -> str:
            merged = dataclasses.replace(alert, first_seen=first_seen, last_seen=last_seen,
                                         count=count)
            return alert_payload(merged, self._catalogues, site=self._config.site,
                                 sensor=self._config.sensor, pseudonyms=self._pseudonyms,
                                 queued_at=now)

        record = {**asdict(alert), "kind": alert.kind.value, "severity": alert.severity.value}
        self.book.record(alert.id, kind=alert.kind.value, severity=alert.severity.value,
                         device=alert.device, indicator=alert.indicator,
                         first_seen=alert.first_seen, last_seen=alert.last_seen,
                         count_added=added, record=json.dumps(record), payload=payload, now=now)

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

