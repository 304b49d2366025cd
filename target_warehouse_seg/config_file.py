"""The ``--config`` files, checked before singer-sdk reads them: a file that is missing, unreadable or
not a JSON object ends the run with one line naming it (singer-sdk's own errors are tracebacks).

Messages carry the parser's position, never the file's text: a config file holds passwords.
"""

from __future__ import annotations

import json
from pathlib import Path

from target_warehouse_seg.errors import ConfigError


def check_config_file(path: str) -> None:
    """Raise ConfigError unless the file at ``path`` holds a JSON object."""
    name = f"config file '{path}'"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:  # "No such file or directory", "Is a directory"...
        reason = error.reason if isinstance(error, UnicodeDecodeError) else error.strerror
        raise ConfigError(f"{name} cannot be read: {reason or type(error).__name__}") from None
    if not text.strip():
        raise ConfigError(f"{name} is empty")
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{name} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    if not isinstance(settings, dict):
        raise ConfigError(f"{name} holds {_JSON_KINDS.get(type(settings), 'a number')}, not an object")


_JSON_KINDS = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
