"""How to reach an MQTT broker: the settings, and the one factory of configured paho clients.

Every Veilleuse process that speaks MQTT (the sensor's publisher and its
copy for the screen, ``veilleuse tail``, the screen) gets its client from
``make_client``: MQTT v5, paho's version 2 callbacks, TLS with a verified
certificate, credentials, its own client id and its last will, set in one
place so that they cannot drift apart. Also the words a failed connection
is reported in, and the clean stop every publisher ends with.

Not the job of this module: connecting (each owner does, in the
background), what is published, or the topics' names.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sensor.config import Config, is_loopback_host
from sensor.errors import VeilleuseError


class MqttSettingsError(VeilleuseError):
    """The broker URL or TLS settings are unusable."""


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """How to reach the broker; secrets never appear in ``repr``."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = "veilleuse"
    keepalive: int = 30
    session_expiry: int = 86_400
    max_in_flight: int = 100
    state_interval: float = 60.0
    ack_timeout: float = 60.0
    retry_backoff_max: float = 300.0
    takeover_retry: float = 300.0

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MqttSettings:
        """``mqtt://host[:port]`` or ``mqtts://host[:port]`` (user:password@ allowed)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise MqttSettingsError(f"{_mask(url)} is not a broker URL; write "
                                    "mqtt://host:1883 or mqtts://host:8883")
        tls = parts.scheme == "mqtts"
        values: dict[str, Any] = {"host": parts.hostname, "port": parts.port or
                                  (8883 if tls else 1883), "tls": tls}
        if parts.username:
            values["username"] = parts.username
        if parts.password:
            values["password"] = parts.password
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Will:
    """The retained message the broker publishes when this client vanishes."""

    topic: str
    payload: str


def make_client(settings: MqttSettings, *, will: Will | None = None,
                manual_ack: bool = False) -> mqtt.Client:
    """A paho client for ``settings``: MQTT v5, version 2 callbacks, TLS, login, will.

    The owner sets its callbacks and connects (``connect``). A TLS set-up that
    fails (a missing or unreadable certificate) is an MqttSettingsError that
    names the settings to check.

    >>> make_client(MqttSettings(client_id="doc")).protocol == MQTTProtocolVersion.MQTTv5
    True
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                         protocol=MQTTProtocolVersion.MQTTv5, manual_ack=manual_ack)
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        try:
            client.tls_set(ca_certs=settings.ca_file, certfile=settings.cert_file,
                           keyfile=settings.key_file, cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError) as error:
            raise MqttSettingsError(f"TLS set-up failed: {error}; check ca_file, cert_file "
                                    "and key_file") from None
    if will is not None:
        client.will_set(will.topic, will.payload, qos=1, retain=True)
    return client


def connect(client: mqtt.Client, settings: MqttSettings, *, persistent: bool,
            receive_maximum: int | None = None) -> None:
    """Connect in the background (start-up never waits for the broker) and start paho's loop.

    ``persistent``: ``clean_start=false`` with the session expiry of the
    settings, so that the broker keeps what it owes this client while it is
    away; otherwise a clean session.
    """
    if persistent:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = settings.session_expiry
        if receive_maximum is not None:
            properties.ReceiveMaximum = receive_maximum
        client.connect_async(settings.host, settings.port, keepalive=settings.keepalive,
                             clean_start=False, properties=properties)
    else:
        client.connect_async(settings.host, settings.port, keepalive=settings.keepalive)
    client.loop_start()


def connection_error(error: BaseException | None, tls: bool) -> str:
    """The reason a connection attempt failed, in the words an operator can act on."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return (f"TLS certificate verify failed: {error.verify_message} (check mqtt.ca_file "
                "and that the URL's host name is in the broker's certificate)")
    if isinstance(error, ssl.SSLError):
        return (f"TLS failed: {error.reason or error} (is this port a TLS listener? check "
                "the URL's scheme and port)")
    if tls and isinstance(error, ConnectionResetError | BrokenPipeError | ssl.SSLEOFError):
        return (f"TLS failed: the server closed the connection during the handshake "
                f"({error.strerror or error}); is this port a TLS listener? check the URL's "
                "scheme and port")
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return "the connection failed for an unknown reason"


def say_stopped_and_disconnect(client: mqtt.Client, stopped: Will | None, connected: bool,
                               timeout: float) -> None:
    """A clean stop: the retained ``stopped`` message replaces the will's crash, then bye."""
    if connected and stopped is not None:
        client.publish(stopped.topic, stopped.payload, qos=1,
                       retain=True).wait_for_publish(timeout)
    client.disconnect()
    client.loop_stop()


# -- settings from the configuration --------------------------------------------------------

def mqtt_settings(config: Config, url: str | None = None, role: str = "sensor") -> MqttSettings:
    """Settings from the config; the client id is ``veilleuse-<site>-<sensor>-<role>``.

    One role per process (``sensor`` for the daemon, ``publish``, ``tail``):
    two clients on one id would take the session from each other.
    """
    mqtt_config = config.mqtt
    return MqttSettings.from_url(
        url or mqtt_config.url, username=mqtt_config.username,
        password=_password(mqtt_config.password_file),
        ca_file=str(mqtt_config.ca_file) if mqtt_config.ca_file else None,
        cert_file=str(mqtt_config.cert_file) if mqtt_config.cert_file else None,
        key_file=str(mqtt_config.key_file) if mqtt_config.key_file else None,
        client_id=f"veilleuse-{config.site}-{config.sensor}-{role}",
        session_expiry=mqtt_config.session_expiry_seconds)


def local_settings(config: Config, role: str) -> MqttSettings:
    """The box's own broker (``local_broker``); when ``mqtt.url`` is that broker, its settings.

    The screen (role ``screen``) and the sensor's copy for it (``sensor-local``)
    log in with the local account.
    """
    if core_is_local(config):
        return mqtt_settings(config, role=role)
    local = config.local_broker
    return MqttSettings.from_url(
        local.url, username=local.username, password=_password(local.password_file),
        client_id=f"veilleuse-{config.site}-{config.sensor}-{role}")


def core_is_local(config: Config) -> bool:
    """``mqtt.url`` is the box's own broker (a box without a core): one connection for both.

    Loopback names are one host (localhost, 127.0.0.1 and ::1 reach the same
    listener on the appliance); the scheme and port must match.
    """
    core, local = urlsplit(config.mqtt.url), urlsplit(config.local_broker.url)
    if (core.scheme, core.port or 1883) != (local.scheme, local.port or 1883):
        return False
    if core.hostname == local.hostname:
        return True
    return is_loopback_host(core.hostname or "") and is_loopback_host(local.hostname or "")


def _password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text().strip()
    except OSError as error:
        raise VeilleuseError(f"{path}: cannot read the MQTT password ({error.strerror})") \
            from None


def _mask(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url
