"""Read network indicators from a MISP event in JSON (an export, or one event of a MISP feed).

What a helpline gives a box is one URL. MISP shares an event as one JSON
file in every channel a box can read without an API key: the event file of
a MISP feed (``<uuid>.json``, ``{"Event": {...}}``), the JSON export of the
web interface or of ``restSearch`` (``{"response": [{"Event": ...}, ...]}``,
several events) and PyMISP's ``to_json`` (the bare event; Echap's
``generated/misp_event.json``). All of these are read. A feed's
``manifest.json`` is refused with what to do instead (name the event file).

Attribute types read, in the event and in its objects: ``domain``,
``hostname``, ``url`` (its host), ``ip-dst``, ``ip-src``, ``domain|ip``
(both), ``ip-dst|port`` and ``ip-src|port`` (the address). An attribute
whose ``to_ids`` is false is not meant for detection and is skipped (MISP's
default for these types is true, which a missing flag means); so are
deleted ones. Other types (hashes, app ids, certificates, text) are counted
and reported once per feed.

Categories: an attribute, object or event tagged with a tag containing
``watchware`` is watchware; an attribute of the MISP category ``Payload
delivery`` (where the app is downloaded) or ``Attribution`` is a vendor
website; everything else (``Network activity`` first) is a C2. The app is the
first galaxy cluster (or ``misp-galaxy:...="Name"`` tag) of the attribute,
else the ``name`` attribute of its object (``android-app``, as in Echap's
event), else the event's galaxy cluster, else the event's ``info``.
Not the job of this module: fetching several events (a feed directory),
sightings, decaying models, MISP warning lists.
"""

from __future__ import annotations

import re
from typing import Any

from sensor.errors import FeedError
from sensor.feeds.builder import FeedBuilder, object_label, parse_json
from sensor.feeds.model import Category, Feed
from sensor.feeds.names import shown
from sensor.feeds.values import ValueKind

# type -> what each "|"-separated part is (None: a part that is not an indicator, a port).
# An address typed as a domain (Echap's event lists one) is read as the address.
_TYPES: dict[str, tuple[ValueKind | None, ...]] = {
    "domain": ("either",),
    "hostname": ("either",),
    "url": ("url",),
    "ip-dst": ("ip",),
    "ip-src": ("ip",),
    "domain|ip": ("either", "ip"),
    "ip-dst|port": ("ip", None),
    "ip-src|port": ("ip", None),
}
_WEBSITE_CATEGORIES = frozenset({"Payload delivery", "Attribution"})
_GALAXY_TAG = re.compile(r'misp-galaxy:[^=]+="(.+)"\Z')


def load_misp(content: bytes, name: str) -> Feed:
    """Validate a MISP event JSON and turn its network attributes into indicators.

    >>> event = b'''{"Event": {"info": "SpyApp C2", "Attribute": [
    ...   {"uuid": "u1", "type": "domain|ip", "category": "Network activity",
    ...    "to_ids": true, "value": "c2.example|198.51.100.7"},
    ...   {"uuid": "u2", "type": "sha256", "to_ids": true, "value": "aa"}]}}'''
    >>> [(i.value, i.category.value, i.app) for i in load_misp(event, "x").indicators]
    [('c2.example', 'c2', 'SpyApp C2'), ('198.51.100.7', 'c2', 'SpyApp C2')]
    """
    builder = FeedBuilder(name)
    for position, event in enumerate(_events(parse_json(content, name), name)):
        _read_event(event, position, builder)
    return builder.feed(content)


def _events(document: Any, name: str) -> list[dict[str, Any]]:
    """The events of an export, whatever its envelope; FeedError if there is none."""
    items = document.get("response", document) if isinstance(document, dict) else document
    if isinstance(items, dict) and "Event" not in items and "Attribute" not in items \
            and "Object" not in items and items \
            and all(isinstance(v, dict) and "info" in v for v in items.values()):
        raise FeedError(name, "this is a MISP feed manifest (a list of events); give the URL "
                        "of one event file of the feed (<uuid>.json) as the source")
    items = [items] if isinstance(items, dict) else items
    if not isinstance(items, list):
        raise FeedError(name, "expected a MISP event ({\"Event\": {...}}) or a list of events",
                        line=1)
    events = [item.get("Event", item) if isinstance(item, dict) else item for item in items]
    for position, event in enumerate(events):
        if not isinstance(event, dict) or not ({"Attribute", "Object", "info"} & event.keys()):
            raise FeedError(name, f"event {position} is not a MISP event (no info, Attribute "
                            "or Object)", line=1)
    return events


