"""PostgreSQL codec: a batch as binary COPY rows, for the engine's staging table (postgres.py).

Rows are formatted by psycopg's own binary dumpers (C), through its public ``Copy`` API writing to
memory: the server reads typed values without parsing text, except numbers and JSON, which travel as
their exact JSON text (cast by the merge). A number that PostgreSQL's ``numeric`` cannot hold is
refused here, naming its field. On the error path a payload is split back into its rows and values.
"""

from __future__ import annotations

import io
import operator
import struct
import typing as t

import msgspec
import psycopg
from psycopg.adapt import PyFormat
from psycopg.copy import Copy, FileWriter
from psycopg.pq import Format

from target_warehouse_seg import convert
from target_warehouse_seg.engines import BatchColumn, Codec
from target_warehouse_seg.errors import DatabaseError
from target_warehouse_seg.typemap import Kind, Source

# Binary COPY: the server reads typed values without parsing text. Numbers and JSON travel as their
# exact JSON text into text staging columns and are cast by the merge; everything else is binary.
_STAGING_TYPES = {
    Source.TEXT: "text",
    Source.LOOSE: "text",
    Source.INTEGER: "bigint",
    Source.NUMBER: "text",
    Source.BOOLEAN: "boolean",
    Source.TIMESTAMP: "timestamptz",
    Source.TIMESTAMP_TEXT: "text",
    Source.DATE: "date",
    Source.TIME: "time",
    Source.JSON: "text",
}
# psycopg's dumper for each staging column (type names of its registry). Raw JSON text goes through
# bytea's dumper: it writes the bytes as they are, which is also text's binary form.
_DUMPER_TYPES = {
    Source.TEXT: "text",
    Source.LOOSE: "text",
    Source.INTEGER: "int8",
    Source.NUMBER: "bytea",
    Source.BOOLEAN: "bool",
    Source.TIMESTAMP: "timestamptz",
    Source.TIMESTAMP_TEXT: "text",
    Source.DATE: "date",
    Source.TIME: "time",
    Source.JSON: "bytea",
}
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_TRAILER = b"\xff\xff"
_astuple = msgspec.structs.astuple


def staging_type(column: BatchColumn) -> str:
    if column.source is Source.INTEGER and column.wide:
        return "numeric"
    return _STAGING_TYPES[column.source]


class PostgresCodec(Codec):
    """Binary COPY rows: the property columns, then ``@seq`` and ``received_at``.

    Rows are formatted by psycopg's own binary dumpers (C) through its public ``Copy`` API writing
    to memory (``FileWriter``); no server round trip happens here.
    """

    def __init__(self) -> None:
        self._cursor: psycopg.Cursor[t.Any] | None = None

    def bind(self, connection: psycopg.Connection[t.Any]) -> None:
        """Use this connection's adapters (formatting never sends anything over it).

        Raw JSON text is written by psycopg's C bytes dumper: registering it for ``msgspec.Raw``
        also makes it the dumper chosen for bytea columns by ``set_types`` on this connection.
        """
        connection.adapters.register_dumper(
            msgspec.Raw, connection.adapters.get_dumper(bytes, PyFormat.BINARY)
        )
        self._cursor = psycopg.Cursor(connection)

    def encode(
        self,
        columns: list[BatchColumn],
        rows: list[t.Any],
        lines: list[int],
        received_at: list[t.Any],
        raws: list[t.Any] | None = None,
        previous: t.Any | None = None,
        lenient: bool = True,
        number_scans: t.Mapping[int, bytes] | None = None,
    ) -> bytes:
        if self._cursor is None:
            raise DatabaseError("PostgreSQL codec used before connecting")
        buffer = io.BytesIO()
        copy = Copy(self._cursor, binary=True, writer=FileWriter(buffer))
        dumpers = [
            "numeric" if column.source is Source.INTEGER and column.wide else _DUMPER_TYPES[column.source]
            for column in columns
        ]
        copy.set_types([*dumpers, "int8", "timestamptz"])
        scans = number_scans or {}
        for position, column in enumerate(columns):
            if column.source is Source.NUMBER and column.kind is Kind.NUMBER:
                _check_numeric(position, rows, scans.get(position))
        loose = [index for index, column in enumerate(columns) if column.source is Source.LOOSE]
        write_row = copy.write_row
        try:
            if loose:
                for row, line, stamp in zip(rows, lines, received_at, strict=True):
                    values = [*_astuple(row), line, stamp]
                    for index in loose:
                        values[index] = convert.text_of(values[index])
                    write_row(values)
            else:
                for row, line, stamp in zip(rows, lines, received_at, strict=True):
                    write_row((*_astuple(row), line, stamp))
        except OverflowError:
            raise _overflow(columns, rows) from None
        copy.finish(None)
        data = buffer.getvalue()
        return data[len(_SIGNATURE) : -len(_TRAILER)]  # one signature and trailer per COPY, added at load

    def finish(self, columns: list[BatchColumn], parts: list[t.Any]) -> list[bytes]:
        return parts

    def subset(self, payload: list[bytes], indices: t.Sequence[int]) -> list[bytes]:
        rows = split_rows(payload)
        return [b"".join(rows[index] for index in indices)]

    def row(self, columns: list[BatchColumn], payload: list[bytes], index: int) -> dict[str, t.Any]:
        data = split_rows(payload)[index]
        fields = _fields(data)
        result: dict[str, t.Any] = {}
        for column, field in zip(columns, fields, strict=False):
            result[column.prop] = None if field is None else _load(staging_type(column), field)
        return result


