"""Plan a stream: its table, its columns and their kinds, its key, and the DDL it needs first.

Planning is pure: it takes the SCHEMA message and what the catalog says about the table, and returns the
plan plus the changes to make (create, add, widen). A changed key, or too many columns for the engine,
is a ``SchemaConflict`` raised here, before anything is written.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import typing as t
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from target_warehouse_seg import identifiers
from target_warehouse_seg.engines import SYSTEM_COLUMNS, Column, TableInfo
from target_warehouse_seg.errors import SchemaConflict, widening_conflict
from target_warehouse_seg.typemap import (
    Kind,
    Source,
    decode_type,
    kind_of,
    numbers_as_text,
    source_of,
    type_tokens,
    widen,
)

DELETE_FLAG_COLUMN = "is_deleted"


@dataclass
class PlannedColumn:
    prop: str
    name: str
    kind: Kind  # the column's kind in the table (after any widening)
    source: Source  # how the property's values are decoded and carried
    field: str  # the attribute holding the property in the stream's decoded records
    # A NUMBER source whose numbers may arrive as strings holding them (x-singer.decimal): the sink
    # takes such a string as the number it holds.
    quoted: bool = False


@dataclass
class StreamPlan:
    stream: str
    table: str
    columns: list[PlannedColumn]
    key_properties: tuple[str, ...]
    key_columns: tuple[str, ...]
    replication_column: str | None
    delete_flag: str | None
    nulled: tuple[str, ...]
    record_type: type
    decoder: msgspec.json.Decoder
    create: list[Column] | None = None  # columns of a table to create
    add: list[Column] = field(default_factory=list)
    widen: list[tuple[str, Kind]] = field(default_factory=list)
    # Columns of SQL types this target does not make (double precision, timestamp without time zone,
    # ...), with those types: their values are sent as text and the database casts them.
    foreign: list[tuple[str, str]] = field(default_factory=list)
    # Columns of a table made elsewhere that nobody claimed, with the properties that take them, and
    # whether the table itself is unclaimed: recorded in their comments before loading.
    claims: list[Column] = field(default_factory=list)
    claim_table: bool = False

    @property
    def ddl_needed(self) -> bool:
        return bool(self.create is not None or self.add or self.widen or self.claims or self.claim_table)


def schema_properties(stream: str, schema: t.Any) -> dict[str, t.Any]:
    if not stream.strip():  # it loaded into a table named "_" (or "___")
        raise SchemaConflict(f"a SCHEMA message names no stream (`stream` is {stream!r})")
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        raise SchemaConflict(f"stream {stream}: its SCHEMA message has no `properties` object")
    unreadable = [name for name in schema["properties"] if _UNREADABLE_NAME.search(name)]
    if unreadable:
        # Records are decoded by property name (msgspec), which cannot match these characters.
        raise SchemaConflict(
            f"stream {stream}: property {unreadable[0]!r} has a backslash, a double quote or a control "
            "character in its name, which the target cannot read records by: rename the property in "
            "the tap (a stream map's alias, for a singer-sdk tap)"
        )
    return schema["properties"]


_UNREADABLE_NAME = re.compile(r'[\\"\x00-\x1f]')


def plan_stream(
    *,
    stream: str,
    table: str,
    schema: t.Any,
    key_properties: t.Sequence[str] | None,
    bookmark_properties: t.Sequence[str] | None,
    existing: TableInfo | None,
    hard_delete: bool,
    max_columns: int | None,
    qualified_table: str,
    widening_obstacle: t.Callable[[str], str | None] = lambda column: None,
) -> StreamPlan:
    properties = schema_properties(stream, schema)
    keys = tuple(key_properties or ())
    missing = [name for name in keys if name not in properties]
    if missing:
        raise SchemaConflict(
            f"stream {stream}: key properties {missing} are not among its schema's properties"
        )
    owners = {name: column.owner for name, column in existing.columns.items()} if existing else {}
    names = identifiers.assign(properties, owners, reserved=SYSTEM_COLUMNS)
    columns: list[PlannedColumn] = []
    add: list[Column] = []
    widened: list[tuple[str, Kind]] = []
    foreign: list[tuple[str, str]] = []
    for index, (prop, prop_schema) in enumerate(properties.items()):
        tokens = type_tokens(prop_schema)
        declared = kind_of(tokens)
        name = names[prop]
        current = existing.columns.get(name) if existing else None
        if current is None:
            kind = declared
            add.append(Column(name, kind, prop))
        elif current.kind is None:
            kind = Kind.TEXT  # a SQL type we did not create: send text, the database casts it
            foreign.append((name, current.sql_type or ""))
        elif current.narrow:  # made by others, narrower than ours: a value past it was refused
            kind = widen(current.kind, declared)
            widened.append((name, kind))
        else:
            kind = widen(current.kind, declared)
            if kind != current.kind:
                widened.append((name, kind))
        source = _source(tokens, kind)
        quoted = source is Source.NUMBER and numbers_as_text(tokens)
        columns.append(PlannedColumn(prop, name, kind, source, f"f{index}", quoted))
    key_columns = tuple(names[name] for name in keys)
    _check_key(stream, key_columns, existing, qualified_table)
    for name, kind in widened:  # each asked only when it must widen (a catalog query)
        obstacle = widening_obstacle(name)
        if obstacle is not None:
            stored = t.cast(TableInfo, existing).columns[name].stored_type
            raise widening_conflict(
                stream, qualified_table, name, stored, kind.value, "its SCHEMA's type", obstacle
            )
    claims: list[Column] = []
    if existing is not None:  # a table made by others (or by hand) may lack the system columns
        add += [Column(name, Kind.TIMESTAMP) for name in SYSTEM_COLUMNS if name not in existing.columns]
        if existing.alterable:  # its columns the stream's properties take, claimed (Engine.claim)
            claims = [
                dataclasses.replace(existing.columns[name], owner=prop)
                for prop, name in names.items()
                if name in existing.columns and existing.columns[name].owner is None
            ]
    _check_column_count(stream, existing, add, max_columns, qualified_table)
    replication = next((names[name] for name in bookmark_properties or () if name in names), None)
    by_name = {column.name: column for column in columns}
    flag = by_name.get(DELETE_FLAG_COLUMN)
    delete_flag = flag.name if hard_delete and keys and flag and flag.kind is Kind.BOOLEAN else None
    planned_names = set(names.values())
    nulled = tuple(
        name
        for name, column in (existing.columns.items() if existing else ())
        if column.owner is not None
        and name not in planned_names
        and name not in SYSTEM_COLUMNS
        and name not in key_columns
    )
    record_type = msgspec.defstruct(
        f"Record_{identifiers.conform(stream)}",
        [(column.field, decode_type(column.source), None) for column in columns],
        rename={column.field: column.prop for column in columns},
        kw_only=True,
        gc=False,
    )
    if existing is None:
        create = [
            *(Column(c.name, c.kind, c.prop) for c in columns),
            Column("received_at", Kind.TIMESTAMP),
            Column("uuid_ts", Kind.TIMESTAMP),
        ]
        add = []
    else:
        create = None
    return StreamPlan(
        stream=stream,
        table=table,
        columns=columns,
        key_properties=keys,
        key_columns=key_columns,
        replication_column=replication,
        delete_flag=delete_flag,
        nulled=nulled,
        record_type=record_type,
        decoder=msgspec.json.Decoder(record_type, float_hook=Decimal),
        create=create,
        add=add,
        widen=widened,
        foreign=foreign,
        claims=claims,
        claim_table=existing is not None and existing.owner is None and existing.alterable,
    )


def _source(tokens: frozenset[str], kind: Kind) -> Source:
    """How the property's values travel. Into a JSON column (the property was an object or an array
    before) every value goes as its exact JSON: a string as a JSON string. Sent as text, the database
    parsed it as JSON, so the string "123" became the number 123 and "text" stopped the run."""
    return Source.JSON if kind is Kind.JSON else source_of(tokens)


def _check_key(stream: str, key_columns: tuple[str, ...], existing: TableInfo | None, table: str) -> None:
    if existing is None or existing.primary_key == key_columns:
        return
    stored = ", ".join(existing.primary_key) or "none"
    wanted = ", ".join(key_columns) or "none"
    if not existing.primary_key:  # a table made elsewhere (a warehouse moving to this target)
        columns = ", ".join(identifiers.quote(column) for column in key_columns)
        raise SchemaConflict(
            f"stream {stream}: the existing table {table} has no primary key, and the stream's key "
            f"properties are ({wanted}); nothing was written. Give the table that key once its rows are "
            f"unique on it (ALTER TABLE {table} ADD PRIMARY KEY ({columns})), or rename or drop it so "
            "that it is made again (and re-sync the stream)"
        )
    raise SchemaConflict(
        f"stream {stream}: its key properties ({wanted}) differ from the primary key ({stored}) of "
        f"the existing table {table}; nothing was written. Either send the stream with its former key, "
        f"or rename or drop that table so that it is rebuilt with the new key (and re-sync the stream)"
    )


def _check_column_count(
    stream: str, existing: TableInfo | None, add: list[Column], max_columns: int | None, table: str
) -> None:
    if max_columns is None:
        return
    current = existing.column_slots if existing else len(SYSTEM_COLUMNS)
    total = current + len(add)
    if total > max_columns:
        raise SchemaConflict(
            f"stream {stream}: table {table} would need {total} columns, more than the engine's limit "
            f"of {max_columns}; nothing was written. Select fewer properties for this stream (the tap's "
            f"catalog selection), or split it into several streams"
        )


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
