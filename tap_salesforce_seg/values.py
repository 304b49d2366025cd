"""Converting Salesforce values to the tap's output values, by describe type.

REST JSON and Bulk API 2.0 CSV carry the same data in different spellings; both are converted to one
output, so a record is identical whichever API served it:

| describe type                    | output                                                        |
|----------------------------------|---------------------------------------------------------------|
| datetime                         | `"2024-01-02T03:04:05.000000Z"`: UTC, always 6 fraction digits |
| date                             | `"2024-01-02"`                                                 |
| time                             | `"03:04:05.000000"`: a time of day, 6 fraction digits; the `Z` |
|                                  | Salesforce appends is dropped (time fields have no zone; the  |
|                                  | schema's `format: time` value, as singer-sdk writes times)    |
| boolean                          | `true` / `false`                                              |
| int, long                        | integer                                                       |
| double, currency, percent        | exact: an integer when integral, else a Decimal without       |
|                                  | trailing zeros (never a float; written as a JSON number)      |
| anyType                          | text (booleans `true`/`false`, numbers as sent, datetimes as  |
|                                  | above)                                                        |
| every other type (id, string, picklist, reference, textarea, ...) | text, NUL characters removed  |

Null is null; an empty text is null too (Salesforce stores no empty strings, and Bulk CSV writes null
as an empty field).

API:
- `decode_json(body: bytes)`: JSON with every non-integer number as an exact `Decimal`.
- `RestRecordConverter(fields).decode_page(body) -> RestPage(total_size, done, next_records_url,
  records)`: one REST query page -> output records.
- `CsvPageConverter(fields)`: `.records(page_bytes)` yields output records of one Bulk CSV page.
- `format_datetime(dt)`, `parse_datetime(text)`: the output datetime spelling and back.
`fields` are `soql.QueryField`s (salesforce_name, property_name, type).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Context, Decimal
from operator import itemgetter
from typing import Any, NamedTuple

import msgspec

from tap_salesforce_seg.soql import QueryField

NUMBER_TYPES = frozenset({"double", "currency", "percent"})
INTEGER_TYPES = frozenset({"int", "long"})
# Types whose values are text in both APIs; everything not listed elsewhere counts as text.
NON_TEXT_TYPES = NUMBER_TYPES | INTEGER_TYPES | {"boolean", "date", "datetime", "time", "anyType"}

_json_decoder = msgspec.json.Decoder(float_hook=Decimal)
_astuple = msgspec.structs.astuple
# Wide enough never to round a Salesforce number (18 digits at most) while removing trailing zeros.
_EXACT = Context(prec=200)
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)
_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$")

Converter = Callable[[Any], Any]


def decode_json(body: bytes | str) -> Any:
    """Decode JSON keeping numbers exact (Decimal for anything with a fraction or exponent)."""
    return _json_decoder.decode(body)


# --- single values ---------------------------------------------------------------------------------


def format_datetime(value: datetime) -> str:
    """`2024-01-02T03:04:05.000000Z`; naive datetimes are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_datetime(text: str) -> datetime:
    """Parse the spellings Salesforce and this tap use (`...000+0000`, `...000Z`, `...000000Z`)."""
    match = _DATETIME.match(text)
    if not match:
        raise ValueError(f"not a datetime: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    parsed = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
    return parsed.replace(tzinfo=_zone(zone)).astimezone(timezone.utc)


def _zone(text: str | None) -> timezone:
    if not text or text == "Z":
        return timezone.utc
    digits = text[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:])
    return timezone((-1 if text[0] == "-" else 1) * timedelta(minutes=minutes))


def convert_datetime(text: str) -> str:
    """Any Salesforce datetime text -> the output spelling (fast for the two usual forms)."""
    length = len(text)
    if length == 28 and text[19] == "." and text.endswith("+0000"):  # REST 2024-01-02T03:04:05.000+0000
        return text[:23] + "000Z"
    if length == 24 and text[19] == "." and text[23] == "Z":  # Bulk 2024-01-02T03:04:05.000Z
        return text[:23] + "000Z"
    return format_datetime(parse_datetime(text))


