"""Bulk API 2.0 CSV result pages -> `(stamp, record)` pairs, column by column.

```python
converter = CsvPageConverter(fields, stamp_property="system_modstamp", hidden=set())
prepared = converter.prepare(page)        # Arrow work (C++, GIL released): any thread
for stamp, record in converter.records(prepared):   # Python objects: the consuming thread
    ...
converter.records(page)                   # both steps at once
```

The records are exactly those of values.py's per-value CSV conversion (`csv_value_converter`), only
made faster: a page is parsed by pyarrow.csv into text columns, and each column is checked against
the spelling its describe type normally has. A column whose every value has it is converted as a
whole; a column with any other spelling (or a type without a fast path) goes through the per-value
converter, value by value, so unusual spellings convert, or fail, as they always did.

| type                      | usual spelling (every value)        | column conversion                       |
|---------------------------|-------------------------------------|-----------------------------------------|
| text types, date          | anything                            | none                                    |
| boolean                   | `true` / `false`                    | Arrow booleans                          |
| int, long                 | `-?[0-9]{1,18}`                     | `int()`                                 |
| double, currency, percent | `-?[0-9]{1,18}(.[0-9]{1,18})?`      | Arrow drops trailing fraction zeros;    |
|                           |                                     | `int()` when integral, else `Decimal()` |
| datetime                  | `YYYY-MM-DDTHH:MM:SS.mmmZ`          | Arrow appends `000` to the fraction     |
| time, anyType             | -                                   | per value                               |

Nulls: Bulk writes null as an empty field and Salesforce stores no empty text, so every empty field,
quoted or not, is null (as in values.py). NUL characters are removed from the page's bytes first.

The Python side works in slices of `SLICE_ROWS` rows: each column slice becomes a list and
`map(record_type, *columns)` builds the records in C. Columns empty on the whole page (most of a
wide object's, typically) are not carried record by record: the page's record type takes each run
of them as one constant field of raw JSON (values.null_run_record_type), same bytes once encoded.
Slicing keeps a few hundred records' values next to each other in memory, which the JSON encoder
that follows reads much faster than values allocated a whole page column at a time. A page in
conversion takes its bytes, its Arrow columns and one slice of Python values, whatever the size of
the result.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.acero as acero
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from tap_salesforce_seg.soql import QueryField
from tap_salesforce_seg.values import (
    INTEGER_TYPES,
    NUMBER_TYPES,
    RecordShape,
    csv_value_converter,
    null_run_record_type,
)

Stamped = tuple["str | None", Any]

# Rows converted to Python at a time (see the module docstring).
SLICE_ROWS = 512
# Arrow reads a page as one block (one chunk per column); the cap only guards against absurd pages.
MAX_BLOCK_BYTES = 1 << 30
_BOOLEAN_SPELLINGS = pa.array(["true", "false"])
_INTEGER = r"^-?[0-9]{1,18}$"
_NUMBER = r"^-?[0-9]{1,18}(\.[0-9]{1,18})?$"
_DATETIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
# How each describe type is converted (the table in the module docstring).
TEXT, BOOLEAN, INTEGER, NUMBER, DATETIME = "text", "boolean", "integer", "number", "datetime"
PER_VALUE = "per-value"


def conversion_kind(sf_type: str) -> str:
    if sf_type == "boolean":
        return BOOLEAN
    if sf_type in INTEGER_TYPES:
        return INTEGER
    if sf_type in NUMBER_TYPES:
        return NUMBER
    if sf_type == "datetime":
        return DATETIME
    if sf_type in ("time", "anyType"):
        return PER_VALUE
    return TEXT  # text types and date: the text is the value


class CsvPageConverter:
    """Turns Bulk API 2.0 CSV result pages (each with its header row) into `(stamp, record)` pairs."""

    def __init__(
        self,
        fields: Sequence[QueryField],
        *,
        stamp_property: str | None = None,
        hidden: Iterable[str] = (),
        unordered: bool = False,
    ) -> None:
        if not fields:
            raise ValueError("no fields to convert")
        self.fields = tuple(fields)
        # unordered: the rows come in no order of their stamps, so none is a bookmark on its own: pairs
        # carry None, and `high_stamp` is the highest stamp of the rows given so far.
        self.unordered = unordered
        self.high_stamp: str | None = None
        self._shape = RecordShape(self.fields, stamp_property, hidden)
        self._layouts: dict[tuple[bool, ...], tuple[type, list[tuple[int | None, Any]]]] = {}
        self._kinds = [conversion_kind(field.type) for field in self.fields]
        self._fallbacks = [csv_value_converter(field.type) for field in self.fields]

    def prepare(self, page: bytes) -> PreparedPage:
        """Parse a page and convert what Arrow can convert: thread-safe, and all Arrow work is done
        in a handful of calls (each call from a background thread waits for the GIL)."""
        if b"\x00" in page:  # UTF-8 has no other zero bytes
            page = page.replace(b"\x00", b"")
        header, body_start = _header(page)
        if header is None:
            return PreparedPage(0, [])
        positions = self._positions(header)
        table = _parse_rows(page, body_start, len(header))
        if table is None or table.num_rows == 0:
            return PreparedPage(0, [])
        if any(column.num_chunks != 1 for column in table.columns):
            table = table.combine_chunks()  # one block per page makes one chunk; in case it did not
        texts = [table.column(position) for position in positions]
        kinds = [None if t.null_count == len(t) else kind for t, kind in zip(texts, self._kinds, strict=True)]
        work = _ColumnWork(table.column_names, positions, kinds)
        computed, usual = work.run(table)
        columns = [
            self._column(i, kind, texts[i].chunk(0), computed, usual) if kind else None
            for i, kind in enumerate(kinds)
        ]
        return PreparedPage(table.num_rows, columns)

    def records(self, page: bytes | PreparedPage) -> Iterator[Stamped]:
        prepared = self.prepare(page) if isinstance(page, bytes) else page
        if not prepared.rows:
            return
        record_type, sources = self._layout(prepared)
        stamp_index = self._shape.stamp_index
        for start in range(0, prepared.rows, SLICE_ROWS):
            count = min(SLICE_ROWS, prepared.rows - start)
            values = [None if column is None else column.values(start, count) for column in prepared.columns]
            stamps = None if stamp_index is None else values[stamp_index]
            if not sources:
                records: Iterator[Any] = repeat(record_type(), count)
            else:
                records = map(record_type, *[repeat(c) if i is None else values[i] for i, c in sources])
            if stamps is not None and self.unordered:
                high = max(filter(None, stamps), default=None)
                if high is not None and (self.high_stamp is None or high > self.high_stamp):
                    self.high_stamp = high
                stamps = None
            yield from zip(repeat(None, count) if stamps is None else stamps, records, strict=True)

    def _layout(self, prepared: PreparedPage) -> tuple[type, list[tuple[int | None, Any]]]:
        """The page's record type, which takes its all-null columns as constants (values.
        null_run_record_type), and per field of it: (column index, None) or (None, constant)."""
        emitted = self._shape.emitted
        null = tuple(prepared.columns[i] is None for i in emitted)
        layout = self._layouts.get(null)
        if layout is None:
            names = [self.fields[i].property_name for i in emitted]
            record_type, constants = null_run_record_type(names, null)
            sources: list[tuple[int | None, Any]] = []
            position = 0  # in `emitted`
            for constant, run in zip(constants, record_type.null_runs, strict=True):
                sources.append((emitted[position], None) if run is None else (None, constant))
                position += 1 if run is None else len(run)
            layout = self._layouts[null] = (record_type, sources)
        return layout

    def _positions(self, header: list[str]) -> list[int]:
        positions = {name.lower(): i for i, name in enumerate(header)}
        missing = [f.salesforce_name for f in self.fields if f.salesforce_name.lower() not in positions]
        if missing:
            raise ValueError(f"Bulk result lacks the columns {', '.join(missing)}")
        return [positions[field.salesforce_name.lower()] for field in self.fields]

    def _column(self, i: int, kind: str, texts: pa.Array, computed: pa.Table, usual: set[int]) -> Column:
        if kind == TEXT:
            return ArrayColumn(texts)
        if i not in usual:  # a spelling the column-wise conversion does not take, or PER_VALUE
            return PerValueColumn(texts, self._fallbacks[i])
        if kind == INTEGER:
            return NumberColumn(texts, fractions=None)
        if kind == NUMBER:
            return NumberColumn(computed[f"value{i}"].chunk(0), fractions=computed[f"fraction{i}"].chunk(0))
        return ArrayColumn(computed[f"value{i}"].chunk(0))  # BOOLEAN, DATETIME


class _ColumnWork:
    """The Arrow side of a page's conversion, as one projection and one aggregation:
    - per typed column, whether every value has the usual spelling (`usual{i}`, aggregated with
      `all`), and its conversion (`value{i}`, `fraction{i}`), computed whether or not it is needed
      (the usual spelling is the rule; a column that turns out unusual wastes one pass);
    - text columns need nothing; per-value columns are left to Python."""

    def __init__(self, names: list[str], positions: list[int], kinds: list[str | None]) -> None:
        self.expressions: dict[str, pc.Expression] = {}
        self.checks: list[int] = []
        for i, (position, kind) in enumerate(zip(positions, kinds, strict=True)):
            if kind in (BOOLEAN, INTEGER, NUMBER, DATETIME):
                self._add(i, kind, pc.field(names[position]))

    def _add(self, i: int, kind: str, text: pc.Expression) -> None:
        if kind == BOOLEAN:
            usual = pc.is_in(text, value_set=_BOOLEAN_SPELLINGS)
            self.expressions[f"value{i}"] = pc.equal(text, "true")
        elif kind == INTEGER:
            usual = pc.match_substring_regex(text, _INTEGER)
        elif kind == NUMBER:
            usual = pc.match_substring_regex(text, _NUMBER)
            plain = _without_fraction_zeros(text)
            self.expressions[f"value{i}"] = plain
            self.expressions[f"fraction{i}"] = pc.coalesce(pc.match_substring(plain, "."), False)
        else:  # DATETIME: 2024-01-02T03:04:05.123Z -> 2024-01-02T03:04:05.123000Z
            usual = pc.match_substring_regex(text, _DATETIME)
            self.expressions[f"value{i}"] = pc.replace_substring(text, "Z", "000Z", max_replacements=1)
        self.expressions[f"usual{i}"] = pc.or_kleene(pc.is_null(text), usual)
        self.checks.append(i)

    def run(self, table: pa.Table) -> tuple[pa.Table, set[int]]:
        """The computed columns (one chunk each) and the typed columns whose spelling is the usual one."""
        if not self.checks:
            return table, set()
        plan = acero.Declaration.from_sequence(
            [
                acero.Declaration("table_source", acero.TableSourceNodeOptions(table)),
                acero.Declaration(
                    "project",
                    acero.ProjectNodeOptions(list(self.expressions.values()), list(self.expressions)),
                ),
            ]
        )
        computed = plan.to_table(use_threads=False).combine_chunks()
        verdicts = computed.group_by([]).aggregate([(f"usual{i}", "all") for i in self.checks])
        usual = {i for i, ok in zip(self.checks, verdicts.to_pylist()[0].values(), strict=True) if ok}
        return computed, usual


class PreparedPage:
    """A parsed page: its row count and, per field, a `Column` (None: every value is null)."""

    __slots__ = ("columns", "rows")

    def __init__(self, rows: int, columns: list[Column | None]) -> None:
        self.rows = rows
        self.columns = columns


class Column:
    """One field's values on a page; `values(start, count)` gives a slice of them as a Python list."""

    def values(self, start: int, count: int) -> list[Any]:
        raise NotImplementedError


