"""What the publisher and the sensor behind it tell each other: typed facts, one interface.

The publisher reports facts about delivery (``DeliveryFacts``: connected,
the kind of its last problem, what waits...), never a health: the health
policy is ``sensor.daemon.health``'s alone. The sensor behind a publisher is
one ``SensorLink``: the health to announce, the feed versions in use, and
where commands go. ``DeliveryOnly`` is the link of a publisher without a
live sensor (`veilleuse publish`, `analyze --mqtt`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sensor.daemon.health import Health, assess_delivery
from sensor.outputs.commands import Command


class ProblemKind(StrEnum):
    """Why alerts do not leave, as the publisher saw it last."""

    NOT_CONNECTED_YET = "not_connected_yet"
    CONNECTION_REFUSED = "connection_refused"
    """The broker answered the CONNECT with a failure (bad login, not authorised...)."""
    CANNOT_CONNECT = "cannot_connect"
    """No connection (DNS, TCP, TLS): ``Problem.text`` says which."""
    SESSION_TAKEN_OVER = "session_taken_over"
    BROKER_UNREACHABLE = "broker_unreachable"
    """Connected once, then lost."""
    ALERT_REFUSED = "alert_refused"
    """The broker refused the last alert it was offered (a failed PUBACK)."""
    BOOK_ERROR = "book_error"
    """The alert book could not be read or written: delivery paused."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A kind to decide on, and a text an operator can act on."""

    kind: ProblemKind
    text: str


@dataclass(frozen=True, slots=True)
class DeliveryFacts:
    """What an operator, and the health policy, need to know about delivery."""

    connected: bool
    problem: str | None
    """The text of the last problem (or of an error the owner thread survived)."""
    problem_kind: ProblemKind | None
    pending: int
    in_flight: int
    delivered: int
    refused: int
    last_refusal: str | None
    errors: int = 0
    """Unexpected errors the owner thread survived."""
    quarantined: int = 0
    """Outbox rows moved aside as unreadable (see the book's quarantine table)."""
    disk_full: bool = False
    """The book's disk is full: acknowledged alerts wait in memory to be retired."""
    unretired: int = 0
    """Acknowledged alerts whose retirement is not written yet (kept in memory)."""

    @property
    def refusing(self) -> bool:
        """The broker refused the last alert it was offered."""
        return self.problem_kind is ProblemKind.ALERT_REFUSED


class SensorLink(Protocol):
    """The sensor behind a publisher: the one interface between them."""

    @property
    def takes_commands(self) -> bool:
        """Whether to subscribe to the command topic."""

    def health(self, delivery: DeliveryFacts, severities: Mapping[str, int]) -> Health:
        """The health the state topic announces now."""

    def feed_versions(self) -> Mapping[str, str]:
        """Feed name to version of the indicators in use."""

    def command(self, command: Command) -> None:
        """A request arrived (called on the publisher's thread: hand over, return)."""


class DeliveryOnly:
    """The link of a publisher without a live sensor: its health is delivery's."""

    takes_commands = False

    def __init__(self, feed_versions: Mapping[str, str] | None = None) -> None:
        self._feed_versions = dict(feed_versions or {})

    def health(self, delivery: DeliveryFacts, severities: Mapping[str, int]) -> Health:
        return assess_delivery(delivery.problem if delivery.refusing else None,
                               severities.get("medium", 0) + severities.get("high", 0))

    def feed_versions(self) -> Mapping[str, str]:
        return self._feed_versions

    def command(self, command: Command) -> None:
        raise TypeError("a publisher without a live sensor takes no command")
