"""Read YAML while remembering where each key sits, so errors can name the line.

One parse: libyaml (``CSafeLoader``, pure-Python ``SafeLoader`` where it is
missing) composes the node tree, a walk over it maps every key path
(``("feeds", "sources", 0, "url")``) to its 1-based line, and the same tree
is then turned into plain data.

The walk also refuses what our files never need and an attacker could use:
anchors and aliases (a 500-byte "billion laughs" file expands to gigabytes
in whoever walks it), a key given twice in one mapping (YAML keeps the last
one silently), and nesting deeper than ``MAX_DEPTH``. Not the job of this
module: what the data means (the config and feed schemas).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str | int, ...]
MAX_DEPTH = 64
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlRefused(yaml.MarkedYAMLError):
    """Well-formed YAML that Veilleuse refuses to read (an alias, a duplicate key...)."""

    def __init__(self, problem: str, mark: yaml.Mark | None, key: Path | None = None) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.key = key


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """Plain data plus the line of every key path in it."""

    data: Any
    lines: dict[Path, int]

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


def _first_alias(text: str) -> yaml.AliasEvent | None:
    """The first alias in ``text`` (read only to word the error: events are not expanded)."""
    return next((event for event in yaml.parse(text, Loader=_Loader)
                 if isinstance(event, yaml.AliasEvent)), None)


def _refuse_alias(text: str, node: yaml.Node) -> YamlRefused:
    alias = _first_alias(text)
    mark = alias.start_mark if alias is not None else node.start_mark
    name = f" *{alias.anchor}" if alias is not None else ""
    return YamlRefused(f"YAML aliases and anchors are not allowed (found{name}); write the "
                       "values out in full", mark)


def _index(root: yaml.Node, text: str) -> dict[Path, int]:
    """Key path -> line, walking every node once; YamlRefused on an alias or a duplicate key."""
    lines: dict[Path, int] = {(): root.start_mark.line + 1}
    seen: set[int] = set()
    pending: list[tuple[yaml.Node, Path]] = [(root, ())]
    while pending:
        node, path = pending.pop()
        if id(node) in seen:  # the composer hands back the anchored node for an alias
            raise _refuse_alias(text, node)
        seen.add(id(node))
        if len(path) > MAX_DEPTH:
            raise YamlRefused(f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
        if isinstance(node, yaml.MappingNode):
            keys: set[object] = set()
            for key_node, value_node in node.value:
                if id(key_node) in seen:
                    raise _refuse_alias(text, key_node)
                seen.add(id(key_node))
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
                child = (*path, key_node.value)
                if key in keys:
                    raise YamlRefused("given twice in the same mapping (YAML would keep only "
                                      "the last); keep one", key_node.start_mark, child)
                keys.add(key)
                lines[child] = key_node.start_mark.line + 1
                pending.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            for position, item in enumerate(node.value):
                child = (*path, position)
                lines[child] = item.start_mark.line + 1
                pending.append((item, child))
    return lines


def parse_yaml(text: str) -> YamlDocument:
    """Parse one YAML document; raises ``yaml.YAMLError`` (with its mark) when malformed.

    >>> parse_yaml("a: 1\\nb: [x, y]\\n").line_of(("b", 1))
    2
    >>> try:
    ...     parse_yaml("a: &x [1]\\nb: *x\\n")
    ... except YamlRefused as error:
    ...     print(yaml_error_line(error), error.problem)
    2 YAML aliases and anchors are not allowed (found *x); write the values out in full
    """
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return YamlDocument(data=None, lines={})
        lines = _index(root, text)
        return YamlDocument(data=loader.construct_document(root), lines=lines)
    finally:
        loader.dispose()


def yaml_error_message(error: yaml.YAMLError) -> str:
    """What is wrong, for a person: the parser's problem, or why we refuse valid YAML."""
    problem = getattr(error, "problem", None) or str(error)
    return problem if isinstance(error, YamlRefused) else f"not valid YAML: {problem}"


def yaml_error_key(error: yaml.YAMLError) -> str | None:
    """The dotted key a refusal is about (a duplicate key), if any."""
    key = getattr(error, "key", None)
    return dotted(key) if key else None


def yaml_error_line(error: yaml.YAMLError) -> int | None:
    """The 1-based line a PyYAML syntax error points at, if it has one."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return mark.line + 1 if mark is not None else None


def dotted(path: Sequence[str | int]) -> str:
    """``("feeds", "sources", 0, "url")`` as ``feeds.sources[0].url``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