def convert_time(text: str) -> str:
    """`03:04:05.000Z` (REST and Bulk) -> `03:04:05.000000`."""
    if len(text) == 13 and text[8] == "." and text[12] == "Z":
        return text[:12] + "000"
    match = _TIME.match(text)
    if not match:
        raise ValueError(f"not a time: {text!r}")
    hour, minute, second, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    if zone and zone != "Z":
        moment = datetime(2000, 1, 1, int(hour), int(minute), int(second), int(micro))
        utc = moment.replace(tzinfo=_zone(zone)).astimezone(timezone.utc)
        return utc.strftime("%H:%M:%S.%f")
    return f"{hour}:{minute}:{second}.{micro}"


def exact_number(value: Decimal | int) -> Decimal | int:
    """One spelling per number: integral values as int, others without trailing zeros."""
    if isinstance(value, int) or value == value.to_integral_value():
        return int(value)
    return value.normalize(_EXACT)


def number_from_text(text: str) -> Decimal | int:
    return exact_number(Decimal(text))


def integer_from_text(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return int(Decimal(text))  # "39000.0"


def integer_from_json(value: Any) -> int:
    return value if isinstance(value, int) else int(value)


def boolean_from_text(text: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    raise ValueError(f"not a boolean: {text!r}")


def any_text(value: Any) -> str | None:
    """anyType values: text, whatever JSON type REST used; datetimes in the output spelling."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, str):
        if len(value) in (24, 28) and value[10] == "T" and _DATETIME.match(value):
            return convert_datetime(value)
        return strip_text(value)
    return msgspec.json.encode(value).decode()  # objects and arrays: their JSON text


def strip_text(value: str) -> str | None:
    """Remove NUL characters (targets and CSV tools reject them); empty text is null."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value or None


def rest_converter(sf_type: str) -> Converter | None:
    """Converter for one REST JSON value (never called with None), or None when no change is due.

    Text needs no converter here: REST pages are checked for NUL and empty strings as a whole
    (`RestRecordConverter.for_page`), which spares a call per text value on clean pages.
    """
    if sf_type == "datetime":
        return convert_datetime
    if sf_type == "time":
        return convert_time
    if sf_type in NUMBER_TYPES:
        return exact_number
    if sf_type in INTEGER_TYPES:
        return integer_from_json
    if sf_type == "anyType":
        return any_text
    return None


def csv_converter(sf_type: str) -> Converter | None:
    """Converter for one non-empty Bulk CSV text, or None when the text is the value."""
    if sf_type == "datetime":
        return convert_datetime
    if sf_type == "time":
        return convert_time
    if sf_type in NUMBER_TYPES:
        return number_from_text
    if sf_type in INTEGER_TYPES:
        return integer_from_text
    if sf_type == "boolean":
        return boolean_from_text
    if sf_type == "anyType":
        return any_text
    return None


def is_text_type(sf_type: str) -> bool:
    return sf_type not in NON_TEXT_TYPES


# --- whole records ---------------------------------------------------------------------------------


class RestPage(NamedTuple):
    """One decoded page of a REST query answer; `records` converts lazily, record by record."""

    total_size: int
    done: bool
    next_records_url: str | None
    records: Iterator[dict]


class RestRecordConverter:
    """Decodes REST query pages straight into output records keyed by property.

    Hot path: msgspec decodes each record into a Struct whose slots are the selected fields (the
    `attributes` entry and anything unselected are skipped while parsing), `astuple` hands the values
    over in one C call, only the non-text columns pass through a Python converter, and
    `dict(zip(...))` builds the record. Text is cleaned (NUL removed, empty -> null) only on pages
    whose raw bytes contain a NUL escape or an empty string.
    """

    def __init__(self, fields: Sequence[QueryField]) -> None:
        if not fields:
            raise ValueError("no fields to convert")
        self.fields = tuple(fields)
        self._properties = tuple(field.property_name for field in self.fields)
        # Slots are named f0..fN (property names need not be identifiers); `rename` maps the JSON keys.
        record_type = msgspec.defstruct(
            "RestRecord",
            [(f"f{i}", Any, None) for i in range(len(self.fields))],
            rename={f"f{i}": field.salesforce_name for i, field in enumerate(self.fields)},
            gc=False,
        )
        page_type = msgspec.defstruct(
            "RestQueryPage",
            [
                ("totalSize", int, 0),
                ("done", bool, True),
                ("nextRecordsUrl", str | None, None),
                ("records", list[record_type], []),  # type: ignore[valid-type]
            ],
        )
        self._decoder = msgspec.json.Decoder(page_type, float_hook=Decimal)
        typed = [(i, rest_converter(field.type)) for i, field in enumerate(self.fields)]
        self._typed = tuple((i, conv) for i, conv in typed if conv is not None)
        text = tuple((i, strip_text) for i, field in enumerate(self.fields) if is_text_type(field.type))
        self._typed_and_text = self._typed + text

    def decode_page(self, body: bytes) -> RestPage:
        page = self._decoder.decode(body)
        careful = b"\\u0000" in body or b'""' in body
        conversions = self._typed_and_text if careful else self._typed
        records = self._convert(page.records, conversions)
        return RestPage(page.totalSize, page.done, page.nextRecordsUrl, records)

    def _convert(self, structs: list, conversions: tuple) -> Iterator[dict]:
        properties = self._properties
        for struct in structs:
            values = list(_astuple(struct))
            for i, conv in conversions:
                value = values[i]
                if value is not None:
                    values[i] = conv(value)
            yield dict(zip(properties, values, strict=True))


class CsvPageConverter:
    """Turns Bulk API 2.0 CSV result pages (each with its header row) into output records."""

    def __init__(self, fields: Sequence[QueryField]) -> None:
        if not fields:
            raise ValueError("no fields to convert")
        self.fields = tuple(fields)
        self._by_name = {field.salesforce_name.lower(): field for field in self.fields}
        self._cache: dict[tuple[str, ...], _CsvLayout] = {}

    def records(self, page: bytes) -> Iterator[dict]:
        text = page.decode("utf-8")
        if "\x00" in text:
            text = text.replace("\x00", "")
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header = next(reader, None)
        if header is None:
            return
        layout = self._layout(tuple(header))
        for row in reader:
            yield layout.convert(row)

    def _layout(self, header: tuple[str, ...]) -> _CsvLayout:
        layout = self._cache.get(header)
        if layout is None:
            layout = _CsvLayout(header, self._by_name)
            self._cache[header] = layout
        return layout


class _CsvLayout:
    """Column positions and converters for one CSV header."""

    def __init__(self, header: Sequence[str], fields_by_name: dict[str, QueryField]) -> None:
        positions = {name.lower(): i for i, name in enumerate(header)}
        missing = [field.salesforce_name for key, field in fields_by_name.items() if key not in positions]
        if missing:
            raise ValueError(f"Bulk result lacks the columns {', '.join(missing)}")
        fields = list(fields_by_name.values())
        self._width = len(header)
        self._properties = tuple(field.property_name for field in fields)
        order = [positions[field.salesforce_name.lower()] for field in fields]
        self._pick = None if order == list(range(len(header))) else _tuple_getter(order)
        converters = [(i, csv_converter(field.type)) for i, field in enumerate(fields)]
        self._typed = tuple((i, conv) for i, conv in converters if conv is not None)

    def convert(self, row: list[str]) -> dict:
        if len(row) != self._width:
            raise ValueError(f"Bulk result row has {len(row)} columns, the header {self._width}")
        picked = row if self._pick is None else self._pick(row)
        values = [value or None for value in picked]
        for i, conv in self._typed:
            value = values[i]
            if value is not None:
                values[i] = conv(value)
        return dict(zip(self._properties, values, strict=True))


def _tuple_getter(keys: Sequence[Any]) -> Callable[[Any], tuple]:
    """itemgetter that always returns a tuple (itemgetter of one key returns the bare value)."""
    if len(keys) == 1:
        single = itemgetter(keys[0])
        return lambda item: (single(item),)
    return itemgetter(*keys)
