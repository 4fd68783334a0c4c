"""Is the system clock synchronised? systemd-timesyncd's flag, else the kernel's NTP state.

The kernel's state is asked of systemd-timedated (`timedatectl`, over D-Bus):
it reads adjtimex as root, while the sensor's unit forbids the @clock system
calls (ProtectClock=yes). The direct adjtimex read is the last resort, for a
process outside such a sandbox.

A Raspberry Pi has no battery-backed clock: until NTP answers, it boots with
the time it last saved, days or months behind. Alert times would be wrong
and a retention purge could delete alerts that are not old at all. Not the
job of this module: setting the clock (timesyncd, chrony or ntpd do).
"""

from __future__ import annotations

import ctypes
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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


def timedated_synchronised() -> bool:
    """The kernel's NTP state as systemd-timedated reports it; the direct read if it cannot."""
    try:
        answer = subprocess.run(["timedatectl", "show", "--property=NTPSynchronized",
                                 "--value"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return kernel_synchronised()
    if answer.returncode != 0 or answer.stdout.strip() not in ("yes", "no"):
        return kernel_synchronised()
    return answer.stdout.strip() == "yes"


@dataclass(slots=True)
class SystemClock:
    """The default probe: timesyncd's flag file if it exists, else the kernel's NTP state.

    The answer is kept ``cache_seconds``: the daemon asks for every alert it
    stores, and the kernel's state is a process and a D-Bus call away.
    """

    flag_file: Path = TIMESYNC_FLAG
    kernel: Callable[[], bool] = timedated_synchronised
    cache_seconds: float = 30.0
    _answer: tuple[float, bool] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._answer is None or now - self._answer[0] > self.cache_seconds:
                self._answer = (now, self.flag_file.exists() or self.kernel())
            return self._answer[1]
