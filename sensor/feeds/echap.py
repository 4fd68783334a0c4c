"""Parse the Echap stalkerware-indicators YAML format (ioc.yaml, watchware.yaml).

The file is a list of apps; each app lists C2 domains and IPs, vendor
websites and download (distribution) sites. Structure errors reject the whole
file (naming line and key); a single malformed value is skipped, counted and
reported with its line, so one typo upstream does not blind the sensor.
Every indicator is checked here, before anything is built from it, against
what both DNS and a Suricata rule can hold (``indicator_domain``,
``indicator_ip``): the matcher and the compiled rules see the same set, and
one hostile value cannot make ``suricata -T`` refuse the whole rule file.
App names are cleaned (control characters replaced, length bounded).
Unknown keys are kept out of matching but reported once. The reports travel
in ``Feed.warnings``; installing the feed says them (not every reading).
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from sensor.errors import FeedError
from sensor.feeds.model import Category, Feed, Indicator
from sensor.feeds.names import indicator_domain, shown
from sensor.feeds.values import ValueKind, checked_indicator
from sensor.yamlsource import (
    YamlDocument,
    dotted,
    parse_yaml,
    yaml_error_key,
    yaml_error_line,
    yaml_error_message,
)

_KNOWN_APP_KEYS = frozenset({
    "name", "names", "type", "packages", "certificates", "certificate_organizations",
    "certificate_cname_re", "websites", "distribution", "c2", "ios_bundles",
})


MAX_APP_NAME = 100


class _C2(BaseModel):
    model_config = ConfigDict(extra="allow")
    # Values are Any: one that is not text is skipped alone, not the whole feed.
    domains: list[Any] = Field(default_factory=list)
    ips: list[Any] = Field(default_factory=list)
    ip: list[Any] = Field(default_factory=list)  # an upstream spelling of ips, read as ips


class _App(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)
    type: Literal["stalkerware", "watchware"]
    websites: list[Any] = Field(default_factory=list)
    distribution: list[Any] = Field(default_factory=list)
    c2: _C2 = Field(default_factory=_C2)


_APPS = TypeAdapter(list[_App])


def feed_version(content: bytes) -> str:
    """A short, stable version of a feed: the start of its SHA-256."""
    return hashlib.sha256(content).hexdigest()[:16]


def load_echap(content: bytes, name: str) -> Feed:
    """Validate an Echap YAML feed and turn it into indicators; FeedError if unusable."""
    try:
        content.decode("utf-8")  # checked, not kept: libyaml reads the bytes (a copy less)
        document = parse_yaml(content)
    except UnicodeDecodeError as error:
        raise FeedError(name, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        raise FeedError(name, yaml_error_message(error), line=yaml_error_line(error),
                        key=yaml_error_key(error)) from None
    if not isinstance(document.data, list):
        raise FeedError(name, "expected a list of apps at the top level", line=1)
    try:
        apps = _APPS.validate_python(document.data)
    except ValidationError as error:
        first = error.errors()[0]
        raise FeedError(name, first["msg"], line=document.line_of(first["loc"]),
                        key=dotted(first["loc"])) from None
    return _build_feed(apps, document, name, feed_version(content))


def _build_feed(apps: list[_App], document: YamlDocument, name: str, version: str) -> Feed:
    indicators: list[Indicator] = []
    warnings: list[str] = []
    rejected = 0
    unknown_keys: set[str] = set()
    for position, app in enumerate(apps):
        unknown_keys.update(set(app.model_extra or {}) - _KNOWN_APP_KEYS)
        app_name = clean_app_name(app.name)
        if app_name != app.name:
            warnings.append(f"{name}, line {document.line_of((position, 'name'))}: app name "
                            f"{shown(app.name)} cleaned to {app_name!r}")
        for key, values, category, want_ip in _indicator_lists(app):
            for index, raw in enumerate(values):
                try:
                    if want_ip is False and type(raw) is str and "://" not in raw:
                        # what _indicator does for a name, minus two calls: a million of them
                        indicators.append(Indicator(indicator_domain(raw), category, app_name))
                        continue
                    indicators.append(_indicator(raw, category, app_name, want_ip))
                except ValueError as error:
                    rejected += 1
                    path: tuple[str | int, ...] = (position, *key.split("."), index)
                    warnings.append(f"{name}, line {document.line_of(path)}: "
                                    f"skipped {dotted(path)}: {error}")
        if app.c2.ip:
            warnings.append(f"{name}: app {app.name!r} lists c2.ip; read as c2.ips")
    if unknown_keys:
        warnings.append(f"{name}: unknown app keys ignored: {', '.join(sorted(unknown_keys))}; "
                        "if they carry indicators, please open a Veilleuse issue")
    return Feed(name=name, version=version, indicators=tuple(indicators),
                app_count=len(apps), rejected=rejected, warnings=tuple(warnings))


def _indicator_lists(app: _App) -> list[tuple[str, list[str], Category, bool | None]]:
    """(YAML key, values, category, True=IP / False=domain / None=either) per list."""
    if app.type == "watchware":
        return [("c2.domains", app.c2.domains, Category.WATCHWARE, False),
                ("c2.ips", app.c2.ips, Category.WATCHWARE, True),
                ("c2.ip", app.c2.ip, Category.WATCHWARE, True)]
    return [("c2.domains", app.c2.domains, Category.C2, False),
            ("c2.ips", app.c2.ips, Category.C2, True),
            ("c2.ip", app.c2.ip, Category.C2, True),
            ("websites", app.websites, Category.WEBSITE, False),
            ("distribution", app.distribution, Category.WEBSITE, None)]


def clean_app_name(name: str) -> str:
    """``name`` with control characters as spaces, cut to ``MAX_APP_NAME`` characters.

    >>> clean_app_name("Spy\\nApp\\x00")
    'Spy App'
    >>> clean_app_name("\\x00")
    '(no name)'
    """
    text = "".join(c if c.isprintable() else " " for c in name).strip() or "(no name)"
    return text if len(text) <= MAX_APP_NAME else text[:MAX_APP_NAME - 1] + "…"


def _indicator(raw: Any, category: Category, app: str, want_ip: bool | None) -> Indicator:
    if isinstance(raw, str) and "://" in raw:
        raise ValueError(f"{shown(raw)} is a URL; only domains and IPs can be matched on the "
                         "wire")
    kind: ValueKind = "ip" if want_ip else ("domain" if want_ip is False else "either")
    return checked_indicator(raw, kind, category, app)
