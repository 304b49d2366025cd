"""DuckDB engine: each batch is an Arrow table (DuckDB scans it in place, no copy), merged with one
``INSERT ... ON CONFLICT`` (plus a ``DELETE`` for hard deletes) inside the loader's transaction.

Numbers: DuckDB's DECIMAL holds at most 38 digits, so a ``number`` column is ``DECIMAL(38,18)``:
20 digits before the point and 18 after. Every Salesforce number fits (at most 18 digits, at most 17
after the point), and so does every bigint. A value that does not fit exactly (more digits before or
after the point) widens its column to VARCHAR holding the exact decimal text, with a warning: a value is
never rounded. PostgreSQL's ``numeric`` has no such limit.
"""

from __future__ import annotations

import logging
import os
import time
import typing as t
from decimal import Context, Decimal
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa

from target_warehouse_seg import convert
from target_warehouse_seg.engines import (
    REJECTED_TABLE,
    BatchColumn,
    Codec,
    Column,
    LoadBatch,
    Rejected,
    RowRejected,
    TableInfo,
)
from target_warehouse_seg.engines.catalog import CatalogEngine
from target_warehouse_seg.engines.merge import SEQ, statements
from target_warehouse_seg.errors import ConfigError, DatabaseError
from target_warehouse_seg.identifiers import quote
from target_warehouse_seg.typemap import Kind, Source

logger = logging.getLogger("target-warehouse-seg")

DECIMAL_PRECISION, DECIMAL_SCALE = 38, 18
SQL_TYPES = {
    Kind.BOOLEAN: "BOOLEAN",
    Kind.INTEGER: "BIGINT",
    Kind.NUMBER: f"DECIMAL({DECIMAL_PRECISION},{DECIMAL_SCALE})",
    Kind.DATE: "DATE",
    Kind.TIME: "TIME",
    Kind.TIMESTAMP: "TIMESTAMP WITH TIME ZONE",
    Kind.TEXT: "VARCHAR",
    Kind.JSON: "JSON",
}
KINDS = {sql_type: kind for kind, sql_type in SQL_TYPES.items()}
_STAGED = "tws_batch"
# Errors that are about the data (a value, a key), not about the database or the SQL.
_DATA_ERRORS = (
    duckdb.ConversionException,
    duckdb.ConstraintException,
    duckdb.OutOfRangeException,
    duckdb.InvalidInputException,
    duckdb.DataError,
    duckdb.IntegrityError,
)
# How each source travels in the Arrow batch; the merge casts to the table's type. Numbers and JSON
# travel as their exact JSON text, dates and times as RFC 3339 text (written by one msgspec encode of
# the column, far cheaper than Arrow's conversion of datetime objects), with ``null`` for NULL: DuckDB
# parses them in the merge. A number that DECIMAL(38,18) would round (DuckDB rounds extra decimals
# silently) is caught before, by ``_decimal_misfit``.
_ARROW = {
    Source.TEXT: pa.string(),
    Source.LOOSE: pa.string(),
    Source.INTEGER: pa.int64(),
    Source.NUMBER: pa.string(),
    Source.BOOLEAN: pa.bool_(),
    Source.TIMESTAMP: pa.string(),
    Source.TIMESTAMP_TEXT: pa.string(),
    Source.DATE: pa.string(),
    Source.TIME: pa.string(),
    Source.JSON: pa.string(),
}
NULL_AS_TEXT = frozenset({Source.NUMBER, Source.JSON, Source.TIMESTAMP, Source.DATE, Source.TIME})
_NULL = b"null"
_encode = convert.json_encoder.encode
_astuple = msgspec.structs.astuple
_DECIMAL_LIMIT = Decimal(10) ** (DECIMAL_PRECISION - DECIMAL_SCALE)
_DECIMAL_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)
# quantize() needs room for all 38 digits (the default context keeps 28: InvalidOperation past it).
_DECIMAL_CONTEXT = Context(prec=DECIMAL_PRECISION)
# Digits become "9": then a run of 19 nines means 19 digits in a row (too many after the point, or
# close to too many before it) and only then is each value checked exactly.
_DIGITS_AS_NINES = bytes.maketrans(b"012345678", b"999999999")
_LONG_RUN = b"9" * (DECIMAL_SCALE + 1)