# What PostgreSQL's numeric holds: 131,072 digits before the point, 16,383 after, and an exponent (as
# written) below 2^30 - 1 either way. Beyond, its input refuses the value ("value overflows numeric
# format") without naming the column, so such a value is refused here, naming it.
NUMERIC_MAX_INTEGER_DIGITS, NUMERIC_MAX_SCALE, NUMERIC_MAX_EXPONENT = 131_072, 16_383, 2**30 - 1


def _check_numeric(position: int, rows: list[t.Any], scan: bytes | None) -> None:
    """Refuse a number that PostgreSQL's numeric cannot hold (only a column whose scan shows an
    exponent or a 16,384-digit run is looked at value by value)."""
    if scan is None:
        scan = convert.scan_numbers(map(operator.attrgetter(f"f{position}"), rows))
    if not convert.shows_exponent_or_run(scan, NUMERIC_MAX_SCALE + 1):
        return
    values = list(map(operator.attrgetter(f"f{position}"), rows))
    for index, value in enumerate(values):
        raw = convert.raw_or_none(value)
        if raw is not None and not fits_numeric(bytes(raw)):
            raise convert.ValueProblem(
                index,
                f"a number beyond what PostgreSQL's numeric holds ({NUMERIC_MAX_INTEGER_DIGITS:,} digits "
                f"before the point, {NUMERIC_MAX_SCALE:,} after): {convert.describe(value)}",
                position,
            )


def fits_numeric(text: bytes) -> bool:
    """Whether PostgreSQL's numeric takes this JSON number's text."""
    written = text.lower().partition(b"e")[2]
    if written and abs(int(written)) >= NUMERIC_MAX_EXPONENT:
        return False
    number = convert.decimal_of(msgspec.Raw(text))
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > NUMERIC_MAX_SCALE:
        return False
    return not number or number.adjusted() < NUMERIC_MAX_INTEGER_DIGITS


def _overflow(columns: list[BatchColumn], rows: list[t.Any]) -> convert.NeedsWidening:
    """The INTEGER column holding a value beyond bigint (the slow decode path let it through)."""
    for index, column in enumerate(columns):
        if column.source is Source.INTEGER and not column.wide:
            values = [value for value in map(operator.attrgetter(f"f{index}"), rows) if value]
            if values and (min(values) < convert.INT64_MIN or max(values) > convert.INT64_MAX):
                return convert.NeedsWidening(index, Kind.NUMBER, "an integer beyond bigint's range")
    raise DatabaseError("an integer overflowed, but no integer column holds it")


def split_rows(payload: list[bytes]) -> list[bytes]:
    """Each binary COPY row of a payload (the error path only: a Python walk over every field)."""
    rows: list[bytes] = []
    for part in payload:
        position, end = 0, len(part)
        while position < end:
            start = position
            (count,) = struct.unpack_from("!h", part, position)
            position += 2
            for _ in range(count):
                (length,) = struct.unpack_from("!i", part, position)
                position += 4 + max(length, 0)
            rows.append(part[start:position])
    return rows


def _fields(row: bytes) -> list[bytes | None]:
    (count,) = struct.unpack_from("!h", row, 0)
    position, fields = 2, []
    for _ in range(count):
        (length,) = struct.unpack_from("!i", row, position)
        position += 4
        if length < 0:
            fields.append(None)
        else:
            fields.append(row[position : position + length])
            position += length
    return fields


_LOADER_TYPES = {"bigint": "int8", "boolean": "bool"}


def _load(sql_type: str, data: bytes) -> t.Any:
    if sql_type == "text":
        return data.decode("utf-8", "replace")
    oid = psycopg.adapters.types[_LOADER_TYPES.get(sql_type, sql_type)].oid
    loader = psycopg.adapters.get_loader(oid, Format.BINARY)
    return data.hex() if loader is None else loader(oid).load(data)
