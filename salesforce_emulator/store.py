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
them with the snapshot and renders pages on demand, the next page ahead in a background thread.
SOQL semantics: text comparisons (=, !=, IN, LIKE, ORDER BY) are case-insensitive, Ids compare as
given; `!=`/`NOT IN` match nulls; ORDER BY puts nulls first ascending and last descending unless told,
sorts picklists in their defined order, and breaks ties by physical position (stable paging).

Wire formats (built column-wise with Arrow kernels, no per-value Python):
- `QueryResult.rest_records(start, stop, api_version)`: a JSON array exactly as Salesforce REST writes
  records: `{"attributes":{"type":"Account","url":"/services/data/v58.0/sobjects/Account/<Id>"},...}`,
  fields in SELECT order with canonical names, datetimes `2024-01-02T03:04:05.000+0000`, dates
  `2024-01-02`, times `03:04:05.000Z`, numbers as JSON numbers written from the stored decimal text (no
  float rounding), booleans, null, address/location compounds as objects with alphabetical keys (null
  when every component is null), base64 fields as their blob URL (as Salesforce does).
- `QueryResult.csv_page(start, stop)`: Bulk API 2.0 CSV: a header row of the SELECT names, every value in
  double quotes (RFC 4180, `""` for a quote, newlines kept inside quotes), LF line ends, datetimes
  `2024-01-02T03:04:05.000Z`, booleans `true`/`false`. Null is an EMPTY UNQUOTED field: Salesforce's exact
  byte form for null is not documented; clients (pandas, csv modules, Airbyte) read both as null/empty,
  and this choice lets a client tell null (``) from an empty string (`""`).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
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
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


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
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
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
_NEEDS_JSON_ESCAPE = pc.MatchSubstringOptions(r'["\\\x00-\x1f]')
_HAS_QUOTE = pc.MatchSubstringOptions('"')
_CSV_ESCAPE = pc.ReplaceSubstringOptions('"', '""')
_COMMA_LIST = pc.ReplaceSubstringOptions(",", '","')
_TO_STRING = pc.CastOptions.safe(pa.string())
_T_SEPARATOR = pc.ReplaceSliceOptions(10, 11, "T")
_EMIT = pc.JoinOptions(null_handling="emit_null")
_NULL_AS_NULL = pc.JoinOptions(null_handling="replace", null_replacement="null")
_NULL_AS_EMPTY = pc.JoinOptions(null_handling="replace", null_replacement="")
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
    """Which characters of `values` JSON must escape (empty when none: the common case)."""
    if not _any(_call("match_substring_regex", [values], _NEEDS_JSON_ESCAPE)):
        return frozenset()
    found = set()
    for char in ("\\", '"', "\n", "\r", "\t"):
        if _any(_call("match_substring", [values], pc.MatchSubstringOptions(char))):
            found.add(char)
    if _any(
        _call("match_substring_regex", [values], pc.MatchSubstringOptions(r"[\x00-\x08\x0b\x0c\x0e-\x1f]"))
    ):
        found.add("\x00")  # stands for "other control characters"
    return frozenset(found)


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


class _Builder:
    """Assembles one text per row from constant text and per-row value arrays in a single join.

    Constant text accumulates until the next value array; a value without nulls on this page gets its
    surrounding text (quotes, suffix) folded into the constants, so it costs no kernel call of its own.
    Null values become `null_text` (JSON `null`, CSV empty)."""

    def __init__(self, null_text: str):
        self.null_text = null_text
        self.pieces: list[Any] = []
        self.literal: list[str] = []

    def text(self, text: str) -> None:
        self.literal.append(text)

    def value(self, values: pa.Array, before: str, after: str) -> None:
        if _is_all_null(values):
            self.literal.append(self.null_text)
            return
        if values.null_count == 0:
            self.literal.append(before)
            self._array(values)
            self.literal.append(after)
            return
        self._array(_join([_lit(before), values, _lit(after)]) if before or after else values)

    def _array(self, values: pa.Array) -> None:
        self.pieces.append(_lit("".join(self.literal)))
        self.literal.clear()
        self.pieces.append(values)

    def finish(self) -> pa.Array:
        self.pieces.append(_lit("".join(self.literal)))
        options = _NULL_AS_NULL if self.null_text == "null" else _NULL_AS_EMPTY
        result = _join(self.pieces, options)
        if isinstance(result, pa.ChunkedArray):
            result = result.combine_chunks()
        return result


