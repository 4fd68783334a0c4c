"""Spot devices whose DNS the sensor cannot read: DoH, DoT and DoQ.

Encrypted DNS is not malicious in itself (browsers and Android's Private DNS
use it), but every name-based detection is blind for that device. The alert
is informational and says so. One alert per device and method.
"""

from __future__ import annotations

from collections.abc import Iterator

from sensor.detect.model import AlertKind, Finding, Severity
from sensor.feeds.matcher import Allowlist
from sensor.feeds.names import DomainSuffixSet
from sensor.observations import Flow, Observation, QuicHello, TlsHello

DNS_OVER_TLS_PORT = 853

# Public resolvers that answer DNS over HTTPS; names cover their subdomains
# (per-profile names such as <id>.dns.nextdns.io).
PUBLIC_DOH_RESOLVERS = (
    "dns.google", "dns.google.com", "cloudflare-dns.com", "one.one.one.one",
    "dns.quad9.net", "doh.opendns.com", "doh.familyshield.opendns.com", "dns.nextdns.io",
    "doh.cleanbrowsing.org", "dns.adguard-dns.com", "dns.adguard.com", "doh.mullvad.net",
    "dns.mullvad.net", "doh.dns.sb", "dns.alidns.com", "doh.pub", "ordns.he.net",
    "dns.controld.com", "freedns.controld.com", "dns0.eu", "doh.libredns.gr",
    "dns.switch.ch", "doh.ffmuc.net", "dns.digitale-gesellschaft.ch",
)

DOH = "dns-over-https"
DOT = "dns-over-tls"
DOQ = "dns-over-quic"


class EncryptedDnsDetector:
    """Reports the first and every later use of encrypted DNS per device and method."""

    name = "encrypted_dns"

    def __init__(self, allowlist: Allowlist | None = None,
                 resolvers: tuple[str, ...] = PUBLIC_DOH_RESOLVERS) -> None:
        self._allowlist = allowlist or Allowlist()
        self._resolvers = DomainSuffixSet(resolvers)

    def observe(self, observation: Observation) -> Iterator[Finding]:
        match observation:
            case TlsHello(sni=name) | QuicHello(sni=name):
                endpoints = observation.endpoints
                if endpoints.server_port == DNS_OVER_TLS_PORT:
                    method = DOT if isinstance(observation, TlsHello) else DOQ
                elif self._resolvers.find(name) is not None:
                    method = DOH
                else:
                    return
                protocol = "tls" if isinstance(observation, TlsHello) else "quic"
                yield from self._finding(observation.time, endpoints.client, method,
                                         name.lower().rstrip("."), protocol)
            case Flow(endpoints=endpoints) if endpoints.server_port == DNS_OVER_TLS_PORT:
                method = DOT if endpoints.transport == "tcp" else DOQ
                yield from self._finding(observation.time, endpoints.client, method,
                                         endpoints.server, endpoints.transport)

    def flush(self) -> Iterator[Finding]:
        return iter(())

    def _finding(self, time: float, device: str, method: str, observed: str,
                 protocol: str) -> Iterator[Finding]:
        if self._allowlist.covers(observed):
            return
        yield Finding(kind=AlertKind.ENCRYPTED_DNS, severity=Severity.INFO, device=device,
                      indicator=method, observed=observed, protocol=protocol, time=time)