def arrow_type(column: BatchColumn) -> pa.DataType:
    if column.source is Source.INTEGER and column.wide:
        return pa.string()
    return _ARROW[column.source]


def _raw_texts(values: t.Sequence[t.Any]) -> list[bytes]:
    """Raw JSON values as text, ``null`` for a missing one: two C-level passes over the column.

    A raw JSON value never holds a NUL byte (JSON has none outside escapes), so NUL separates them.
    """
    return b"\x00".join([value or _NULL for value in values]).split(b"\x00")


def _temporal_texts(values: t.Sequence[t.Any]) -> list[bytes]:
    """Dates, times and datetimes as RFC 3339 text (``null`` for NULL), from one JSON encode."""
    return _encode(values)[1:-1].replace(b'"', b"").split(b",")


def _text_array(position: int, texts: list[bytes]) -> pa.Array:
    try:
        return pa.array(texts, pa.string())
    except pa.ArrowInvalid:  # not UTF-8 (only raw JSON, which msgspec does not decode, can be)
        for index, text in enumerate(texts):
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                raise convert.ValueProblem(index, "JSON value is not valid UTF-8", position) from None
        raise


def _decimal_misfit(values: t.Sequence[t.Any]) -> bool:
    """Whether a JSON number would not fit DECIMAL(38,18) exactly."""
    present = [value for value in values if value is not None]
    joined = b"\x00".join(present).translate(_DIGITS_AS_NINES)
    if not present or (_LONG_RUN not in joined and b"e" not in joined and b"E" not in joined):
        return False
    for value in filter(None, map(convert.raw_or_none, present)):
        number = convert.decimal_of(value)
        exact = number.quantize(_DECIMAL_QUANTUM, context=_DECIMAL_CONTEXT)
        if abs(number) >= _DECIMAL_LIMIT or number != exact:
            return True
    return False


class DuckDBCodec(Codec):
    """Arrow record batches: the property columns, then ``@seq`` and ``received_at``."""

    def _schema(self, columns: list[BatchColumn]) -> pa.Schema:
        fields = [pa.field(column.name, arrow_type(column)) for column in columns]
        fields += [pa.field(SEQ, pa.int64()), pa.field("received_at", pa.timestamp("us", tz="UTC"))]
        return pa.schema(fields)

    def encode(
        self, columns: list[BatchColumn], rows: list[t.Any], lines: list[int], received_at: list[t.Any]
    ) -> pa.RecordBatch:
        values = list(zip(*map(_astuple, rows), strict=True))
        arrays = [self._array(position, column, values[position]) for position, column in enumerate(columns)]
        arrays.append(pa.array(lines, pa.int64()))
        arrays.append(pa.array(received_at, pa.timestamp("us", tz="UTC")))
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema(columns))

    @staticmethod
    def _array(position: int, column: BatchColumn, values: t.Sequence[t.Any]) -> pa.Array:
        source = column.source
        if source is Source.NUMBER:
            if column.kind is Kind.NUMBER and _decimal_misfit(values):
                raise convert.NeedsWidening(
                    position,
                    Kind.TEXT,
                    f"a number that DECIMAL({DECIMAL_PRECISION},{DECIMAL_SCALE}) cannot hold exactly; "
                    "the column keeps the exact decimal text",
                )
            return _text_array(position, _raw_texts(values))
        if source is Source.JSON:
            return _text_array(position, _raw_texts(values))
        if source in (Source.TIMESTAMP, Source.DATE, Source.TIME):
            return pa.array(_temporal_texts(values), pa.string())
        if source is Source.LOOSE:
            return pa.array([convert.text_of(value) for value in values], pa.string())
        if source is Source.INTEGER:
            return _integers(position, column, values)
        return pa.array(values, _ARROW[source])

    def finish(self, columns: list[BatchColumn], parts: list[t.Any]) -> pa.Table:
        return pa.Table.from_batches(parts, schema=self._schema(columns))

    def subset(self, payload: pa.Table, indices: t.Sequence[int]) -> pa.Table:
        return payload.take(pa.array(indices, pa.int64()))

    def row(self, columns: list[BatchColumn], payload: pa.Table, index: int) -> dict[str, t.Any]:
        values = payload.slice(index, 1).to_pylist()[0]
        return {column.prop: values[column.name] for column in columns}


