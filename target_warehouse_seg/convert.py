"""Value checks that msgspec's typed decode does not do, and the lenient reading of odd records.

The fast path decodes each record with its stream's typed decoder (typemap.Source), which already
checks strings, bounded integers, booleans, zoned date-times, dates and times in C. What is left is
checked here, column by column over a chunk:

* numbers arrive as the exact JSON text (``msgspec.Raw``); one ``translate`` over the joined column
  (``scan_numbers``) proves every value is a JSON number, so no ``Decimal`` is ever built and
  nothing passes through a float, and shows an engine whose numbers have a limit (DuckDB's DECIMAL)
  whether any value comes near it;
* mixed-type ("loose") values become text (``text_of``).

A record the typed decoder refuses takes the slow path (``lenient``): each value is read on its own,
with the leniency a data engineer expects (an integral ``1.0`` for an integer, ``2024-01-02`` for a
date-time, a naive date-time as UTC, a number for a text property) and NUL characters removed, or
the exact problem is reported against the record's line.
"""

from __future__ import annotations

import datetime
import json
import re
import typing as t
from decimal import Decimal, InvalidOperation

import msgspec

from target_warehouse_seg.typemap import Kind, Source

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
json_encoder = msgspec.json.Encoder(decimal_format="number")
_json_decoder = msgspec.json.Decoder(float_hook=Decimal)
_NUMBER_BYTES = b"0123456789+-.eEnul\x00"
# The translation of ``scan_numbers``: what JSON numbers and null are written with stays (``\x00``
# separates the values), except digits, which all become "9" (a run of digits is then a run of nines),
# and every other byte becomes ``NOT_NUMBER``.
NOT_NUMBER = b"!"
_NUMBER_SCAN = bytes(
    ord("9") if byte in b"0123456789" else byte if byte in _NUMBER_BYTES else NOT_NUMBER[0]
    for byte in range(256)
)
RAW_NULL = msgspec.Raw(b"null")
# What a msgspec decode raises for bad input: its own errors, (msgspec before 0.23) UnicodeDecodeError
# for bytes that are not UTF-8 in a string it decodes (0.23 raises its DecodeError for those), and
# RecursionError for objects or arrays nested about as deep as Python's recursion limit.
DECODE_ERRORS = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)


def decode_problem(error: BaseException) -> str:
    """What was wrong with JSON that a msgspec decode refused, in words ("not valid JSON (...)", ...)."""
    if isinstance(error, RecursionError):
        # msgspec's limit is Python's: about 1,000 levels up to Python 3.11, about 10,000 from 3.12 on.
        return "not readable: objects or arrays nested deeper than Python's recursion limit"
    if str(error).startswith("Integer value out of range"):  # Python's limit on an integer's digits
        return "not readable: an integer of more than 4,300 digits"
    return f"not valid JSON ({error})"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(line: bytes) -> tuple[t.Any, int] | None:
    """A JSON line that escapes a lone UTF-16 surrogate (``"\\ud83d"``, half an emoji: valid JSON, which
    Python's ``json.dumps`` writes for a string cut in the middle of a pair, but no character UTF-8 or
    PostgreSQL can hold) decoded with each lone surrogate replaced by U+FFFD, and how many there were;
    None when the line is not JSON for another reason (msgspec refuses lone surrogates, the standard
    library keeps them)."""
    replaced = 0

    def clean(text: str) -> str:
        nonlocal replaced
        text, count = _LONE_SURROGATE.subn("\ufffd", text)
        replaced += count
        return text

    def no_constant(name: str) -> t.NoReturn:
        raise ValueError(f"{name} is not JSON")

    try:
        payload = json.loads(line, parse_float=Decimal, parse_constant=no_constant)
    except (ValueError, RecursionError):
        return None
    payload = map_strings(payload, clean)
    return (payload, replaced) if replaced else None