def _read_event(event: dict[str, Any], position: int, builder: FeedBuilder) -> None:
    event_app = _galaxy_name(event) or event.get("info")
    event_watchware = _tagged_watchware(event)
    where = f"Event[{position}]" if position else "Event"
    for index, attribute in enumerate(_list(event, "Attribute")):
        _read_attribute(attribute, event_app, event_watchware, builder,
                        f"{where}.Attribute[{index}]")
    for index, item in enumerate(_list(event, "Object")):
        if not isinstance(item, dict) or item.get("deleted") is True:
            continue
        attributes = _list(item, "Attribute")
        named = [a.get("value") for a in attributes
                 if isinstance(a, dict) and a.get("object_relation") == "name"]
        app = named[0] if named and isinstance(named[0], str) else event_app
        for number, attribute in enumerate(attributes):
            _read_attribute(attribute, app, event_watchware or _tagged_watchware(item), builder,
                            f"{where}.Object[{index}].Attribute[{number}]")


def _read_attribute(attribute: Any, app: object, watchware: bool, builder: FeedBuilder,
                    path: str) -> None:
    if not isinstance(attribute, dict):
        builder.rejected += 1
        builder.warn(path, f"skipped: not a MISP attribute: {shown(attribute)}")
        return
    kinds = _TYPES.get(attribute.get("type"))  # type: ignore[arg-type]
    if kinds is None:
        if attribute.get("object_relation") != "name":
            builder.ignore(f"{shown(attribute.get('type'), 30)} attributes")
        return
    if attribute.get("deleted") is True:
        builder.ignore("deleted attributes")
        return
    if not _flag(attribute.get("to_ids", True)):
        builder.ignore("attributes not meant for detection (to_ids false)")
        return
    where = f"attribute {object_label(attribute.get('uuid', '?'))} ({path})"
    value = attribute.get("value")
    parts = value.split("|") if isinstance(value, str) and len(kinds) > 1 else [value]
    if len(parts) != len(kinds):
        builder.rejected += 1
        builder.warn(where, f"skipped: a {attribute['type']} value needs {len(kinds)} parts "
                     f"separated by '|': {shown(value)}")
        return
    category = _category(attribute, watchware)
    name = builder.app(_galaxy_name(attribute) or app, where)
    for kind, part in zip(kinds, parts, strict=True):
        if kind is not None:
            builder.add(part, kind, category, name, where)


def _category(attribute: dict[str, Any], watchware: bool) -> Category:
    if watchware or _tagged_watchware(attribute):
        return Category.WATCHWARE
    if attribute.get("category") in _WEBSITE_CATEGORIES:
        return Category.WEBSITE
    return Category.C2


def _list(item: dict[str, Any], key: str) -> list[Any]:
    value = item.get(key)
    return value if isinstance(value, list) else []


def _flag(value: object) -> bool:
    """MISP booleans: true/false, or "1"/"0" in older exports."""
    return value not in (False, 0, "0", "false", "False")


def _tag_names(item: dict[str, Any]) -> list[str]:
    return [tag["name"] for tag in _list(item, "Tag")
            if isinstance(tag, dict) and isinstance(tag.get("name"), str)]


def _tagged_watchware(item: dict[str, Any]) -> bool:
    return any("watchware" in name.lower() for name in _tag_names(item))


def _galaxy_name(item: dict[str, Any]) -> str | None:
    """The first galaxy cluster attached to an event or attribute, if any."""
    for galaxy in _list(item, "Galaxy"):
        clusters = _list(galaxy, "GalaxyCluster") if isinstance(galaxy, dict) else []
        for cluster in clusters:
            if isinstance(cluster, dict) and isinstance(cluster.get("value"), str):
                return cluster["value"]
    for name in _tag_names(item):
        match = _GALAXY_TAG.match(name)
        if match:
            return match.group(1)
    return None
