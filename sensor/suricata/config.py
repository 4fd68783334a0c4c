"""Write the suricata.yaml Veilleuse runs Suricata with.

We generate the whole file rather than patch Debian's: the EVE types and
fields the analyzer relies on are then guaranteed, whatever the package
version ships as defaults. Suricata only accepts YAML 1.1 with its header.

Suricata is asked for what ``sensor.capture.eve`` reads and nothing more,
because every record it writes costs it CPU and costs us a decode: DNS
queries and answers (a CNAME or an address of a listed name), the TLS and
QUIC SNI, HTTP hosts, and flows (listed addresses, beacons,
DNS over TLS), and what names devices: DHCP (extended, for the host name and
vendor class), mDNS answers (DNS on UDP 5353) and the Ethernet addresses of
neighbour discovery flows. No rules and no ``alert`` records (detection is ours), the
parsers of protocols we never read are off, and a TLS session is bypassed
once encrypted: its flow is still logged, but its records are not parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# App-layer parsers Suricata 7 has and ``sensor.capture.eve`` never reads: off, so no
# flow pays for probing them.
UNREAD_PROTOCOLS = ("ftp", "smtp", "ssh", "imap", "smb", "dcerpc", "nfs", "ntp", "tftp", "ike",
                    "krb5", "snmp", "sip", "rfb", "mqtt", "telnet", "rdp", "http2",
                    "bittorrent-dht", "modbus", "dnp3", "enip", "pgsql")
DEFAULT_HOME_NET = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fe80::/10")
RING_FILE = "evidence.pcap"  # pcap-log names its files evidence.pcap.<UNIX seconds>
RING_FILE_MEGABYTES = 4  # Suricata 7 refuses pcap-log files under 4 MiB


@dataclass(frozen=True, slots=True)
class SuricataSettings:
    """What Veilleuse needs to tell Suricata."""

    binary: str = "suricata"
    home_net: tuple[str, ...] = DEFAULT_HOME_NET
    evidence_ring_files: int = 0
    """With N > 0: every packet also goes to a pcap-log ring of N files of 4 MiB in the log
    directory (RAM under the live sensor), that evidence of high alerts is cut from."""


def suricata_config(settings: SuricataSettings, log_dir: Path, *,
                    eve_filename: str = "eve.json") -> dict[str, Any]:
    """The configuration as a mapping (tests inspect it; ``render`` writes it)."""
    return {
        "vars": {
            "address-groups": {
                "HOME_NET": "[" + ",".join(settings.home_net) + "]",
                "EXTERNAL_NET": "!$HOME_NET",
                "DNS_SERVERS": "$HOME_NET",
            },
            "port-groups": {"HTTP_PORTS": "80", "DNS_PORTS": "53", "ORACLE_PORTS": "1521",
                            "SSH_PORTS": "22", "SHELLCODE_PORTS": "!80",
                            "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]"},
        },
        "default-log-dir": str(log_dir),
        "default-rule-path": str(log_dir),
        "rule-files": [],  # Veilleuse detects in Python; see ``render_suricata_config``
        "outputs": [{"eve-log": {
            "enabled": True,
            "filetype": "regular",
            "filename": eve_filename,
            "filemode": "600",  # raw addresses: private whatever the umask
            "ethernet": True,  # MACs: neighbour discovery names devices by them
            "types": [
                {"dns": {"enabled": True, "requests": True, "responses": True,
                         "formats": ["detailed"]}},
                # session-resumption (Suricata's default, pinned): the record of a hello that
                # carries a session_ticket extension is written when its flow ends, answered
                # or not, so a one-way mirror or a blackholed server still gives its SNI. A
                # hello without one and no certificate or TLS 1.3 ServerHello gives no record
                # (Suricata's JsonTlsLogger; docs/suricata-tls-records.md).
                {"tls": {"custom": ["sni"], "session-resumption": True}},
                {"http": {"extended": False}},
                "quic",
                "flow",
                {"dhcp": {"enabled": True, "extended": True}},  # device identity
            ],
        }}],
        "logging": {"default-log-level": "notice",
                    "outputs": [{"console": {"enabled": True}}]},
        "app-layer": {"protocols": {
            **{name: {"enabled": False} for name in UNREAD_PROTOCOLS},
            "tls": {"enabled": True, "detection-ports": {"dp": "443"},
                    "encryption-handling": "bypass"},
            # A request whose header lines pass libhtp's 18 KiB field limit is logged
            # without its Host: a padded header must not hide one (scapy's source reads
            # the Host of 16 KiB of headers, whatever follows).
            "http": {"enabled": True,
                     "libhtp": {"default-config": {"meta-field-limit": "64kb"}}},
            "quic": {"enabled": True},
            "dhcp": {"enabled": True},
            # 5353: mDNS, where devices announce their names (over TCP: its fallback for
            # long messages, which tshark reads as DNS)
            "dns": {"tcp": {"enabled": True, "detection-ports": {"dp": "[53, 5353]"}},
                    "udp": {"enabled": True, "detection-ports": {"dp": "[53, 5353]"}}},
        }},
        # A sensor that boots while connections are open, or a mirror port that carries
        # one direction only, sees connections without their handshake or their replies:
        # Suricata must pick them up anyway, as the packet sources do.
        "stream": {"checksum-validation": False, "midstream": True, "async-oneside": True},
        "flow-timeouts": {"default": {"new": 30, "established": 300, "closed": 0},
                          "tcp": {"new": 60, "established": 600, "closed": 60},
                          "udp": {"new": 30, "established": 300}},
    }


def render_suricata_config(settings: SuricataSettings, log_dir: Path,
                           rule_paths: Sequence[str] = (), *, interface: str | None = None,
                           command_socket: Path | None = None) -> str:
    """suricata.yaml text, with the ``%YAML 1.1`` header Suricata insists on.

    With ``rule_paths``: those rules and ``alert`` records (the live sensor and
    ``analyze`` pass none); with ``interface``: af-packet capture on it (live);
    with ``command_socket``: the unix command socket the supervisor watches
    Suricata through.
    """
    config = suricata_config(settings, log_dir)
    if rule_paths:  # for the tests of `veilleuse rules`: the sensor itself loads none
        config["rule-files"] = list(rule_paths)
        config["outputs"][0]["eve-log"]["types"].insert(0, {"alert": {"tagged-packets": False}})
    if settings.evidence_ring_files:
        config["outputs"].append({"pcap-log": {
            "enabled": True, "filename": RING_FILE, "mode": "normal",
            "limit": f"{RING_FILE_MEGABYTES}mb", "max-files": settings.evidence_ring_files,
            "compression": "none", "use-stream-depth": False, "honor-pass-rules": False}})
    if interface is not None:
        config["af-packet"] = [{"interface": interface, "cluster-id": 99,
                                "cluster-type": "cluster_flow", "defrag": True,
                                "use-mmap": True, "tpacket-v3": True}]
    if command_socket is not None:
        config["unix-command"] = {"enabled": True, "filename": str(command_socket)}
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    return "%YAML 1.1\n---\n" + body
