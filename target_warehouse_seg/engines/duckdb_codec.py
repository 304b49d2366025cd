"""DuckDB codec: how a batch travels to DuckDB, which converts it itself, from the records' own JSON,
with its C++ JSON reader.

The main thread decodes every record with its stream's typed msgspec decoder (which checks every value,
see sink.py) but builds nothing from most values: the records' lines go to a spool file as they came
(each a JSON object whose ``record`` is the record: the input's own Singer lines), and ``read_json``
with the record's explicit STRUCT type reads it on DuckDB's thread. What DuckDB cannot read exactly
from JSON, and the key and replication-key columns, travel beside it in a small Arrow table (the
``side``: line numbers, ``received_at``, keys, date-times, JSON values, mixed types, numbers kept as
text), joined by position. The engine (duckdb.py) loads the batch from that subquery.

What DuckDB reads from JSON, it reads exactly as the checks left it: strings (NULs and lone surrogates
never reach it: such records travel re-encoded), integers within bigint, booleans, and numbers as
``DECIMAL(38,18)`` straight from their digits (DuckDB reads JSON numbers for a DECIMAL as text, never
through a float). DuckDB's DECIMAL holds at most 38 digits, so a ``number`` column is
``DECIMAL(38,18)``: 20 digits before the point and 18 after. Every Salesforce number fits (at most 18
digits, at most 17 after the point), and so does every bigint. A value that does not fit exactly (more
digits before or after the point) widens its column to VARCHAR holding the exact decimal text, with a
warning: a value is never rounded. PostgreSQL's ``numeric`` holds far more (postgres_codec.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import tempfile
import typing as t
from collections import Counter
from dataclasses import dataclass
from decimal import Context, Decimal
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa

from target_warehouse_seg import convert
from target_warehouse_seg.engines import BatchColumn, Codec
from target_warehouse_seg.engines.merge import SEQ
from target_warehouse_seg.engines.spool import SpoolFolder
from target_warehouse_seg.errors import DatabaseError
from target_warehouse_seg.typemap import Kind, Source

DECIMAL_PRECISION, DECIMAL_SCALE = 38, 18
# The tables' column types (duckdb.py creates them); numbers are read from JSON as their column's type.
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
SPOOL_FILE_BYTES = 8 * 1024 * 1024  # a spool file takes chunks until it holds this much
READER_OBJECT_BYTES = 1 << 24  # read_json's maximum_object_size, unless a record is longer
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
    return convert.shows_exponent_or_run(scan, DECIMAL_SCALE + 1)


# How DuckDB reads a column from the record's JSON (None: the column travels in the side table).
# Only what the decoder checked strictly and DuckDB converts exactly: strings, bigints, booleans, and
# numbers into DECIMAL(38,18) (checked to fit by ``_decimal_misfit``). A property that may hold a date
# or a date-time travels aside, as the text of the instant the sink read in it.
_JSON_READ = {
    Source.TEXT: "VARCHAR",
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
    if column.quoted:
        return None  # the JSON holds strings; the numbers the sink read in them travel aside
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
        self._spool = SpoolFolder()
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
        self._spool.close()

    @contextlib.contextmanager
    def _writing(self) -> t.Iterator[None]:
        """A spool file that cannot be written (a full disk, say) stops the run with one line."""
        try:
            yield
        except OSError as error:
            folder = self._spool.path or Path(tempfile.gettempdir())
            raise DatabaseError(
                f"cannot write DuckDB's batch files in {folder}: {error.strerror or error}; free space "
                "there, or point TMPDIR to a folder with room"
            ) from None

    def _new_file(self) -> Path:
        self._files += 1
        return self._spool.ensure() / f"batch-{self._files}.ndjson"


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
