"""The files named on the command line (`--config`, `--catalog`, `--state`), read as JSON objects.

singer-sdk reads them too, but a missing or malformed file then ends the run with a traceback. Here
each problem is one line naming the file and what is wrong with it (the JSON parser's position, never
the file's text: a config file holds secrets).
"""

from __future__ import annotations

import io
import typing as t
from pathlib import Path, PurePath

from singer_sdk.helpers._util import load_json

from tap_salesforce_seg.errors import CatalogError, ConfigError, StateError, TapError

FilePath = str | PurePath


def read_json_object(path: FilePath, what: str, error: type[TapError] = ConfigError) -> dict[str, t.Any]:
    """The JSON object in the file at ``path`` (``what`` names it in errors: "config file", ...)."""
    name = f"{what} '{path}'"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{name} was not found") from None
    except IsADirectoryError:
        raise error(f"{name} is a folder, not a file") from None
    except OSError as problem:
        raise error(f"{name} cannot be read: {problem.strerror or type(problem).__name__}") from None
    except UnicodeDecodeError as problem:
        raise error(f"{name} is not UTF-8 text (byte {problem.start})") from None
    return parse_json_object(text, name, error)


def parse_json_object(text: str, name: str, error: type[TapError] = ConfigError) -> dict[str, t.Any]:
    """The JSON object that ``text`` holds (``name``: the file's, for errors)."""
    # What to do about a state file that cannot be read (a scheduler's copy cut short or left empty).
    restore = (
        ": put back the last whole STATE line of the run that wrote it, or remove the file to sync "
        "every stream from the start"
        if error is StateError
        else ""
    )
    if not text.strip():
        # Not taken as "nothing": a state file left empty by a failed run would restart every stream.
        raise error(f"{name} is empty{restore}")
    try:
        value = load_json(text)  # as singer-sdk reads it (numbers with a point as Decimal)
    except ValueError as problem:
        hint = restore
        if getattr(problem, "msg", None) == "Extra data" and error is StateError:
            hint = " (several JSON lines? a state is one: the last STATE line of a run, tail -1)"
        raise error(f"{name} is not valid JSON: {_position(problem)}{hint}") from None
    if not isinstance(value, dict):
        raise error(f"{name} holds a JSON {_json_type(value)}, not an object")
    return value


def checked_json_file(
    file: t.IO[str] | None, what: str, error: type[TapError] = ConfigError
) -> t.IO[str] | None:
    """An open file (as click opens ``--state`` and ``--catalog``), once its text is known to be a JSON
    object: a new file object holding the same text."""
    if file is None:
        return None
    name = f"{what} '{getattr(file, 'name', '?')}'"
    try:
        text = file.read()
    except UnicodeDecodeError as problem:
        raise error(f"{name} is not UTF-8 text (byte {problem.start})") from None
    parse_json_object(text, name, error)
    return io.StringIO(text)


def read_config(config: FilePath | list[FilePath] | dict | None) -> dict | None:
    """The settings from one or more config files (later files override earlier ones), or ``config``
    itself when it is not a path."""
    if isinstance(config, (str, PurePath)):
        return read_json_object(config, "config file")
    if isinstance(config, (list, tuple)):
        merged: dict[str, t.Any] = {}
        for path in config:
            merged.update(read_json_object(path, "config file"))
        return merged
    return config


def read_catalog(catalog: t.Any) -> t.Any:
    """The catalog as a dict when ``catalog`` is a path, else ``catalog`` itself."""
    if isinstance(catalog, (str, PurePath)):
        return read_json_object(catalog, "catalog file", CatalogError)
    return catalog


def read_state(state: t.Any) -> t.Any:
    """The state as a dict when ``state`` is a path, else ``state`` itself."""
    if isinstance(state, (str, PurePath)):
        return read_json_object(state, "state file", StateError)
    return state


def check_state_shape(state: t.Any) -> None:
    """Raise StateError unless ``state``'s ``bookmarks`` (when it has them) map streams to objects, or
    when it is Meltano's wrapper around a state (read as no state, it synced everything again)."""
    if isinstance(state, dict) and "bookmarks" not in state and "singer_state" in state:
        raise StateError(
            'state: this is Meltano\'s wrapper ({"singer_state": ...}, as `meltano state get` prints '
            "it); give the tap the state inside it: jq .singer_state"
        )
    bookmarks = state.get("bookmarks", {}) if isinstance(state, dict) else None
    if not isinstance(bookmarks, dict):
        raise StateError("state: `bookmarks` is not an object (stream name -> that stream's bookmark)")
    for stream, bookmark in bookmarks.items():
        if not isinstance(bookmark, dict):
            raise StateError(f"state: the bookmark of stream '{stream}' is not an object")
    org = state.get(ORG_STATE_KEY) if isinstance(state, dict) else None
    if org is not None and not isinstance(org, str):
        raise StateError(f"state: `{ORG_STATE_KEY}` is not a string (the id of the org it was written for)")


# The org a state's bookmarks were read from (its 15-character id): see SalesforceTap._check_org.
ORG_STATE_KEY = "salesforce_org"


def _position(problem: ValueError) -> str:
    """The parser's message without the file's text: what it expected and where."""
    message = getattr(problem, "msg", None)
    line, column = getattr(problem, "lineno", None), getattr(problem, "colno", None)
    if message and line is not None:
        # The C scanner's "Invalid control character %r at" carries its own placeholder and "at".
        message = message.replace(" %r", "").removesuffix(" at")
        return f"{message} at line {line}, column {column}"
    return str(problem).splitlines()[0] if str(problem) else type(problem).__name__


def _json_type(value: t.Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"
