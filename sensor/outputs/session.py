"""What a lost or refused MQTT connection means, as a typed problem an operator can act on.

A session another client took over (the same client id) is told apart from
a broker that went away: the broker says so (reason 0x8E), or, as Mosquitto
2.0 does without a reason, the connection keeps closing right after it
opens. A TLS connection closed before it was accepted is most likely a
client certificate the broker refuses (TLS 1.3 shows it only after the
handshake). Not the job of this module: reconnecting (paho does) or
logging (the publisher does, once a problem changes).
"""

from __future__ import annotations

from collections.abc import Callable

from paho.mqtt.reasoncodes import ReasonCode

from sensor.outputs.link import Problem, ProblemKind
from sensor.wire.broker import MqttSettings

SESSION_TAKEN_OVER = 0x8E
SHORT_SESSION = 10.0
"""Seconds: a session closed sooner than this after it opened counts as short."""
SHORT_SESSIONS_FOR_TAKEOVER = 3


class TakeoverWatch:
    """Counts the sessions closed right after they opened (monotonic time)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._opened_at = float("-inf")
        self._short_sessions = 0

    def opened(self) -> None:
        self._opened_at = self._clock()

    def closed(self, reason: ReasonCode) -> bool:
        """Whether the session was taken over (then reconnecting should slow down)."""
        short = self._clock() - self._opened_at < SHORT_SESSION
        self._short_sessions = self._short_sessions + 1 if short else 0
        return getattr(reason, "value", None) == SESSION_TAKEN_OVER or \
            self._short_sessions >= SHORT_SESSIONS_FOR_TAKEOVER


def cannot_connect(settings: MqttSettings, why: str) -> Problem:
    return Problem(ProblemKind.CANNOT_CONNECT,
                   f"cannot connect to {settings.host}:{settings.port}: {why}")


def refused(reason: ReasonCode) -> Problem:
    """The broker answered the CONNECT with a failure."""
    return Problem(ProblemKind.CONNECTION_REFUSED, f"the broker refused the connection: {reason}")


def lost(settings: MqttSettings, reason: ReasonCode, *, was_connected: bool,
         taken_over: bool) -> Problem:
    """The problem a closed connection leaves: not accepted, taken over, or unreachable."""
    if not was_connected and settings.tls and not taken_over:
        return cannot_connect(settings, (
            f"TLS failed: the broker closed the connection before accepting it ({reason}); "
            "does it require a client certificate it trusts? check mqtt.cert_file and "
            "mqtt.key_file"))
    if taken_over:
        return Problem(ProblemKind.SESSION_TAKEN_OVER, (
            f"another client with the same client id ({settings.client_id}) took over the MQTT "
            f"session, or the broker keeps closing it right after it opens ({reason}); trying "
            f"again in {settings.takeover_retry:.0f} s. Give each process its own client id, "
            "or stop the other one"))
    return Problem(ProblemKind.BROKER_UNREACHABLE, f"broker unreachable ({reason})")
