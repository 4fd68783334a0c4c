"""Message catalogues (French and English) with named placeholders.

Texts live in ``sensor/locales/<lang>.yaml`` so a translator edits YAML, not
code. A missing key or placeholder is a programming error and raises.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

import yaml

LANGUAGES = ("fr", "en")


def placeholders(template: str) -> frozenset[str]:
    """The named fields of a template: ``"{a} and {b}"`` -> {"a", "b"}."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The messages of one language."""

    language: str
    messages: Mapping[str, str]

    def text(self, key: str, **values: object) -> str:
        return self.messages[key].format(**values)


def load_catalogue(language: str, package: str = "sensor.locales") -> Catalogue:
    """The messages of ``language`` from ``package`` (the screen has its own)."""
    if language not in LANGUAGES:
        raise ValueError(f"no messages for language {language!r}; use one of {LANGUAGES}")
    source = resources.files(package).joinpath(f"{language}.yaml")
    return Catalogue(language, yaml.safe_load(source.read_text(encoding="utf-8")))


def language_from_environment(default: str = "en") -> str:
    """fr if the locale (LC_ALL, LC_MESSAGES, LANG) is French, else ``default``."""
    for variable in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(variable, "")
        if value:
            return "fr" if value.lower().startswith("fr") else default
    return default
