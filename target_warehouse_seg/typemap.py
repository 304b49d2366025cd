"""From JSON Schema to column kinds, and the safe widening between kinds.

A property's JSON Schema (``type`` as a string or a list, ``anyOf``/``oneOf`` alternatives, ``format``)
becomes the narrowest column kind that holds every value it allows:

=========================================  ==========
JSON Schema                                kind
=========================================  ==========
string                                     TEXT
string, format date-time                   TIMESTAMP (timestamptz, UTC)
string, format date                        DATE
string, format time                        TIME
integer                                    INTEGER (bigint)
number, or integer and number              NUMBER (exact)
string, format x-singer.decimal            NUMBER (exact; singer-sdk's decimal text, also
  (or singer.decimal)                        with number or integer)
boolean                                    BOOLEAN
object, array, no type at all              JSON
date and date-time                         TIMESTAMP
any other mix of scalar types              TEXT
a mix that includes object or array        JSON
=========================================  ==========

A column never narrows. When a property's kind changes, the column widens to a kind that holds both
the stored and the new values: INTEGER -> NUMBER -> TEXT, DATE -> TIMESTAMP -> TEXT, BOOLEAN/TIME ->
TEXT. TEXT and JSON hold everything (a JSON value in a TEXT column is stored as JSON text).
"""

from __future__ import annotations

import datetime
import enum
import typing as t
from decimal import Decimal

import msgspec


class Kind(str, enum.Enum):
    """The logical kind of a column; each engine maps it to its own SQL type."""

    BOOLEAN = "boolean"
    INTEGER = "integer"
    NUMBER = "number"
    DATE = "date"
    TIME = "time"
    TIMESTAMP = "timestamp"
    TEXT = "text"
    JSON = "json"


# Tokens describing what a property's schema admits; "any" stands for "no type given".
# singer-sdk's SQL taps (use_singer_decimal) send exact numbers as strings of format "singer.decimal"
# (its SingerDecimalType) or "x-singer.decimal" (what its SQL targets read): "decimal" is such a string.
_FORMATS = {
    "date-time": "datetime",
    "date": "date",
    "time": "time",
    "singer.decimal": "decimal",
    "x-singer.decimal": "decimal",
}
_SCALAR_KINDS = {
    frozenset({"string"}): Kind.TEXT,
    frozenset({"datetime"}): Kind.TIMESTAMP,
    frozenset({"date"}): Kind.DATE,
    frozenset({"time"}): Kind.TIME,
    frozenset({"date", "datetime"}): Kind.TIMESTAMP,
    frozenset({"integer"}): Kind.INTEGER,
    frozenset({"number"}): Kind.NUMBER,
    frozenset({"integer", "number"}): Kind.NUMBER,
    frozenset({"decimal"}): Kind.NUMBER,
    frozenset({"decimal", "number"}): Kind.NUMBER,
    frozenset({"decimal", "integer"}): Kind.NUMBER,
    frozenset({"decimal", "integer", "number"}): Kind.NUMBER,
    frozenset({"boolean"}): Kind.BOOLEAN,
}


def type_tokens(schema: t.Any) -> frozenset[str]:
    """The JSON types a property schema admits (``null`` excluded), with string formats resolved."""
    if not isinstance(schema, dict):
        return frozenset({"any"})
    tokens: set[str] = set()
    alternatives = [*schema.get("anyOf", []), *schema.get("oneOf", [])]
    for alternative in alternatives:
        tokens |= type_tokens(alternative)
    declared = schema.get("type")
    if declared is None and not alternatives:
        if "properties" in schema:
            declared = "object"
        elif "items" in schema:
            declared = "array"
        elif "enum" in schema or "const" in schema:
            declared = sorted({_json_type_of(value) for value in schema.get("enum", [schema.get("const")])})
        else:
            return frozenset({"any"})
    if declared is not None:
        for json_type in [declared] if isinstance(declared, str) else declared:
            if json_type == "string":
                tokens.add(_FORMATS.get(schema.get("format", ""), "string"))
            elif json_type != "null":
                tokens.add(str(json_type))
    return frozenset(tokens)


