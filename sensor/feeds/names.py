"""Normalize domain names and IPs so the feed and the wire compare equal.

>>> normalize_domain("WWW.Copy9.COM.")
'www.copy9.com'
>>> normalize_domain("bücher.example")
'xn--bcher-kva.example'
>>> normalize_domain("_dmarc.example.com")
'_dmarc.example.com'
>>> normalize_ip("2001:DB8:0:0::1")
'2001:db8::1'
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import idna

from sensor.observations import canonical_ip


@functools.lru_cache(maxsize=65536)
def normalize_domain(name: str) -> str:
    """Lower-case ASCII (A-label) form without the trailing dot; ValueError if not a name.

    ASCII names are only lower-cased: names on the wire legitimately carry
    underscores (SRV, DMARC) that strict IDNA rejects. Non-ASCII names go
    through UTS #46 so a Unicode feed entry matches its punycode on the wire.
    Memoized: the same names come back all day.
    """
    text = name.strip().rstrip(".")
    if not text:
        raise ValueError("empty domain name")
    if text.isascii():
        text = text.lower()
    else:
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError as error:
            raise ValueError(f"not a valid internationalized domain name: {name!r} ({error})") \
                from None
    if any(not label for label in text.split(".")) or any(c in text for c in " /\\@:*"):
        raise ValueError(f"not a domain name: {name!r}")
    return text


def domain_suffixes(name: str) -> list[str]:
    """Every label-aligned suffix of a normalized name, longest first.

    >>> domain_suffixes("a.b.copy9.com")
    ['a.b.copy9.com', 'b.copy9.com', 'copy9.com', 'com']
    """
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def normalize_ip(value: str) -> str:
    """Canonical text of an IPv4 or IPv6 address; ValueError if it is not one."""
    return canonical_ip(value.strip())


class DomainSuffixSet:
    """A set of names that also covers their subdomains, label-aligned.

    >>> resolvers = DomainSuffixSet(["dns.nextdns.io"])
    >>> resolvers.find("abc123.dns.nextdns.io"), resolvers.find("nextdns.io")
    ('dns.nextdns.io', None)
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._names = frozenset(normalize_domain(name) for name in names)

    def __bool__(self) -> bool:
        return bool(self._names)

    def find(self, name: str) -> str | None:
        """The listed name covering ``name`` (most specific first), or None."""
        try:
            normalized = normalize_domain(name)
        except ValueError:
            return None
        return next((s for s in domain_suffixes(normalized) if s in self._names), None)