class _Part:
    """Rows of one chunk that belong to a page: a slice, or taken by index."""

    __slots__ = ("chunk", "indices", "length", "start")

    def __init__(self, chunk: Chunk, start: int, length: int, indices: pa.Array | None):
        self.chunk, self.start, self.length, self.indices = chunk, start, length, indices

    def column(self, name: str) -> pa.Array:
        array = self.chunk.columns.get(name)
        if array is None or pa.types.is_null(array.type):
            return pa.nulls(self.length)
        if self.indices is None:
            return array.slice(self.start, self.length)
        return array.take(self.indices)


class _Page:
    """The columns of a page's rows, in result order, and which text columns need JSON escaping."""

    def __init__(self, length: int, columns: dict[str, pa.Array], escape: dict[str, frozenset[str]]):
        self.length = length
        self.columns = columns
        self.escape = escape


def _concat_page(arrays: list[pa.Array]) -> pa.Array:
    if all(pa.types.is_dictionary(a.type) for a in arrays):
        dictionary = arrays[0].dictionary
        if all(a.dictionary is dictionary for a in arrays):
            indices = pa.concat_arrays([a.indices for a in arrays])
            return pa.DictionaryArray.from_arrays(indices, dictionary)
    return _concat_arrays(arrays)


# Pages are rendered one ahead in a background thread (Arrow kernels release the GIL), so the next
# page is ready when the client asks for it; bounded so that read-ahead memory stays small.
_READ_AHEAD_ROWS = {"json": 2_000, "csv": 10_000}
_read_ahead_lock = threading.Lock()
_read_ahead_executor: ThreadPoolExecutor | None = None


