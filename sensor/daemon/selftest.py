"""`veilleuse selftest`: send a harmless probe through the real sensor and watch it come out.

The probe is a DNS query for a random name under ``selftest.veilleuse.invalid``
(a reserved name that never resolves), from and to documentation addresses,
sent out of the monitored interface, where capture sees it. The running
sensor knows that name as its own test indicator: the probe must become a
``selftest`` alert (severity info) in the alert book, then be acknowledged by
the core's broker (``mqtt.url``: the book retires an alert only on its PUBACK;
on a box without a core, that is the box's own broker, and the result says
so). Nothing reaches the network beyond the mirror port's wire.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sensor.alerts.book import AlertBook
from sensor.config import Config
from sensor.feeds.model import Category, Indicator

SELFTEST_DOMAIN = "selftest.veilleuse.invalid"
SELFTEST_INDICATOR = Indicator(SELFTEST_DOMAIN, Category.SELFTEST, "Veilleuse self-test")
PROBE_SOURCE, PROBE_DESTINATION = "192.0.2.2", "192.0.2.1"  # RFC 5737, never routed
SELFTEST_MIN_INTERVAL = 30.0

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SelftestResult:
    passed: bool
    stored_after: float | None
    delivered_after: float | None
    message: str


def send_probe(interface: str, name: str) -> None:
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.sendrecv import sendp

    sendp(Ether(dst="02:00:00:00:00:fe") / IP(src=PROBE_SOURCE, dst=PROBE_DESTINATION) /
          UDP(sport=40000 + secrets.randbelow(20000), dport=53) /
          DNS(rd=1, qd=DNSQR(qname=name)), iface=interface, verbose=False)


def _probe_row(book: AlertBook, since: float) -> tuple[bool, bool]:
    """(stored, delivered) for a self-test alert seen at or after ``since``."""
    for alert in book.alerts():
        if alert.kind == "selftest" and alert.last_seen >= since:
            return True, alert.delivered
    return False, False


def run_selftest(config: Config, open_book: Callable[[], AlertBook],
                 timeout: float = 60.0) -> SelftestResult:
    """Send a probe and watch the alert book (its own connection, from ``open_book``)."""
    name = f"{secrets.token_hex(4)}.{SELFTEST_DOMAIN}"
    book = open_book()
    started = time.time()
    send_probe(config.network.interface, name)
    stored_after = delivered_after = None
    ticker = threading.Event()
    try:
        while time.time() - started < timeout:
            stored, delivered = _probe_row(book, started - 1.0)
            now = time.time() - started
            if stored and stored_after is None:
                stored_after = now
            if delivered:
                delivered_after = now
                break
            ticker.wait(0.25)
    finally:
        book.close()
    receiver = _receiver(config)
    if delivered_after is not None:
        return SelftestResult(True, stored_after, delivered_after,
                              f"self-test passed: probe {name} stored as an alert after "
                              f"{stored_after:.1f} s, acknowledged by {receiver} after "
                              f"{delivered_after:.1f} s")
    if stored_after is not None:
        return SelftestResult(False, stored_after, None,
                              f"self-test incomplete: the probe became an alert after "
                              f"{stored_after:.1f} s but {receiver} did not acknowledge it "
                              f"within {timeout:.0f} s (see `veilleuse status`)")
    return SelftestResult(False, None, None,
                          f"self-test failed: the probe sent on {config.network.interface} "
                          f"did not become an alert within {timeout:.0f} s; is capture "
                          "running on that interface? (see `veilleuse status`)")


def _receiver(config: Config) -> str:
    """Who acknowledged the alert, in words: the core, or the box's broker (no core)."""
    from sensor.wire.broker import core_is_local

    host = urlsplit(config.mqtt.url).hostname
    if core_is_local(config):
        return "the box's own broker (no core is configured in mqtt.url)"
    return f"the core's broker ({host})"


class SelftestRunner:
    """Self-tests on request (the screen's button): one at a time, one per ``min_interval`` s.

    A flood of requests on the command topic must cost nothing: without this,
    1,000 requests started 511 threads and stalled the sensor's loop. Extra
    requests are dropped, with one log line per burst.
    """

    def __init__(self, run: Callable[[], SelftestResult],
                 min_interval: float = SELFTEST_MIN_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._run, self._min_interval, self._clock = run, min_interval, clock
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_start: float | None = None
        self._dropped = 0
        self.requested = 0
        self.started = 0

    def request(self) -> bool:
        """Start a self-test in the background unless one runs or ran recently; True if started."""
        with self._lock:
            self.requested += 1
            now = self._clock()
            busy = self._thread is not None and self._thread.is_alive()
            recent = self._last_start is not None and now - self._last_start < self._min_interval
            if busy or recent:
                self._dropped += 1
                if self._dropped == 1:
                    log.warning("self-test request dropped: one is running or ran less than "
                                "%.0f s ago (more requests are dropped without a log line "
                                "until the next self-test)", self._min_interval)
                return False
            if self._dropped:
                log.info("%d self-test request(s) were dropped since the last self-test",
                         self._dropped)
            self._dropped, self._last_start = 0, now
            self.started += 1
            self._thread = threading.Thread(target=self._run_and_log, name="selftest",
                                            daemon=True)
            self._thread.start()
            return True

    def _run_and_log(self) -> None:
        result = self._run()
        (log.info if result.passed else log.error)("%s", result.message)
