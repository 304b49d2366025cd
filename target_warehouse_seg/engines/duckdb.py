"""DuckDB engine: DuckDB converts each batch itself, from the records' own JSON, with its C++ JSON reader.

The main thread decodes every record with its stream's typed msgspec decoder (which checks every value,
see sink.py) but builds nothing from most values: the records' lines go to a spool file as they came
(each a JSON object whose ``record`` is the record: the input's own Singer lines), and ``read_json``
with the record's explicit STRUCT type reads it on DuckDB's thread. What DuckDB cannot read exactly
from JSON, and the key and replication-key columns, travel beside it in a small Arrow table (the
``side``: line numbers, ``received_at``, keys, date-times, JSON values, mixed types, numbers kept as
text), joined by position. The first batch of a table is a plain ``INSERT`` from that subquery (its
primary key refusing keys already there turns the table to upserts). An upsert deletes the stored rows
the batch wins over (matching them on the side table's keys), then inserts from the subquery: the whole
batch when every row of it deleted one (no key of it is left), else the rows whose key is absent (a
newer stored row stays). A batch with duplicate keys, or one that must keep columns it does not write
(an UPDATE), is staged in a temporary table first. All inside the loader's transaction.

What DuckDB reads from JSON, it reads exactly as the checks left it: strings (NULs and lone surrogates
never reach it: such records travel re-encoded), integers within bigint, booleans, and numbers as
``DECIMAL(38,18)`` straight from their digits (DuckDB reads JSON numbers for a DECIMAL as text, never
through a float). DuckDB's DECIMAL holds at most 38 digits, so a ``number`` column is
``DECIMAL(38,18)``: 20 digits before the point and 18 after. Every Salesforce number fits (at most 18
digits, at most 17 after the point), and so does every bigint. A value that does not fit exactly (more
digits before or after the point) widens its column to VARCHAR holding the exact decimal text, with a
warning: a value is never rounded. PostgreSQL's ``numeric`` has no such limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import operator
import os
import re
import shutil
import tempfile
import time
import typing as t
from collections import Counter
from dataclasses import dataclass
from decimal import Context, Decimal
from pathlib import Path

import duckdb
import msgspec
import numpy as np
import pyarrow as pa

from target_warehouse_seg import convert
from target_warehouse_seg.engines import (
    DELETED_KEYS_TABLE,
    REJECTED_TABLE,
    SYSTEM_COLUMNS,
    BatchColumn,
    Codec,
    Column,
    LoadBatch,
    Rejected,
    RetryUnit,
    RowRejected,
    TableInfo,
    merge,
)
from target_warehouse_seg.engines.catalog import CatalogEngine, literal
from target_warehouse_seg.engines.merge import SEQ, Tombstones, statements
from target_warehouse_seg.errors import ConfigError, DatabaseError
from target_warehouse_seg.identifiers import quote
from target_warehouse_seg.typemap import Kind, Source

logger = logging.getLogger("target-warehouse-seg")

DECIMAL_PRECISION, DECIMAL_SCALE = 38, 18
# DuckDB's memory limit: a base, plus a block's worth per column of every table a transaction writes
# (DuckDB keeps a block per column it appends to, for each table until the commit). The base is what a
# narrow table needs: DuckDB uses all of it on a long narrow load (the 1M x 10 updates: ~303 MB of
# process at 100 MB, ~294 MB at 90 MB, no slower), and a 64 MB one ran a whole org's sync (dozens of
# tables) out of memory. Should a load still run out, the limit doubles and the unit runs again.
MEMORY_LIMIT_MB, MEMORY_PER_COLUMN_KB = 90, 128
# DuckDB checkpoints (writes committed rows to the file) once its WAL exceeds a threshold; until then the
# committed rows wait in memory. A low threshold suits narrow tables: at 64 MB the 1M x 10 load worked
# near the memory limit and took 12% longer, with 15 MB more at the peak, than at 32 MB. A checkpoint
# needs buffers for every column it writes, though: at 32 MB the updates of a 300-column table peaked
# 35 MB higher than at 64 MB. So a base, plus a little per column written (as for the memory limit),
# up to a cap; raised as wider tables come, never lowered.
CHECKPOINT_BASE_MB, CHECKPOINT_PER_COLUMN_KB, CHECKPOINT_MAX_MB = 32, 128, 64
# DuckDB's buffers (256 KB blocks) come from its allocator and go back to the system when freed, so a
# long load touches fresh pages over and over: ~440,000 page faults on the 1M x 10 updates, three
# quarters of them on DuckDB's thread. A block allocator keeps this much of them for reuse (never given
# back, within the memory limit): a third fewer faults, 0.4 s less CPU and 4% less time on those
# updates, for 1 to 10 MB more at the peak (64 MB: no faster than 32, 10 to 20 MB more).
BLOCK_ALLOCATOR_MB = 32
# Since DuckDB 2.0 a checkpoint also vacuums tables with an ART index (the primary key): it rewrites
# the row groups that hold deleted rows, remapping the index to the moved rows. Upserts delete the rows
# they replace, so while loading nearly every checkpoint did that, over and over for the same row
# groups: 100,000-row upserts of random keys into 1,000,000 rows spent 10.7 s in commits with it and
# 4.2 s without; the (a) updates took 3.9-4.2 s instead of 4.2-4.7 s; and on the (c) updates a
# checkpoint's cost hung on where the units' bounds fell in the row groups (0.15 s or 0.6-0.9 s). So no
# vacuuming while loading (DuckDB 1.x never vacuumed such tables): a row group whose rows are all
# deleted is still dropped, and the run's last unit (or DuckDB's checkpoint on closing) vacuums with
# DuckDB's default, once per run (``finishing``).
VACUUM_TASKS_WHILE_LOADING = 0
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
SPOOL_FILE_BYTES = 8 * 1024 * 1024  # a spool file takes chunks until it holds this much
READER_OBJECT_BYTES = 1 << 24  # read_json's maximum_object_size, unless a record is longer
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
_generic = msgspec.json.Decoder(float_hook=Decimal)
_DECIMAL_LIMIT = Decimal(10) ** (DECIMAL_PRECISION - DECIMAL_SCALE)
_DECIMAL_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)
# quantize() needs room for all 38 digits (the default context keeps 28: InvalidOperation past it).
_DECIMAL_CONTEXT = Context(prec=DECIMAL_PRECISION)
# In a number column's scan (digits shown as nines), 19 digits in a row.
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


def _temporal_array(values: t.Sequence[t.Any]) -> pa.Array:
    """Dates, times and datetimes as an Arrow array of RFC 3339 text (``null`` for NULL).

    One msgspec encode of the column, then Arrow's buffers straight from it (the offsets from where
    its commas were): no Python object per value, half the time of splitting the text in Python.
    """
    # Such text holds no comma, quote or escape: its quotes go, and its commas separate the values.
    text = _encode(values)[1:-1].replace(b'"', b"")
    data = text.replace(b",", b"")
    commas = np.flatnonzero(np.frombuffer(text, np.uint8) == ord(","))
    if len(commas) != max(len(values) - 1, 0):
        raise RuntimeError(f"{len(values)} dates or times encoded as {len(commas) + 1} values")
    offsets = np.empty(len(values) + 1, np.int32)
    offsets[0], offsets[-1] = 0, len(data)
    # Value i ends where comma i was, less the i commas before it that ``data`` lacks.
    offsets[1:-1] = commas - np.arange(len(commas), dtype=commas.dtype)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


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


def _decimal_misfit(values: t.Sequence[t.Any], scan: bytes | None = None) -> bool:
    """Whether a JSON number would not fit DECIMAL(38,18) exactly (``scan``: the column's
    ``convert.scan_numbers``, when the sink made it already).

    Only a column whose scan shows a run of 19 digits (too many after the point, or close to too
    many before it) or an exponent is checked value by value.
    """
    if not _near_decimal_limit(convert.scan_numbers(values) if scan is None else scan):
        return False
    for value in filter(None, map(convert.raw_or_none, values)):
        number = convert.decimal_of(value)
        # 10^20 or more, read from the exponent (abs() overflows Python's context at 1e999999999), and
        # checked first: quantize() refuses a result past 38 digits.
        if number.adjusted() >= DECIMAL_PRECISION - DECIMAL_SCALE:
            return True
        if number != number.quantize(_DECIMAL_QUANTUM, context=_DECIMAL_CONTEXT):
            return True
    return False


def _near_decimal_limit(scan: bytes) -> bool:
    """Whether a number column's scan shows 19 digits in a row or an exponent."""
    return _LONG_RUN in scan or b"e" in scan or b"E" in scan


