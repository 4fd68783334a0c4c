"""The one YAML configuration file: schema, defaults and loading with line-accurate errors.

Validation is pydantic's (``extra="forbid"``: an unknown key is an error, so a
typo never silently falls back to a default). Every key has a description;
docs/configuration.md is generated from them (``veilleuse config-docs``).
"""

from __future__ import annotations

import ipaddress
import re
import stat
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    ValidationInfo,
    field_validator,
)

from sensor.configfile import load_config_file
from sensor.errors import ConfigError
from sensor.feeds.model import FeedFormat
from sensor.feeds.names import normalize_domain
from sensor.suricata.config import DEFAULT_HOME_NET

DEFAULT_CONFIG_PATH = Path("/etc/veilleuse/veilleuse.yaml")
ECHAP_BASE = "https://raw.githubusercontent.com/AssoEchap/stalkerware-indicators/master"
_TOPIC_SAFE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_AGE_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")  # bech32, as age-keygen prints it
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"not an IP network: {value!r} (write e.g. 192.168.0.0/16)") from None


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"not an IP address: {value!r} (write e.g. 1.1.1.1)") from None


def _topic_safe(value: str) -> str:
    if not _TOPIC_SAFE.match(value):
        raise ValueError(f"{value!r} must be 1-63 lower-case letters, digits, '-' or '_' "
                         "(it becomes part of MQTT topics)")
    return value


def _url_parts(value: str, schemes: tuple[str, str], example: str) -> SplitResult:
    """``value`` split, if it is a URL of one of ``schemes`` with a host and a valid port."""
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"{value!r} holds spaces or control characters; write e.g. {example}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # an unclosed '[', or a port that is not a number from 0 to 65535
        parts, port = urlsplit(value.replace("[", "").replace("]", "")), 0
    if parts.scheme not in schemes:
        raise ValueError(f"{value!r} is not an {schemes[0]}(s) URL; write e.g. {example}")
    if not parts.hostname or port == 0 or parts.netloc.endswith(":"):
        raise ValueError(f"{value!r} needs a host and, if any, a port from 1 to 65535; write "
                         f"e.g. {example}")
    if not _is_host(parts.hostname, bracketed="[" in parts.netloc):
        raise ValueError(f"{value!r}: {parts.hostname!r} is neither a host name nor an IP "
                         f"address; write e.g. {example}")
    return parts


def _is_host(host: str, bracketed: bool) -> bool:
    """True if ``host`` (from a URL) can name a machine: an IP address or LDH labels.

    Underscores pass (resolvers and container names use them); an all-digit
    name such as ``1.2.3.4.5`` does not (a mistyped address, not a name).

    >>> [_is_host(h, False) for h in ("broker", "core.lan.", "10.0.0.1", "ho$t", "-a.lan")]
    [True, True, True, False, False]
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    if bracketed:  # urlsplit checked the brackets hold an IPv6 address
        return True
    try:
        name = normalize_domain(host)
    except ValueError:
        return False
    labels = name.split(".")
    return (len(name) <= 253 and not all(label.isdigit() for label in labels)
            and all(_HOST_LABEL.fullmatch(label) for label in labels))


def _url(value: str) -> str:
    _url_parts(value, ("http", "https"), "https://example.org/ioc.yaml")
    return value


def _broker_url(value: str) -> str:
    parts = _url_parts(value, ("mqtt", "mqtts"), "mqtt://127.0.0.1:1883 or mqtts://host:8883")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{value!r}: a broker URL has no path; write e.g. mqtts://host:8883")
    return value


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1): traffic never leaves the box.

    >>> is_loopback_host("127.0.0.53"), is_loopback_host("::1"), is_loopback_host("broker.lan")
    (True, True, False)
    """
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret_file(path: Path) -> Path:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"{path} is readable or writable by other users (mode "
                         f"{stat.S_IMODE(mode):04o}); run `chmod 600 {path}`")
    return path