class ArrayColumn(Column):
    """Values that Arrow holds ready (text, booleans, converted datetimes)."""

    def __init__(self, array: pa.Array) -> None:
        self.array = array

    def values(self, start: int, count: int) -> list[Any]:
        return _objects(self.array, start, count).tolist()


class NumberColumn(Column):
    """Plain decimal spellings: `int()` for integral values, `Decimal()` for those with a fraction
    (`fractions`: a boolean per row; None when no value can have one)."""

    def __init__(self, texts: pa.Array, fractions: pa.Array | None) -> None:
        self.texts = texts
        self._fraction_flags = fractions
        self._masks: tuple[np.ndarray, np.ndarray | None] | None = None

    def values(self, start: int, count: int) -> list[Any]:
        integral, fractions = self._masks or self._make_masks()
        values = _objects(self.texts, start, count)
        _convert_at(values, integral[start : start + count], int)
        if fractions is not None:
            _convert_at(values, fractions[start : start + count], Decimal)
        return values.tolist()

    def _make_masks(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows to `int()` and rows to `Decimal()`, worked out once, by the thread that converts."""
        present = self.texts.is_valid().to_numpy(zero_copy_only=False)
        fractions = None
        if self._fraction_flags is not None:
            fractions = self._fraction_flags.to_numpy(zero_copy_only=False)
            present = present & ~fractions
        self._masks = (present, fractions if fractions is not None and fractions.any() else None)
        return self._masks


class PerValueColumn(Column):
    """Any other spelling or type: values.py's converter, value by value."""

    def __init__(self, texts: pa.Array, convert: Callable[[Any], Any]) -> None:
        self.texts = texts
        self.convert = convert

    def values(self, start: int, count: int) -> list[Any]:
        return list(map(self.convert, _objects(self.texts, start, count).tolist()))


def _objects(array: pa.Array, start: int, count: int) -> np.ndarray:
    """A slice of the array as Python objects (an object ndarray). Text is decoded from UTF-8 here,
    which also checks it: Arrow's parser is told not to, so pages are not checked twice."""
    try:
        return array.slice(start, count).to_numpy(zero_copy_only=False)
    except pa.ArrowException as error:
        raise ValueError(f"Bulk result page holds a value that is not valid UTF-8 ({error})") from error


def _convert_at(values: np.ndarray, mask: np.ndarray, convert: Callable[[Any], Any]) -> None:
    """Replace `values[mask]` (an object array) by `convert` of each, in C loops."""
    where = np.flatnonzero(mask)
    if where.size:
        values[where] = np.fromiter(map(convert, values[where]), dtype=object, count=where.size)


def _without_fraction_zeros(texts: pc.Expression) -> pc.Expression:
    """Plain decimal spellings (ASCII) without trailing fraction zeros, nor a point left bare:
    `12.50` -> `12.5`, `3.000` -> `3`, `-0.0` -> `-0`; `100` (no point) stays as it is."""
    trimmed = pc.ascii_rtrim(pc.ascii_rtrim(texts, "0"), ".")
    return pc.if_else(pc.match_substring(texts, "."), trimmed, texts)


def _header(page: bytes) -> tuple[list[str] | None, int]:
    """The header row's column names and where the rows start (None: an empty page)."""
    end = page.find(b"\n")
    line = page if end < 0 else page[:end]
    if not line.strip():
        return None, len(page)
    # utf-8-sig: a byte-order mark before the header (as some CSV writers put) is not part of a name.
    names = next(csv.reader([line.rstrip(b"\r").decode("utf-8-sig")], strict=True))
    return names, len(page) if end < 0 else end + 1


def _parse_rows(page: bytes, start: int, width: int) -> pa.Table | None:
    """The rows after the header as a table of text columns `c0..cN`, or None when there are none."""
    if start >= len(page):
        return None
    names = [f"c{i}" for i in range(width)]
    body = pa.py_buffer(page)[start:]
    try:
        return pa_csv.read_csv(
            pa.BufferReader(body),
            read_options=pa_csv.ReadOptions(
                column_names=names,
                use_threads=False,
                block_size=min(MAX_BLOCK_BYTES, max(1 << 20, len(body) + 1)),
            ),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                null_values=[""],
                strings_can_be_null=True,
                check_utf8=False,  # checked when the text becomes Python strings (`_objects`)
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as error:
        reason = str(error).splitlines()[0][:300]
        raise ValueError(f"Bulk result page is not valid CSV: {reason}") from error