def utf8_problem(data: t.Any) -> str | None:
    """Why ``data`` (bytes) is not UTF-8 text, or None when it is (or is not bytes): names the problem
    the same way whichever msgspec version refused the bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview, msgspec.Raw)):
        return None
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError as error:
        return error.reason
    return None


class ValueProblem(Exception):
    """The value at ``index`` of a chunk does not fit its column."""

    def __init__(self, index: int, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.message = message
        self.column = column  # the column's position in the batch


class NeedsWidening(Exception):
    """A column's values need a wider kind or carrier (an integer beyond bigint, say)."""

    def __init__(self, column: int, kind: Kind, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.kind = kind
        self.reason = reason


class Stats:
    """Counts gathered while reading (NUL characters removed)."""

    __slots__ = ("nul_removed",)

    def __init__(self) -> None:
        self.nul_removed = 0


def describe(value: t.Any) -> str:
    """A short description of an offending value for an error message."""
    if isinstance(value, msgspec.Raw):
        return f"JSON {bytes(value).decode('utf-8', 'replace')[:60]}"
    if isinstance(value, (datetime.date, datetime.time)):
        return f"{type(value).__name__} {value.isoformat()}"
    kind = {
        str: "text",
        bool: "boolean",
        int: "integer",
        Decimal: "number",
        dict: "object",
        list: "array",
    }.get(type(value), type(value).__name__)
    return f"{kind} {value!r}"[:80]


# Per-chunk checks ----------------------------------------------------------------------------------


# A JSON number's text alone, and a JSON string holding one (singer-sdk's decimal text).
_JSON_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_NUMBER_TEXT = re.compile(_JSON_NUMBER)
_QUOTED_NUMBER = re.compile(f'"({_JSON_NUMBER})"'.encode("ascii"))


def unquote_numbers(rows: t.Iterable[t.Any], field: str) -> None:
    """In a number column whose numbers may arrive as strings, put each string that holds a JSON
    number's text (``"12.30"``) in its place as that number (``12.30``, digits as sent). Any other
    string stays, and the number check refuses it as it refuses text where a number belongs."""
    for row in rows:
        value = getattr(row, field)
        if value is not None:
            match = _QUOTED_NUMBER.fullmatch(bytes(value))
            if match is not None:
                setattr(row, field, msgspec.Raw(match.group(1)))


def number_in_text(value: str) -> t.Any:
    """A string holding a JSON number's text as that number (exact); any other string as it is."""
    return Decimal(value) if _NUMBER_TEXT.fullmatch(value) else value


def scan_numbers(values: t.Iterable[msgspec.Raw | None]) -> bytes:
    """A number column's values (None for a missing one), as one text that shows what they hold.

    Every value is already valid JSON (msgspec checked it), and the only JSON values written with
    nothing but digits, signs, points, exponents and the letters of ``null`` are numbers and null: so
    the column holds only those when ``NOT_NUMBER`` is not in the scan (``first_non_number`` finds
    the value that is). Digits show as nines, so a run of N nines is a run of N digits.
    """
    return b"\x00".join(filter(None, values)).translate(_NUMBER_SCAN)


def shows_exponent_or_run(scan: bytes, digits: int) -> bool:
    """Whether a number column's scan shows an exponent or a run of ``digits`` digits: only then may
    a value pass a database's limits, and the column is looked at value by value."""
    return b"e" in scan or b"E" in scan or b"9" * digits in scan


def first_non_number(values: t.Sequence[msgspec.Raw | None]) -> int | None:
    """The index of the first value that is not a JSON number or null (None when all are)."""
    for index, value in enumerate(values):
        if value is not None and NOT_NUMBER in bytes(value).translate(_NUMBER_SCAN):
            return index
    return None


def text_of(value: t.Any) -> str | None:
    """Any JSON value as text: exact digits for numbers, ISO 8601 for dates, JSON for structures."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return plain_number(value) or str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, msgspec.Raw):
        return bytes(value).decode("utf-8")
    return json_encoder.encode(value).decode("utf-8")


# Numbers as text: the spelling of a number column widened to text (PostgreSQL's numeric printed
# without trailing zeros, DuckDB's DECIMAL alike), within what PostgreSQL's numeric holds.
NUMERIC_MAX_INTEGER_DIGITS = 131_072
NUMERIC_MAX_SCALE = 16_383


def plain_number(value: Decimal) -> str | None:
    """A finite number in plain decimal notation without trailing zeros (``7.50`` -> ``7.5``, ``1e-7``
    -> ``0.0000001``, ``1E+3`` -> ``1000``, ``-0.0`` -> ``0``): how a number column widened to text
    writes its values, so that a number sent to a text column meets them spelled alike (a replay
    after the widening, a number key in a text key column). None when no number column could have
    held it (``1e999999999``): such a value keeps the text it came in."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return None
    kept = len(digits)
    while kept > 1 and digits[kept - 1] == 0:
        kept -= 1
    exponent += len(digits) - kept
    text = "".join(map(str, digits[:kept]))
    if text == "0":
        return "0"
    if exponent >= 0:
        if len(text) + exponent > NUMERIC_MAX_INTEGER_DIGITS:
            return None
        text += "0" * exponent
    else:
        point = len(text) + exponent
        if -exponent > NUMERIC_MAX_SCALE or point > NUMERIC_MAX_INTEGER_DIGITS:
            return None
        text = f"{text[:point]}.{text[point:]}" if point > 0 else f"0.{'0' * -point}{text}"
    return f"-{text}" if sign else text


def plain_number_raw(raw: msgspec.Raw) -> msgspec.Raw:
    """A JSON number's text as ``plain_number`` spells it (JSON ``null`` and a number beyond it as they
    came)."""
    if raw == RAW_NULL:
        return raw
    plain = plain_number(decimal_of(raw))
    return msgspec.Raw(plain.encode("ascii")) if plain is not None else raw


# The slow path ---------------------------------------------------------------------------------------


def strip_nul(value: t.Any, stats: Stats) -> t.Any:
    """The value with NUL characters removed from every string in it (counted in ``stats``)."""

    def without_nul(text: str) -> str:
        if "\x00" in text:
            stats.nul_removed += text.count("\x00")
            return text.replace("\x00", "")
        return text

    return map_strings(value, without_nul)


def map_strings(value: t.Any, change: t.Callable[[str], str]) -> t.Any:
    """A decoded JSON value with ``change`` applied to every string in it, object keys too. Iterative:
    a recursive walk raised RecursionError (a traceback) for a record nested some hundreds of levels
    deep, which msgspec and PostgreSQL read (a record's frames cost Python's limit twice per level)."""
    if isinstance(value, str):
        return change(value)
    if not isinstance(value, (dict, list)):
        return value
    pending: list[tuple[t.Any, t.Any]] = []

    def place(item: t.Any) -> t.Any:
        if isinstance(item, str):
            return change(item)
        if isinstance(item, (dict, list)):
            copy: t.Any = {} if isinstance(item, dict) else []
            pending.append((item, copy))  # filled below; its place in its parent is taken now
            return copy
        return item

    root = place(value)
    while pending:
        source, copy = pending.pop()
        if isinstance(source, dict):
            for key, item in source.items():
                copy[change(key)] = place(item)
        else:
            copy.extend(place(item) for item in source)
    return root


def lenient(source: Source, value: t.Any) -> t.Any:
    """A decoded JSON value in the form the fast decoder gives for ``source`` (raises ValueError)."""
    if value is None:
        return None
    return _LENIENT[source](value)


def _text(value: t.Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected text, got {describe(value)}")
    return t.cast(str, text_of(value))


def _loose(value: t.Any) -> t.Any:
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected a scalar, got {describe(value)}")
    return value


def _integer(value: t.Any) -> int:
    if type(value) is int:
        return value
    if type(value) is Decimal and value.is_finite() and value == value.to_integral_value():
        return int(value)
    raise ValueError(f"expected an integer, got {describe(value)}")


def _number(value: t.Any) -> msgspec.Raw:
    if type(value) is int or (type(value) is Decimal and value.is_finite()):
        return msgspec.Raw(str(value).encode("ascii"))
    raise ValueError(f"expected a number, got {describe(value)}")


def _boolean(value: t.Any) -> bool:
    if type(value) is bool:
        return value
    raise ValueError(f"expected a boolean, got {describe(value)}")


def _timestamp(value: t.Any) -> datetime.datetime:
    parsed = parse_timestamp(value) if isinstance(value, str) else None
    if parsed is None:
        raise ValueError(f"expected a date-time, got {describe(value)}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=datetime.UTC)  # a date-time without zone is UTC
    return parsed


def _timestamp_text(value: t.Any) -> str:
    instant_text(value)  # the check; the sink puts the instant's text in a timestamp column
    return t.cast(str, value)


def instant_text(value: t.Any) -> str:
    """A date or a date-time (a property that may hold either) as the ISO 8601 text of the instant the
    target reads in it (a bare date: midnight UTC; no offset: UTC; digits past the microsecond
    rounded), for the database to parse.

    The database must not read such text itself: each reads a different set of forms (DuckDB refuses
    ``2024-01-02t03:04:05z``, PostgreSQL the week date ``2024-W01-2``), accepts words (``now``,
    ``epoch``, ``infinity``) and zone names, and DuckDB drops digits past the microsecond.
    """
    parsed = parse_timestamp(value) if isinstance(value, str) else None
    if parsed is None:
        raise ValueError(f"expected a date or date-time, got {describe(value)}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.isoformat(timespec="microseconds")


_MINUTE = datetime.timedelta(minutes=1)
_MICROSECOND = datetime.timedelta(microseconds=1)
_RFC3339 = msgspec.json.Decoder(datetime.datetime)
# The digit after a time's sixth decimal (Python's own reading drops it and those after).
_SUBMICROSECOND = re.compile(r"[T ]\d\d:\d\d:\d\d[.,]\d{6}(\d)")


def parse_timestamp(text: str) -> datetime.datetime | None:
    """A lenient ISO 8601 reading (``2024-01-02``, ``...T03:04:05+0200``); None when it is not one.

    RFC 3339 text is read as the typed decoder reads it (digits past the microsecond rounded, as
    msgspec does, where Python's own reading drops them), so a record read here stores the same
    instant as one read by the fast path.
    """
    try:
        return _RFC3339.decode(json_encoder.encode(text.strip()))
    except msgspec.ValidationError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    # Python drops digits past the microsecond; round them as msgspec does (half up).
    extra = _SUBMICROSECOND.search(text)
    if extra and extra.group(1) >= "5":
        parsed += _MICROSECOND
    offset = parsed.utcoffset()
    if offset is not None and offset % _MINUTE:
        # An offset with seconds (Python reads ``+00:00:30``, RFC 3339 has none): msgspec writes
        # offsets in whole minutes, so such a value goes on as the same instant in UTC.
        return parsed.astimezone(datetime.UTC)
    return parsed


def _date(value: t.Any) -> datetime.date:
    if isinstance(value, str):
        parsed = parse_timestamp(value)
        if (
            parsed is not None
            and parsed.time() == datetime.time(0)
            and parsed.utcoffset() in (None, datetime.timedelta(0))
        ):
            return parsed.date()
    raise ValueError(f"expected a date, got {describe(value)}")


_RFC3339_TIME = msgspec.json.Decoder(datetime.time)


def _time(value: t.Any) -> datetime.time:
    """A time of day (its zone dropped), read as the typed decoder reads it when it can."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return _RFC3339_TIME.decode(json_encoder.encode(text)).replace(tzinfo=None)
        except msgspec.ValidationError:
            pass
        try:
            return datetime.time.fromisoformat(text).replace(tzinfo=None)
        except ValueError:
            pass
    raise ValueError(f"expected a time, got {describe(value)}")


def _json(value: t.Any) -> msgspec.Raw:
    return msgspec.Raw(json_encoder.encode(value))


_LENIENT: dict[Source, t.Callable[[t.Any], t.Any]] = {
    Source.TEXT: _text,
    Source.LOOSE: _loose,
    Source.INTEGER: _integer,
    Source.NUMBER: _number,
    Source.BOOLEAN: _boolean,
    Source.TIMESTAMP: _timestamp,
    Source.TIMESTAMP_TEXT: _timestamp_text,
    Source.DATE: _date,
    Source.TIME: _time,
    Source.JSON: _json,
}


def raw_or_none(value: t.Any) -> t.Any:
    """A raw JSON ``null`` as None (Raw fields cannot be Optional in msgspec)."""
    return None if value is None or value == RAW_NULL else value


def decimal_of(raw: msgspec.Raw) -> Decimal:
    """The exact value of a JSON number's text."""
    try:
        return Decimal(bytes(raw).decode("ascii"))
    except (InvalidOperation, UnicodeDecodeError) as error:
        raise ValueError(f"not a number: {describe(raw)}") from error
