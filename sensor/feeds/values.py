"""Check one listed value and make it an ``Indicator``, whatever the feed format.

The checks are what both DNS and a Suricata rule can hold
(``indicator_domain``, ``indicator_ip``), so the matcher and the compiled
rules see the same set. Not the job of this module: where the value sat in
its file (the loaders report that).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from sensor.feeds.model import Category, Indicator
from sensor.feeds.names import indicator_domain, indicator_ip, shown

ValueKind = Literal["domain", "ip", "url", "either"]
"""What a value must be: a name, an address, a URL (its host is kept) or either of the first two."""


def url_host(url: str) -> str:
    """The host part of ``url`` (a URL without a scheme is read as http://).

    >>> url_host("https://C2.Example:8443/api?x=1"), url_host("cdn.example/app.apk")
    ('c2.example', 'cdn.example')
    >>> url_host("http://[2001:db8::7]/x")
    '2001:db8::7'
    """
    if not url.isprintable():  # urlsplit drops tabs and newlines silently: refuse them first
        raise ValueError(f"{shown(url)} holds control or invisible characters")
    try:
        host = urlsplit(url if "://" in url else f"http://{url}").hostname
    except ValueError as error:
        raise ValueError(f"not a URL: {shown(url)} ({error})") from None
    if not host:
        raise ValueError(f"URL {shown(url)} names no host")
    return host


def checked_indicator(raw: Any, kind: ValueKind, category: Category, app: str) -> Indicator:
    """One value as an ``Indicator``, or ValueError saying why it cannot be one."""
    if not isinstance(raw, str):
        raise ValueError(f"expected text, got {shown(raw)}")
    value = url_host(raw) if kind == "url" else raw
    if kind == "ip":
        return Indicator(indicator_ip(value), category, app, is_ip=True)
    if kind == "domain":
        return Indicator(indicator_domain(value), category, app)
    try:
        return Indicator(indicator_ip(value), category, app, is_ip=True)
    except ValueError as not_ip:
        try:
            return Indicator(indicator_domain(value), category, app)
        except ValueError as not_name:
            raise ValueError(f"neither an IP address ({not_ip}) nor a domain name "
                             f"({not_name})") from None
