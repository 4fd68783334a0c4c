"""The feed formats a source can be in, and the loader of each.

``echap`` is Echap's YAML, ``stix2`` a STIX 2.1 bundle, ``misp`` a MISP event
in JSON. A configured source says its format; a file given by path
(``--feed``, ``feeds.local``) is recognised from its content.
Not the job of this module: reading any one format (see ``echap``, ``stix``,
``misp``).
"""

from __future__ import annotations

import json

from sensor.errors import FeedError
from sensor.feeds.echap import load_echap
from sensor.feeds.misp import load_misp
from sensor.feeds.model import Feed, FeedFormat
from sensor.feeds.stix import load_stix2

_LOADERS = {"echap": load_echap, "stix2": load_stix2, "misp": load_misp}
# how the copy in use is named in the feeds directory (<name><suffix>)
FILE_SUFFIXES: dict[str, str] = {"echap": ".yaml", "stix2": ".stix2.json", "misp": ".misp.json"}


def load_feed(content: bytes, name: str, feed_format: FeedFormat = "echap") -> Feed:
    """Validate ``content`` in ``feed_format``; FeedError naming where it is unusable."""
    try:
        loader = _LOADERS[feed_format]
    except KeyError:
        raise FeedError(name, f"unknown feed format {feed_format!r}; use one of "
                        f"{', '.join(_LOADERS)}") from None
    return loader(content, name)


def detect_format(content: bytes) -> FeedFormat:
    """The format of a feed file, from its content: JSON bundles and events, else Echap YAML.

    >>> detect_format(b'{"type": "bundle", "objects": []}'), detect_format(b'{"Event": {}}')
    ('stix2', 'misp')
    >>> detect_format(b"- name: X\\n  type: stalkerware\\n")
    'echap'
    """
    start = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start not in (b"{", b"["):
        return "echap"
    try:
        document = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return "echap"  # flow-style YAML, or broken JSON: the YAML loader says where
    if isinstance(document, dict) and document.get("type") == "bundle":
        return "stix2"
    if isinstance(document, dict) or (isinstance(document, list) and document
                                      and all(isinstance(i, dict) for i in document)):
        return "misp"
    return "echap"
