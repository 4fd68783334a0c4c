"""Spot devices whose DNS the sensor cannot read: DoH, DoT and DoQ.

Encrypted DNS is not malicious in itself (browsers and Android's Private DNS
use it), but every name-based detection is blind for that device. The alert
is informational and says so. One alert per device and method.

Recognised by the port of DoT and DoQ (853), by the name a DoH client sends
(SNI), and, for DoH clients that send no name (``https://1.1.1.1/dns-query``),
by the anycast address of the big public resolvers on port 443.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sensor.detect.model import AlertKind, Finding, Severity
from sensor.feeds.matcher import Allowlist
from sensor.feeds.names import DomainSuffixSet
from sensor.observations import (
    Endpoints,
    Flow,
    Observation,
    QuicHello,
    TlsHello,
    canonical_ip,
)

DNS_OVER_TLS_PORT = 853
_MAX_REMEMBERED = 65_536

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

DOH_PORT = 443

# The anycast addresses the big public resolvers publish for DoH, from their own
# documentation: Cloudflare (developers.cloudflare.com/1.1.1.1/ip-addresses), Google
# (developers.google.com/speed/public-dns/docs/using), Quad9
# (quad9.net/service/service-addresses-and-features), OpenDNS (support.opendns.com)
# and AdGuard (adguard-dns.io/kb/general/dns-providers).
# No maintained list ships in the feeds the sensor downloads; set
# detection.encrypted_dns_addresses to extend it.
PUBLIC_DOH_ADDRESSES = (
    "1.1.1.1", "1.0.0.1", "1.1.1.2", "1.0.0.2", "1.1.1.3", "1.0.0.3",
    "2606:4700:4700::1111", "2606:4700:4700::1001", "2606:4700:4700::1112",
    "2606:4700:4700::1002", "2606:4700:4700::1113", "2606:4700:4700::1003",
    "8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844",
    "9.9.9.9", "149.112.112.112", "9.9.9.10", "149.112.112.10", "9.9.9.11",
    "149.112.112.11", "2620:fe::fe", "2620:fe::9", "2620:fe::10", "2620:fe::fe:10",
    "2620:fe::11", "2620:fe::fe:11",
    "208.67.222.222", "208.67.220.220", "208.67.222.123", "208.67.220.123",
    "2620:119:35::35", "2620:119:53::53",
    "94.140.14.14", "94.140.15.15", "2a10:50c0::ad1:ff", "2a10:50c0::ad2:ff",
)

DOH = "dns-over-https"
DOT = "dns-over-tls"
DOQ = "dns-over-quic"


class EncryptedDnsDetector:
    """Reports the first and every later use of encrypted DNS per device and method."""

    name = "encrypted_dns"
    observes = (TlsHello, QuicHello, Flow)

    def __init__(self, allowlist: Allowlist | None = None,
                 resolvers: tuple[str, ...] = PUBLIC_DOH_RESOLVERS,
                 addresses: Iterable[str] = PUBLIC_DOH_ADDRESSES) -> None:
        self._allowlist = allowlist or Allowlist()
        self._resolvers = DomainSuffixSet(resolvers)
        self._addresses = frozenset(map(canonical_ip, addresses))
        # Connections already reported by their name: their flow must not count twice.
        self._named: set[Endpoints] = set()
        self._resolver_verdicts: dict[str, bool] = {}
        self.handlers = {Flow: self._flow, TlsHello: self._hello, QuicHello: self._hello}
        """What ``observe`` calls per observation type (the engine calls them directly)."""

    def observe(self, observation: Observation) -> tuple[Finding, ...]:
        # By exact type, a plain function: this runs for every flow and hello.
        if type(observation) is Flow:
            return self._flow(observation)
        if type(observation) is TlsHello or type(observation) is QuicHello:
            return self._hello(observation)
        return ()

    def _hello(self, hello: TlsHello | QuicHello) -> tuple[Finding, ...]:
        endpoints, name = hello.endpoints, hello.sni
        if endpoints.server_port == DNS_OVER_TLS_PORT:
            method = DOT if type(hello) is TlsHello else DOQ
        elif self._is_resolver(name):
            method = DOH
            self._named.add(endpoints)
        else:
            return ()
        protocol = "tls" if type(hello) is TlsHello else "quic"
        return self._finding(hello.time, endpoints.client, method, name.lower().rstrip("."),
                             protocol)

    def _flow(self, flow: Flow) -> tuple[Finding, ...]:
        endpoints = flow.endpoints
        if endpoints.server_port == DNS_OVER_TLS_PORT:
            method = DOT if endpoints.transport == "tcp" else DOQ
            return self._finding(flow.time, endpoints.client, method, endpoints.server,
                                 endpoints.transport)
        if endpoints.server_port != DOH_PORT or endpoints.server not in self._addresses:
            return ()
        if endpoints in self._named:
            self._named.discard(endpoints)
            return ()
        return self._finding(flow.time, endpoints.client, DOH, endpoints.server,
                             endpoints.transport)

    def _is_resolver(self, name: str) -> bool:
        """Memoized per name (bounded): most names are asked for again and again."""
        verdict = self._resolver_verdicts.get(name)
        if verdict is None:
            if len(self._resolver_verdicts) >= _MAX_REMEMBERED:
                self._resolver_verdicts.clear()
            verdict = self._resolver_verdicts[name] = self._resolvers.find(name) is not None
        return verdict

    def flush(self) -> Iterator[Finding]:
        return iter(())

    def _finding(self, time: float, device: str, method: str, observed: str,
                 protocol: str) -> tuple[Finding, ...]:
        if self._allowlist.covers(observed):
            return ()
        return (Finding(kind=AlertKind.ENCRYPTED_DNS, severity=Severity.INFO, device=device,
                      indicator=method, observed=observed, protocol=protocol, time=time),)
