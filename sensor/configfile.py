"""Read a YAML configuration file into a pydantic model; errors name the file, line and key.

Shared by the sensor's configuration and the core's, so both refuse the same
things the same way: unknown keys, wrong types (strictly, as JSON: `true` is
no number), YAML aliases and duplicate keys (sensor.yamlsource).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from sensor.yamlsource import (
    dotted,
    parse_yaml,
    yaml_error_key,
    yaml_error_line,
    yaml_error_message,
)

Model = TypeVar("Model", bound=BaseModel)


class ConfigErrorType(Protocol):
    def __call__(self, path: Path | str, message: str, *, line: int | None = None,
                 key: str | None = None) -> Exception: ...


def load_config_file(path: Path | str, model: type[Model], *, error: ConfigErrorType,
                     missing: str, top_keys: str, docs: str) -> Model:
    """``model`` validated from the file at ``path``, or ``error`` for its first problem.

    ``missing`` says what to do when the file does not exist, ``top_keys``
    names a few top-level keys for the "not a mapping" message, ``docs``
    where the valid keys are documented.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(path, f"no such file; {missing}") from None
    except (OSError, UnicodeDecodeError) as problem:
        raise error(path, f"cannot read it: {problem}") from None
    try:
        document = parse_yaml(text)
    except yaml.YAMLError as problem:
        raise error(path, yaml_error_message(problem), line=yaml_error_line(problem),
                    key=yaml_error_key(problem)) from None
    data = {} if document.data is None else document.data
    if not isinstance(data, dict):
        raise error(path, f"the file must be a mapping of keys ({top_keys} ...)", line=1)
    try:
        # Strict, as JSON: `true` is no number and "14" no integer, yet paths and lists
        # read as text and sequences do.
        return model.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as problem:
        first = problem.errors()[0]
        location = tuple(part for part in first["loc"] if not isinstance(part, str)
                         or not part.startswith("function-"))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown key (a typo?); see {docs} for the valid keys"
        raise error(path, message, line=document.line_of(location),
                    key=dotted(location)) from None
