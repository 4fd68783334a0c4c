"""The wire contract: the JSON payloads Veilleuse publishes, versioned by their ``schema`` field.

The JSON Schemas in ``sensor/wire/schemas`` (identical to docs/schemas,
which documents them, and to core/schemas, the core's copy) are the
contract: this module writes the state and status payloads, reads any
payload back through the schemas (``read_payload``), and takes the
vocabulary (health states, severities, reason codes) from them, so that a
reader never declares it again. The screen learns everything it shows
through here. Payloads never contain packet contents.

Not the job of this module: building an alert's payload from a detection
(``sensor.outputs.outgoing``), the topics' names (``sensor.wire.topics``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

ALERT_SCHEMA = "veilleuse.alert/1"
STATE_SCHEMA = "veilleuse.state/1"
STATUS_SCHEMA = "veilleuse.status/1"
SCREEN_SCHEMA = "veilleuse.screen/1"
COMMAND_SCHEMA = "veilleuse.command/1"
SELFTEST = "selftest"
"""The one command a sensor takes (``veilleuse.command/1``)."""
LEAVES = ("alert", "state", "status", "screen", "command")
"""The topics' last levels, each with the schema of its payloads (``<leaf>.schema.json``)."""

OPEN_VOCABULARY = frozenset({"health", "severity", "kind", "reasons", "protocols"})
"""Fields whose words may grow within a schema version: a newer sensor may send one that
this reader's schema does not list yet (``read_payload(..., new_words=True)``)."""


class InvalidPayload(ValueError):
    """A payload that breaks the contract; the message says where and why."""


def iso_time(seconds: float) -> str:
    """UNIX seconds as ISO 8601 UTC with microseconds: ``2026-01-01T10:00:00.015000Z``."""
    return datetime.fromtimestamp(round(seconds, 6), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@cache
def schema(leaf: str) -> dict[str, Any]:
    """The JSON Schema of the payloads published on ``leaf`` (one of ``LEAVES``)."""
    if leaf not in LEAVES:
        raise ValueError(f"no schema for {leaf!r}: one of {', '.join(LEAVES)}")
    text = resources.files("sensor.wire").joinpath("schemas", f"{leaf}.schema.json")
    return json.loads(text.read_text(encoding="utf-8"))


def _words(leaf: str, field: str) -> tuple[str, ...]:
    definition = schema(leaf)["properties"][field]
    return tuple(definition.get("items", definition)["enum"])


HEALTH_STATES = _words("state", "health")
"""starting, ok, alert, degraded."""
REASONS = _words("state", "reasons")
"""Why a sensor is degraded, most important first."""
SEVERITIES = _words("alert", "severity")
"""From the least to the most serious."""


@cache
def _validator(leaf: str) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema(leaf))
    return cls(schema(leaf), format_checker=cls.FORMAT_CHECKER)


def read_payload(leaf: str, payload: bytes, *, new_words: bool = False) -> dict[str, Any]:
    """The JSON object of a payload published on ``leaf``, checked against its schema.

    ``new_words``: tolerate a word the schema does not list in a field of
    ``OPEN_VOCABULARY`` (the reader then decides what an unknown word means).
    Anything else that breaks the schema raises InvalidPayload.

    >>> read_payload("status", b'{"schema": "veilleuse.status/1", "status": "online", '
    ...              b'"time": "2026-01-01T10:00:00Z"}')["status"]
    'online'
    >>> read_payload("status", b'{"schema": "veilleuse.status/1"}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sensor.wire.payloads.InvalidPayload: does not match status.schema.json at (top level): ...
    """
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidPayload(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidPayload("the payload is not a JSON object")
    errors = [error for error in _validator(leaf).iter_errors(data)
              if not (new_words and _new_word(error))]
    worst = jsonschema.exceptions.best_match(errors)
    if worst is not None:
        where = "/".join(str(part) for part in worst.absolute_path) or "(top level)"
        raise InvalidPayload(f"does not match {leaf}.schema.json at {where}: "
                             f"{worst.message[:300]}")
    return data


def _new_word(error: jsonschema.ValidationError) -> bool:
    return error.validator == "enum" and bool(error.absolute_path) and \
        error.absolute_path[0] in OPEN_VOCABULARY


def status_payload(status: str, time: float, reason: str | None = None) -> str:
    payload: dict[str, Any] = {"schema": STATUS_SCHEMA, "status": status, "time": iso_time(time)}
    if reason:
        payload["reason"] = reason
    return json.dumps(payload, sort_keys=True)


def state_payload(*, site: str, sensor: str, time: float, health: str, reasons: list[str],
                  details: list[str], counters: Mapping[str, int],
                  feeds: Mapping[str, str]) -> str:
    """``reasons`` are codes (documented in the schema) a screen can translate."""
    return json.dumps({"schema": STATE_SCHEMA, "site": site, "sensor": sensor,
                       "time": iso_time(time), "health": health, "reasons": reasons,
                       "details": details, "counters": dict(counters), "feeds": dict(feeds)},
                      sort_keys=True)


def screen_payload(display: str, problem: str | None) -> str:
    """The screen's own health (``ok``, ``missing`` or ``offline``), retained on ``screen``."""
    return json.dumps({"schema": SCREEN_SCHEMA, "display": display, "problem": problem})


def command_payload(command: str, time: float) -> str:
    """A request to the sensor (``command``: ``selftest``), asked at ``time``."""
    return json.dumps({"schema": COMMAND_SCHEMA, "command": command, "time": iso_time(time)})