# How DuckDB reads a column from the record's JSON (None: the column travels in the side table).
# Only what the decoder checked strictly and DuckDB converts exactly: strings, bigints, booleans, and
# numbers into DECIMAL(38,18) (checked to fit by ``_decimal_misfit``).
_JSON_READ = {
    Source.TEXT: "VARCHAR",
    Source.TIMESTAMP_TEXT: "VARCHAR",
    Source.INTEGER: "BIGINT",
    Source.BOOLEAN: "BOOLEAN",
    Source.NUMBER: SQL_TYPES[Kind.NUMBER],
}


def json_read_type(column: BatchColumn) -> str | None:
    """The type DuckDB reads this column as from the record's JSON, or None when it travels aside.

    Key and replication-key columns travel aside: an upsert's DELETE then reads them from the side
    table alone, without parsing the records' JSON (which the INSERT after it reads straight into the
    table).
    """
    if column.matched:
        return None
    if column.source is Source.INTEGER and column.wide:
        return None
    if column.source is Source.NUMBER and column.kind is not Kind.NUMBER:
        return None  # kept as the exact decimal text
    return _JSON_READ.get(column.source)


@dataclass(frozen=True)
class Layout:
    """Which columns of a batch DuckDB reads from JSON (``read``) and which travel aside (``side``)."""

    read: tuple[int, ...]
    side: tuple[int, ...]

    @classmethod
    def of(cls, columns: t.Sequence[BatchColumn]) -> Layout:
        candidates = [i for i, column in enumerate(columns) if json_read_type(column) and column.prop]
        # DuckDB matches JSON keys exactly but refuses two columns whose names differ only in case.
        folded = Counter(columns[i].prop.lower() for i in candidates)
        read = tuple(i for i in candidates if folded[columns[i].prop.lower()] == 1)
        side = tuple(i for i in range(len(columns)) if i not in set(read))
        return cls(read, side)


