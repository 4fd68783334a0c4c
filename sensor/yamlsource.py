"""Read YAML while remembering where each key sits, so errors can name the line.

One pass over libyaml's events (``CSafeLoader``, pure-Python ``SafeLoader``
where it is missing) builds the plain data and, at the same time, the
1-based line of every key path (``("feeds", "sources", 0, "url")``). No node
tree is composed: it would hold two objects and two marks per scalar at once,
about a gigabyte for a feed of a million domains. Scalars resolve as
``SafeLoader`` resolves them (YAML 1.1: ``yes`` is True, ``1.0`` a float).

The walk also refuses what our files never need and an attacker could use:
anchors and aliases (a 500-byte "billion laughs" file expands to gigabytes
in whoever walks it), a key given twice in one mapping (YAML keeps the last
one silently), nesting deeper than ``MAX_DEPTH``, merge keys and tags other
than the standard ones (``!!python/...``). Not the job of this
module: what the data means (the config and feed schemas).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import yaml

if TYPE_CHECKING:
    from yaml._yaml import Mark as _LibyamlMark

Path = tuple[str | int, ...]
MAX_DEPTH = 64
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _mark(mark: yaml.Mark | _LibyamlMark | None) -> yaml.Mark:
    """An event's mark, typed as PyYAML's: libyaml's has the same fields (its stubs part them).

    The parser gives every event its marks; only hand-made events lack them.
    """
    return cast(yaml.Mark, mark)


class YamlRefused(yaml.MarkedYAMLError):
    """Well-formed YAML that Veilleuse refuses to read (an alias, a duplicate key...)."""

    def __init__(self, problem: str, mark: yaml.Mark | None, key: Path | None = None) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.key = key


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """Plain data plus the line of every key path in it.

    Mapping keys are in ``lines``; the items of each sequence are in
    ``item_lines`` (one compact array per sequence), because a feed holds a
    million list items and a million tuple paths would weigh more than the feed.
    """

    data: Any
    lines: dict[Path, int]
    item_lines: dict[Path, array] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            items = self.item_lines.get(key[:-1])
            if items is not None and isinstance(key[-1], int) and 0 <= key[-1] < len(items):
                return items[key[-1]]
            key = key[:-1]
        return self.lines.get((), None)


_IMPLICIT = yaml.resolver.Resolver.yaml_implicit_resolvers
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS = frozenset({None, "!", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"})


_RESOLVED_FIRST = frozenset(_IMPLICIT)
"""First characters of a plain scalar that may resolve to something else than text."""


def _tag_of_plain(value: str) -> str:
    """The tag YAML 1.1 resolves a plain scalar to (what ``SafeLoader`` does, first char first)."""
    for tag, pattern in _IMPLICIT.get(value[:1], ()):
        if pattern.match(value):
            return tag
    return _STR


class _Frame:
    """One open mapping or sequence while the events are read."""

    __slots__ = ("container", "items", "key", "key_mark", "path", "start")

    def __init__(self, container: dict | list, path: Path, start: yaml.Mark) -> None:
        self.container = container
        self.path = path
        self.start = start
        self.key: Any = _NO_KEY  # a YAML key: any hashable scalar, or _NO_KEY
        self.key_mark: yaml.Mark | None = None
        self.items = array("I")


_NO_KEY = object()


class _Builder:
    """Plain data and key lines from libyaml's event stream, in one pass, no node tree.

    Composing nodes first would keep two objects and two marks per scalar
    alive at once (about 1 KB each: a GB for a million-domain feed).
    """

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.item_lines: dict[Path, array] = {}
        self.stack: list[_Frame] = []
        self.root: Any = None
        self.constructor = yaml.constructor.SafeConstructor()

    def child_path(self) -> Path:
        if not self.stack:
            return ()
        frame = self.stack[-1]
        if isinstance(frame.container, list):
            return (*frame.path, len(frame.container))
        return (*frame.path, frame.key)

    def scalar(self, event: yaml.ScalarEvent) -> Any:
        if event.tag is None or event.tag == "!":  # as PyYAML's composer resolves them
            tag = _tag_of_plain(event.value) if event.implicit[0] else _STR
        else:
            tag = event.tag
        if tag == _STR:
            return event.value
        if tag == _MERGE:
            raise YamlRefused("YAML merge keys (<<) are not allowed; write the values out in "
                              "full", _mark(event.start_mark))
        node = yaml.ScalarNode(tag, event.value, _mark(event.start_mark), _mark(event.end_mark),
                               event.style)
        return self.constructor.construct_object(node)  # ConstructorError on an unknown tag

    def value(self, value: Any, mark: yaml.Mark) -> None:
        """Put a finished value (scalar or closed collection) where it belongs."""
        if not self.stack:
            self.root = value
            self.lines[()] = mark.line + 1
            return
        frame = self.stack[-1]
        if isinstance(frame.container, list):
            frame.items.append(mark.line + 1)
            frame.container.append(value)
        elif frame.key is _NO_KEY:
            try:
                duplicate = value in frame.container
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", frame.start, "found unhashable key",
                    mark) from None
            child = (*frame.path, value)
            if duplicate:
                raise YamlRefused("given twice in the same mapping (YAML would keep only "
                                  "the last); keep one", mark, child)
            self.lines[child] = mark.line + 1
            frame.key = value
        else:
            frame.container[frame.key] = value
            frame.key = _NO_KEY

    def open(self, container: dict | list, event: yaml.CollectionStartEvent) -> None:
        start = _mark(event.start_mark)
        if event.tag not in _COLLECTION_TAGS:
            raise YamlRefused(f"YAML tag {event.tag} is not allowed here", start)
        path = self.child_path()
        if len(path) >= MAX_DEPTH:
            raise YamlRefused(f"nested deeper than {MAX_DEPTH} levels", start)
        self.stack.append(_Frame(container, path, start))

    def close(self) -> None:
        frame = self.stack.pop()
        if isinstance(frame.container, list) and frame.items:
            self.item_lines[frame.path] = frame.items
        self.value(frame.container, frame.start)


def parse_yaml(text: str | bytes) -> YamlDocument:
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
    builder = _Builder()
    documents = 0
    try:
        stack = builder.stack
        while (event := loader.get_event()) is not None:
            kind = type(event)
            if kind is yaml.ScalarEvent and stack and event.tag is None and \
                    type(top := stack[-1].container) is list and \
                    (not event.implicit[0] or event.value[:1] not in _RESOLVED_FIRST):
                stack[-1].items.append(event.start_mark.line + 1)  # text in a list: a feed's
                top.append(event.value)                            # million domains
            elif kind is yaml.ScalarEvent:
                builder.value(builder.scalar(event), event.start_mark)
            elif kind is yaml.SequenceStartEvent:
                builder.open([], event)
            elif kind is yaml.MappingStartEvent:
                builder.open({}, event)
            elif kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
                builder.close()
            elif kind is yaml.AliasEvent:
                raise YamlRefused(f"YAML aliases and anchors are not allowed (found "
                                  f"*{event.anchor}); write the values out in full",
                                  event.start_mark)
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise yaml.composer.ComposerError(
                        "expected a single document in the stream", None,
                        "but found another document", event.start_mark)
            elif kind is yaml.StreamEndEvent:
                break
    finally:
        loader.dispose()
    if not documents:
        return YamlDocument(data=None, lines={})
    return YamlDocument(data=builder.root, lines=builder.lines, item_lines=builder.item_lines)


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