def _read_ahead_pool() -> ThreadPoolExecutor:
    global _read_ahead_executor
    with _read_ahead_lock:
        if _read_ahead_executor is None:
            _read_ahead_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emulator-read-ahead")
        return _read_ahead_executor


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
        self._ahead: tuple[tuple[Any, ...], Future[bytes]] | None = None
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
                parts.append(_Part(chunk, 0, len(local), pa.array(local)))
        inverse = None
        if order is not None:
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
        return parts, inverse

    def _page(self, start: int, stop: int, escapes: bool) -> _Page | None:
        parts, inverse = self._parts(start, stop)
        if not parts:
            return None
        length = sum(part.length for part in parts)
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

    @staticmethod
    def _text_of(records: pa.Array, drop_last: int = 0) -> memoryview:
        """The concatenated text of a string array, without copying it."""
        offsets = np.frombuffer(
            records.buffers()[1], dtype=np.int32, count=len(records) + 1, offset=records.offset * 4
        )
        data = memoryview(records.buffers()[2])
        return data[int(offsets[0]) : int(offsets[-1]) - drop_last]

    # ---- read-ahead ----
    def _ahead_or_render(self, key: tuple[Any, ...], render: Any, *args: Any) -> bytes:
        """The page from the read-ahead if it was rendered already, else rendered now; then the next
        page of the same size is rendered in the background while the client reads this one."""
        with self._lock:
            ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == key:
            body = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()  # the client went elsewhere: drop the guess if it has not started
            body = render(*args)
        kind, start, stop = key[0], key[1], key[2]
        size = stop - start
        if 0 < size <= _READ_AHEAD_ROWS.get(kind, 0) and stop < self.total_size:
            next_key = (kind, stop, stop + size, *key[3:])
            next_args = (stop, stop + size, *args[2:])
            future = _read_ahead_pool().submit(render, *next_args)
            with self._lock:
                self._ahead = (next_key, future)
        return body

    # ---- REST JSON ----
    def rest_records(self, start: int, stop: int, api_version: str) -> bytes:
        """Records [start, stop) as the `records` JSON array of a REST query response."""
        return self._ahead_or_render(
            ("json", start, stop, api_version), self._render_json, start, stop, api_version
        )

    def _render_json(self, start: int, stop: int, api_version: str) -> bytes:
        page = self._page(start, stop, escapes=True)
        if page is None:
            return b"[]"
        out = _Builder("null")
        url = f"/services/data/v{api_version}/sobjects/{self.sobject}/"
        out.text('{"attributes":{"type":"' + self.sobject + '","url":"' + url)
        out.value(page.columns["Id"], "", '"}')
        for name in self.columns:
            f = self._obj.fields[name]
            out.text(f',"{name}":')
            if f.compound:
                out.value(self._json_compound(page, f), "", "")
                continue
            values = page.columns[f.name]
            if f.type == "base64" and not _is_all_null(values):
                url = _lit(f'"/services/data/v{api_version}/sobjects/{self.sobject}/')
                joined = _join([url, page.columns["Id"], _lit(f'/{f.name}"')])
                out.value(
                    _call("if_else", [_call("is_valid", [values]), joined, pa.scalar(None, pa.string())]),
                    "",
                    "",
                )
                continue
            out.value(*self._json_value(f, values, page.escape.get(f.name, frozenset())))
        out.text("},")
        records = out.finish()
        return b"".join((b"[", self._text_of(records, drop_last=1), b"]"))

    def _json_value(self, f: FieldDef, values: pa.Array, escape: frozenset[str]) -> tuple[pa.Array, str, str]:
        """JSON text of the values (nulls stay null) and the text that goes around each of them."""
        t = f.type
        if _is_all_null(values):
            return values, "", ""
        if pa.types.is_dictionary(values.type):
            return self._dictionary("json", values.dictionary).take(values.indices), "", ""
        if t in _CASE_INSENSITIVE or t in ("id", "reference", "base64"):
            return (_json_escape(values, escape) if escape else values), '"', '"'
        if t == "boolean":
            return _call("if_else", [values, _lit("true"), _lit("false")]), "", ""
        if t == "datetime":
            return _datetime_text(values), '"', '+0000"'
        if t == "date":
            return _text(values), '"', '"'
        if t == "time":
            return _text(values), '"', 'Z"'
        if t == "junctionidlist":
            return (
                _call("replace_substring", [_json_escape(values, escape) if escape else values], _COMMA_LIST),
                '["',
                '"]',
            )
        return _text(values), "", ""  # int, long, double, currency, percent: the exact stored text

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
            self._dictionaries[key] = (
                dictionary,
                rendered,
            )  # holding `dictionary` keeps the key's buffers alive
        return rendered

    def _json_compound(self, page: _Page, f: FieldDef) -> pa.Array:
        """The compound value as a JSON object per row (alphabetical keys), null when all parts are."""
        components = self._obj.compound_parts(f)
        columns = [(key, component, page.columns[component.name]) for key, component in components]
        if not columns or all(_is_all_null(values) for _, _, values in columns):
            return pa.nulls(page.length, pa.string())
        out = _Builder("null")
        out.text("{")
        for index, (key, component, values) in enumerate(columns):
            out.text(f'{"," if index else ""}"{key}":')
            out.value(*self._json_value(component, values, page.escape.get(component.name, frozenset())))
        out.text("}")
        rendered = out.finish()
        # A row whose every component is null renders as this text; Salesforce writes null instead.
        nothing = "{" + ",".join(f'"{key}":null' for key, _, _ in columns) + "}"
        empty = _call("equal", [rendered, _lit(nothing)])
        if _any(empty):
            rendered = _call("if_else", [empty, pa.scalar(None, pa.string()), rendered])
        return rendered

    # ---- Bulk CSV ----
    def csv_header(self) -> bytes:
        return (",".join('"' + name.replace('"', '""') + '"' for name in self.columns) + "\n").encode()

    def csv_page(self, start: int, stop: int) -> bytes:
        """Header row + records [start, stop) as Bulk API 2.0 CSV (see the module docstring)."""
        return self._ahead_or_render(("csv", start, stop), self._render_csv, start, stop)

    def _render_csv(self, start: int, stop: int) -> bytes:
        page = self._page(start, stop, escapes=False)
        header = self.csv_header()
        if page is None:
            return header
        out = _Builder("")
        for index, name in enumerate(self.columns):
            f = self._obj.fields[name]
            if f.compound:
                raise ValueError(f"compound field {name} cannot be written as Bulk CSV")
            if index:
                out.text(",")
            out.value(*self._csv_value(f, page.columns[f.name]))
        out.text("\n")
        return b"".join((header, self._text_of(out.finish())))

    def _csv_value(self, f: FieldDef, values: pa.Array) -> tuple[pa.Array, str, str]:
        t = f.type
        if _is_all_null(values):
            return values, "", ""
        if pa.types.is_dictionary(values.type):
            return self._dictionary("csv", values.dictionary).take(values.indices), "", ""
        if t in ("id", "reference"):
            return values, '"', '"'
        if t in _CASE_INSENSITIVE or t in ("base64", "junctionidlist"):
            return _csv_escape(values), '"', '"'
        if t == "boolean":
            return _call("if_else", [values, _lit('"true"'), _lit('"false"')]), "", ""
        if t == "datetime":
            return _datetime_text(values), '"', 'Z"'
        if t == "time":
            return _text(values), '"', 'Z"'
        return _text(values), '"', '"'

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
        return [v.replace(tzinfo=timezone.utc) if v is not None else None for v in values]
    return values