@dataclass
class Part:
    """One chunk: its records' JSON, appended to its batch's spool file (one per line), and its side
    columns."""

    path: Path
    side: pa.RecordBatch
    longest: int
    record_type: t.Any
    file_bytes: int  # the size of its spool file once this chunk was written


@dataclass
class JsonPayload:
    """A batch for DuckDB: its records' JSON in spool files (one per line, in row order) and the side
    table (the same rows, in the same order)."""

    paths: list[Path]
    side: pa.Table
    longest: int  # at least the longest record, in bytes (DuckDB's reader must be told)
    record_type: t.Any  # the stream's decoded record type (to re-encode the records)
    canonical: bool = False  # every line is the JSON of its decoded record

    def lines(self) -> list[bytes]:
        return [line for path in self.paths for line in path.read_bytes().split(b"\n")[:-1]]


def _record_of(line: bytes) -> dict[str, t.Any]:
    """The record of a spooled line (its ``record`` member), as plain JSON values."""
    if convert.utf8_problem(line) is not None:  # as much of it as is text, for the error report
        line = line.decode("utf-8", "replace").encode()
    with contextlib.suppress(*convert.DECODE_ERRORS):
        decoded = _generic.decode(line)
        record = decoded.get("record") if isinstance(decoded, dict) else None
        if isinstance(record, dict):
            return record
    return {}


