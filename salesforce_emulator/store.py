"""Storage, query execution and wire value formats of the emulated org.

Storage. One `TableData` per object: immutable chunks of Arrow arrays (one per stored field; compound
address/location fields are derived from their components). A change replaces the affected chunk (copy
on write) in a new chunk list, so a query snapshot is simply the chunk list it saw: later changes never
reach it, exactly like a Salesforce query cursor. Columns may be plain, dictionary-encoded (picklists and
other pooled text: compact, and rendered once per distinct value) or all-null `NullArray`s (costing
nothing: dormant feature fields, fields added at run time).

Queries. The bound SOQL AST (soql.py) becomes parameterised DuckDB SQL over an Arrow view of the columns
the WHERE/ORDER BY need (identifiers quoted, values always bound as parameters). DuckDB returns the row
positions in result order (one in-memory DuckDB per process, a cursor per query); `QueryResult` keeps
them with the snapshot and renders pages on demand, the next pages ahead in background threads.
SOQL semantics: text comparisons (=, !=, IN, LIKE, ORDER BY) are case-insensitive, Ids compare as
given; `!=`/`NOT IN` match nulls; ORDER BY puts nulls first ascending and last descending unless told,
sorts picklists in their defined order, and breaks ties by physical position (stable paging).

Wire formats, built column-wise with Arrow kernels and no per-value Python: each column becomes text
(casts, escapes; dictionaries rendered once per result), then `_RowAssembly` writes every row of a page
(or of several pages at once) in one Arrow `take` into one buffer that is sent as it is.
- `QueryResult.rest_records(start, stop, api_version)`: a JSON array exactly as Salesforce REST writes
  records: `{"attributes":{"type":"Account","url":"/services/data/v58.0/sobjects/Account/<Id>"},...}`,
  fields in SELECT order with canonical names, datetimes `2024-01-02T03:04:05.000+0000`, dates
  `2024-01-02`, times `03:04:05.000Z`, numbers as JSON numbers written from the stored decimal text (no
  float rounding), booleans, null, address/location compounds as objects with alphabetical keys (null
  when every component is null), base64 fields as their blob URL (as Salesforce does). Strings escaped
  as JSON does: quote, backslash, newline, return, tab, backspace and form feed by two characters, other
  control characters as six (u00XX).
  `rest_records_view` gives the same bytes as a buffer view (no copy), for the HTTP layer.
- `QueryResult.csv_page(start, stop)`: Bulk API 2.0 CSV: a header row of the SELECT names, every value in
  double quotes (RFC 4180, `""` for a quote, newlines kept inside quotes), LF line ends, datetimes
  `2024-01-02T03:04:05.000Z`, booleans `true`/`false`. Null is an EMPTY UNQUOTED field: Salesforce's exact
  byte form for null is not documented; clients (pandas, csv modules, Airbyte) read both as null/empty,
  and this choice lets a client tell null (``) from an empty string (`""`).
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .model import DECIMAL_TYPES, TEXT_TYPES, FieldDef, ObjectDef
from .soql import BoolOp, Comparison, Literal, Not, Query

# --------------------------------------------------------------------------------------------------
# storage types
# --------------------------------------------------------------------------------------------------


def arrow_type(f: FieldDef) -> pa.DataType:
    """The Arrow type a field's values are stored in (text may also be dictionary-encoded)."""
    t = f.type
    if t == "boolean":
        return pa.bool_()
    if t == "int":
        return pa.int32()
    if t == "long":
        return pa.int64()
    if t in DECIMAL_TYPES:
        return pa.decimal128(max(f.precision, f.scale + 1, 1), f.scale)
    if t == "date":
        return pa.date32()
    if t == "datetime":
        return pa.timestamp("ms")
    if t == "time":
        return pa.time32("ms")
    return pa.string()


def to_arrow_value(f: FieldDef, value: Any) -> Any:
    """A Python value (already validated for `f`) in the form pyarrow takes for `arrow_type(f)`."""
    if value is None:
        return None
    if f.type == "datetime":
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


_ESCAPE_LOCK = threading.Lock()


class Chunk:
    """Rows [0, length) of a slice of a table: one Arrow array per stored field (immutable)."""

    __slots__ = ("_escape", "columns", "length")

    def __init__(
        self, length: int, columns: dict[str, pa.Array], escape: dict[str, frozenset[str]] | None = None
    ):
        self.length = length
        self.columns = columns
        self._escape: dict[str, frozenset[str]] = escape or {}  # characters JSON must escape, per column

    def with_columns(self, changes: dict[str, pa.Array]) -> Chunk:
        columns = dict(self.columns)
        columns.update(changes)
        escape = {name: chars for name, chars in self._escape.items() if name not in changes}
        return Chunk(self.length, columns, escape)

    def escape_chars(self, name: str) -> frozenset[str]:
        """The characters of column `name` that JSON must escape (computed once per chunk)."""
        chars = self._escape.get(name)
        if chars is not None:
            return chars
        with _ESCAPE_LOCK:  # render threads of one chunk share the work instead of repeating it
            return self._escape_chars(name)

    def _escape_chars(self, name: str) -> frozenset[str]:
        chars = self._escape.get(name)
        if chars is None:
            array = self.columns.get(name)
            chars = frozenset()
            if array is not None and not pa.types.is_null(array.type):
                values = array.dictionary if pa.types.is_dictionary(array.type) else array
                if pa.types.is_string(values.type):
                    chars = json_escape_chars(values)
            self._escape[name] = chars
        return chars


class TableData:
    """An object's rows: chunks in physical order plus rows created since the last read."""

    MERGE_BELOW = 4_096  # appended rows join the last chunk while it is smaller than this

    def __init__(self, chunks: list[Chunk], next_counter: int):
        self.chunks = chunks
        self.next_counter = next_counter  # the Id counter the next created record gets
        self.pending: list[dict[str, Any]] = []

    @property
    def count(self) -> int:
        return sum(chunk.length for chunk in self.chunks) + len(self.pending)

    def flush(self, obj: ObjectDef) -> None:
        if not self.pending:
            return
        rows, self.pending = self.pending, []
        columns = {}
        for f in obj.stored_fields():
            values = [to_arrow_value(f, row.get(f.name)) for row in rows]
            array = pa.array(values, type=arrow_type(f))
            if self._dictionary_kind(f.name):
                array = array.dictionary_encode()
            columns[f.name] = array
        new = Chunk(len(rows), columns)
        if self.chunks and self.chunks[-1].length < self.MERGE_BELOW:
            new = _concat_chunks(self.chunks[-1], new)
            self.chunks = [*self.chunks[:-1], new]
        else:
            self.chunks = [*self.chunks, new]

    def _dictionary_kind(self, name: str) -> bool:
        for chunk in self.chunks:
            array = chunk.columns.get(name)
            if array is not None and not pa.types.is_null(array.type):
                return pa.types.is_dictionary(array.type)
        return False

    def locate(self, column: str, value: str) -> tuple[int, int] | None:
        """(chunk index, row) of the first row whose `column` equals `value`."""
        scalar = pa.scalar(value)
        for index, chunk in enumerate(self.chunks):
            array = chunk.columns.get(column)
            if array is None or pa.types.is_null(array.type):
                continue
            if pa.types.is_dictionary(array.type):
                array = array.dictionary_decode()
            row = pc.index(array, scalar).as_py()
            if row >= 0:
                return index, row
        return None

    def replace_chunk(self, index: int, chunk: Chunk | None) -> None:
        chunks = list(self.chunks)
        if chunk is None or chunk.length == 0:
            del chunks[index]
        else:
            chunks[index] = chunk
        self.chunks = chunks


