"""Read network indicators from a STIX 2.1 bundle (Echap's ``stalkerware.stix2``, mvt's IOCs).

Each ``indicator`` object with ``pattern_type: stix`` has its pattern parsed
by OASIS's ``stix2-patterns`` grammar (pure Python, ANTLR runtime). Every
equality (``=`` or ``IN (...)``) on a path the sensor can see on the wire
gives one indicator, whether the comparisons are joined by OR or AND: a
sensor sees a name or an address one at a time, so ``[domain-name:value =
'c2.example' AND domain-name:resolves_to_refs[*].value = '198.51.100.7']``
lists both. Paths read:

- ``domain-name:value`` (an address written there is read as an address);
- ``url:value``: its host;
- ``ipv4-addr:value``, ``ipv6-addr:value``,
  ``domain-name:resolves_to_refs[*].value``, ``network-traffic:dst_ref.value``.

Everything else (file hashes, app ids, certificates, LIKE/MATCHES, negations)
is counted and reported once per feed, never an error. The app is the name
of the ``malware`` (or ``tool``) an ``indicates`` relationship points to,
else the indicator's own name.

Categories: Echap's and mvt's STIX mark every indicator
``malicious-activity`` and do not tell a C2 from a vendor site, so an
indicator is a C2 unless it, or its malware, says otherwise: ``watchware``
in labels, ``malware_types`` or the malware description gives watchware;
``website``, ``vendor-website`` or ``distribution`` in labels, or the
indicator type ``attribution``, gives a vendor website; ``benign``
indicators and revoked objects are skipped.
Not the job of this module: validity windows (``valid_from``/``valid_until``
are not evaluated), STIX 2.0 bundles, sightings.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from stix2patterns.exceptions import ParseException
from stix2patterns.v21.grammars.STIXPatternListener import STIXPatternListener
from stix2patterns.v21.grammars.STIXPatternParser import STIXPatternParser
from stix2patterns.v21.pattern import Pattern

from sensor.errors import FeedError
from sensor.feeds.builder import FeedBuilder, object_label, parse_json
from sensor.feeds.model import Category, Feed
from sensor.feeds.names import shown
from sensor.feeds.values import ValueKind

_PATHS: dict[str, ValueKind] = {
    "domain-name:value": "either",
    "url:value": "url",
    "ipv4-addr:value": "ip",
    "ipv6-addr:value": "ip",
    "domain-name:resolves_to_refs[*].value": "ip",
    "network-traffic:dst_ref.value": "either",
}
MAX_PATTERN_LENGTH = 16_384  # a real one is a few comparisons; parsing is linear but slow
_WEBSITE_WORDS = frozenset({"website", "vendor-website", "distribution"})
_ESCAPE = re.compile(r"\\(['\\])")
_Equal = STIXPatternParser.PropTestEqualContext
_InSet = STIXPatternParser.PropTestSetContext
_Test = STIXPatternParser.PropTestContext


def load_stix2(content: bytes, name: str) -> Feed:
    """Validate a STIX 2.1 bundle and turn its network indicators into ours; FeedError if unusable.

    >>> bundle = b'''{"type": "bundle", "id": "bundle--1", "objects": [
    ...   {"type": "indicator", "id": "indicator--1", "pattern_type": "stix",
    ...    "pattern": "[domain-name:value = 'c2.example' OR ipv4-addr:value = '198.51.100.7']"},
    ...   {"type": "malware", "id": "malware--1", "name": "SpyApp", "is_family": false},
    ...   {"type": "relationship", "id": "relationship--1", "relationship_type": "indicates",
    ...    "source_ref": "indicator--1", "target_ref": "malware--1"}]}'''
    >>> [(i.value, i.category.value, i.app) for i in load_stix2(bundle, "x").indicators]
    [('c2.example', 'c2', 'SpyApp'), ('198.51.100.7', 'c2', 'SpyApp')]
    """
    document = parse_json(content, name)
    if not isinstance(document, dict) or document.get("type") != "bundle":
        raise FeedError(name, 'expected a STIX 2.1 bundle (an object with "type": "bundle")',
                        line=1)
    objects = document.get("objects", [])
    if not isinstance(objects, list):
        raise FeedError(name, "expected a list of STIX objects", key="objects")
    builder = FeedBuilder(name)
    by_id = {o["id"]: o for o in objects if isinstance(o, dict) and isinstance(o.get("id"), str)}
    targets = _indicated(objects)
    for position, item in enumerate(objects):
        if not isinstance(item, dict):
            builder.rejected += 1
            builder.warn(f"objects[{position}]", f"skipped: not a STIX object: {shown(item)}")
        elif item.get("type") == "indicator":
            where = f"{object_label(item.get('id'))} (objects[{position}])"
            related = [by_id[ref] for ref in targets.get(item.get("id") or "", ())
                       if isinstance(by_id.get(ref), dict)]
            _read_indicator(item, related, builder, where)
    return builder.feed(content)


def _indicated(objects: list[Any]) -> dict[str, list[str]]:
    """indicator id -> ids of what it ``indicates``."""
    targets: dict[str, list[str]] = defaultdict(list)
    for item in objects:
        if (isinstance(item, dict) and item.get("type") == "relationship"
                and item.get("relationship_type") == "indicates"
                and isinstance(item.get("source_ref"), str) and not item.get("revoked")):
            targets[item["source_ref"]].append(str(item.get("target_ref")))
    return targets


def _read_indicator(item: dict[str, Any], related: list[dict[str, Any]],
                    builder: FeedBuilder, where: str) -> None:
    if item.get("revoked") is True:
        builder.ignore("revoked indicators")
        return
    if item.get("pattern_type", "stix") != "stix":
        builder.ignore(f"{shown(item.get('pattern_type'), 20)} patterns")
        return
    words = _words(item)
    if "benign" in words:
        builder.ignore("benign indicators")
        return
    pattern = item.get("pattern")
    if not isinstance(pattern, str):
        builder.rejected += 1
        builder.warn(where, f"skipped: the pattern is not text: {shown(pattern)}")
        return
    if len(pattern) > MAX_PATTERN_LENGTH:
        builder.rejected += 1
        builder.warn(where, f"skipped: a pattern of {len(pattern)} characters (more than "
                     f"{MAX_PATTERN_LENGTH})")
        return
    try:
        tests = _property_tests(Pattern(pattern))
    except ParseException as error:
        builder.rejected += 1
        builder.warn(where, f"skipped: not a STIX 2.1 pattern: {shown(pattern)} ({error})")
        return
    except RecursionError:  # the parser recurses once per nested parenthesis
        builder.rejected += 1
        builder.warn(where, f"skipped: a pattern nested too deeply: {shown(pattern)}")
        return
    malware = [o for o in related if o.get("type") in ("malware", "tool")]
    names = sorted(str(o["name"]) for o in malware if isinstance(o.get("name"), str))
    app = builder.app(names[0] if names else item.get("name"), where)
    category = _category(words, malware)
    for test in tests:
        for kind, value in _values(test, builder):
            builder.add(value, kind, category, app, where)


def _words(item: dict[str, Any]) -> set[str]:
    """Lower-cased labels and indicator/malware types of a STIX object."""
    words: set[str] = set()
    for key in ("labels", "indicator_types", "malware_types"):
        values = item.get(key)
        if isinstance(values, list):
            words.update(v.lower() for v in values if isinstance(v, str))
    return words


def _category(words: set[str], malware: list[dict[str, Any]]) -> Category:
    malware_words = set().union(*(_words(m) for m in malware)) if malware else set()
    descriptions = " ".join(str(m.get("description", "")) for m in malware).lower()
    if "watchware" in words | malware_words or "watchware" in descriptions:
        return Category.WATCHWARE
    if words & _WEBSITE_WORDS or "attribution" in words:
        return Category.WEBSITE
    return Category.C2


class _Comparisons(STIXPatternListener):
    """Collects every comparison of a parse tree, in pattern order (parentheses looked into)."""

    def __init__(self) -> None:
        self.tests: list[Any] = []  # _Test (stix2patterns has no type hints)

    def enterEveryRule(self, ctx: Any) -> None:  # ANTLR names it
        if isinstance(ctx, _Test) and not isinstance(ctx, STIXPatternParser.PropTestParenContext):
            self.tests.append(ctx)


def _property_tests(pattern: Pattern) -> list[Any]:
    listener = _Comparisons()
    pattern.walk(listener)
    return listener.tests


def _values(test: Any, builder: FeedBuilder) -> list[tuple[ValueKind, str]]:
    """(kind, value) of one comparison the sensor can use; the rest is counted."""
    path = test.objectPath().getText() if hasattr(test, "objectPath") else "?"
    object_type = path.split(":", 1)[0]
    kind = _PATHS.get(path)
    if kind is None:
        if not path.endswith("_ref.type"):  # the type of a value read from the same ref
            builder.ignore(f"{object_type} comparisons")
        return []
    if test.NOT() is not None or (isinstance(test, _Equal) and test.NEQ() is not None):
        builder.ignore("negated comparisons")
        return []
    if isinstance(test, _Equal):
        literals = [test.primitiveLiteral()]
    elif isinstance(test, _InSet):
        literals = list(test.setLiteral().primitiveLiteral())
    else:
        builder.ignore(f"{object_type} comparisons other than = and IN")
        return []
    values = []
    for literal in literals:
        text = literal.getText()
        if literal.orderableLiteral() is None or literal.orderableLiteral().StringLiteral() is None:
            builder.ignore(f"non-text values of {path}")
            continue
        values.append((kind, _ESCAPE.sub(r"\1", text[1:-1])))
    return values
