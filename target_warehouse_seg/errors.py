"""The target's errors: each carries one line that says what went wrong and where."""

from __future__ import annotations

import typing as t

from singer_sdk.exceptions import MissingKeyPropertiesError, RecordsWithoutSchemaException


class TargetError(Exception):
    """An error the user can act on; its message is the whole story, printed as one line."""


class ConfigError(TargetError):
    """A missing or invalid setting (raised before connecting)."""


class SchemaConflict(TargetError):
    """A stream's schema cannot be applied to its existing table (changed key, too many columns)."""


def widening_conflict(
    stream: str, table: str, column: str, stored: str, wanted: str, cause: str, obstacle: str
) -> SchemaConflict:
    """A column that would have to widen where the database cannot change its type now (``obstacle``:
    why, and what to do). ``stored`` is a narrow column's SQL type (``Column.stored_type``), which may
    spell like the kind it widens to: PostgreSQL's integer to the target's integer (bigint)."""
    if stored == wanted:
        wanted = f"the target's own {wanted} type"
    return SchemaConflict(
        f"stream {stream}: column {column} of table {table} would have to widen from {stored} to "
        f"{wanted} ({cause}), and nothing was written: {obstacle}"
    )


class StdoutClosed(TargetError):
    """The program reading the target's STATE messages closed its end of the pipe."""


class DatabaseError(TargetError):
    """The warehouse failed in a way that is not about one record (connection, permissions)."""


class ConnectionLost(DatabaseError):
    """The connection to the database broke (a server restart, a failover, a network cut): the server
    rolled back the open transaction, or, when ``while_committing``, it may have committed it. The
    loader connects again and applies the unit again while that is harmless (see Loader)."""

    def __init__(self, message: str, *, while_committing: bool = False) -> None:
        super().__init__(message)
        self.while_committing = while_committing


def format_key(key: t.Mapping[str, t.Any] | None) -> str:
    """``name=value`` pairs of the known key values (a missing key value is left out)."""
    if not key:
        return ""
    return ", ".join(
        f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"
        for name, value in key.items()
        if value is not None
    )


def location(
    line: int | None = None,
    stream: str | None = None,
    key: t.Mapping[str, t.Any] | None = None,
    field: str | None = None,
) -> str:
    """``line N, stream S, key K, field F`` with the parts that are known."""
    parts = []
    if line is not None:
        parts.append(f"line {line}")
    if stream is not None:
        parts.append(f"stream {stream}")
    if key and format_key(key):
        parts.append(f"key {format_key(key)}")
    if field is not None:
        parts.append(f"field {field}")
    return ", ".join(parts)


class InvalidRecord(TargetError):
    """A message or record that cannot be loaded as it is."""

    def __init__(
        self,
        problem: str,
        *,
        line: int | None = None,
        stream: str | None = None,
        key: t.Mapping[str, t.Any] | None = None,
        field: str | None = None,
    ) -> None:
        self.problem = problem
        self.line = line
        self.stream = stream
        self.key = dict(key) if key else None
        self.field = field
        where = location(line, stream, key, field)
        super().__init__(f"Invalid input: {where}: {problem}" if where else f"Invalid input: {problem}")


class RecordBeforeSchema(InvalidRecord, RecordsWithoutSchemaException):
    """A RECORD arrived for a stream whose SCHEMA has not been seen."""


class MissingKeyProperty(InvalidRecord, MissingKeyPropertiesError):
    """A record lacks (or nulls) one of its stream's key properties."""