def _integers(position: int, column: BatchColumn, values: t.Sequence[t.Any]) -> pa.Array:
    if not column.wide:
        try:
            return pa.array(values, pa.int64())
        except (OverflowError, pa.ArrowInvalid):
            raise convert.NeedsWidening(position, Kind.NUMBER, "an integer beyond bigint's range") from None
    if column.kind is Kind.NUMBER and any(
        value is not None and abs(value) >= _DECIMAL_LIMIT for value in values
    ):
        raise convert.NeedsWidening(position, Kind.TEXT, "an integer beyond DECIMAL(38,18)")
    return pa.array([None if value is None else str(value) for value in values], pa.string())


_TABLE_QUERY = """
SELECT c.column_name, c.data_type, c.comment, t.comment,
       (SELECT k.constraint_column_names FROM duckdb_constraints() k
         WHERE k.database_name = c.database_name AND k.schema_name = c.schema_name
           AND k.table_name = c.table_name AND k.constraint_type = 'PRIMARY KEY')
FROM duckdb_columns() c
JOIN duckdb_tables() t USING (database_name, schema_name, table_name)
WHERE c.database_name = current_database() AND c.schema_name = ? AND c.table_name = ?
ORDER BY c.column_index
"""
_TABLES_QUERY = """
SELECT table_name, comment FROM duckdb_tables()
 WHERE database_name = current_database() AND schema_name = ?
UNION ALL
SELECT view_name, comment FROM duckdb_views()
 WHERE database_name = current_database() AND schema_name = ?
"""


