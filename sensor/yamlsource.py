"""Read YAML while remembering where each key sits, so errors can name the line.

PyYAML's composer keeps marks on nodes; we walk the node tree once to map
every key path (``("feeds", "sources", 0, "url")``) to its 1-based line.
Parsing twice (nodes, then plain data) is cheaper to read than a custom
constructor and these files are small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str | int, ...]


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


def _index(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, key_node.value)
            lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            child = (*path, position)
            lines[child] = item.start_mark.line + 1
            _index(item, child, lines)


def parse_yaml(text: str) -> YamlDocument:
    """Parse one YAML document; raises ``yaml.YAMLError`` (with its mark) when malformed."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[Path, int] = {}
    if root is not None:
        lines[()] = root.start_mark.line + 1
        _index(root, (), lines)
    return YamlDocument(data=yaml.safe_load(text), lines=lines)


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
