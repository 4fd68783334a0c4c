"""The maker of a network card, from its MAC's OUI in the IEEE registry that netaddr ships.

netaddr (pure Python, maintained) carries the IEEE's OUI file (``oui.txt``,
unmodified) and an index of it (``oui.idx``: OUI, offset, size); its data is
as recent as the installed netaddr release. netaddr's own lookup loads that
index into a dict of lists, about 10 MB resident for 35,000 OUIs, a sixth of
the sensor's memory on a Pi; here it is read once into three sorted integer
arrays and searched by bisection, and each lookup reads one entry of
netaddr's file. A test checks it against netaddr's ``OUI.registration()``.
A locally administered (randomized) MAC has no maker: its first
bytes are chosen by the phone, not assigned by the IEEE.
"""

from __future__ import annotations

import bisect
import functools
import importlib.resources
import re
from array import array

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


class OuiRegistry:
    """netaddr's copy of the IEEE OUI registry, indexed compactly (see the module's doc)."""

    def __init__(self) -> None:
        data = importlib.resources.files("netaddr.eui")
        self._text = data / "oui.txt"
        numbers = [int(number) for number in
                   (data / "oui.idx").read_bytes().replace(b"\n", b",").split(b",")
                   if number.strip()]
        ouis, offsets, sizes = numbers[0::3], numbers[1::3], numbers[2::3]
        order = sorted(range(len(ouis)), key=ouis.__getitem__)
        self._ouis = array("l", [ouis[index] for index in order])
        self._offsets = array("l", [offsets[index] for index in order])
        self._sizes = array("l", [sizes[index] for index in order])

    def __len__(self) -> int:
        return len(self._ouis)

    def organisation(self, oui: int) -> str | None:
        """The organisation the IEEE registered ``oui`` (24 bits) to, or None."""
        index = bisect.bisect_left(self._ouis, oui)
        if index == len(self._ouis) or self._ouis[index] != oui:
            return None
        with self._text.open("rb") as registry:
            registry.seek(self._offsets[index])
            entry = registry.read(self._sizes[index])
        first = entry.split(b"\n", 1)[0].decode("utf-8", "replace")
        _, _, organisation = first.partition("(hex)")
        return organisation.strip() or None


@functools.cache
def oui_registry() -> OuiRegistry:
    """Loaded on the first maker lookup, then shared."""
    return OuiRegistry()


@functools.lru_cache(maxsize=4096)
def _maker_of_oui(oui: str) -> str | None:
    organisation = oui_registry().organisation(int(oui.replace(":", ""), 16))
    if organisation is None or organisation.lower() in _UNNAMED:
        return None
    return short_maker(organisation)


def maker_of(mac: str) -> str | None:
    """The maker of the card with this MAC, or None (randomized, or not in the registry).

    >>> maker_of("28:39:5e:12:34:56"), maker_of("da:a1:19:00:00:01")
    ('Samsung', None)
    """
    if is_randomized(mac):
        return None
    return _maker_of_oui(mac[:8])