def _json_type_of(value: t.Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, (float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "array"


def kind_of(tokens: frozenset[str]) -> Kind:
    """The narrowest column kind holding every value of these JSON types."""
    if not tokens:
        return Kind.TEXT  # only null was allowed: a nullable text column
    if tokens & {"any", "object", "array"}:
        return Kind.JSON
    if tokens - {"string", "datetime", "date", "time", "decimal", "integer", "number", "boolean"}:
        return Kind.JSON  # an unknown JSON type name: keep the value whole
    return _SCALAR_KINDS.get(tokens, Kind.TEXT)


def holds(column: Kind, incoming: Kind) -> bool:
    """Whether a column of kind ``column`` stores every value of kind ``incoming`` without loss."""
    if column == incoming or column in (Kind.TEXT, Kind.JSON):
        return True
    return (column, incoming) in {(Kind.NUMBER, Kind.INTEGER), (Kind.TIMESTAMP, Kind.DATE)}


def widen(column: Kind, incoming: Kind) -> Kind:
    """The kind a column must take to hold both its values and the incoming ones."""
    if holds(column, incoming):
        return column
    if holds(incoming, column) and incoming is not Kind.JSON:
        return incoming
    return Kind.TEXT


class Source(str, enum.Enum):
    """How a property's values arrive from the decoder, and so how they travel to the warehouse."""

    TEXT = "text"  # str
    LOOSE = "loose"  # any JSON scalar, stored as text (a mix of types)
    INTEGER = "integer"  # int
    NUMBER = "number"  # msgspec.Raw: the exact JSON number text, checked per chunk
    BOOLEAN = "boolean"  # bool
    TIMESTAMP = "timestamp"  # timezone-aware datetime
    TIMESTAMP_TEXT = "timestamp_text"  # str: a date or a date-time (the sink puts its instant's text)
    DATE = "date"  # date
    TIME = "time"  # time without zone
    JSON = "json"  # msgspec.Raw: the exact JSON text


_STRINGISH = frozenset({"string", "datetime", "date", "time", "decimal"})
_DECODE_TYPES: dict[Source, t.Any] = {
    Source.TEXT: str,
    Source.LOOSE: t.Any,
    # bigint's range: a larger integer fails the fast decode and takes the slow path, which widens.
    Source.INTEGER: t.Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)],
    Source.NUMBER: msgspec.Raw,
    Source.BOOLEAN: bool,
    # Naive date-times (and zoned times) take the slow path, which reads them as UTC (drops the zone).
    Source.TIMESTAMP: t.Annotated[datetime.datetime, msgspec.Meta(tz=True)],
    Source.TIMESTAMP_TEXT: str,
    Source.DATE: datetime.date,
    Source.TIME: t.Annotated[datetime.time, msgspec.Meta(tz=False)],
    Source.JSON: msgspec.Raw,
}


def source_of(tokens: frozenset[str]) -> Source:
    """How values of a property with these JSON types are decoded and carried."""
    kind = kind_of(tokens)
    if kind is Kind.TEXT:
        return Source.TEXT if tokens <= _STRINGISH else Source.LOOSE
    if kind is Kind.TIMESTAMP:
        return Source.TIMESTAMP if tokens == frozenset({"datetime"}) else Source.TIMESTAMP_TEXT
    return Source(kind.value)


def numbers_as_text(tokens: frozenset[str]) -> bool:
    """Whether a property's numbers may arrive as strings holding them (singer-sdk's decimal text)."""
    return "decimal" in tokens


def decode_type(source: Source) -> t.Any:
    """The msgspec type that decodes (and so validates) a property's values in C.

    ``Raw`` cannot be in a union: a JSON ``null`` arrives as ``Raw(b"null")`` (the SQL casts map it
    to NULL); a missing property is ``None`` either way.
    """
    decoded = _DECODE_TYPES[source]
    return decoded if decoded is msgspec.Raw else decoded | None
