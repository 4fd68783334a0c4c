"""STIX 2.1 bundles and MISP events built by code, shaped as their producers write them.

``echap_style_stix`` follows Echap's ``scripts/generate_stix.py``: one
``malware`` per app (lower-cased name, "Stalkerware applications"), one
``indicator`` per ``domain`` row of ``network.csv`` (``malicious-activity``,
``[domain-name:value='...']``) and an ``indicates`` relationship. Echap's
generated ``stalkerware.stix2`` is not in the shared data, so tests rebuild
it from the ``network.csv`` that is.
"""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

_NAMESPACE = uuid.UUID("6f1b1c7e-8f57-4b1e-9a43-4c6f3f2b9d10")
CREATED = "2026-06-21T20:40:25.000Z"


def stix_id(kind: str, *parts: str) -> str:
    return f"{kind}--{uuid.uuid5(_NAMESPACE, '|'.join((kind, *parts)))}"


def stix_malware(name: str, description: str = "Stalkerware applications",
                 **extra: Any) -> dict[str, Any]:
    return {"type": "malware", "spec_version": "2.1", "id": stix_id("malware", name),
            "created": CREATED, "modified": CREATED, "name": name, "is_family": False,
            "description": description, **extra}


def stix_indicator(pattern: str, malware: dict[str, Any] | None = None,
                   **extra: Any) -> list[dict[str, Any]]:
    """The indicator and, with ``malware``, its ``indicates`` relationship."""
    indicator = {"type": "indicator", "spec_version": "2.1",
                 "id": stix_id("indicator", pattern, str(malware and malware["id"])),
                 "created": CREATED, "modified": CREATED, "valid_from": CREATED,
                 "indicator_types": ["malicious-activity"], "pattern": pattern,
                 "pattern_type": "stix", **extra}
    if malware is None:
        return [indicator]
    relationship = {"type": "relationship", "spec_version": "2.1",
                    "id": stix_id("relationship", indicator["id"], malware["id"]),
                    "created": CREATED, "modified": CREATED, "relationship_type": "indicates",
                    "source_ref": indicator["id"], "target_ref": malware["id"]}
    return [indicator, relationship]


def stix_bundle(objects: list[dict[str, Any]]) -> bytes:
    return json.dumps({"type": "bundle", "id": stix_id("bundle", str(len(objects))),
                       "objects": objects}, indent=1).encode()


def stix_string(value: str) -> str:
    """A STIX pattern string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def echap_style_stix(network_csv: Path) -> bytes:
    """The bundle Echap's generator makes from ``network.csv`` (domain rows; no IPs)."""
    malware: dict[str, dict[str, Any]] = {}
    objects: list[dict[str, Any]] = []
    with network_csv.open(newline="") as rows:
        for row in csv.DictReader(rows):
            if row["type"] != "domain":
                continue
            app = row["app"].lower()
            if app not in malware:
                malware[app] = stix_malware(app)
                objects.append(malware[app])
            objects += stix_indicator(f"[domain-name:value={stix_string(row['indicator'])}]",
                                      malware[app])
    return stix_bundle(objects)


def misp_attribute(kind: str, value: str, category: str = "Network activity", *,
                   to_ids: bool = True, **extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid5(_NAMESPACE, value).int % 10**6),
            "uuid": str(uuid.uuid5(_NAMESPACE, f"{kind}|{value}")), "type": kind,
            "category": category, "to_ids": to_ids, "value": value, "distribution": "5",
            "timestamp": "1782000000", "comment": "", "deleted": False,
            "disable_correlation": False, **extra}


def misp_event(info: str, attributes: list[dict[str, Any]],
               objects: list[dict[str, Any]] = (), **extra: Any) -> bytes:
    """A MISP event as the web interface's JSON export and a feed's <uuid>.json hold it."""
    event = {"id": "1207", "orgc_id": "4", "org_id": "4", "date": "2026-11-02",
             "threat_level_id": "2", "info": info, "published": True,
             "uuid": str(uuid.uuid5(_NAMESPACE, info)), "analysis": "2", "distribution": "1",
             "timestamp": "1782000000", "Orgc": {"id": "4", "name": "Helpline CERT",
                                                  "uuid": str(uuid.uuid5(_NAMESPACE, "org"))},
             "Attribute": attributes, "Object": list(objects), **extra}
    return json.dumps({"Event": event}, indent=2).encode()
