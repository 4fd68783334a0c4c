"""Is the system clock synchronised? systemd-timesyncd's flag, else the kernel's NTP state.

A Raspberry Pi has no battery-backed clock: until NTP answers, it boots with
the time it last saved, days or months behind. Alert times would be wrong
and a retention purge could delete alerts that are not old at all. Not the
job of this module: setting the clock (timesyncd, chrony or ntpd do).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
TIME_ERROR = 5        # adjtimex: the clock is not synchronised
STA_UNSYNC = 0x0040   # timex.status: the kernel marks the clock unsynchronised

ClockProbe = Callable[[], bool]
"""What the daemon calls to learn whether the clock can be trusted (tests inject their own)."""


class _Timex(ctypes.Structure):
    # struct timex up to ``status``; the kernel writes the rest into the padding.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("_rest", ctypes.c_byte * 256)]


def kernel_synchronised() -> bool:
    """The kernel's view (adjtimex with modes=0, read-only): chrony and ntpd keep it up to date.

    A sandbox that filters the call (systemd's ProtectClock=yes denies the
    @clock system calls, adjtimex included) makes it fail: that reads as
    unsynchronised, so such a unit relies on timesyncd's flag file.
    """
    libc = ctypes.CDLL(None)  # the C library already loaded in this process
    timex = _Timex()  # modes = 0: read, change nothing
    state = libc.adjtimex(ctypes.byref(timex))
    return state not in (-1, TIME_ERROR) and not timex.status & STA_UNSYNC


@dataclass(frozen=True, slots=True)
class SystemClock:
    """The default probe: timesyncd's flag file if it exists, else the kernel's NTP state."""

    flag_file: Path = TIMESYNC_FLAG
    kernel: Callable[[], bool] = kernel_synchronised

    def __call__(self) -> bool:
        return self.flag_file.exists() or self.kernel()