class DuckDBCodec(Codec):
    """Spooled JSON lines plus an Arrow side table: the side columns, then ``@seq`` and ``received_at``."""

    reads_json = True
    # Keys travel in the side table, where DuckDB counts them (cast to the table's types, so "1.0" and
    # "1" are one number) in a few milliseconds, instead of the main thread keeping a set of them.
    counts_keys = True

    def __init__(self) -> None:
        self._spool: Path | None = None
        self._files = 0
        self._layouts: dict[tuple[BatchColumn, ...], Layout] = {}

    # Layout and side table ----------------------------------------------------------------------

    def layout(self, columns: t.Sequence[BatchColumn]) -> Layout:
        key = tuple(columns)
        if key not in self._layouts:
            self._layouts[key] = Layout.of(columns)
        return self._layouts[key]

    def _side_schema(self, columns: list[BatchColumn]) -> pa.Schema:
        fields = [pa.field(columns[i].name, arrow_type(columns[i])) for i in self.layout(columns).side]
        fields += [pa.field(SEQ, pa.int64()), pa.field("received_at", pa.string())]
        return pa.schema(fields)

    def encode(
        self,
        columns: list[BatchColumn],
        rows: list[t.Any],
        lines: list[int],
        received_at: list[t.Any],
        raws: list[t.Any] | None = None,
        previous: Part | None = None,
        lenient: bool = True,
        number_scans: t.Mapping[int, bytes] | None = None,
    ) -> Part:
        layout = self.layout(columns)
        scans = number_scans or {}
        for position in layout.read:
            self._check_read(position, columns[position], rows, lenient, scans.get(position))
        arrays = [
            self._array(position, columns[position], _column(rows, position), scans.get(position))
            for position in layout.side
        ]
        arrays.append(pa.array(lines, pa.int64()))
        # As RFC 3339 text from one msgspec encode (Arrow converts datetime objects one by one, ~10x
        # slower); DuckDB parses it in the merge.
        arrays.append(_temporal_array(received_at))
        side = pa.RecordBatch.from_arrays(arrays, schema=self._side_schema(columns))
        texts = raws if raws is not None else [_encode({"record": row}) for row in rows]
        # Spooled now (memory holds one chunk at most), into files of a few MB: DuckDB's reader pays
        # ~14 ms per file it opens (20,000 wide records read 2x slower from 79 files than from 1),
        # while one large file costs it larger read buffers.
        text = b"\n".join(texts)
        with self._writing():
            if previous is not None and previous.file_bytes < SPOOL_FILE_BYTES:
                path, file_bytes = previous.path, previous.file_bytes + len(text) + 1
            else:
                path, file_bytes = self._new_file(), len(text) + 1
            with path.open("ab") as spool:
                spool.write(text)
                spool.write(b"\n")
        # The reader needs to know only of a line longer than its default object size: below that,
        # the chunk's length stands in for its longest line (sparing a pass over the lines).
        longest = len(text) if len(text) < READER_OBJECT_BYTES else max(map(len, text.split(b"\n")))
        return Part(path, side, longest, type(rows[0]), file_bytes)

    @staticmethod
    def _check_read(
        position: int, column: BatchColumn, rows: list[t.Any], lenient: bool, scan: bytes | None
    ) -> None:
        """What DuckDB's reader would not refuse but round or overflow: widen the column instead."""
        if column.source is Source.NUMBER:
            # The column's values are gathered only when the sink's scan does not clear them.
            if (scan is None or _near_decimal_limit(scan)) and _decimal_misfit(_column(rows, position), scan):
                raise convert.NeedsWidening(
                    position,
                    Kind.TEXT,
                    f"a number that DECIMAL({DECIMAL_PRECISION},{DECIMAL_SCALE}) cannot hold exactly; "
                    "the column keeps the exact decimal text",
                )
        elif column.source is Source.INTEGER and lenient:
            # The typed decoder bounds integers to bigint; only a leniently read record can hold more.
            values = _column(rows, position)
            low, high = min(filter(None, values), default=0), max(filter(None, values), default=0)
            if low < convert.INT64_MIN or high > convert.INT64_MAX:
                raise convert.NeedsWidening(position, Kind.NUMBER, "an integer beyond bigint's range")

    @staticmethod
    def _array(
        position: int, column: BatchColumn, values: t.Sequence[t.Any], scan: bytes | None = None
    ) -> pa.Array:
        source = column.source
        if source is Source.NUMBER:
            if column.kind is Kind.NUMBER and _decimal_misfit(values, scan):
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
            return _temporal_array(values)
        if source is Source.LOOSE:
            return pa.array([convert.text_of(value) for value in values], pa.string())
        if source is Source.INTEGER:
            return _integers(position, column, values)
        return pa.array(values, _ARROW[source])

    # Payloads -----------------------------------------------------------------------------------

    def finish(self, columns: list[BatchColumn], parts: list[t.Any]) -> JsonPayload:
        side = pa.Table.from_batches([part.side for part in parts], schema=self._side_schema(columns))
        longest = max(part.longest for part in parts)
        paths = list(dict.fromkeys(part.path for part in parts))  # in order, each file once
        return JsonPayload(paths, side, longest, parts[0].record_type)

    def subset(self, payload: JsonPayload, indices: t.Sequence[int]) -> JsonPayload:
        lines = payload.lines()
        with self._writing():
            path = self._new_file()
            path.write_bytes(b"".join(lines[index] + b"\n" for index in indices))
        side = payload.side.take(pa.array(indices, pa.int64()))
        return dataclasses.replace(payload, paths=[path], side=side)

    def repair(self, payload: JsonPayload) -> JsonPayload | None:
        """The payload with every record re-encoded from its decoded values, or None when it already is.

        The decoder accepted these records, but DuckDB's stricter reader may refuse one for what lies
        outside the schema's properties or outside the record (a lone surrogate, invalid UTF-8, a
        repeated key): as the JSON of its decoded values, such a record loads like the others.
        """
        if payload.canonical:
            return None
        line_type = msgspec.defstruct("SpooledLine", [("record", payload.record_type)])
        decode = msgspec.json.Decoder(line_type, float_hook=Decimal).decode
        with self._writing():
            path = self._new_file()
            with path.open("wb") as spool:
                for line in payload.lines():
                    # A record read leniently (an integer beyond bigint, say) was re-encoded already.
                    with contextlib.suppress(*convert.DECODE_ERRORS):
                        line = _encode(decode(line))
                    spool.write(line + b"\n")
        return dataclasses.replace(payload, paths=[path], canonical=True)

    def row(self, columns: list[BatchColumn], payload: JsonPayload, index: int) -> dict[str, t.Any]:
        record = _record_of(payload.lines()[index])
        aside = payload.side.slice(index, 1).to_pylist()[0]
        layout = self.layout(columns)
        values = {columns[i].prop: record.get(columns[i].prop) for i in layout.read}
        values.update({columns[i].prop: aside[columns[i].name] for i in layout.side})
        return {column.prop: values[column.prop] for column in columns}

    def release(self, payload: JsonPayload) -> None:
        for path in payload.paths:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the spool folder (files of units that never ran, after an error)."""
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None

    @contextlib.contextmanager
    def _writing(self) -> t.Iterator[None]:
        """A spool file that cannot be written (a full disk, say) stops the run with one line."""
        try:
            yield
        except OSError as error:
            folder = self._spool or Path(tempfile.gettempdir())
            raise DatabaseError(
                f"cannot write DuckDB's batch files in {folder}: {error.strerror or error}; free space "
                "there, or point TMPDIR to a folder with room"
            ) from None

    def _new_file(self) -> Path:
        if self._spool is None:
            self._spool = Path(tempfile.mkdtemp(prefix="target-warehouse-seg-"))
        self._files += 1
        return self._spool / f"batch-{self._files}.ndjson"


def _column(rows: list[t.Any], position: int) -> list[t.Any]:
    return list(map(operator.attrgetter(f"f{position}"), rows))


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
    widens_key_columns = False  # ALTER ... SET DATA TYPE refuses a primary key column
    # Bigger units than PostgreSQL's: each upsert joins the batch with the whole table (the DELETE) and
    # each commit may checkpoint, so fewer units win; Arrow keeps a unit compact in memory.
    unit_bytes = 32 * 1024 * 1024
    # A small first unit: DuckDB starts loading after ~0.1 s of reading instead of ~0.5 s.
    first_unit_bytes = 8 * 1024 * 1024
    # Values decoded per chunk: a chunk's decoded records are the main thread's working memory.
    chunk_values = 50_000
    sql_types = SQL_TYPES

    def __init__(self, path: str, schema: str) -> None:
        super().__init__(schema)
        self.path = path
        self.codec = DuckDBCodec()
        self._connection: duckdb.DuckDBPyConnection | None = None
        # The main thread's own connection to the database, for lend_core (a connection serves one
        # thread at a time, and the loader's is busy loading).
        self._lender: duckdb.DuckDBPyConnection | None = None
        self._cores = os.cpu_count() or 1
        self._threads = max(1, self._cores - 1)
        self._staged = 0
        self._unregister_later: list[str] = []
        self._upserted: set[str] = set()  # tables that had keys of a batch already
        self._probed: set[str] = set()  # tables whose stored keys were probed in this run

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
        # The side tables' Arrow buffers from malloc: Arrow's own allocator (mimalloc) kept 5-10 MB
        # more at the peak of a 1M-row load, and only DuckDB's engine uses Arrow in this process.
        pa.set_memory_pool(pa.system_memory_pool())
        try:
            self._connection = duckdb.connect(self.path)
            self._connection.execute("SET TimeZone = 'UTC'")
            _optional_setting(self._connection, f"SET block_allocator_memory = '{BLOCK_ALLOCATOR_MB}MB'")
            _optional_setting(self._connection, f"SET max_vacuum_tasks = {VACUUM_TASKS_WHILE_LOADING}")
            # Leave a core to the main thread, which decodes the next batch while DuckDB loads this one
            # (it gets the core back while the main thread waits: lend_core).
            self._connection.execute(f"SET threads = {self._threads}")
            self._lender = self._connection.cursor()
            # Bounded memory: DuckDB keeps the pages it reads or writes until this limit (and spills
            # beyond it to its temp directory, beside the database file).
            self._memory_limit_mb = self._memory_wanted_mb = self._checkpoint_mb = 0
            self._columns_written = 0
            self._ensure_memory(0)
        except duckdb.Error as error:
            raise DatabaseError(f"cannot open DuckDB database {self.path}: {_first_line(error)}") from None
        logger.info("opened DuckDB database %s, schema %s", self.path, self.schema)

    def lend_core(self, lend: bool) -> bool:
        """While the main thread waits for a unit (the last ones, or one that takes longer than the
        decoding of the next), DuckDB works on every core: its checkpoints and DELETEs run faster on
        two threads (its INSERTs slower, hence one thread otherwise). The (a) updates took 9% less
        time, the (c) updates 6% (alternating runs). Threads are a setting of the whole database,
        taken by the running statement's next tasks."""
        if self._lender is None or self._threads == self._cores:
            return False
        try:
            self._lender.execute(f"SET threads = {self._threads + 1 if lend else self._threads}")
        except duckdb.Error as error:  # only slower; the loader reports what went wrong with the unit
            logger.debug("DuckDB threads not changed: %s", _first_line(error))
            return False
        return True

    def finishing(self) -> None:
        """The run's last unit, and the checkpoint DuckDB makes on closing, vacuum with DuckDB's
        default (see VACUUM_TASKS_WHILE_LOADING)."""
        if self._connection is not None:
            _optional_setting(self._connection, "RESET max_vacuum_tasks")

    def close(self) -> None:
        try:
            if self._lender is not None:
                self._lender.close()
                self._lender = None
            if self._connection is not None:
                self.finishing()  # also after an error: the checkpoint on closing vacuums as by default
                self._connection.close()
                self._connection = None
        finally:
            self.codec.close()

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
        self._set_memory_limit(self._memory_wanted_mb)  # raised by a unit that ran out of memory
        self._execute("BEGIN TRANSACTION")
        self._columns_written = 0

    def create_table(
        self, name: str, owner: str, columns: list[Column], primary_key: tuple[str, ...]
    ) -> None:
        self._ensure_memory(len(columns))
        super().create_table(name, owner, columns, primary_key)

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
        texts = {column.name for column in batch.columns if column.source in NULL_AS_TEXT} | {"received_at"}
        texts -= {batch.columns[i].name for i in self.codec.layout(batch.columns).read}

        def value(column: str) -> str:
            if column in texts:  # exact JSON text in the side table; a JSON null is SQL NULL
                return f"CAST(NULLIF(s.{quote(column)}, 'null') AS {types[column]})"
            return f"CAST(s.{quote(column)} AS {types[column]})"

        self._columns_written += len(info.columns)
        self._ensure_memory(self._columns_written)
        connection = self.connection
        self._staged += 1
        side = f"{_STAGED}_side_{self._staged}"
        connection.register(side, batch.payload.side)
        source = self._source_sql(batch, side)
        table = self.qualified(batch.table)
        try:
            if batch.has_duplicates is None:
                batch = dataclasses.replace(batch, has_duplicates=self._keys_repeat(batch, side, value))
            if self._appending(batch, info, side, value):
                # A plain INSERT straight from the reader: no staging table, no join with the table.
                # The primary key refuses a key that is already there: then this table is upserted
                # from now on, and the unit runs again.
                try:
                    for statement in statements(batch, table, source, value, upsert="insert"):
                        self._timed(batch, statement)
                except duckdb.ConstraintException:
                    logger.info("stream %s: some keys exist already; upserting from now on", batch.stream)
                    self._upserted.add(batch.table)
                    raise RetryUnit(batch.table) from None
                return
            upsert = self._upsert(batch, info)
            tombstones = self._tombstones(batch, types) if merge.applies(batch) else None
            if upsert == "delete_insert" and batch.key and not batch.has_duplicates and tombstones is None:
                self._delete_then_insert(batch, table, side, source, value)
                return
            # Duplicate keys (collapsed by DISTINCT ON), or columns to keep (an UPDATE): staged once.
            staging = quote(f"{_STAGED}_{self._staged}")
            # The staging table holds the table's own types: the DELETE's join and the INSERT then
            # read typed values (each text value is parsed once, here, not in both statements).
            staged = [*(column.name for column in batch.columns), "received_at"]
            typed = ", ".join([f"{value(name)} AS {quote(name)}" for name in staged] + [f"s.{quote(SEQ)}"])
            self._timed(batch, f"CREATE TEMP TABLE {staging} AS SELECT {typed} FROM {source} AS s")
            if tombstones is not None:
                self._timed(batch, merge.prune_statement(batch, table, staging, tombstones))
            for statement in statements(batch, table, staging, upsert=upsert):
                self._timed(batch, statement)
            if tombstones is not None:
                for statement in merge.tombstone_statements(batch, staging, tombstones):
                    self._timed(batch, statement)
            self._timed(batch, f"DROP TABLE {staging}")
        except _DATA_ERRORS as error:
            raise RowRejected(_refusal(error)) from None
        except duckdb.OutOfMemoryException as error:
            self._grow_memory(_first_line(error))
            raise RetryUnit(batch.table) from None
        except duckdb.Error as error:
            raise DatabaseError(f"DuckDB {self.path}: {_first_line(error)}") from None
        finally:
            try:
                connection.unregister(side)
            except duckdb.Error:  # the failed statement aborted the transaction; the loader rolls back
                self._unregister_later.append(side)

    def _tombstones(self, batch: LoadBatch, types: dict[str, str]) -> Tombstones:
        """The tombstones of the batch's table (their table created when missing, in this transaction).
        Keys are spelled as DuckDB's JSON of the typed values (DECIMAL keeps a fixed scale, the session
        is in UTC)."""
        tombstones = Tombstones(
            self.qualified(DELETED_KEYS_TABLE),
            literal(batch.table),
            lambda values: f"CAST(json_array({', '.join(values)}) AS VARCHAR)",
            types[t.cast(str, batch.replication_key)],
        )
        self.connection.execute(tombstones.ddl("VARCHAR", "TIMESTAMP WITH TIME ZONE"))
        return tombstones

    def _keys_repeat(self, batch: LoadBatch, side: str, value: t.Callable[[str], str]) -> bool:
        """Whether two rows of the batch share a key, as the table's types compare them."""
        keys = ", ".join(value(name) for name in batch.key)
        distinct = f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {quote(side)} AS s)"
        return bool(batch.key) and self.connection.execute(distinct).fetchone()[0] < batch.row_count

    def _delete_then_insert(
        self, batch: LoadBatch, table: str, side: str, source: str, value: t.Callable[[str], str]
    ) -> None:
        """Upsert without a staging table: the DELETE of the stored rows the batch wins over reads the
        keys from the side table, then the INSERT reads the records straight into the table: all of
        them when every one deleted a stored row (no key of the batch is left), else those whose key
        is absent (a newer stored row stays). Each record's JSON is parsed once, and no copy of the
        batch waits in DuckDB's memory between the two statements."""
        delete, _ = statements(batch, table, quote(side), value, upsert="delete_insert")
        if self._timed(batch, delete) == batch.row_count:
            insert = statements(batch, table, source, value, upsert="insert")[0]
        else:
            insert = statements(batch, table, source, value, upsert="delete_insert")[1]
        self._timed(batch, insert)

    def _ensure_memory(self, columns: int) -> None:
        """Raise DuckDB's memory limit and checkpoint threshold to what writing this many columns
        needs (never lower them)."""
        self._set_memory_limit(MEMORY_LIMIT_MB + columns * MEMORY_PER_COLUMN_KB // 1024)
        checkpoint_mb = CHECKPOINT_BASE_MB + columns * CHECKPOINT_PER_COLUMN_KB // 1024
        checkpoint_mb = min(CHECKPOINT_MAX_MB, checkpoint_mb)
        if checkpoint_mb > self._checkpoint_mb:
            self.connection.execute(f"SET checkpoint_threshold = '{checkpoint_mb}MB'")
            self._checkpoint_mb = checkpoint_mb

    def _grow_memory(self, reason: str) -> None:
        """After DuckDB ran out of its limit: double it for the unit's next run (set once the aborted
        transaction is rolled back: DuckDB takes no SET inside it)."""
        self._memory_wanted_mb = 2 * self._memory_limit_mb
        logger.warning(
            "DuckDB ran out of its %d MB memory limit (%s); raising it to %d MB and loading again",
            self._memory_limit_mb,
            reason,
            self._memory_wanted_mb,
        )

    def _set_memory_limit(self, megabytes: int) -> None:
        if megabytes > self._memory_limit_mb:
            self.connection.execute(f"SET memory_limit = '{megabytes}MB'")
            self._memory_limit_mb = megabytes

    def _appending(self, batch: LoadBatch, info: TableInfo, side: str, value: t.Callable[[str], str]) -> bool:
        """Whether to load the batch with a plain INSERT (its table's primary key guarding it).

        Not when the batch's first key is stored already (a run of updates, say): that INSERT could
        only fail, after doing all its work. Probed once per table and run (a few milliseconds); a
        later batch that meets stored keys turns the table to upserts when its INSERT is refused.
        """
        if not (
            bool(batch.key)
            and not batch.delete_flag
            and info.primary_key == batch.key
            and batch.table not in self._upserted
        ):
            return False
        if batch.table not in self._probed:
            self._probed.add(batch.table)
            if self._first_key_stored(batch, side, value):
                logger.info("stream %s: its first record's key is stored already; upserting", batch.stream)
                self._upserted.add(batch.table)
                return False
        return True

    def _first_key_stored(self, batch: LoadBatch, side: str, value: t.Callable[[str], str]) -> bool:
        """Whether the table holds a row with the key of the batch's first row (cast as an upsert's
        DELETE casts it)."""
        first = ", ".join(f"{value(name)} AS {quote(name)}" for name in batch.key)
        match = " AND ".join(f"t.{quote(name)} = f.{quote(name)}" for name in batch.key)
        query = (
            f"SELECT EXISTS (SELECT 1 FROM {self.qualified(batch.table)} AS t "
            f"JOIN (SELECT {first} FROM (SELECT * FROM {quote(side)} LIMIT 1) AS s) AS f ON {match})"
        )
        return bool(self.connection.execute(query).fetchone()[0])

    def column_sql(self, column: Column, in_key: bool) -> str:
        definition = super().column_sql(column, in_key)
        if in_key and self.sql_type(column) == SQL_TYPES[Kind.TEXT]:
            # Upserts delete the rows they replace, and a commit then reads each deleted row's key:
            # from compressed strings (FSST) that costs DuckDB a dictionary per row (~1 s per 20,000
            # rows), uncompressed it is a lookup. Keys are short, so the file grows little.
            definition += " USING COMPRESSION uncompressed"
        return definition

    @staticmethod
    def _upsert(batch: LoadBatch, info: TableInfo) -> str:
        """``delete_insert`` (a DELETE costs DuckDB no memory, an UPDATE keeps every new value in
        memory until a checkpoint), unless the table has columns the batch does not write (added by
        someone else: an upsert keeps their values)."""
        written = {column.name for column in batch.columns} | set(batch.nulled) | set(SYSTEM_COLUMNS)
        return "delete_insert" if set(info.columns) <= written else "update_insert"

    def _source_sql(self, batch: LoadBatch, side: str) -> str:
        """The batch as a subquery: DuckDB reads its columns from the spooled lines' ``record``, joined by
        position with the side table (both hold the batch's rows in the same order)."""
        payload: JsonPayload = batch.payload
        read = self.codec.layout(batch.columns).read
        aside = [quote(name) for name in payload.side.column_names]
        selected = [
            f"struct_extract(j.record, {literal(batch.columns[i].prop)}) AS {quote(batch.columns[i].name)}"
            for i in read
        ]
        selected += [f"a.{name}" for name in aside]
        source = f"{quote(side)} AS a"
        if read:
            fields = ", ".join(
                f"{quote(batch.columns[i].prop)} {json_read_type(batch.columns[i])}" for i in read
            )
            files = ", ".join(literal(str(path)) for path in payload.paths)
            object_bytes = max(payload.longest + 1, READER_OBJECT_BYTES)
            # read_json with the format and records spelled out: read_ndjson reads a STRUCT column
            # 3 to 10 times slower (DuckDB 2.0: 22,192 records of 33 fields, 0.8 s against 0.08 s).
            reader = (
                f"read_json([{files}], format = 'newline_delimited', records = true, "
                f"columns = {{'record': {literal(f'STRUCT({fields})')}}}, auto_detect = false, "
                f"compression = 'none', maximum_object_size = {object_bytes})"
            )
            source = f"{reader} AS j POSITIONAL JOIN {source}"
        return f"(SELECT {', '.join(selected)} FROM {source})"

    def _timed(self, batch: LoadBatch, statement: str) -> int | None:
        """Run a statement; return the rows it changed (None when it reports none)."""
        started = time.perf_counter()
        result = self.connection.execute(statement).fetchone()
        elapsed = time.perf_counter() - started
        logger.debug("stream %s: %s in %.3f s", batch.stream, statement.split(" ", 2)[:2], elapsed)
        return result[0] if result and isinstance(result[0], int) else None

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


def _optional_setting(connection: duckdb.DuckDBPyConnection, statement: str) -> None:
    """Run the ``SET`` or ``RESET`` of a setting that only makes loading faster (a DuckDB without it
    loads slower, nothing else)."""
    try:
        connection.execute(statement)
    except duckdb.Error as error:
        logger.debug("DuckDB refused %s: %s", statement, _first_line(error))


def _refusal(error: BaseException) -> str:
    """DuckDB's reason for refusing data, without the spool file's name (a line number there counts
    the batch's rows, not the input's: the loader finds the input line)."""
    return re.sub(r' in file "[^"]*"(, at byte \d+)?(,? in line \d+)?', "", _first_line(error))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