def _plain(array: pa.Array) -> pa.Array:
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


def _concat_chunks(first: Chunk, second: Chunk) -> Chunk:
    columns = {}
    for name in first.columns.keys() | second.columns.keys():
        a = first.columns.get(name, pa.nulls(first.length))
        b = second.columns.get(name, pa.nulls(second.length))
        columns[name] = _concat_arrays([a, b])
    return Chunk(first.length + second.length, columns)


def _concat_arrays(arrays: Sequence[pa.Array]) -> pa.Array:
    """Concatenate arrays of one field whatever their storage kind (null, plain, dictionary)."""
    if all(pa.types.is_null(a.type) for a in arrays):
        return pa.nulls(sum(len(a) for a in arrays))
    concrete = [a for a in arrays if not pa.types.is_null(a.type)]
    dictionary = all(pa.types.is_dictionary(a.type) for a in concrete)
    value_type = concrete[0].type.value_type if dictionary else _plain(concrete[0]).type
    plain = [pa.nulls(len(a), value_type) if pa.types.is_null(a.type) else _plain(a) for a in arrays]
    result = pa.concat_arrays(plain)
    return result.dictionary_encode() if dictionary else result


def set_value(array: pa.Array, row: int, f: FieldDef, value: Any) -> pa.Array:
    """`array` with element `row` replaced (same storage kind; a NullArray becomes typed)."""
    value_type = arrow_type(f)
    single = pa.array([to_arrow_value(f, value)], type=value_type)
    dictionary = pa.types.is_dictionary(array.type)
    base = pa.nulls(len(array), value_type) if pa.types.is_null(array.type) else _plain(array)
    result = pa.concat_arrays([base.slice(0, row), single, base.slice(row + 1)])
    if value is None and result.null_count == len(result):
        return pa.nulls(len(result))
    return result.dictionary_encode() if dictionary else result


def drop_row(chunk: Chunk, row: int) -> Chunk:
    keep = np.ones(chunk.length, dtype=bool)
    keep[row] = False
    mask = pa.array(keep)
    columns = {
        name: (pa.nulls(chunk.length - 1) if pa.types.is_null(a.type) else a.filter(mask))
        for name, a in chunk.columns.items()
    }
    return Chunk(chunk.length - 1, columns)


# --------------------------------------------------------------------------------------------------
# SOQL -> SQL
# --------------------------------------------------------------------------------------------------


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_CASE_INSENSITIVE = TEXT_TYPES | {"anyType"}


class SqlBuilder:
    """Translate a bound SOQL query into DuckDB SQL over a table named `t` with a `__pos` column."""

    def __init__(self, obj: ObjectDef):
        self.obj = obj
        self.params: list[Any] = []
        self.columns: set[str] = set()

    def field(self, name: str) -> FieldDef:
        f = self.obj.field(name)
        if f is None:  # bind() already checked names; this is a schema change in between
            raise KeyError(name)
        self.columns.add(f.name)
        return f

    def bind(self, value: Any, f: FieldDef) -> str:
        if isinstance(value, datetime):
            value = value.astimezone(UTC).replace(tzinfo=None)
        self.params.append(value)
        if f.type in _CASE_INSENSITIVE and isinstance(value, str):
            return "lower(?)"
        return "?"

    def where(self, expr: Any) -> str:
        if isinstance(expr, BoolOp):
            joiner = f" {expr.op} "
            return "(" + joiner.join(self.where(operand) for operand in expr.operands) + ")"
        if isinstance(expr, Not):
            return f"(NOT {self.where(expr.operand)})"
        assert isinstance(expr, Comparison)
        return self.comparison(expr)

    def comparison(self, c: Comparison) -> str:
        f = self.field(c.field.name)
        column = quote_identifier(f.name)
        text = f.type in _CASE_INSENSITIVE
        lhs = f"lower({column})" if text else column
        op = c.op
        if op in ("IN", "NOT IN"):
            literals = c.value if isinstance(c.value, tuple) else (c.value,)
            values = [lit for lit in literals if lit.kind != "null"]
            has_null = len(values) < len(literals)
            parts = []
            if values:
                placeholders = ", ".join(self.bind(lit.value, f) for lit in values)
                parts.append(f"coalesce({lhs} IN ({placeholders}), false)")
            if has_null:
                parts.append(f"{column} IS NULL")
            matched = "(" + " OR ".join(parts) + ")" if parts else "false"
            return matched if op == "IN" else f"(NOT {matched})"
        assert isinstance(c.value, Literal)
        literal = c.value
        if literal.kind == "null":
            if op == "=":
                return f"{column} IS NULL"
            if op == "!=":
                return f"{column} IS NOT NULL"
            return "false"
        if op == "LIKE":
            pattern = self.bind(literal.value, f)
            return f"coalesce({lhs} LIKE {pattern} ESCAPE '\\', false)"
        rhs = self.bind(literal.value, f)
        if op == "!=":
            return f"coalesce({lhs} <> {rhs}, true)"
        return f"coalesce({lhs} {op} {rhs}, false)"

    def order_by(self, query: Query) -> str:
        items = []
        for item in query.order_by:
            f = self.field(item.field.name)
            column = quote_identifier(f.name)
            if f.type == "picklist" and f.picklist:
                self.params.append(list(f.picklist))
                # Salesforce sorts picklists in their defined order; other values after them.
                position = f"coalesce(list_position(?::VARCHAR[], {column}), 1000000)"
                key = f"CASE WHEN {column} IS NULL THEN NULL ELSE {position} END"
                items.append(self._direction(key, item))
                key = f"lower({column})"
            elif f.type in _CASE_INSENSITIVE:
                key = f"lower({column})"
            else:
                key = column
            items.append(self._direction(key, item))
        items.append('"__pos"')
        return ", ".join(items)

    @staticmethod
    def _direction(key: str, item: Any) -> str:
        nulls_first = item.nulls_first if item.nulls_first is not None else not item.descending
        return f"{key} {'DESC' if item.descending else 'ASC'} NULLS {'FIRST' if nulls_first else 'LAST'}"


