"""What both engines share: the cached catalog and the DDL (the SQL is the same in PostgreSQL and DuckDB).

Each table's catalog is read once (one query per table) and kept up to date by the DDL made here;
``forget`` drops it after a rollback undid DDL. Every table and column remembers the stream or property it
was made for in its SQL comment (see identifiers.py).
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import typing as t

from target_warehouse_seg.engines import DELETED_KEYS_TABLE, Column, Engine, LoadBatch, TableInfo
from target_warehouse_seg.identifiers import quote, read_comment, write_comment
from target_warehouse_seg.typemap import Kind, Source

logger = logging.getLogger("target-warehouse-seg")


def literal(text: str) -> str:
    """A SQL string literal (NUL removed: neither database takes it)."""
    return "'" + text.replace("'", "''").replace("\x00", "") + "'"


_TEMPORAL = {Source.TIMESTAMP: Kind.TIMESTAMP, Source.DATE: Kind.DATE, Source.TIME: Kind.TIME}


def temporal_in_text_columns(batch: LoadBatch, types: t.Mapping[str, str], text_type: str) -> dict[str, Kind]:
    """The batch's date-time, date and time properties whose columns are text, with their kinds: written
    as such a column's values were when it widened (``widened``: an instant as RFC 3339 UTC text), so
    that they read alike on both engines and a replication key there keeps its order as text."""
    return {
        column.name: _TEMPORAL[column.source]
        for column in batch.columns
        if column.source in _TEMPORAL and types.get(column.name) == text_type
    }


def stored_column(
    name: str,
    sql_type: str,
    comment: str | None,
    kinds: t.Mapping[str, Kind],
    narrow_kind: t.Callable[[str], Kind | None],
) -> Column:
    """A column as the catalog describes it: of one of the engine's own types, of a type that holds
    only some of a kind's values (``narrow``), or of another type (no kind)."""
    owner, note = read_comment(name, comment)
    kind = kinds.get(sql_type)
    if kind is not None:
        return Column(name, kind, owner, sql_type, note=note)
    kind = narrow_kind(sql_type)
    return Column(name, kind, owner, sql_type, narrow=kind is not None, note=note)


def stored_table(
    name: str,
    columns: dict[str, Column],
    primary_key: tuple[str, ...],
    comment: str | None,
    slots: int,
    *,
    alterable: bool = True,
) -> TableInfo:
    """A table as the catalog describes it (its comment names its stream, and may hold someone's note)."""
    owner, note = read_comment(name, comment)
    if not alterable:  # its narrow types stay: values are cast to them, as to any type made elsewhere
        columns = {
            column.name: dataclasses.replace(column, kind=None, narrow=False) if column.narrow else column
            for column in columns.values()
        }
    return TableInfo(name, columns, primary_key, owner, slots, note=note, alterable=alterable)