class DuckDBEngine(CatalogEngine):
    name = "duckdb"
    max_columns = None
    # Bigger units than PostgreSQL's: each DuckDB commit scans the table (UPDATE ... FROM, NOT EXISTS)
    # and may checkpoint, so fewer commits win; Arrow keeps a unit compact in memory.
    unit_bytes = 32 * 1024 * 1024
    sql_types = SQL_TYPES

    def __init__(self, path: str, schema: str) -> None:
        super().__init__(schema)
        self.path = path
        self.codec = DuckDBCodec()
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._staged = 0
        self._unregister_later: list[str] = []

    @classmethod
    def from_config(cls, config: t.Mapping[str, t.Any]) -> DuckDBEngine:
        path = str(config.get("path") or "warehouse.duckdb")
        if path != ":memory:" and not Path(path).expanduser().resolve().parent.is_dir():
            raise ConfigError(f"setting `path`: the folder of {path!r} does not exist")
        return cls(str(Path(path).expanduser()) if path != ":memory:" else path, config["schema"])

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        if self._connection is None:
            raise DatabaseError("not connected to DuckDB")
        return self._connection

    def connect(self) -> None:
        try:
            self._connection = duckdb.connect(self.path)
            self._connection.execute("SET TimeZone = 'UTC'")
            # Leave a core to the main thread, which decodes the next batch while DuckDB merges this
            # one; checkpoint less often than every 16 MB of WAL (each checkpoint rewrites row groups).
            self._connection.execute(f"SET threads = {max(1, (os.cpu_count() or 2) - 1)}")
            self._connection.execute("SET checkpoint_threshold = '64MB'")
        except duckdb.Error as error:
            raise DatabaseError(f"cannot open DuckDB database {self.path}: {_first_line(error)}") from None
        logger.info("opened DuckDB database %s, schema %s", self.path, self.schema)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _execute(
        self, statement: str, parameters: t.Sequence[t.Any] | None = None
    ) -> duckdb.DuckDBPyConnection:
        try:
            return self.connection.execute(statement, parameters)
        except duckdb.Error as error:
            raise DatabaseError(f"DuckDB {self.path}: {_first_line(error)}") from None

    def ensure_schema(self) -> None:
        self._execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")

    def _run(self, statement: str) -> None:
        self._execute(statement)

    def _read_tables(self) -> dict[str, str | None]:
        return dict(self._execute(_TABLES_QUERY, [self.schema, self.schema]).fetchall())

    def _read_table(self, name: str) -> TableInfo | None:
        rows = self._execute(_TABLE_QUERY, [self.schema, name]).fetchall()
        if not rows:
            return None
        columns = {
            column: Column(column, KINDS.get(sql_type), comment, sql_type)
            for column, sql_type, comment, _, _ in rows
        }
        return TableInfo(name, columns, tuple(rows[0][4] or ()), rows[0][3], len(rows))

    # Transactions and loading ---------------------------------------------------------------------

    def begin(self) -> None:
        self._execute("BEGIN TRANSACTION")

    def commit(self) -> None:
        started = time.perf_counter()
        self._execute("COMMIT")
        logger.debug("commit %.3f s", time.perf_counter() - started)

    def rollback(self) -> None:
        try:
            self.connection.execute("ROLLBACK")
        except duckdb.Error as error:  # no transaction left to roll back (DuckDB aborted it)
            logger.debug("rollback: %s", _first_line(error))
        while self._unregister_later:
            self.connection.unregister(self._unregister_later.pop())

    def load(self, batch: LoadBatch) -> None:
        info = self.table(batch.table)
        if info is None:
            raise DatabaseError(f"table {self.qualified(batch.table)} disappeared while loading")
        types = {
            name: column.sql_type or SQL_TYPES[t.cast(Kind, column.kind)]
            for name, column in info.columns.items()
        }

        raw = {column.name for column in batch.columns if column.source in NULL_AS_TEXT}

        def value(column: str) -> str:
            if column in raw:  # exact JSON text; a JSON null is SQL NULL
                return f"CAST(NULLIF(s.{quote(column)}, 'null') AS {types[column]})"
            return f"CAST(s.{quote(column)} AS {types[column]})"

        connection = self.connection
        self._staged += 1
        staged = f"{_STAGED}_{self._staged}"
        connection.register(staged, batch.payload)
        try:
            for statement in statements(
                batch,
                self.qualified(batch.table),
                quote(staged),
                value,
                upsert="update_insert",
            ):
                started = time.perf_counter()
                connection.execute(statement)
                elapsed = time.perf_counter() - started
                logger.debug("stream %s: %s in %.3f s", batch.stream, statement.split(" ", 1)[0], elapsed)
        except _DATA_ERRORS as error:
            raise RowRejected(_first_line(error)) from None
        except duckdb.Error as error:
            raise DatabaseError(f"DuckDB {self.path}: {_first_line(error)}") from None
        finally:
            try:
                connection.unregister(staged)
            except duckdb.Error:  # the failed statement aborted the transaction; the loader rolls back
                self._unregister_later.append(staged)

    def quarantine(self, rows: list[Rejected]) -> None:
        if not rows:
            return
        table = self.qualified(REJECTED_TABLE)
        self._execute(
            f"CREATE TABLE IF NOT EXISTS {table} (stream VARCHAR, line BIGINT, record_key JSON, "
            "field VARCHAR, error VARCHAR, record VARCHAR, rejected_at TIMESTAMP WITH TIME ZONE)"
        )
        staged = pa.table(
            {
                "stream": [row.stream for row in rows],
                "line": pa.array([row.line for row in rows], pa.int64()),
                "record_key": [
                    None if row.key is None else convert.json_encoder.encode(row.key).decode() for row in rows
                ],
                "field": [row.field for row in rows],
                "error": [row.error for row in rows],
                "record": [row.record.replace("\x00", "") for row in rows],
            }
        )
        self.connection.register("tws_rejected", staged)
        try:
            self._execute(
                f"INSERT INTO {table} SELECT stream, line, CAST(record_key AS JSON), field, error, record, "
                "now() FROM tws_rejected"
            )
        finally:
            self.connection.unregister("tws_rejected")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