# --------------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------------

_result_ids = itertools.count(1)
_engine_lock = threading.Lock()
_engine: duckdb.DuckDBPyConnection | None = None


def _duckdb() -> duckdb.DuckDBPyConnection:
    """A fresh connection (cursor) to the process's in-memory DuckDB: views registered on it are its own,
    so concurrent queries from the server's threads do not meet, and they share one thread pool."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = duckdb.connect(config={"threads": 2, "memory_limit": "1GB"})
        return _engine.cursor()


class Store:
    """The org's rows, object by object. Callers hold `lock` around changes (Org does)."""

    def __init__(self) -> None:
        self.tables: dict[str, TableData] = {}
        self.lock = threading.RLock()

    # ---- queries ----
    def execute(self, obj: ObjectDef, query: Query, include_deleted: bool) -> QueryResult:
        with self.lock:
            table = self.tables.get(obj.name)
            if table is None:
                table = self.tables[obj.name] = TableData([], 1)
            table.flush(obj)
            chunks = list(table.chunks)
            fields = {name: _copy_field(f) for name, f in obj.fields.items()}
        snapshot_obj = ObjectDef(
            obj.name, obj.key_prefix, fields, label=obj.label, label_plural=obj.label_plural
        )
        filter_deleted = not include_deleted and obj.has_is_deleted
        positions, total = _positions(snapshot_obj, chunks, query, filter_deleted)
        return QueryResult(snapshot_obj, chunks, query, positions, total)


def _copy_field(f: FieldDef) -> FieldDef:
    copy = FieldDef.__new__(FieldDef)
    copy.__dict__.update(f.__dict__)
    return copy


def _column_view(f: FieldDef, chunks: list[Chunk]) -> pa.ChunkedArray:
    """One field over all chunks with a single Arrow type (for DuckDB)."""
    arrays = [chunk.columns.get(f.name) for chunk in chunks]
    arrays = [a if a is not None else pa.nulls(chunk.length) for a, chunk in zip(arrays, chunks, strict=True)]
    concrete = [a for a in arrays if not pa.types.is_null(a.type)]
    if not concrete:
        target = arrow_type(f)
    elif all(pa.types.is_dictionary(a.type) for a in concrete) and len({a.type for a in concrete}) == 1:
        target = concrete[0].type
    else:
        target = arrow_type(f)
        arrays = [_plain(a) if pa.types.is_dictionary(a.type) else a for a in arrays]
    arrays = [pa.nulls(len(a), target) if pa.types.is_null(a.type) else a for a in arrays]
    return pa.chunked_array(arrays, type=target)


def _positions(
    obj: ObjectDef, chunks: list[Chunk], query: Query, filter_deleted: bool
) -> tuple[np.ndarray | None, int]:
    total_rows = sum(chunk.length for chunk in chunks)
    builder = SqlBuilder(obj)
    conditions = []
    if query.where is not None:
        conditions.append(builder.where(query.where))
    if filter_deleted:
        builder.columns.add("IsDeleted")
        conditions.append('NOT "IsDeleted"')
    order = builder.order_by(query) if query.order_by else '"__pos"'
    simple = query.where is None and not query.order_by
    if simple:
        # No SQL needed: physical order, minus soft-deleted rows.
        if filter_deleted:
            deleted = _column_view(obj.fields["IsDeleted"], chunks)
            positions = np.flatnonzero(~np.asarray(deleted.to_numpy(zero_copy_only=False), dtype=bool))
        else:
            positions = np.arange(total_rows, dtype=np.int64)
        positions = positions[query.offset or 0 :]
        if query.limit is not None:
            positions = positions[: query.limit]
        return (None if query.is_count else positions), len(positions)
    arrays = {name: _column_view(obj.fields[name], chunks) for name in sorted(builder.columns)}
    arrays["__pos"] = pa.chunked_array([pa.array(np.arange(total_rows, dtype=np.int64))])
    view = pa.table(arrays)
    where = " AND ".join(conditions) if conditions else "true"
    sql = f'SELECT "__pos" FROM t WHERE {where} ORDER BY {order}'
    params = list(builder.params)
    if query.limit is not None:
        sql += " LIMIT ?"
        params.append(query.limit)
    if query.offset:
        if query.limit is None:
            sql += " LIMIT 9223372036854775807"
        sql += " OFFSET ?"
        params.append(query.offset)
    con = _duckdb()
    try:
        con.register("t", view)
        if query.is_count:
            count = con.execute(f"SELECT count(*) FROM ({sql})", params).fetchall()
            return None, int(count[0][0])
        found = con.execute(sql, params).fetchnumpy()["__pos"]
    finally:
        con.close()
    positions = np.asarray(found, dtype=np.int64)
    return positions, len(positions)


# --------------------------------------------------------------------------------------------------
# query results and wire formats
# --------------------------------------------------------------------------------------------------

_EMPTY = pa.scalar("")
_JSON_ESCAPES = (
    ("\\", "\\\\"),
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
)
_HAS_QUOTE = pc.MatchSubstringOptions('"')
_CSV_ESCAPE = pc.ReplaceSubstringOptions('"', '""')
_COMMA_LIST = pc.ReplaceSubstringOptions(",", '","')
_TO_STRING = pc.CastOptions.safe(pa.string())
_T_SEPARATOR = pc.ReplaceSliceOptions(10, 11, "T")
_EMIT = pc.JoinOptions(null_handling="emit_null")
_call = pc.call_function
_SCALARS: dict[str, pa.Scalar] = {}


def _lit(text: str) -> pa.Scalar:
    """A cached string scalar (making one from Python text costs far more than a kernel call)."""
    scalar = _SCALARS.get(text)
    if scalar is None:
        if len(_SCALARS) > 20_000:
            _SCALARS.clear()
        scalar = _SCALARS[text] = pa.scalar(text)
    return scalar


def _any(array: pa.Array) -> bool:
    return bool(_call("any", [array]).as_py())


_CONTROL_CHARS = [chr(code) for code in range(0x20)]
_SIMPLE_ESCAPES = dict(_JSON_ESCAPES)
_ESCAPE_ORDER = ["\\", *(char for char, _ in _JSON_ESCAPES if char != "\\"), "\x00"]


def json_escape_chars(values: pa.Array) -> frozenset[str]:
    """Which characters of `values` (a string array) JSON must escape (empty when none: the common
    case): the simple escapes found, and NUL standing for any other control character. One pass
    over the values' bytes (these characters are ASCII, so never part of a multi-byte character)."""
    data = _string_bytes(values)
    special = data[(data < 0x20) | (data == 0x22) | (data == 0x5C)]
    if not len(special):
        return frozenset()
    found = {chr(code) for code in np.unique(special).tolist()}
    others = {char for char in found if char not in _SIMPLE_ESCAPES}
    return frozenset((found - others) | ({"\x00"} if others else set()))


