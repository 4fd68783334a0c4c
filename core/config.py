"""The core's one YAML file: schema, defaults, and loading with line-accurate errors.

Validation is pydantic's with ``extra="forbid"`` (a typo is an error, never a
silent default). Every key has a description; docs/core.md lists them. The
YAML reader is the sensor's ``yamlsource`` (it imports nothing but PyYAML).
Not the job of this module: connecting, storing or notifying.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from core.errors import CoreConfigError
from sensor.config import BrokerUrl as SensorBrokerUrl
from sensor.configfile import load_config_file

DEFAULT_CONFIG_PATH = Path("/etc/veilleuse/core.yaml")
_LEVEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _topic_level(value: str) -> str:
    if not _LEVEL.match(value):
        raise ValueError(f"{value!r} must be 1-63 lower-case letters, digits, '-' or '_' "
                         "(it becomes part of MQTT topics)")
    return value


def _no_password_in_url(value: str) -> str:
    if urlsplit(value).password:
        raise ValueError("do not write the password in the URL; use mqtt.password_file")
    return value


TopicLevel = Annotated[str, AfterValidator(_topic_level)]
# The sensor's broker URL rules (scheme, host, port, no path), and no password in it.
BrokerUrl = Annotated[SensorBrokerUrl, AfterValidator(_no_password_in_url)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CoreMqttConfig(_Section):
    url: BrokerUrl = Field("mqtt://127.0.0.1:1883", description="The broker the sensors "
                           "publish to: mqtt://host:port or mqtts://host:port.")
    username: str | None = Field(None, description="User name, if the broker wants one.")
    password_file: Path | None = Field(None, description="File holding the password (kept "
                                       "out of this file; mode 0600).")
    ca_file: Path | None = Field(None, description="CA certificate to verify the broker "
                                 "(mqtts).")
    cert_file: Path | None = Field(None, description="Client certificate (mqtts).")
    key_file: Path | None = Field(None, description="Client private key (mqtts).")
    client_id: str = Field("veilleuse-core-1", min_length=1, max_length=128,
                           description="This ingest process's MQTT client id, stable across "
                           "restarts (its session holds what was not acknowledged). Each "
                           "ingest process needs its own: override with --client-id.")
    topic_prefix: TopicLevel = Field("veilleuse", description="First level of every topic "
                                     "(the sensors' mqtt.topic_prefix).")
    share_group: TopicLevel = Field("veilleuse-core", description="Shared-subscription "
                                    "group: ingest processes in one group share the alerts.")
    session_expiry_seconds: int = Field(604_800, ge=60, description="How long the broker "
                                        "keeps an ingest process's session (and queues its "
                                        "alerts) while it is away.")
    receive_maximum: int = Field(1000, ge=1, le=65_535, description="How many alerts the "
                                 "broker may send before the core acknowledges them.")
    keepalive_seconds: int = Field(30, ge=5, description="MQTT keep-alive.")

    @model_validator(mode="after")
    def _tls_files_need_mqtts(self) -> CoreMqttConfig:
        if self.url.startswith("mqtt://") and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError("ca_file, cert_file and key_file are only used with mqtts://")
        return self


class StoreConfig(_Section):
    database: Path = Field(Path("/var/lib/veilleuse-core/core.db"), description="The SQLite "
                           "database (WAL); several ingest processes on one machine may share "
                           "it.")
    jsonl: Path | None = Field(None, description="The JSON-lines file for a SIEM; default: "
                               "events.jsonl beside the database.")
    batch_max: int = Field(500, ge=1, le=10_000, description="Most messages written in one "
                           "transaction (one fsync) before they are acknowledged.")

    @property
    def jsonl_path(self) -> Path:
        return self.jsonl or self.database.with_name("events.jsonl")


class SensorsConfig(_Section):
    silent_after_seconds: float = Field(300.0, gt=0, description="A sensor with no state "
                                        "message for this long is silent (sensors send one "
                                        "at least every minute).")
    check_interval_seconds: float = Field(30.0, gt=0, description="How often ingest looks "
                                          "for silent sensors.")


class RateLimit(_Section):
    count: int = Field(ge=1, description="Notifications allowed in the window.")
    window_seconds: float = Field(gt=0, description="The window's length.")


class NotifyConfig(_Section):
    urls: tuple[str, ...] = Field((), description="Apprise URLs (mailtos://, matrixs://, "
                                  "signal://, ntfys://, json://...); none: no notification.")
    language: Literal["fr", "en"] = Field("fr", description="Language of the notifications.")
    include_identity: bool = Field(False, description="Opt-in: put the device (pseudonym or "
                                   "address), the app name and the alert's own texts in "
                                   "notifications. Off: site, sensor, severity and kind only.")
    per_sensor: RateLimit = Field(RateLimit(count=5, window_seconds=3600),
                                  description="Most notifications about one sensor per window.")
    overall: RateLimit = Field(RateLimit(count=30, window_seconds=3600),
                               description="Most notifications in all per window.")


class CoreConfig(_Section):
    mqtt: CoreMqttConfig = Field(default_factory=CoreMqttConfig, description="The broker.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Where alerts go.")
    sensors: SensorsConfig = Field(default_factory=SensorsConfig,
                                   description="Silent-sensor detection.")
    notify: NotifyConfig = Field(default_factory=NotifyConfig, description="Notifications.")


def load_core_config(path: Path | str) -> CoreConfig:
    """Read and validate ``path``; CoreConfigError names the line and key of the first problem."""
    return load_config_file(path, CoreConfig, error=CoreConfigError,
                            missing="write one (docs/core.md) or pass --config",
                            top_keys="mqtt:, store:", docs="docs/core.md")
