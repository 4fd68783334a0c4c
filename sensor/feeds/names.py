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
import ipaddress
import re
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


MAX_NAME_LENGTH = 253  # RFC 1035, in its dotted text form
MAX_LABEL_LENGTH = 63
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_ASCII_NAME = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+"
                         r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
"""A well-formed name of two labels or more, already normalized: the common case, one regex."""


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about hostile input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def indicator_domain(value: str) -> str:
    """A listed name, normalized, that DNS and a Suricata rule can both hold; else ValueError.

    Stricter than ``normalize_domain`` (which reads names seen on the wire):
    letters, digits, '-' and '_' only (after IDNA), labels of 1-63
    characters that neither start nor end with '-', 253 characters at most,
    and at least two labels (a lone top-level domain would match half the
    Internet).

    >>> indicator_domain("Bücher.Example.")
    'xn--bcher-kva.example'
    >>> indicator_domain("com")
    Traceback (most recent call last):
    ...
    ValueError: 'com' is a single label; list a full name (app.example)
    """
    if value.isascii() and value.isprintable():  # fast path: a feed can list a million names
        name = value.strip().rstrip(".").lower()
        if len(name) <= MAX_NAME_LENGTH and _ASCII_NAME.fullmatch(name):
            return value if name == value else name  # keep one copy of each string
    if not value.isprintable():
        raise ValueError(f"{shown(value)} holds control or invisible characters")
    name = normalize_domain(value)
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"{shown(value)} is longer than {MAX_NAME_LENGTH} characters")
    labels = name.split(".")
    if len(labels) < 2:
        raise ValueError(f"{shown(value)} is a single label; list a full name (app.example)")
    for label in labels:
        if len(label) > MAX_LABEL_LENGTH:
            raise ValueError(f"label {shown(label, 20)} of {shown(value)} is longer than "
                             f"{MAX_LABEL_LENGTH} characters")
        if not _LABEL.fullmatch(label):
            raise ValueError(f"label {shown(label, 20)} of {shown(value)} holds a character a "
                             "domain name cannot (letters, digits, '-' and '_' only)")
    return name


def indicator_ip(value: str) -> str:
    """A listed IP address, canonical, that can be a server on the Internet; else ValueError.

    Refuses what Suricata cannot load or what can never be a remote server: a
    scope (``fe80::1%eth0``), a network (``10.0.0.0/8``), unspecified,
    loopback, link-local, multicast and reserved addresses.

    >>> indicator_ip("2001:DB8::0:7")
    '2001:db8::7'
    """
    if "%" in value:
        raise ValueError(f"{shown(value)} has an interface scope (%...); list the address "
                         "alone")
    if "/" in value:
        raise ValueError(f"{shown(value)} is a network; list single addresses")
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"not an IP address: {shown(value)}") from None
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        raise ValueError(f"{shown(value)} is an IPv4-mapped address; list {mapped} instead")
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved"):
        if getattr(address, f"is_{kind}"):
            raise ValueError(f"{shown(value)} is a {kind.replace('_', '-')} address, never "
                             "a server on the Internet")
    return str(address)


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
