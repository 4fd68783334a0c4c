"""The maker of a network card, from its MAC's OUI in the IEEE registry that netaddr ships.

netaddr (pure Python, maintained) carries the IEEE's OUI file and an index;
a lookup reads one entry. Its data is as recent as the installed netaddr
release. A locally administered (randomized) MAC has no maker: its first
bytes are chosen by the phone, not assigned by the IEEE.
"""

from __future__ import annotations

import functools
import re

from netaddr import EUI, AddrFormatError, NotRegisteredError

_SUFFIXES = re.compile(
    r"(?:\s+(?:co|ltd|inc|corp|corporation|corporate|electronics|technologies|technology|"
    r"communications?|limited|gmbh|llc|manufacturing|mobile|semiconductor|s\.?a|ag|"
    r"international|industrial|incorporated)\.?)+$", re.IGNORECASE)
_UNNAMED = frozenset({"private", "ieee registration authority"})  # the IEEE hides the name


def is_randomized(mac: str) -> bool:
    """True if the locally administered bit is set (a private, randomized MAC).

    >>> is_randomized("da:a1:19:00:00:01"), is_randomized("28:39:5e:00:00:01")
    (True, False)
    """
    return bool(int(mac[:2], 16) & 0x02)


def short_maker(organisation: str) -> str:
    """The registry's organisation name without its legal suffixes.

    >>> short_maker("Samsung Electronics Co.,Ltd"), short_maker("Apple, Inc.")
    ('Samsung', 'Apple')
    >>> short_maker("Xiaomi Communications Co Ltd"), short_maker("Raspberry Pi Foundation")
    ('Xiaomi', 'Raspberry Pi Foundation')
    """
    name = organisation.split(",")[0].strip()
    return _SUFFIXES.sub("", name).strip() or name


@functools.lru_cache(maxsize=4096)
def _maker_of_oui(oui: str) -> str | None:
    try:
        registration = EUI(f"{oui}:00:00:00").oui.registration()
    except (NotRegisteredError, AddrFormatError, IndexError):
        return None
    if registration.org.strip().lower() in _UNNAMED:
        return None
    return short_maker(registration.org)


def maker_of(mac: str) -> str | None:
    """The maker of the card with this MAC, or None (randomized, or not in the registry).

    >>> maker_of("28:39:5e:12:34:56"), maker_of("da:a1:19:00:00:01")
    ('Samsung', None)
    """
    if is_randomized(mac):
        return None
    return _maker_of_oui(mac[:8])
