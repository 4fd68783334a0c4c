"""Match names and IPs seen on the wire against the indicators of a feed version.

Built once per feed version; matching is a few set look-ups per name, one per
label-aligned suffix, so a listed ``copy9.com`` matches ``x.copy9.com`` but
not ``notcopy9.com`` nor ``copy9.com.example.net``.

>>> from sensor.feeds.model import Category, Indicator, preference
>>> m = IndicatorMatcher([Indicator("copy9.com", Category.C2, "TheTruthSpy"),
...                       Indicator("abc.firebaseio.com", Category.C2, "X")])
>>> m.match_domain("X.Copy9.com.").indicator.value
'copy9.com'
>>> m.match_domain("notcopy9.com") is None, m.match_domain("copy9.com.example.net") is None
(True, True)
>>> m.match_domain("firebaseio.com") is None
True

The allowlist can silence vendor websites, watchware and behaviour
detections, never a listed stalkerware C2 indicator.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sensor.feeds.model import Category, Indicator, preference
from sensor.feeds.names import DomainSuffixSet, domain_suffixes, normalize_domain, normalize_ip

log = logging.getLogger(__name__)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_REMEMBERED = 65_536
_UNKNOWN = object()  # a verdict not memoized yet (None is a verdict: no match)


@dataclass(frozen=True, slots=True)
class Match:
    """An indicator and the normalized name or IP that hit it."""

    indicator: Indicator
    observed: str


class Allowlist:
    """Names (with their subdomains) and networks the site declares benign."""

    def __init__(self, domains: Iterable[str] = (), networks: Iterable[str] = ()) -> None:
        self._domains = DomainSuffixSet(domains)
        self._networks: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(net, strict=False) for net in networks)

    def __bool__(self) -> bool:
        return bool(self._domains or self._networks)

    def covers_domain(self, name: str) -> bool:
        """True if ``name`` (normalized) is an allowlisted name or one of its subdomains."""
        return self._domains.find(name) is not None

    def covers_ip(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in network for network in self._networks)

    def covers(self, value: str) -> bool:
        """True if the name or IP ``value`` is allowlisted."""
        try:
            return self.covers_ip(value)
        except ValueError:
            return self.covers_domain(value)


class IndicatorMatcher:
    """Looks names and IPs up in one feed version's indicators."""

    def __init__(self, indicators: Iterable[Indicator], allowlist: Allowlist | None = None) -> None:
        self.allowlist = allowlist or Allowlist()
        self._domains: dict[str, Indicator] = {}
        self._ips: dict[str, Indicator] = {}
        self._domain_verdicts: dict[str, Match | None] = {}
        self._ip_verdicts: dict[str, Match | None] = {}
        for indicator in indicators:
            table = self._ips if indicator.is_ip else self._domains
            known = table.get(indicator.value)
            if known is None or indicator.category.precedence < known.category.precedence:
                table[indicator.value] = indicator
        self._warn_about_allowlist()

    def __len__(self) -> int:
        return len(self._domains) + len(self._ips)

    def _warn_about_allowlist(self) -> None:
        if not self.allowlist:  # the usual case: a million-name feed needs no walk
            return
        hidden = [value for table, covers in ((self._domains, self.allowlist.covers_domain),
                                              (self._ips, self.allowlist.covers_ip))
                  for value, indicator in table.items()
                  if indicator.category is Category.C2 and covers(value)]
        if hidden:
            log.warning("the allowlist covers %d stalkerware C2 indicator(s) (e.g. %s); "
                        "C2 indicators are always reported, the allowlist is ignored for them",
                        len(hidden), hidden[0])

    def match_domain(self, name: str) -> Match | None:
        """The most severe, then most specific, indicator covering ``name``, or None.

        Memoized per matcher (the verdict of a name is fixed for a feed version).
        """
        try:
            return self._domain_verdicts[name]
        except KeyError:
            pass
        if len(self._domain_verdicts) >= _MAX_REMEMBERED:
            self._domain_verdicts.clear()
        verdict = self._domain_verdicts[name] = self._match_domain(name)
        return verdict

    def _match_domain(self, name: str) -> Match | None:
        try:
            observed = normalize_domain(name)
        except ValueError:
            return None
        hits = [self._domains[suffix] for suffix in domain_suffixes(observed)
                if suffix in self._domains]
        return self._allowed(min(hits, key=preference) if hits else None, observed)

    def match_ip(self, address: str) -> Match | None:
        """The indicator listing exactly this IP, or None.

        Memoized per matcher, as names are: every flow asks for its server.
        """
        verdict = self._ip_verdicts.get(address, _UNKNOWN)
        if verdict is _UNKNOWN:
            if len(self._ip_verdicts) >= _MAX_REMEMBERED:
                self._ip_verdicts.clear()
            verdict = self._ip_verdicts[address] = self._match_ip(address)
        return verdict  # type: ignore[return-value]

    def _match_ip(self, address: str) -> Match | None:
        try:
            observed = normalize_ip(address)
        except ValueError:
            return None
        return self._allowed(self._ips.get(observed), observed)

    def _allowed(self, indicator: Indicator | None, observed: str) -> Match | None:
        if indicator is None:
            return None
        if indicator.category is not Category.C2 and self.allowlist.covers(observed):
            return None
        return Match(indicator, observed)