def _string_bytes(values: pa.Array) -> np.ndarray:
    """The bytes of a string array's values, all concatenated (a view, no copy)."""
    buffers = values.buffers()
    if len(values) == 0 or buffers[2] is None:
        return np.zeros(0, dtype=np.uint8)
    offsets = np.frombuffer(buffers[1], dtype=np.int32, count=values.offset + len(values) + 1)
    begin, end = int(offsets[values.offset]), int(offsets[-1])
    return np.frombuffer(buffers[2], dtype=np.uint8, count=end)[begin:]


def _json_escape(values: pa.Array, chars: frozenset[str] | None = None) -> pa.Array:
    """JSON string escaping of every value; `chars` limits the work to the characters present."""
    if chars is None:
        chars = json_escape_chars(values)
    for char in _ESCAPE_ORDER:  # the backslash first, so that later escapes are not doubled
        if char not in chars:
            continue
        if char == "\x00":
            for control in _CONTROL_CHARS:
                if control not in _SIMPLE_ESCAPES:
                    option = pc.ReplaceSubstringOptions(control, f"\\u{ord(control):04x}")
                    values = _call("replace_substring", [values], option)
        else:
            option = pc.ReplaceSubstringOptions(char, _SIMPLE_ESCAPES[char])
            values = _call("replace_substring", [values], option)
    return values


def _csv_escape(values: pa.Array) -> pa.Array:
    if _any(_call("match_substring", [values], _HAS_QUOTE)):
        return _call("replace_substring", [values], _CSV_ESCAPE)
    return values


def _is_all_null(array: pa.Array) -> bool:
    return pa.types.is_null(array.type) or array.null_count == len(array)


def _text(array: pa.Array) -> pa.Array:
    return _call("cast", [array], _TO_STRING)


def _datetime_text(array: pa.Array) -> pa.Array:
    return _call("utf8_replace_slice", [_text(array)], _T_SEPARATOR)


def _join(pieces: list[Any], options: pc.JoinOptions = _EMIT, separator: pa.Scalar = _EMPTY) -> pa.Array:
    return _call("binary_join_element_wise", [*pieces, separator], options)


class _Cond:
    """Text that depends on the row: `yes` where `mask` is true, else `no`."""

    __slots__ = ("mask", "no", "yes")

    def __init__(self, mask: np.ndarray, yes: str, no: str):
        self.mask, self.yes, self.no = mask, yes, no


class _RowAssembly:
    """Renders one text per row, every row of a page in ONE Arrow `take`.

    A row is a sequence of elements; each element picks, per row, one text from a pool: the page's value
    arrays (numbers, dates, strings as text), small arrays of alternatives (a rendered dictionary, `true`
    and `false`) and constant texts (field names, quotes, punctuation). The pool is concatenated once and
    `take` with a row-major index matrix writes every row's text into one contiguous buffer, which is the
    body: no per-value Python, one pass over the output, no copy afterwards.

    Constant text accumulates until the next element; text that depends on a value's nullness (quotes
    around a value, or `null` instead of them) becomes a few alternative constants chosen per row.
    Choices (dictionary values, booleans) absorb the text before them into their alternatives, so a
    picklist costs one element per row."""

    _EMPTY = 0  # pool position of the empty text (value elements)

    def __init__(self, length: int, null_text: str, cache: _PieceCache, rows: np.ndarray | None = None):
        self.n = length
        self.null_text = null_text
        self._cache = cache
        self._rows = rows  # which rows of the given arrays are the page's (None: all, in order)
        self._const_ids: dict[str, int] = {}
        self._const_texts: list[str] = []
        self._pool: list[pa.Array] = [_POOL_START]
        self._pool_size = len(_POOL_START)
        self._elements: list[tuple[bool, np.ndarray | int]] = []  # (constant?, pool index per row)
        self._pending: list[str | _Cond] = []
        self._absent: np.ndarray | None = None  # rows of an open group that render nothing at all

    # ---- building a row ----
    def text(self, text: str) -> None:
        self._pending.append(text)

    def value(
        self,
        values: pa.Array,
        before: str = "",
        after: str = "",
        valid: np.ndarray | None = None,
        selected: bool = False,
    ) -> None:
        """Per-row text from `values` (a string array). Null rows (or rows where `valid` is false)
        render `null_text` instead of `before` + value + `after`. The arrays are the page's rows as
        the page gives them (`rows` picks from them), or exactly the page's rows when `selected`."""
        if valid is None:
            valid = _validity(values)
        if valid is not None:
            valid = valid if selected else self._select(valid)
            if valid.all():
                valid = None
            elif not valid.any():
                self._pending.append(self.null_text)
                return
        self._pending.append(before if valid is None else _Cond(valid, before, self.null_text))
        self._flush()
        indices = (_ROWS[: self.n] if selected or self._rows is None else self._rows) + self._pool_size
        if valid is not None:
            indices = np.where(valid, indices, self._EMPTY)
        self._pool.append(values)
        self._pool_size += len(values)
        self._add(False, indices)
        self._pending.append(after if valid is None else _Cond(valid, after, ""))

    def choice(self, alternatives: pa.Array, picked: np.ndarray, valid: np.ndarray | None) -> None:
        """Per-row text `alternatives[picked[row]]` (`null_text` where not `valid`), with the text
        before it folded into the alternatives (cached, so a page pays only for its indices)."""
        count = len(alternatives) + 1  # the alternatives and null_text
        picked = self._select(picked)
        if valid is not None:
            valid = self._select(valid)
            if valid.all():
                valid = None
        prefixes, code = self._variants()
        if count * len(prefixes) > max(64, self.n):  # large: taking the values is cheaper than the pool
            mask = None if valid is None else ~valid
            self.value(alternatives.take(pa.array(picked, mask=mask)), selected=True)
            return
        self._pending.clear()
        key = (id(alternatives), prefixes)
        piece = self._cache.get(key)
        if piece is None:
            options = _plus_text(alternatives, self.null_text)
            piece = pa.concat_arrays([_prefixed(prefix, options) for prefix in prefixes])
            piece = self._cache.put(key, piece, alternatives)
        indices = picked.astype(np.int32, copy=False)
        if valid is not None:
            indices = np.where(valid, indices, count - 1)
        if not isinstance(code, int) or code:
            indices = indices + code * count
        self._add(False, indices + self._pool_size)
        self._pool.append(piece)
        self._pool_size += len(piece)

    def open_group(self, present: np.ndarray, opening: str, instead: str) -> None:
        """Start a group (a compound value) that renders as `instead` on rows where `present` is false
        (from `opening` up to the matching close_group, nothing else of it renders on those rows)."""
        present = self._select(present)
        self._pending.append(_Cond(present, opening, instead))
        self._flush()
        self._absent = ~present

    def close_group(self, closing: str) -> None:
        self._pending.append(closing)
        self._flush()
        self._absent = None

    # ---- the result ----
    def finish(self, opening: str, separator: str, closing: str, page_rows: int = 0) -> list[memoryview]:
        """The rows' texts as pages of `page_rows` rows (one page: all rows), each page's rows joined by
        `separator` between `opening` and `closing`; every page a view of one rendered buffer."""
        n = self.n
        page_rows = page_rows or n
        first = np.zeros(n, dtype=bool)
        first[::page_rows] = True
        last = np.zeros(n, dtype=bool)
        last[page_rows - 1 :: page_rows] = True
        last[-1] = True
        self._pending.append(closing if last.all() else _Cond(last, closing, separator))
        self._flush()
        if opening:
            self._open(opening, first)
        consts = pa.array(self._const_texts, pa.string())
        const_base = self._pool_size
        pool = pa.concat_arrays([*self._pool, consts])
        width = len(self._elements)
        matrix = np.empty((n, width), dtype=np.int32)
        for column, (constant, indices) in enumerate(self._elements):
            matrix[:, column] = indices + const_base if constant else indices
        rows = pool.take(pa.array(matrix.reshape(-1)))
        offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=len(rows) + 1)
        data = memoryview(rows.buffers()[2] or b"")
        bounds = [int(offsets[row * width]) for row in range(0, n, page_rows)] + [int(offsets[-1])]
        return [data[begin:end] for begin, end in itertools.pairwise(bounds)]

    # ---- internals ----
    def _select(self, array: np.ndarray) -> np.ndarray:
        return array if self._rows is None else array[self._rows]

    def _const(self, text: str) -> int:
        index = self._const_ids.get(text)
        if index is None:
            index = self._const_ids[text] = len(self._const_texts)
            self._const_texts.append(text)
        return index

    def _variants(self) -> tuple[tuple[str, ...], np.ndarray | int]:
        """The pending text's alternatives and, per row, which one applies (an int when all rows agree)."""
        conditions = [part for part in self._pending if isinstance(part, _Cond)]
        code: np.ndarray | int = 0
        for bit, condition in enumerate(conditions):
            code = code + (condition.mask.astype(np.int32) << bit)
        texts = []
        for variant in range(1 << len(conditions)):
            pieces, bit = [], 0
            for part in self._pending:
                if isinstance(part, _Cond):
                    pieces.append(part.yes if variant >> bit & 1 else part.no)
                    bit += 1
                else:
                    pieces.append(part)
            texts.append("".join(pieces))
        return tuple(texts), code

    def _flush(self) -> None:
        """The pending text as one constant element (skipped when it is empty on every row)."""
        if not self._pending:
            return
        texts, code = self._variants()
        self._pending.clear()
        if len(texts) == 1:
            if texts[0]:
                self._add(True, self._const(texts[0]))
            return
        ids = np.array([self._const(text) for text in texts], dtype=np.int32)
        self._add(True, ids[code])

    def _add(self, constant: bool, indices: np.ndarray | int) -> None:
        if self._absent is not None:
            empty = self._const("") if constant else self._EMPTY
            indices = np.where(self._absent, empty, indices)
        self._elements.append((constant, indices))

    def _open(self, opening: str, rows: np.ndarray) -> None:
        """Put `opening` before the given rows: into their first constant element when there is one."""
        constant, indices = self._elements[0] if self._elements else (False, 0)
        if constant:
            ids = np.array(indices, dtype=np.int32, copy=True).reshape(-1)
            if len(ids) == 1:
                ids = np.full(self.n, ids[0], dtype=np.int32)
            original = ids.copy()
            for text_id in np.unique(original[rows]):
                ids[rows & (original == text_id)] = self._const(opening + self._const_texts[text_id])
            self._elements[0] = (True, ids)
        else:
            ids = np.full(self.n, self._const(""), dtype=np.int32)
            ids[rows] = self._const(opening)
            self._elements.insert(0, (True, ids))