def _allow_entry(value: str) -> str:
    try:
        return _network(value)
    except ValueError:
        try:
            return normalize_domain(value)
        except ValueError:
            raise ValueError(f"{value!r} is neither a domain name nor an IP network") from None


def _age_recipient(value: str) -> str:
    if not _AGE_RECIPIENT.match(value):
        raise ValueError(f"{value!r} is not an age public key: write the helpline's "
                         "`age1...` line (age-keygen prints it as 'Public key: age1...')")
    return value


Network = Annotated[str, AfterValidator(_network)]
Address = Annotated[str, AfterValidator(_address)]
TopicName = Annotated[str, AfterValidator(_topic_safe)]
Url = Annotated[str, AfterValidator(_url)]
BrokerUrl = Annotated[str, AfterValidator(_broker_url)]
SecretFile = Annotated[FilePath, AfterValidator(_secret_file)]
AllowEntry = Annotated[str, AfterValidator(_allow_entry)]
AgeRecipient = Annotated[str, AfterValidator(_age_recipient)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NetworkConfig(_Section):
    interface: str = Field("eth0", description="The interface plugged into the mirrored "
                           "(SPAN) port of the switch.")
    home_net: tuple[Network, ...] = Field(
        DEFAULT_HOME_NET, min_length=1, description="The shelter's own networks. Devices "
        "are addresses in them; beaconing is only looked for towards outside servers.")


class FeedSource(_Section):
    name: TopicName = Field(description="Short name; the file is stored as `<name>.yaml` "
                            "(`<name>.stix2.json`, `<name>.misp.json` in the other formats).")
    url: Url = Field(description="Where to download the feed, in its `format`.")
    format: FeedFormat = Field("echap", description="What the URL serves: `echap` (Echap's "
                               "YAML, ioc.yaml/watchware.yaml), `stix2` (a STIX 2.1 bundle, "
                               "as Echap, Amnesty and mvt share) or `misp` (one MISP event in "
                               "JSON: a MISP feed's `<uuid>.json`, a JSON export or "
                               "PyMISP's; not a feed's `manifest.json`).")


class FeedsConfig(_Section):
    directory: Path = Field(Path("/var/lib/veilleuse/feeds"), description="Where downloaded "
                            "feeds are kept, with the previous good copy of each.")
    sources: tuple[FeedSource, ...] = Field(
        (FeedSource(name="echap-stalkerware", url=f"{ECHAP_BASE}/ioc.yaml"),
         FeedSource(name="echap-watchware", url=f"{ECHAP_BASE}/watchware.yaml")),
        description="Feeds to download with `veilleuse feeds update`. Default: Echap's "
        "stalkerware and watchware indicators (CC-BY 4.0).")
    local: tuple[Path, ...] = Field((), description="Extra indicator files of your own, in "
                                    "the same YAML format, read as they are.")
    allowlist: tuple[AllowEntry, ...] = Field(
        (), description="Names (with their subdomains) or IP networks you know are benign. "
        "They silence vendor-site, watchware, encrypted-DNS and beaconing alerts; a "
        "stalkerware C2 indicator is always reported.")
    max_age_days: int = Field(14, ge=1, description="Feeds older than this are reported as "
                              "stale by `veilleuse feeds status` (exit 1).")
    min_size_ratio: float = Field(0.5, gt=0, le=1, description="An update with fewer "
                                  "indicators than this share of the current copy is refused.")


class BeaconConfig(_Section):
    min_connections: int = Field(8, ge=4, description="Connections needed before a rhythm "
                                 "is judged.")
    min_interval_seconds: float = Field(10.0, gt=0, description="Shorter rhythms are ignored "
                                        "(page loads, streaming).")
    score_threshold: float = Field(0.85, gt=0, le=1, description="Regularity score (0-1) "
                                   "from which a rhythm is reported.")


class DetectionConfig(_Section):
    resolved_ip_window_seconds: float = Field(
        3600.0, gt=0, description="How long an IP that a C2 name resolved to is watched for "
        "the device that looked it up.")
    encrypted_dns: bool = Field(True, description="Report devices that use DNS over "
                                "HTTPS, TLS or QUIC.")
    encrypted_dns_addresses: tuple[Address, ...] | None = Field(
        None, description="Addresses of DNS-over-HTTPS resolvers: a connection to one on "
        "port 443 is reported even without a name. Default: the anycast addresses of "
        "Cloudflare, Google, Quad9, OpenDNS and AdGuard.")
    beacon: BeaconConfig = Field(default_factory=BeaconConfig,
                                 description="Beaconing detection.")


class MqttConfig(_Section):
    url: BrokerUrl = Field("mqtt://127.0.0.1:1883", description="The core's broker: "
                           "mqtt://host:port or mqtts://host:port (TLS). Alerts leave the alert "
                           "book only on this broker's acknowledgement. A box without a core "
                           "leaves the box's own broker here (then `local_broker` is the same "
                           "connection). Plain mqtt:// carries no password or TLS file "
                           "unless the broker is on this box (localhost, 127.0.0.0/8, ::1).")
    username: str | None = Field(None, description="User name, if the broker wants one.")
    password_file: SecretFile | None = Field(None, description="File holding the password "
                                             "(kept out of this file; mode 0600).")
    ca_file: FilePath | None = Field(None, description="CA certificate to verify the broker "
                                     "(mqtts).")
    cert_file: FilePath | None = Field(None, description="Client certificate (mqtts).")
    key_file: SecretFile | None = Field(None, description="Client private key (mqtts; mode "
                                        "0600).")
    topic_prefix: TopicName = Field("veilleuse", description="First level of every topic.")
    session_expiry_seconds: int = Field(86_400, ge=0, description="How long the broker keeps "
                                        "this sensor's session while it is away.")

    @field_validator("url")
    @classmethod
    def _no_password_in_clear(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.password and parts.scheme == "mqtt" and not is_loopback_host(parts.hostname or ""):
            raise ValueError(f"plain mqtt:// would send the password in clear text to "
                             f"{parts.hostname}; use mqtts://")
        return url

    @field_validator("password_file", "ca_file", "cert_file", "key_file")
    @classmethod
    def _secrets_need_tls(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        url = info.data.get("url")
        if path is None or url is None or not url.startswith("mqtt://"):
            return path
        if info.field_name != "password_file":
            raise ValueError(f"TLS files are only used with mqtts://, but the broker URL is "
                             f"{url}; write mqtts://host:8883 or remove {info.field_name}")
        host = urlsplit(url).hostname or ""
        if not is_loopback_host(host):
            raise ValueError(f"plain mqtt:// would send this password in clear text to {host}; "
                             "use mqtts:// (with ca_file) or a broker on this box")
        return path


def _loopback_broker(value: str) -> str:
    host = urlsplit(value).hostname or ""
    if not is_loopback_host(host):
        raise ValueError(f"{value!r}: the local broker is on this box; write "
                         "mqtt://127.0.0.1:1883 (the core goes in mqtt.url)")
    return value


class LocalBrokerConfig(_Section):
    url: Annotated[BrokerUrl, AfterValidator(_loopback_broker)] = Field(
        "mqtt://127.0.0.1:1883", description="The box's own Mosquitto, on loopback: the "
        "sensor copies its state, status and alerts there for the screen, best effort "
        "(nothing durable: the alert book and `mqtt` are the delivery). When `mqtt.url` is "
        "this same broker, one connection serves both.")
    username: str | None = Field(None, description="User name on the local broker "
                                 "(the package sets `veilleuse`).")
    password_file: SecretFile | None = Field(
        None, description="File holding that password (mode 0600; the package generates "
        "/etc/veilleuse/local-broker.password).")


class PrivacyConfig(_Section):
    device_ids: Literal["pseudonym", "address"] = Field(
        "pseudonym", description="How devices appear in what leaves the box: a keyed "
        "pseudonym (default) or, if the site opts in, their IP address.")
    share_device_identity: bool = Field(
        False, description="Also send each device's MAC address, the names it announces "
        "(DHCP, mDNS), its maker and DHCP vendor class with its alerts. Off by default: "
        "they stay on the box (its report, status and screen show them).")
    secret_file: Path = Field(Path("/var/lib/veilleuse/pseudonym.key"), description="The "
                              "site's pseudonym key, created on first use (mode 0600).")


class AlertsConfig(_Section):
    database: Path = Field(Path("/var/lib/veilleuse/alerts.sqlite"), description="The alert "
                           "book: every alert is stored here before it is published.")
    retention_days: int = Field(90, ge=1, description="Delivered alerts not seen for this "
                                "long are deleted; undelivered ones are always kept.")


class EvidenceConfig(_Section):
    recipients: tuple[AgeRecipient, ...] = Field(
        (), description="The helpline's age public keys (`age1...`). Evidence (the packets "
        "of a high alert's device with its indicator) is kept only when at least one is set, "
        "encrypted to them; with none, nothing is kept. See docs/evidence.md.")
    directory: Path = Field(Path("/var/lib/veilleuse/evidence"), description="Where the "
                            "encrypted bundles are kept (`<alert id>.tar.age`); deleted with "
                            "the alerts after alerts.retention_days.")
    window_seconds: float = Field(60.0, gt=0, le=3600, description="Packets are kept from "
                                  "this long before each sighting to this long after it.")
    max_alert_megabytes: float = Field(2.0, gt=0, description="Packets kept for one alert, "
                                       "at most (the first ones; the bundle says it was cut).")
    max_total_megabytes: float = Field(64.0, gt=0, description="All bundles together, at "
                                       "most: a new bundle that does not fit is not kept (the "
                                       "older evidence is), and the log says so.")
    ring_megabytes: int = Field(32, ge=4, le=512, description="Live sensor: the packets "
                                "Suricata keeps in RAM (pcap-log ring in runtime_directory) "
                                "for evidence to be cut from; only when recipients are set.")


class ScreenConfig(_Section):
    follow: Literal["sensor", "site"] = Field(
        "sensor", description="Show this box's sensor, or every sensor of the site (a "
        "front-desk display: the worst health, all recent alerts).")
    driver: Literal["ssd1306", "sh1106", "dummy"] = Field(
        "ssd1306", description="The OLED controller; dummy draws nowhere (tests, no screen).")
    i2c_port: int = Field(1, ge=0, description="I2C bus number (1 on a Raspberry Pi).")
    i2c_address: int = Field(0x3C, ge=0x03, le=0x77, description="I2C address of the display "
                             "(0x3C, sometimes 0x3D).")
    rotation: int = Field(0, ge=0, le=3, description="Rotation in quarter turns.")
    contrast: int = Field(40, ge=0, le=255, description="Brightness; low by default to "
                          "spare the OLED.")
    button_pin: int | None = Field(17, description="GPIO (BCM) of the button, or null.")
    led_pin: int | None = Field(27, description="GPIO (BCM) of the status LED, or null.")
    reveal_seconds: float = Field(60.0, gt=0, description="After a button press, details "
                                  "(app names, devices) stay visible this long.")
    blank_after_seconds: float = Field(300.0, gt=0, description="When all is clear, the "
                                       "screen goes dark after this long without a press.")


class DaemonConfig(_Section):
    state_directory: Path = Field(Path("/var/lib/veilleuse"), description="Where the "
                                  "sensor reads first-boot.json, what `veilleuse first-boot` "
                                  "could not do (a refused veilleuse.yaml, no mirror port), "
                                  "shown as health reasons. Suricata's files are in "
                                  "runtime_directory.")
    runtime_directory: Path = Field(Path("/run/veilleuse"), description="In RAM: the health "
                                    "file `veilleuse status` reads (mode 0640, directory "
                                    "0750) and, in suricata/ (0700), Suricata's generated "
                                    "config, eve.json, logs, command socket and the "
                                    "EVE offset. Keep it across service restarts (systemd: "
                                    "RuntimeDirectoryPreserve=yes); a reboot clears file and "
                                    "offset together.")
    max_drop_ratio: float = Field(0.05, ge=0, le=1, description="Capture drops above this "
                                  "share of packets make the sensor degraded.")
    silent_after_minutes: float = Field(10.0, gt=0, description="No mirrored traffic for "
                                        "this long makes the sensor degraded.")
    feeds_check_seconds: float = Field(60.0, gt=0, description="How often the sensor looks "
                                       "for updated feeds and reloads its matcher.")
    max_eve_megabytes: int = Field(16, ge=1, description="Suricata's eve.json is rotated past "
                                   "this size; one previous file is kept until read, so up to "
                                   "twice this lives in runtime_directory (RAM).")
    start_deadline_seconds: float = Field(
        90.0, gt=0, description="If capture is not running this long after start, the sensor "
        "is degraded (with Suricata's error), tells systemd it is ready anyway (so it is not "
        "restarted in a loop) and `veilleuse status` exits 1.")
    alert_update_seconds: float = Field(
        60.0, gt=0, le=3600, description="A new alert is written to the book at once; further "
        "sightings of a stored alert (its count, last seen) are written together this often, "
        "so that a busy network does not wear the SD card out, and the book is synced to the "
        "card this often (new alerts within a second): a power cut loses at most this long of "
        "those updates (docs/mqtt.md, Card writes).")
    mirror_check_seconds: float = Field(
        60.0, gt=0, description="How often the mirror interface is checked to be passive (no "
        "address, nothing sent but the self-test probes); otherwise: mirror_not_passive.")
    clock_grace_seconds: float = Field(
        300.0, ge=0, description="A system clock still not synchronised (NTP) this long after "
        "start makes the sensor degraded (clock_unsynchronised): alert times would be wrong "
        "and TLS to the core fails. Until then it is only noted in each alert.")
    error_limit_seconds: float = Field(
        600.0, gt=0, description="An unexpected error in the daemon's loop is logged, counted "
        "and reported (worker_error) and the loop goes on; if the same error keeps recurring "
        "for this long, the daemon exits with status 1 so that systemd restarts it.")


class SuricataSection(_Section):
    binary: str = Field("suricata", description="The Suricata program to run.")


class Config(_Section):
    """The whole configuration; every section has defaults, so an empty file is valid."""

    site: TopicName = Field("shelter", description="The site's short name (MQTT topics, "
                            "reports).")
    sensor: TopicName = Field("veilleuse", description="This box's short name.")
    language: Literal["fr", "en"] = Field("fr", description="Language of the screen and "
                                          "reports: fr or en.")
    network: NetworkConfig = Field(default_factory=NetworkConfig, description="Network.")
    feeds: FeedsConfig = Field(default_factory=FeedsConfig, description="Indicator feeds.")
    detection: DetectionConfig = Field(default_factory=DetectionConfig,
                                       description="Detection settings.")
    suricata: SuricataSection = Field(default_factory=SuricataSection,
                                      description="Suricata.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="The alert book.")
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig, description="Encrypted "
                                     "evidence of high alerts (docs/evidence.md).")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Publishing to the core.")
    local_broker: LocalBrokerConfig = Field(default_factory=LocalBrokerConfig,
                                            description="The box's own broker, for the screen.")
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig,
                                   description="What leaves the box.")
    daemon: DaemonConfig = Field(default_factory=DaemonConfig, description="The live "
                                 "sensor (`veilleuse run`).")
    screen: ScreenConfig = Field(default_factory=ScreenConfig, description="The status "
                                 "screen, button and LED (the veilleuse-screen process).")


def load_config(path: Path | str) -> Config:
    """Read and validate ``path``; ConfigError names the line and key of the first problem."""
    return load_config_file(path, Config, error=ConfigError,
                            missing="copy config/veilleuse.yaml there or pass --config",
                            top_keys="site:, feeds:", docs="docs/configuration.md")
