"""Indicator-of-compromise detection: names and IPs that a feed lists.

Matches DNS queries and answers (including CNAME targets), TLS and QUIC
server names, HTTP Host headers and flow destinations. An IP that a listed C2
name resolved to is remembered for the device that asked, for a bounded
window, so a later connection to it is reported even without a name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sensor.detect.model import AlertKind, Finding, Severity
from sensor.feeds.matcher import IndicatorMatcher, Match
from sensor.feeds.model import Category
from sensor.observations import (
    DnsAnswer,
    DnsQuery,
    Flow,
    HttpRequest,
    Observation,
    QuicHello,
    TlsHello,
)

_KIND = {Category.C2: AlertKind.DOMAIN, Category.WATCHWARE: AlertKind.WATCHWARE,
         Category.WEBSITE: AlertKind.WEBSITE, Category.SELFTEST: AlertKind.SELFTEST}
_SEVERITY = {Category.C2: Severity.HIGH, Category.WATCHWARE: Severity.MEDIUM,
             Category.WEBSITE: Severity.LOW, Category.SELFTEST: Severity.INFO}
_ADDRESS_TYPES = frozenset({"A", "AAAA"})
_MAX_LEARNED = 100_000


@dataclass(frozen=True, slots=True)
class _Learned:
    match: Match
    learned_at: float


def http_host_name(host: str) -> str:
    """The name part of an HTTP Host header (drops the port, keeps IPv6 literals).

    >>> http_host_name("copy9.com:8080"), http_host_name("[2001:db8::1]:80")
    ('copy9.com', '2001:db8::1')
    """
    host = host.strip()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class IocDetector:
    """Turns observations that hit a listed indicator into findings.

    ``observe`` returns a tuple, empty in the common case (nothing listed):
    one memoized look-up per name, no generator.
    """

    name = "ioc"
    observes = (DnsQuery, DnsAnswer, TlsHello, QuicHello, HttpRequest, Flow)

    def __init__(self, matcher: IndicatorMatcher, resolved_ip_window: float = 3600.0) -> None:
        self._matcher = matcher
        self._match_domain = matcher.match_domain
        self._window = resolved_ip_window
        self._learned: dict[tuple[str, str], _Learned] = {}
        self.handlers: dict[type, Callable[[Any], tuple[Finding, ...]]] = {
            DnsQuery: self._query, DnsAnswer: self._answer, TlsHello: self._hello,
            QuicHello: self._hello, HttpRequest: self._request, Flow: self._flow}
        """What ``observe`` calls per observation type (the engine calls them directly)."""

    def wants_name(self, name: str) -> bool:
        """Whether a DNS name can give a finding: a feed lists it (the engine's
        ``dns_name_filter``; the verdict is the memoized one the handlers use)."""
        return self._match_domain(name) is not None

    def observe(self, observation: Observation) -> tuple[Finding, ...]:
        handler = self.handlers.get(type(observation))
        return () if handler is None else handler(observation)

    def flush(self) -> Iterator[Finding]:
        return iter(())

    def _query(self, query: DnsQuery) -> tuple[Finding, ...]:
        # The common case (nothing listed) without a further call: one memoized look-up.
        if not query.name or self._match_domain(query.name) is None:
            return ()
        return self._name(query.time, query.endpoints.client, query.name, "dns")

    def _hello(self, hello: TlsHello | QuicHello) -> tuple[Finding, ...]:
        if not hello.sni or self._match_domain(hello.sni) is None:
            return ()
        protocol = "tls" if type(hello) is TlsHello else "quic"
        return self._name(hello.time, hello.endpoints.client, hello.sni, protocol)

    def _request(self, request: HttpRequest) -> tuple[Finding, ...]:
        return self._name(request.time, request.endpoints.client,
                          http_host_name(request.host), "http")

    def _name(self, time: float, device: str, name: str, protocol: str) -> tuple[Finding, ...]:
        match = self._matcher.match_domain(name) if name else None
        if match is None:
            return ()
        return (_finding(match, _KIND[match.indicator.category], device, protocol, time),)

    def _best(self, names: Iterable[str]) -> Match | None:
        match_domain = self._matcher.match_domain
        matches = [m for n in names if n and (m := match_domain(n)) is not None]
        if not matches:
            return None
        return min(matches, key=lambda m: (m.indicator.category.precedence, m.observed))

    def _answer(self, answer: DnsAnswer) -> tuple[Finding, ...]:
        device = answer.endpoints.client
        names = [answer.query_name]
        for record in answer.records:
            names.append(record.name)
            if record.rrtype == "CNAME":
                names.append(record.data)
        match = self._best(names)
        if match is None:
            return ()
        if match.indicator.category is Category.C2:
            for record in answer.records:
                if record.rrtype in _ADDRESS_TYPES:
                    self._learn(device, record.data, match, answer.time)
        return (_finding(match, _KIND[match.indicator.category], device, "dns", answer.time),)

    def _learn(self, device: str, address: str, match: Match, time: float) -> None:
        if len(self._learned) >= _MAX_LEARNED:
            oldest = min(self._learned, key=lambda key: self._learned[key].learned_at)
            del self._learned[oldest]
        self._learned[(device, address)] = _Learned(match, time)

    def _flow(self, flow: Flow) -> tuple[Finding, ...]:
        device, server = flow.endpoints.client, flow.endpoints.server
        protocol = flow.endpoints.transport
        listed = self._matcher.match_ip(server)
        if listed is not None:
            kind = AlertKind.IP if listed.indicator.category is Category.C2 \
                else _KIND[listed.indicator.category]
            return (_finding(listed, kind, device, protocol, flow.time),)
        learned = self._learned.get((device, server)) if self._learned else None
        if learned is not None and learned.learned_at <= flow.time <= \
                learned.learned_at + self._window:
            return (_finding(Match(learned.match.indicator, server), AlertKind.IP, device,
                             protocol, flow.time,
                             details=(("resolved_from", learned.match.observed),)),)
        return ()


def _finding(match: Match, kind: AlertKind, device: str, protocol: str, time: float,
             details: tuple[tuple[str, str], ...] = ()) -> Finding:
    return Finding(kind=kind, severity=_SEVERITY[match.indicator.category], device=device,
                   indicator=match.indicator.value, observed=match.observed, protocol=protocol,
                   time=time, app=match.indicator.app, details=details)
