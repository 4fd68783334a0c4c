"""Read what sensors publish: the topic, the JSON, its schema, into typed records.

The wire contract is the JSON Schemas (``core/schemas``, identical to
docs/schemas); a payload that fails them, or whose topic and content
disagree, raises ``InvalidPayload`` with a reason a person can read. Nothing
else of the sensor is imported. Not the job of this module: storing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

LEAVES = ("alert", "state", "status")


class InvalidPayload(ValueError):
    """A message the core cannot accept; ``reason`` says why (it goes to the quarantine)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SensorTopic:
    """``<prefix>/<site>/<sensor>/<leaf>``, split."""

    site: str
    sensor: str
    leaf: str

    @classmethod
    def parse(cls, topic: str, prefix: str) -> SensorTopic:
        """The parts of ``topic``, or InvalidPayload.

        >>> SensorTopic.parse("veilleuse/shelter-a/box1/alert", "veilleuse")
        SensorTopic(site='shelter-a', sensor='box1', leaf='alert')
        """
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != prefix or parts[3] not in LEAVES:
            raise InvalidPayload(f"unexpected topic {topic!r}")
        return cls(parts[1], parts[2], parts[3])


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One version of an alert.

    Versions of one id rank by count (it only grows on the sensor, even if its
    clock jumps), then ``last_seen``; an equal rank is a redelivery, not news.
    """

    site: str
    sensor: str
    id: str
    severity: str
    kind: str
    count: int
    last_seen: float
    queued_at: float
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StateMessage:
    site: str
    sensor: str
    time: float
    health: str
    reasons: tuple[str, ...]
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StatusMessage:
    site: str
    sensor: str
    time: float
    status: str
    reason: str | None


Message = AlertMessage | StateMessage | StatusMessage


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    text = resources.files("core").joinpath("schemas", f"{name}.schema.json").read_text()
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def seconds(text: str) -> float:
    """An ISO 8601 time (``Z`` or an offset) as UNIX seconds.

    >>> seconds("2026-01-01T10:00:00.500000Z")
    1767261600.5
    """
    return datetime.fromisoformat(text).timestamp()


def _check(name: str, data: Any) -> None:
    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(data))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise InvalidPayload(f"does not match {name}.schema.json at {where}: "
                             f"{error.message[:300]}")


def _same_origin(topic: SensorTopic, data: dict[str, Any]) -> None:
    for key in ("site", "sensor"):
        if key in data and data[key] != getattr(topic, key):
            raise InvalidPayload(f"the topic says {key} {getattr(topic, key)!r} but the "
                                 f"payload says {data[key]!r}")


def parse_message(topic: str, payload: bytes, prefix: str) -> Message:
    """The typed record for one MQTT message, or InvalidPayload (never anything else)."""
    where = SensorTopic.parse(topic, prefix)
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidPayload(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidPayload("the payload is not a JSON object")
    _check(where.leaf, data)
    _same_origin(where, data)
    try:
        return _record(where, data)
    except (ValueError, OverflowError) as error:  # a time the format checker let through
        raise InvalidPayload(f"unreadable time: {error}") from None


def _record(where: SensorTopic, data: dict[str, Any]) -> Message:
    if where.leaf == "alert":
        return AlertMessage(site=where.site, sensor=where.sensor, id=data["id"],
                            severity=data["severity"], kind=data["kind"], count=data["count"],
                            last_seen=seconds(data["last_seen"]),
                            queued_at=seconds(data["queued_at"]), payload=data)
    if where.leaf == "state":
        return StateMessage(site=where.site, sensor=where.sensor, time=seconds(data["time"]),
                            health=data["health"], reasons=tuple(data["reasons"]),
                            payload=data)
    return StatusMessage(site=where.site, sensor=where.sensor, time=seconds(data["time"]),
                         status=data["status"], reason=data.get("reason"))
