"""Check and normalise a batch column by column, while it is built for loading.

Each column arrives as the tuple of one property's values in a chunk of records (already decoded, and
mostly already type-checked, by msgspec). ``normalize`` returns the values each engine's payload
builder expects for the column's kind:

========== ==================================================================
kind       values
========== ==================================================================
TEXT       ``str`` without NUL characters
INTEGER    ``int`` within bigint (a larger one asks for NUMBER instead)
NUMBER     ``int`` or finite ``Decimal`` (never a float)
BOOLEAN    ``bool``
TIMESTAMP  ``datetime`` (aware, or naive meaning UTC)
DATE       ``date``
TIME       ``time``
JSON       ``str`` holding JSON text, without ``\\u0000`` escapes
========== ==================================================================

or ``None`` for NULL. The common case (every value already of the right Python type) is checked with
C-level passes over the whole column; only a column with an odd value falls back to a per-value loop,
which pins the problem to one record (``ValueProblem``).
"""

from __future__ import annotations

import datetime
import typing as t
from decimal import Decimal

import msgspec

from target_warehouse_seg.typemap import Kind

NoneType = type(None)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
json_encoder = msgspec.json.Encoder(decimal_format="number")
_json_decoder = msgspec.json.Decoder(float_hook=Decimal)


class ValueProblem(Exception):
    """The value at ``index`` of a column does not fit the column's kind."""

    def __init__(self, index: int, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.message = message
        self.column = column  # the column's position in the batch, when the codec raises it


class NeedsWidening(Exception):
    """The column's values need a wider kind (for example an integer beyond bigint)."""

    def __init__(self, kind: Kind, reason: str, column: int | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.column = column  # the column's position in the batch, when the codec raises it


class Stats:
    """Counts gathered while normalising (NUL characters removed)."""

    __slots__ = ("nul_removed",)

    def __init__(self) -> None:
        self.nul_removed = 0


def describe(value: t.Any) -> str:
    """A short description of an offending value for an error message."""
    if isinstance(value, msgspec.Raw):
        value = bytes(value).decode("utf-8", "replace")
        return f"JSON {value[:60]}"
    text = repr(value)
    if isinstance(value, (datetime.date, datetime.time)):
        text = value.isoformat()
    kind = {
        str: "text",
        bool: "boolean",
        int: "integer",
        Decimal: "number",
        dict: "object",
        list: "array",
    }.get(type(value), type(value).__name__)
    return f"{kind} {text[:60]}"


def normalize(kind: Kind, values: t.Sequence[t.Any], stats: Stats) -> list[t.Any]:
    """The column's values checked and normalised for ``kind`` (see the module docstring)."""
    return _NORMALIZERS[kind](values, stats)


def _types(values: t.Sequence[t.Any]) -> set[type]:
    return set(map(type, values))


def _text(values: t.Sequence[t.Any], stats: Stats) -> list[t.Any]:
    if _types(values) <= {str, NoneType}:
        if "\x00" not in "".join(filter(None, values)):
            return list(values)
        return [_strip_nul(value, stats) for value in values]
    return [_strip_nul(_as_text(index, value), stats) for index, value in enumerate(values)]


def _strip_nul(value: str | None, stats: Stats) -> str | None:
    if value is None or "\x00" not in value:
        return value
    stats.nul_removed += value.count("\x00")
    return value.replace("\x00", "")


def _as_text(index: int, value: t.Any) -> str | None:
    """Any JSON value as text: exact digits for numbers, ISO 8601 for dates, JSON for structures."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, msgspec.Raw):
        raw = bytes(value)
        if raw == b"null":
            return None
        decoded = _json_decoder.decode(raw)
        return decoded if isinstance(decoded, str) else _as_text(index, decoded)
    if isinstance(value, (dict, list)):
        return json_encoder.encode(value).decode("utf-8")
    raise ValueProblem(index, f"cannot store {describe(value)} as text")


def _integer(values: t.Sequence[t.Any], stats: Stats) -> list[t.Any]:
    if not _types(values) <= {int, NoneType}:
        values = [_as_integer(index, value) for index, value in enumerate(values)]
    present = list(filter(None, values))  # zeros and NULLs never overflow
    if present and (min(present) < INT64_MIN or max(present) > INT64_MAX):
        raise NeedsWidening(Kind.NUMBER, "an integer beyond bigint's range")
    return list(values)


def _as_integer(index: int, value: t.Any) -> int | None:
    if value is None or (type(value) is int):
        return value
    if type(value) is Decimal and value.is_finite() and value == value.to_integral_value():
        return int(value)
    raise ValueProblem(index, f"expected an integer, got {describe(value)}")


def _number(values: t.Sequence[t.Any], stats: Stats) -> list[t.Any]:
    if not _types(values) <= {int, Decimal, NoneType}:
        return [_as_number(index, value) for index, value in enumerate(values)]
    return list(values)


def _as_number(index: int, value: t.Any) -> int | Decimal | None:
    if value is None or type(value) in (int, Decimal):
        return value
    raise ValueProblem(index, f"expected a number, got {describe(value)}")


def check_finite(values: t.Sequence[t.Any]) -> None:
    """Raise for the first NaN or infinite number (JSON has none; a lenient decode may)."""
    for index, value in enumerate(values):
        if type(value) is Decimal and not value.is_finite():
            raise ValueProblem(index, f"expected a finite number, got {value}")


def _boolean(values: t.Sequence[t.Any], stats: Stats) -> list[t.Any]:
    if not _types(values) <= {bool, NoneType}:
        for index, value in enumerate(values):
            if value is not None and type(value) is not bool:
                raise ValueProblem(index, f"expected a boolean, got {describe(value)}")
    return list(values)


def _timestamp(values: t.Sequence[t.Any], stats: Stats) -> list[t.Any]:
    if _types(values) <= {datetime.datetime, NoneType}:
        return list(values)
    return [_as_timestamp(index, value) for index, value in enumerate(values)]


def _as_timestamp(index: int, value: t.Any) -> datetime.datetime | None:
    if value is None or type(value) is datetime.datetime:
        return value
    if type(value) is datetime.date:
        return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.timezone.utc)
    if isinstance(value, str):
        parsed = parse_timestamp(value)
        if parsed is not None:
            return parsed
    raise ValueProblem(index, f"expected a date-time, got {describe(value)}")


def parse_timestamp(text: str) -> datetime.datetime | None:
    """A lenient ISO 8601 reading (``2024-01-02``, ``...T03:04:05+0200``); None when it is not one."""
    try:
        parsed = datetime.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        return None
    return parsed


def _date(values: t.Sequence[t.Any], stats: Stats) -> list[t.Any]:
    if _types(values) <= {datetime.date, NoneType}:
        return list(values)
    return [_as_date(index, value) for index, value in enumerate(values)]


def _as_date(index: int, value: t.Any) -> datetime.date | None:
    if value is None or type(value) is datetime.date:
        return value
    if isinstance(value, str):
        parsed = parse_timestamp(value)
        if (
            parsed is not None
            and parsed.time() == datetime.time(0)
            and parsed.utcoffset() in (None, datetime.timedelta(0))
        ):
            return parsed.date()
    raise ValueProblem(index, f"expected a date, got {describe(value)}")


def _time(values: t.Sequence[t.Any], stats: Stats) -> list[t.Any]:
    if _types(values) <= {datetime.time, NoneType}:
        return list(values)
    return [_as_time(index, value) for index, value in enumerate(values)]


def _as_time(index: int, value: t.Any) -> datetime.time | None:
    if value is None or type(value) is datetime.time:
        return value
    if isinstance(value, str):
        try:
            return datetime.time.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            pass
    raise ValueProblem(index, f"expected a time, got {describe(value)}")


def _json(values: t.Sequence[t.Any], stats: Stats) -> list[t.Any]:
    result: list[t.Any] = []
    append = result.append
    for index, value in enumerate(values):
        if type(value) is msgspec.Raw:
            raw = bytes(value)
            if raw == b"null":
                append(None)
            elif b"\\u0000" in raw:
                append(_json_without_nul(raw, stats))
            else:
                try:
                    append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    raise ValueProblem(index, "JSON value is not valid UTF-8") from None
        elif value is None:
            append(None)
        else:
            append(json_encoder.encode(_drop_nul(value, stats)).decode("utf-8"))
    return result


def _json_without_nul(raw: bytes, stats: Stats) -> str:
    return json_encoder.encode(_drop_nul(_json_decoder.decode(raw), stats)).decode("utf-8")


def _drop_nul(value: t.Any, stats: Stats) -> t.Any:
    if isinstance(value, str):
        return _strip_nul(value, stats)
    if isinstance(value, dict):
        return {_drop_nul(key, stats): _drop_nul(item, stats) for key, item in value.items()}
    if isinstance(value, list):
        return [_drop_nul(item, stats) for item in value]
    return value


_NORMALIZERS: dict[Kind, t.Callable[[t.Sequence[t.Any], Stats], list[t.Any]]] = {
    Kind.TEXT: _text,
    Kind.INTEGER: _integer,
    Kind.NUMBER: _number,
    Kind.BOOLEAN: _boolean,
    Kind.TIMESTAMP: _timestamp,
    Kind.DATE: _date,
    Kind.TIME: _time,
    Kind.JSON: _json,
}


def lenient(kind: Kind, value: t.Any) -> t.Any:
    """A value the strict decoder refused, read leniently for its declared kind (raises ValueError).

    Used only on the slow path, record by record: an integral ``1.0`` for an integer, ISO 8601 forms
    msgspec does not take (``2024-01-02`` for a date-time), numbers or booleans for a text property.
    """
    if value is None:
        return None
    try:
        if kind is Kind.JSON:
            return msgspec.Raw(json_encoder.encode(value))
        if kind is Kind.INTEGER:
            return _as_integer(0, value)  # a big integer is fine here: the column widens later
        normalized = _NORMALIZERS[kind]([value], Stats())[0]
    except (ValueProblem, NeedsWidening) as problem:
        raise ValueError(str(problem)) from None
    if kind is Kind.NUMBER and type(normalized) is Decimal and not normalized.is_finite():
        raise ValueError(f"expected a finite number, got {normalized}")
    return normalized