class _PieceCache:
    """Rendered alternatives with the text before them, per query result (bounded; thread-safe)."""

    LIMIT = 1_024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pieces: dict[tuple[Any, ...], tuple[pa.Array, Any]] = {}

    def get(self, key: tuple[Any, ...]) -> pa.Array | None:
        with self._lock:
            found = self._pieces.get(key)
        return None if found is None else found[0]

    def put(self, key: tuple[Any, ...], piece: pa.Array, owner: Any) -> pa.Array:
        with self._lock:
            if len(self._pieces) >= self.LIMIT:
                self._pieces.clear()
            self._pieces[key] = (piece, owner)  # holding the owner keeps id(owner) in the key unique
        return piece


_POOL_START = pa.array([""], pa.string())  # _RowAssembly._EMPTY
_ROWS = np.arange(1 << 20, dtype=np.int32)  # row numbers, sliced per page (pages are smaller)
_BOOLEAN_JSON = pa.array(["true", "false"])
# The JSON text around a value of each type; none for numbers (int, long, double, currency, percent).
_JSON_AROUND = {
    **dict.fromkeys([*TEXT_TYPES, "anyType", "id", "reference", "base64", "date"], ('"', '"')),
    "datetime": ('"', '+0000"'),
    "time": ('"', 'Z"'),
    "junctionidlist": ('["', '"]'),
}
_BOOLEAN_CSV = pa.array(['"true"', '"false"'])


def _plus_text(values: pa.Array, text: str) -> pa.Array:
    return pa.concat_arrays([values.cast(pa.string()), pa.array([text], pa.string())])


def _prefixed(prefix: str, values: pa.Array) -> pa.Array:
    return _join([_lit(prefix), values]) if prefix else values