class CatalogEngine(Engine, abc.ABC):
    """An engine whose tables, columns and DDL are handled the same way; subclasses bring the rest."""

    sql_types: t.ClassVar[dict[Kind, str]]

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._tables: dict[str, str | None] | None = None
        self._views: set[str] = set()
        self._table_info: dict[str, TableInfo | None] = {}

    @abc.abstractmethod
    def _run(self, statement: str) -> None:
        """Execute one DDL statement in the open transaction (errors become ``DatabaseError``)."""

    @abc.abstractmethod
    def _read_tables(self) -> list[tuple[str, str | None, bool]]:
        """Every table and view of the schema: its name, its comment, whether it is a view (one query)."""

    @abc.abstractmethod
    def _read_table(self, name: str) -> TableInfo | None:
        """One table's columns, comments and primary key (one query)."""

    @abc.abstractmethod
    def key_text(self, key: t.Sequence[str], types: t.Mapping[str, str]) -> t.Callable[[list[str]], str]:
        """How the tombstones spell a key: SQL expressions of the key's values, of these SQL types, to
        one text, equal for equal keys."""

    @abc.abstractmethod
    def _json_element(self, text: str, index: int) -> str:
        """SQL for the element at ``index`` of the JSON array in the text column ``text``, as text."""

    def qualified(self, table: str) -> str:
        return f"{quote(self.schema)}.{quote(table)}"

    def literal(self, text: str) -> str:
        """A SQL string literal of ``text`` in this engine's SQL (stream names come from the input)."""
        return literal(text)

    def sql_type(self, column: Column) -> str:
        return column.sql_type or self.sql_types[t.cast(Kind, column.kind)]

    def column_sql(self, column: Column, in_key: bool) -> str:
        """A column's definition in CREATE TABLE."""
        return f"{quote(column.name)} {self.sql_type(column)}"

    def tables(self) -> dict[str, str | None]:
        if self._tables is None:
            found = self._read_tables()
            self._tables = {name: read_comment(name, comment)[0] for name, comment, _ in found}
            self._views = {name for name, _, view in found if view}
        return self._tables

    def is_view(self, name: str) -> bool:
        self.tables()
        return name in self._views

    def table(self, name: str) -> TableInfo | None:
        if name not in self._table_info:
            self._table_info[name] = self._read_table(name)
        return self._table_info[name]

    def forget(self) -> None:
        self._tables = None
        self._table_info.clear()

    def create_table(
        self, name: str, owner: str, columns: list[Column], primary_key: tuple[str, ...]
    ) -> None:
        definitions = [self.column_sql(column, column.name in primary_key) for column in columns]
        if primary_key:
            definitions.append(f"PRIMARY KEY ({', '.join(quote(column) for column in primary_key)})")
        self._run(f"CREATE TABLE {self.qualified(name)} ({', '.join(definitions)})")
        self._run(f"COMMENT ON TABLE {self.qualified(name)} IS {self.literal(owner)}")
        self._comment_columns(name, columns)
        self.tables()[name] = owner
        stored = {
            column.name: dataclasses.replace(column, sql_type=self.sql_type(column)) for column in columns
        }
        self._table_info[name] = TableInfo(name, stored, primary_key, owner, len(columns))

    def claim(self, table: str, stream: str | None, columns: list[Column]) -> None:
        info = t.cast(TableInfo, self.table(table))
        if stream is not None:
            comment = t.cast(str, write_comment(stream, info.note))
            self._run(f"COMMENT ON TABLE {self.qualified(table)} IS {self.literal(comment)}")
            info.owner = stream
            self.tables()[table] = stream
        self._comment_columns(table, columns)
        for column in columns:
            info.columns[column.name] = column

    def add_columns(self, table: str, columns: list[Column]) -> None:
        for column in columns:
            self._run(
                f"ALTER TABLE {self.qualified(table)} ADD COLUMN {quote(column.name)} {self.sql_type(column)}"
            )
            self._column_ddl_done()
        self._comment_columns(table, columns)
        self._note_columns(table, columns)

    def _note_columns(self, table: str, columns: list[Column]) -> None:
        """The cached table info learns columns just added."""
        info = self._table_info.get(table)
        if info is not None:
            for column in columns:
                info.columns[column.name] = Column(
                    column.name, column.kind, column.owner, self.sql_type(column)
                )
            info.column_slots += len(columns)

    def widen_column(self, table: str, column: str, kind: Kind, *, replication: bool = False) -> None:
        sql_type = self.sql_types[kind]
        name = quote(column)
        info = self.table(table)
        stored_type = self.sql_type(info.columns[column]) if info is not None else None
        self._run(
            f"ALTER TABLE {self.qualified(table)} ALTER COLUMN {name} SET DATA TYPE {sql_type} "
            f"USING {self.widened(name, t.cast(str, stored_type), sql_type)}"
        )
        if info is not None:
            info.columns[column] = dataclasses.replace(
                info.columns[column], kind=kind, sql_type=sql_type, narrow=False
            )
            if column in info.primary_key:
                self._respell_tombstones(table, column, t.cast(str, stored_type))
        if replication and stored_type is not None:
            if kind is Kind.TEXT:  # whether the SCHEMA or a value of the run widened it
                logger.warning(
                    "table %s: the replication key's column %s is now text; its values are compared as "
                    "text from now on (instants written in UTC keep their order, numbers do not)",
                    self.qualified(table),
                    column,
                )
            self._respell_replication_values(table, stored_type, sql_type)

    def widened(self, expression: str, stored_type: str, sql_type: str) -> str:
        """A stored value of ``stored_type`` as the wider ``sql_type``. As text, both engines spell an
        instant in RFC 3339 UTC with microseconds (``2024-01-02T03:04:05.000000Z``, which sorts as its
        instant) and a number without trailing zeros."""
        return f"CAST({expression} AS {sql_type})"

    def _respell_tombstones(self, table: str, column: str, stored_type: str) -> None:
        """After a key column widened (it was ``stored_type``): the table's tombstones, which spell its
        hard-deleted keys from their typed values, spelled again from the wider type, so that they go on
        meeting those keys (an older version of a deleted row must not come back)."""
        if self._read_table(DELETED_KEYS_TABLE) is None:
            return
        info = t.cast(TableInfo, self.table(table))
        types = {name: self.sql_type(info.columns[name]) for name in info.primary_key}
        values = []
        for index, name in enumerate(info.primary_key):
            value = self._json_element("record_key", index)
            if name == column:  # spelled as the widened column's stored values are
                values.append(self.widened(f"CAST({value} AS {stored_type})", stored_type, types[name]))
            else:
                values.append(f"CAST({value} AS {types[name]})")
        spelled = self.key_text(info.primary_key, types)(values)
        self._run(
            f"UPDATE {self.qualified(DELETED_KEYS_TABLE)} SET record_key = {spelled} "
            f"WHERE table_name = {self.literal(table)}"
        )

    def _respell_replication_values(self, table: str, stored_type: str, sql_type: str) -> None:
        """After the replication key's column widened: the replication keys that the table's tombstones
        keep as text, spelled again as the column's values now are (tombstones compare them with
        incoming ones in the column's type: as text, a tombstone's ``2024-01-01 00:00:05+00`` sorted
        before an older ``2024-01-01T00:00:04Z``, and that version of a hard-deleted row came back)."""
        if self._read_table(DELETED_KEYS_TABLE) is None:
            return
        widened = self.widened(f"CAST(replication_value AS {stored_type})", stored_type, sql_type)
        self._run(
            f"UPDATE {self.qualified(DELETED_KEYS_TABLE)} "
            f"SET replication_value = CAST({widened} AS {self.sql_types[Kind.TEXT]}) "
            f"WHERE table_name = {self.literal(table)} AND replication_value IS NOT NULL"
        )

    def _comment_columns(self, table: str, columns: list[Column]) -> None:
        for statement in self._column_comments(table, columns):
            self._run(statement)
            self._column_ddl_done()

    def _column_comments(self, table: str, columns: list[Column]) -> list[str]:
        """The statements that record, in each column's comment, the property it holds."""
        return [
            f"COMMENT ON COLUMN {self.qualified(table)}.{quote(column.name)} IS {self.literal(comment)}"
            for column in columns
            if (comment := write_comment(column.owner, column.note)) is not None
        ]

    def _column_ddl_done(self) -> None:
        """After each statement of a column's DDL (one per column: an engine may commit in steps)."""
