"""Set a few keys in a YAML configuration text, keeping the person's comments and layout.

First boot writes the mirror interface and the paths of the installed
secrets into ``veilleuse.yaml`` where the file does not say them. A line is
replaced or inserted in place, so the installed file still reads like the
one written on the laptop; when the layout is one a line edit cannot handle
(a flow mapping such as ``network: {home_net: [...]}``), the data is dumped
again instead (comments lost, values kept). Not the job of this module:
validating the result (``sensor.config.load_config`` does, as for
`veilleuse check-config`).
"""

from __future__ import annotations

import json
import re

import yaml

from sensor.yamlsource import parse_yaml

Key = tuple[str, str]


def value_of(text: str, key: Key) -> object:
    """The value of ``section.key`` in the YAML ``text``, None if it does not give one."""
    data = parse_yaml(text).data
    section = data.get(key[0]) if isinstance(data, dict) else None
    return section.get(key[1]) if isinstance(section, dict) else None


def set_keys(text: str, values: dict[Key, str]) -> str:
    """``text`` with each ``section.key`` set to its value, added where missing.

    >>> print(set_keys("network:\\n  # the port\\n  interface: eth0  # here\\n",
    ...                {("network", "interface"): "eth1"}), end="")
    network:
      # the port
      interface: "eth1"  # here
    >>> print(set_keys("site: home\\n", {("mqtt", "ca_file"): "/etc/ca.pem"}), end="")
    site: home
    mqtt:
      ca_file: "/etc/ca.pem"
    """
    for key, value in values.items():
        text = _set_key(text, key, value)
    return text


def _set_key(text: str, key: Key, value: str) -> str:
    edited = _edit_lines(text, key, value)
    try:
        data = parse_yaml(edited).data
        if data[key[0]][key[1]] == value:
            return edited
    except (yaml.YAMLError, KeyError, TypeError):
        pass
    data = parse_yaml(text).data or {}
    section = data.get(key[0])
    data[key[0]] = {**(section if isinstance(section, dict) else {}), key[1]: value}
    return ("# Rewritten by `veilleuse first-boot` (comments could not be kept).\n" +
            yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _edit_lines(text: str, key: Key, value: str) -> str:
    """The line edit: replace the key's value, or insert the key under its section."""
    document = parse_yaml(text)
    data = document.data if isinstance(document.data, dict) else {}
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    scalar = json.dumps(value)  # a JSON string is a YAML double-quoted scalar
    section = data.get(key[0], ...)
    if isinstance(section, dict) and key[1] in section:
        number = document.lines[key] - 1
        lines[number] = re.sub(r"^(\s*[^:#]+:\s*)([^#\n]*?)(\s*(#.*)?)$",
                               lambda m: m.group(1) + scalar + (m.group(3) or ""),
                               lines[number].rstrip("\n")) + "\n"
    elif section is None or isinstance(section, dict):
        number = document.lines[(key[0],)]
        children = [document.lines[(key[0], child)] for child in section or ()]
        sibling = lines[min(children) - 1] if children else "  "
        indent = sibling[:len(sibling) - len(sibling.lstrip())]
        lines.insert(number, f"{indent}{key[1]}: {scalar}\n")
    else:
        lines.append(f"{key[0]}:\n  {key[1]}: {scalar}\n")
    return "".join(lines)