def _bits(buffer: pa.Buffer, offset: int, length: int) -> np.ndarray:
    """A bitmap's bits [offset, offset + length) as booleans."""
    raw = np.frombuffer(buffer, dtype=np.uint8, count=(offset + length + 7) // 8)
    return np.unpackbits(raw, bitorder="little", count=offset + length)[offset:].view(bool)


def _validity(values: pa.Array) -> np.ndarray | None:
    """Which rows are not null (None when all are)."""
    if values.null_count == 0:
        return None
    if pa.types.is_null(values.type):
        return np.zeros(len(values), dtype=bool)
    return _bits(values.buffers()[0], values.offset, len(values))


def _dictionary_indices(values: pa.Array) -> np.ndarray:
    """A dictionary array's indices (any value on null rows)."""
    indices = values.indices
    # Spelled from the index type itself: pyarrow's to_pandas_dtype() imports pandas before pyarrow 16.
    kind = "i" if pa.types.is_signed_integer(indices.type) else "u"
    dtype = np.dtype(f"<{kind}{indices.type.bit_width // 8}")
    return np.frombuffer(indices.buffers()[1], dtype=dtype, count=indices.offset + len(indices))[
        indices.offset :
    ]


def _booleans(values: pa.Array) -> np.ndarray:
    return _bits(values.buffers()[1], values.offset, len(values))


class _Part:
    """Rows of one chunk that belong to a page: a slice, or taken by index."""

    __slots__ = ("chunk", "indices", "length", "local", "start")

    def __init__(self, chunk: Chunk, start: int, length: int, local: np.ndarray | None):
        self.chunk, self.start, self.length, self.local = chunk, start, length, local
        self.indices = None if local is None else pa.array(local)

    def column(self, name: str) -> pa.Array:
        array = self.chunk.columns.get(name)
        if array is None or pa.types.is_null(array.type):
            return pa.nulls(self.length)
        if self.indices is None:
            return array.slice(self.start, self.length)
        return array.take(self.indices)

    def span(self) -> tuple[int, int, np.ndarray] | None:
        """(first row, row count, the page's rows relative to the first) when the rows ascend within a
        span not much longer than the page (a scan that skips a few rows, such as deleted ones)."""
        local = self.local
        if local is None:
            return None
        first, count = int(local[0]), int(local[-1]) - int(local[0]) + 1
        if count > 2 * len(local) + 64 or np.any(np.diff(local) <= 0):
            return None
        return first, count, (local - first).astype(np.int32)


class _Page:
    """The columns of a page's rows, and which text columns need JSON escaping.

    The columns hold the page's rows in result order (`rows` is None), or a span of a chunk's rows of
    which `rows` picks the page's, in order (renderers pick them while assembling the text, which saves
    taking every column first)."""

    def __init__(
        self,
        length: int,
        columns: dict[str, pa.Array],
        escape: dict[str, frozenset[str]],
        rows: np.ndarray | None = None,
    ):
        self.length = length
        self.columns = columns
        self.escape = escape
        self.rows = rows
        self.texts: dict[str, pa.Array] = {}  # rendered text of a column, made once a page


def _concat_page(arrays: list[pa.Array]) -> pa.Array:
    if all(pa.types.is_dictionary(a.type) for a in arrays):
        dictionary = arrays[0].dictionary
        if all(a.dictionary is dictionary for a in arrays):
            indices = pa.concat_arrays([a.indices for a in arrays])
            return pa.DictionaryArray.from_arrays(indices, dictionary)
    return _concat_arrays(arrays)


# Pages are rendered ahead in background threads (Arrow kernels release the GIL), so the next pages are
# ready when the client asks for them. REST pages of a narrow query render several at a time (a page's
# fixed cost, Python and kernel calls per column, is then shared), up to two batches ahead; Bulk pages
# one ahead. Bounded in cells (rows x columns, ~30 bytes of text each) and rows: ~70 MB of REST bodies
# ahead, one Bulk page of up to 8M cells (~40 MB for 50,000 Accounts); larger pages are not guessed.
@dataclass(frozen=True)
class _ReadAhead:
    largest_page: int  # rows; larger pages are rendered when asked for only
    largest_cells: int  # rows x columns of a page; likewise
    batch_cells: int  # pages of a query render together up to this many cells ...
    batch_rows: int  # ... and rows
    batches: int  # batches rendered ahead


_READ_AHEAD = {
    "json": _ReadAhead(
        largest_page=2_000, largest_cells=4_000_000, batch_cells=1_200_000, batch_rows=8_000, batches=2
    ),
    "csv": _ReadAhead(largest_page=50_000, largest_cells=8_000_000, batch_cells=0, batch_rows=0, batches=1),
}
_READ_AHEAD_WORKERS = 2
_CSV_BLOCK_ROWS = 8_192  # Bulk pages render in blocks of rows (bounds the working memory of one page)
_read_ahead_lock = threading.Lock()
_read_ahead_executor: ThreadPoolExecutor | None = None


def _read_ahead_pool() -> ThreadPoolExecutor:
    global _read_ahead_executor
    with _read_ahead_lock:
        if _read_ahead_executor is None:
            _read_ahead_executor = ThreadPoolExecutor(
                max_workers=_READ_AHEAD_WORKERS, thread_name_prefix="emulator-read-ahead"
            )
        return _read_ahead_executor


# Only the results read most recently keep pages read ahead: a client that stops paging half-way (an
# abandoned cursor stays open for minutes) must not keep its guesses in memory meanwhile.
_READING_LIMIT = 3
_reading_lock = threading.Lock()
_reading: OrderedDict[int, weakref.ReferenceType[QueryResult]] = OrderedDict()


def _now_reading(result: QueryResult) -> None:
    """Note that `result` reads ahead; the least recent beyond _READING_LIMIT drop their guesses."""
    with _reading_lock:
        _reading[id(result)] = weakref.ref(result)
        _reading.move_to_end(id(result))
        stale = [_reading.popitem(last=False)[1]() for _ in range(len(_reading) - _READING_LIMIT)]
    for other in stale:
        if other is not None and other is not result:
            other.drop_read_ahead()


class QueryResult:
    """A query's fixed result set (a snapshot), paged by the HTTP layer."""

    def __init__(
        self, obj: ObjectDef, chunks: list[Chunk], query: Query, positions: np.ndarray | None, total: int
    ):
        self.id = f"01g{next(_result_ids):012d}"
        self.sobject = obj.name
        self.query = query
        self.is_count = query.is_count
        self.columns: list[str] = list(query.field_names)
        self.total_size = total
        self._obj = obj
        self._chunks = chunks
        self._starts = np.cumsum([0] + [chunk.length for chunk in chunks], dtype=np.int64)
        self._positions = positions
        self._dictionaries: dict[tuple[Any, ...], tuple[pa.Array, pa.Array]] = {}
        self._lock = threading.Lock()
        self._ahead: dict[tuple[Any, ...], tuple[Future[Any], int]] = {}  # page -> (its batch, index)
        self._pieces = _PieceCache()
        stored: list[str] = ["Id"]
        for name in self.columns:
            f = obj.fields[name]
            names = [c.name for _, c in obj.compound_parts(f)] if f.compound else [f.name]
            stored.extend(n for n in names if n not in stored)
        self._stored = stored

    def __repr__(self) -> str:
        return f"<QueryResult {self.sobject} {self.total_size} rows {self.columns}>"

    # ---- paging ----
    def _parts(self, start: int, stop: int) -> tuple[list[_Part], np.ndarray | None]:
        """The page's rows grouped by chunk, and the permutation back to result order (or None)."""
        if self._positions is None:
            return [], None
        start, stop = max(0, start), min(stop, self.total_size)
        if stop <= start:
            return [], None
        positions = self._positions[start:stop]
        which = np.searchsorted(self._starts, positions, side="right") - 1
        order = None
        if len(which) > 1 and np.any(np.diff(which) < 0):
            order = np.argsort(which, kind="stable")
            positions, which = positions[order], which[order]
        parts = []
        boundaries = np.flatnonzero(np.diff(which)) + 1
        for group in np.split(np.arange(len(positions)), boundaries):
            chunk_index = int(which[group[0]])
            local = positions[group] - self._starts[chunk_index]
            chunk = self._chunks[chunk_index]
            if local[-1] - local[0] == len(local) - 1 and (len(local) < 2 or np.all(np.diff(local) == 1)):
                parts.append(_Part(chunk, int(local[0]), len(local), None))
            else:
                parts.append(_Part(chunk, 0, len(local), local))
        inverse = None
        if order is not None:
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
        return parts, inverse

    def _page(self, start: int, stop: int, escapes: bool, exact: bool = True) -> _Page | None:
        """The page's columns; `exact=False` allows a span with a row selection (see `_Page`)."""
        parts, inverse = self._parts(start, stop)
        if not parts:
            return None
        length = sum(part.length for part in parts)
        span = parts[0].span() if not exact and len(parts) == 1 else None
        if span is not None:
            return self._span_page(parts[0], span, escapes)
        reorder = pa.array(inverse) if inverse is not None else None
        columns: dict[str, pa.Array] = {}
        escape: dict[str, frozenset[str]] = {}
        for name in self._stored:
            arrays = [part.column(name) for part in parts]
            array = arrays[0] if len(arrays) == 1 else _concat_page(arrays)
            if _is_all_null(array):
                columns[name] = pa.nulls(length)
                continue
            if reorder is not None:
                array = array.take(reorder)
            columns[name] = array
            if escapes and pa.types.is_string(array.type):
                escape[name] = frozenset().union(*(part.chunk.escape_chars(name) for part in parts))
        return _Page(length, columns, escape)

    def _span_page(self, part: _Part, span: tuple[int, int, np.ndarray], escapes: bool) -> _Page:
        first, count, rows = span
        chunk = part.chunk
        columns: dict[str, pa.Array] = {}
        escape: dict[str, frozenset[str]] = {}
        for name in self._stored:
            array = chunk.columns.get(name)
            if array is None or pa.types.is_null(array.type):
                columns[name] = pa.nulls(count)
                continue
            array = array.slice(first, count)
            columns[name] = array
            if escapes and pa.types.is_string(array.type):
                escape[name] = chunk.escape_chars(name)
        return _Page(part.length, columns, escape, rows)

    # ---- read-ahead ----
    def _ahead_or_render(self, key: tuple[Any, ...], render: Any) -> Any:
        """Page `key` = (kind, start, stop, *extra) from the read-ahead if it is there, else rendered
        now; then the following pages of the same size are rendered in the background while the client
        reads this one. `render(start, size, count, *extra)` returns `count` consecutive pages."""
        kind, start, stop, extra = key[0], key[1], key[2], key[3:]
        size = stop - start
        cells = size * (len(self.columns) + 1)  # the attributes count as a column
        ahead = _READ_AHEAD.get(kind)
        if ahead is not None and not (0 < size <= ahead.largest_page and cells <= ahead.largest_cells):
            ahead = None
        per_batch = max(1, min(ahead.batch_cells // cells, ahead.batch_rows // size)) if ahead else 1
        with self._lock:
            found = self._ahead.pop(key, None)
            following = []
            begin = stop
            while (kind, begin, begin + size, *extra) in self._ahead:
                following.append((kind, begin, begin + size, *extra))
                begin += size
            kept = {page: self._ahead[page] for page in following}
            needed = {id(entry[0]) for entry in (*kept.values(), found) if entry is not None}
            for future, _ in self._ahead.values():
                if id(future) not in needed:
                    future.cancel()  # the client went elsewhere: drop the guess if it has not started
            self._ahead = kept
            if ahead is not None:
                while len(self._ahead) <= per_batch * (ahead.batches - 1) and begin < self.total_size:
                    count = min(per_batch, -(-(self.total_size - begin) // size))
                    future = _read_ahead_pool().submit(render, begin, size, count, *extra)
                    for index in range(count):
                        self._ahead[(kind, begin, begin + size, *extra)] = (future, index)
                        begin += size
        if ahead is not None and self._ahead:
            _now_reading(self)  # outside self._lock: it may take another result's lock
        if found is not None:
            future, index = found
            return future.result()[index]
        return render(start, size, 1, *extra)[0]

    def drop_read_ahead(self) -> None:
        """Forget the pages rendered ahead (cancelling those not started)."""
        with self._lock:
            ahead, self._ahead = self._ahead, {}
        for future, _ in ahead.values():
            future.cancel()

    # ---- REST JSON ----
    def rest_records(self, start: int, stop: int, api_version: str) -> bytes:
        """Records [start, stop) as the `records` JSON array of a REST query response."""
        return bytes(self.rest_records_view(start, stop, api_version))

    def rest_records_view(self, start: int, stop: int, api_version: str) -> memoryview:
        """`rest_records` without copying the rendered bytes (the HTTP layer sends this buffer as is)."""
        return self._ahead_or_render(("json", start, stop, api_version), self._render_json)

    def _render_json(self, start: int, size: int, count: int, api_version: str) -> list[memoryview]:
        """`count` consecutive pages of `size` records from `start`, rendered together."""
        page = self._page(start, start + size * count, escapes=True, exact=False)
        if page is None:
            return [memoryview(b"[]")] * count
        out = _RowAssembly(page.length, "null", self._pieces, page.rows)
        url = f"/services/data/v{api_version}/sobjects/{self.sobject}/"
        out.text('{"attributes":{"type":"' + self.sobject + '","url":"' + url)
        out.value(page.columns["Id"])
        out.text('"}')
        for name in self.columns:
            f = self._obj.fields[name]
            out.text(f',"{name}":')
            if f.compound:
                self._json_compound(out, page, f)
                continue
            values = page.columns[f.name]
            if f.type == "base64" and not _is_all_null(values):
                # REST gives a base64 field's blob URL, not its content.
                url = f'"/services/data/v{api_version}/sobjects/{self.sobject}/'
                out.value(page.columns["Id"], url, f'/{f.name}"', _validity(values))
                continue
            self._json_value(out, page, f)
        out.text("}")
        pages = out.finish("[", ",", "]", size)
        return pages + [memoryview(b"[]")] * (count - len(pages))

    def _json_value(self, out: _RowAssembly, page: _Page, f: FieldDef) -> None:
        """Add the JSON text of field `f` on the page (null for nulls) to every row."""
        t = f.type
        values = page.columns[f.name]
        if _is_all_null(values):
            out.text("null")
        elif pa.types.is_dictionary(values.type):
            rendered = self._dictionary("json", values.dictionary)
            out.choice(rendered, _dictionary_indices(values), _validity(values))
        elif t == "boolean":
            out.choice(_BOOLEAN_JSON, (~_booleans(values)).view(np.int8), _validity(values))
        else:
            # address components also render inside their compound: their text is made once a page
            text = page.texts.get(f.name)
            if text is None:
                text = page.texts[f.name] = self._json_text(f, values, page.escape.get(f.name, frozenset()))
            out.value(text, *_JSON_AROUND.get(t, ("", "")))

    @staticmethod
    def _json_text(f: FieldDef, values: pa.Array, escape: frozenset[str]) -> pa.Array:
        t = f.type
        if t in _CASE_INSENSITIVE or t in ("id", "reference", "base64"):
            return _json_escape(values, escape) if escape else values
        if t == "datetime":
            return _datetime_text(values)
        if t in ("date", "time"):
            return _text(values)
        if t == "junctionidlist":
            escaped = _json_escape(values, escape) if escape else values
            return _call("replace_substring", [escaped], _COMMA_LIST)
        return _text(values)  # int, long, double, currency, percent: the exact stored text

    def _dictionary(self, kind: str, dictionary: pa.Array) -> pa.Array:
        """A dictionary's values rendered once for the whole result (JSON or CSV text)."""
        buffers = dictionary.buffers()
        key = (
            kind,
            buffers[1].address,
            buffers[2].address if buffers[2] is not None else 0,
            dictionary.offset,
            len(dictionary),
        )
        with self._lock:
            cached = self._dictionaries.get(key)
        if cached is not None:
            return cached[1]
        escaped = _json_escape(dictionary) if kind == "json" else _csv_escape(dictionary)
        rendered = _join([_lit('"'), escaped, _lit('"')])
        with self._lock:
            if len(self._dictionaries) >= _PieceCache.LIMIT:
                self._dictionaries.clear()
            # holding `dictionary` keeps the key's buffers alive (their addresses stay unique)
            self._dictionaries[key] = (dictionary, rendered)
        return rendered

    def _json_compound(self, out: _RowAssembly, page: _Page, f: FieldDef) -> None:
        """The compound value as a JSON object per row (alphabetical keys), null when all parts are."""
        components = self._obj.compound_parts(f)
        columns = [(key, component, page.columns[component.name]) for key, component in components]
        present: np.ndarray | None = np.zeros(len(page.columns["Id"]), dtype=bool)
        for _, _, values in columns:
            valid = _validity(values)
            if valid is None:
                present = None
                break
            present |= valid
        if present is not None and not present.any():
            out.text("null")
            return
        if present is None or present.all():
            out.text("{")
        else:
            out.open_group(present, "{", "null")
        for index, (key, component, _) in enumerate(columns):
            out.text(f'{"," if index else ""}"{key}":')
            self._json_value(out, page, component)
        if present is None or present.all():
            out.text("}")
        else:
            out.close_group("}")

    # ---- Bulk CSV ----
    def csv_header(self) -> bytes:
        return (",".join('"' + name.replace('"', '""') + '"' for name in self.columns) + "\n").encode()

    def csv_page(self, start: int, stop: int) -> bytes:
        """Header row + records [start, stop) as Bulk API 2.0 CSV (see the module docstring)."""
        return self._ahead_or_render(("csv", start, stop), self._render_csv)

    def _render_csv(self, start: int, size: int, count: int) -> list[bytes]:
        if size <= 0:  # the results of a job that matched nothing: the header row alone
            return [self.csv_header()] * count
        starts = range(start, start + size * count, size)
        return [self._render_csv_page(begin, begin + size) for begin in starts]

    def _render_csv_page(self, start: int, stop: int) -> bytes:
        stop = min(stop, self.total_size)
        blocks: list[Any] = [self.csv_header()]
        for begin in range(max(0, start), stop, _CSV_BLOCK_ROWS):
            page = self._page(begin, min(stop, begin + _CSV_BLOCK_ROWS), escapes=False, exact=False)
            if page is None:
                break
            compound = next((name for name in self.columns if self._obj.fields[name].compound), None)
            if compound is not None:
                raise ValueError(f"compound field {compound} cannot be written as Bulk CSV")
            out = _RowAssembly(page.length, "", self._pieces, page.rows)
            for index, name in enumerate(self.columns):
                f = self._obj.fields[name]
                if index:
                    out.text(",")
                self._csv_value(out, f, page.columns[f.name])
            out.text("\n")
            blocks.extend(out.finish("", "", ""))
        return b"".join(blocks)

    def _csv_value(self, out: _RowAssembly, f: FieldDef, values: pa.Array) -> None:
        t = f.type
        if _is_all_null(values):
            return
        if pa.types.is_dictionary(values.type):
            rendered = self._dictionary("csv", values.dictionary)
            out.choice(rendered, _dictionary_indices(values), _validity(values))
        elif t in ("id", "reference"):
            out.value(values, '"', '"')
        elif t in _CASE_INSENSITIVE or t in ("base64", "junctionidlist"):
            out.value(_csv_escape(values), '"', '"')
        elif t == "boolean":
            out.choice(_BOOLEAN_CSV, (~_booleans(values)).view(np.int8), _validity(values))
        elif t == "datetime":
            out.value(_datetime_text(values), '"', 'Z"')
        elif t == "time":
            out.value(_text(values), '"', 'Z"')
        else:
            out.value(_text(values), '"', '"')

    # ---- Python values ----
    def rows(self, start: int = 0, stop: int | None = None) -> list[tuple[Any, ...]]:
        """Records [start, stop) as tuples of Python values in SELECT order (for tests)."""
        stop = self.total_size if stop is None else stop
        page = self._page(start, stop, escapes=False)
        if page is None:
            return []
        columns = [self._python_column(page, self._obj.fields[name]) for name in self.columns]
        if not columns:
            return [() for _ in range(page.length)]
        return list(zip(*columns, strict=True))

    def records(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows(start, stop)]

    def _python_column(self, page: _Page, f: FieldDef) -> list[Any]:
        if f.compound:
            components = self._obj.compound_parts(f)
            columns = [(key, self._python_column(page, component)) for key, component in components]
            values: list[Any] = []
            for index in range(page.length):
                item = {key: column[index] for key, column in columns}
                values.append(item if any(v is not None for v in item.values()) else None)
            return values
        return python_values(f, page.columns[f.name])


def python_values(f: FieldDef, array: pa.Array) -> list[Any]:
    """Arrow values of field `f` as the Python values the Org API speaks."""
    if pa.types.is_null(array.type):
        return [False if f.type == "boolean" else None] * len(array)
    values = array.to_pylist()
    if f.type == "datetime":
        return [v.replace(tzinfo=UTC) if v is not None else None for v in values]
    return values
