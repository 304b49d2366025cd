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
- `RestRecordConverter(fields, stamp_property=, hidden=).decode_page(body) -> RestPage(total_size,
  done, next_records_url, records)`: one REST query page -> `(stamp, record)` pairs.
- `csv_value_converter(sf_type)`: the function converting one Bulk CSV value; Bulk pages are
  converted column by column on top of it (extract/bulk_pages.py, `CsvPageConverter`).
- `RecordShape(fields, stamp_property, hidden)`: the output record type and where its stamp is;
  `null_run_record_type(properties, null)`: a record type for rows with properties known to be null
  (same encoded bytes).
- `record_dict(record)`: a record (output Struct) as a dict keyed by property.
- `format_datetime(dt)`, `parse_datetime(text)`: the output datetime spelling and back.
`fields` are `soql.QueryField`s (salesforce_name, property_name, type).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Context, Decimal
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


def decode_json(body: bytes | str) -> Any:
    """Decode JSON keeping numbers exact (Decimal for anything with a fraction or exponent)."""
    return _json_decoder.decode(body)


# --- single values ---------------------------------------------------------------------------------


def format_datetime(value: datetime) -> str:
    """`2024-01-02T03:04:05.000000Z`; naive datetimes are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_datetime(text: str) -> datetime:
    """Parse the spellings Salesforce and this tap use (`...000+0000`, `...000Z`, `...000000Z`)."""
    match = _DATETIME.match(text)
    if not match:
        raise ValueError(f"not a datetime: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    parsed = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
    return parsed.replace(tzinfo=_zone(zone)).astimezone(UTC)


def _zone(text: str | None) -> timezone:
    if not text or text == "Z":
        return UTC
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
        utc = moment.replace(tzinfo=_zone(zone)).astimezone(UTC)
        return utc.strftime("%H:%M:%S.%f")
    return f"{hour}:{minute}:{second}.{micro}"


def exact_number(value: Decimal | int) -> Decimal | int:
    """One spelling per number: integral values as int, others without trailing zeros."""
    if isinstance(value, int) or value == value.to_integral_value():
        return int(value)
    return value.normalize(_EXACT)


def number_from_text(text: str) -> Decimal | int:
    """`exact_number(Decimal(text))`, with the plain spellings (`12`, `12.50`) taken apart as text."""
    if "e" in text or "E" in text:
        return exact_number(Decimal(text))
    if "." not in text:
        return int(text)
    text = text.rstrip("0")
    return int(text[:-1] or "0") if text.endswith(".") else Decimal(text)


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


def is_text_type(sf_type: str) -> bool:
    return sf_type not in NON_TEXT_TYPES


# --- whole records ---------------------------------------------------------------------------------
#
# Records leave the converters as `(stamp, record)` pairs: `stamp` is the record's replication value
# (output spelling; None without a replication property) and `record` an output Struct whose fields
# encode under the emitted property names. A Struct is built from positional values in one C call and
# msgspec encodes it about three times faster than a dict; `record_dict` gives the dict view when one
# is needed (stream maps, tests). Properties listed in `hidden` are converted (for the stamp) but not
# part of the record (a deselected replication key).


class RestPage(NamedTuple):
    """One decoded page of a REST query answer; `records` converts lazily, record by record."""

    total_size: int
    done: bool
    next_records_url: str | None
    records: Iterator[tuple[str | None, Any]]


def record_dict(record: Any) -> dict[str, Any]:
    """The record as a dict keyed by property name (records may be dicts already)."""
    if isinstance(record, dict):
        return record
    values = _astuple(record)
    runs = getattr(type(record), "null_runs", None)
    if runs is None:
        return dict(zip(type(record).__struct_encode_fields__, values, strict=True))
    result: dict[str, Any] = {}
    for name, value, run in zip(type(record).__struct_encode_fields__, values, runs, strict=True):
        if run:
            result.update(dict.fromkeys(run))
        else:
            result[name] = value
    return result


def output_record_type(properties: Sequence[str]) -> type:
    """The Struct type records take: fields f0..fN (property names need not be identifiers) that
    encode under the property names."""
    return msgspec.defstruct(
        "Record",
        [(f"f{i}", Any) for i in range(len(properties))],
        rename={f"f{i}": name for i, name in enumerate(properties)},
        gc=False,  # records hold only strings, numbers, booleans and None: no cycles
    )


def null_run_record_type(properties: Sequence[str], null: Sequence[bool]) -> tuple[type, list[Any]]:
    """A record type for rows whose `null` properties are null in every row (a Bulk page's empty
    columns), and per field of it the constant value it takes (None: the field takes row values).

    Each run of adjacent null properties becomes one field named after its first property, whose
    constant value is the raw JSON of the run's remaining members: `null,"b":null,"c":null`. Records
    encode to exactly the bytes of `output_record_type(properties)` records with None in those
    properties, at a fraction of the work; `record_dict` gives their properties one by one again
    (the type's `null_runs`: per field, the run's property names, or None).
    """
    fields: list[tuple[str, Any]] = []  # (first property, run of properties or None)
    index = 0
    while index < len(properties):
        end = index + 1
        if null[index]:
            while end < len(properties) and null[end]:
                end += 1
            fields.append((properties[index], tuple(properties[index:end])))
        else:
            fields.append((properties[index], None))
        index = end
    record_type = msgspec.defstruct(
        "Record",
        [(f"f{i}", Any) for i in range(len(fields))],
        rename={f"f{i}": name for i, (name, _) in enumerate(fields)},
        gc=False,
        namespace={"null_runs": tuple(run for _, run in fields)},
    )
    constants = [None if run is None else _null_run_json(run) for _, run in fields]
    return record_type, constants


def _null_run_json(run: Sequence[str]) -> msgspec.Raw:
    """`null` followed by `,"name":null` for every other member of the run (keys spelled as msgspec
    spells Struct keys: the JSON encoding of the name)."""
    return msgspec.Raw(b"null" + b"".join(b"," + msgspec.json.encode(name) + b":null" for name in run[1:]))


class RestRecordConverter:
    """Decodes REST query pages straight into output records.

    Hot path: msgspec decodes each record into a Struct whose slots are the selected fields (the
    `attributes` entry and anything unselected are skipped while parsing), `astuple` hands the values
    over in one C call, and a compiled converter (`compile_converter`) builds the output record. Text
    is cleaned (NUL removed, empty -> null) only on pages whose raw bytes contain a NUL escape or an
    empty string.
    """

    def __init__(
        self,
        fields: Sequence[QueryField],
        *,
        stamp_property: str | None = None,
        hidden: Iterable[str] = (),
    ) -> None:
        if not fields:
            raise ValueError("no fields to convert")
        self.fields = tuple(fields)
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
        shape = RecordShape(self.fields, stamp_property, hidden)
        self.record_type = shape.record_type
        self._fast = compile_converter(self.fields, REST, shape=shape)
        self._careful = compile_converter(self.fields, REST_CAREFUL, shape=shape)

    def decode_page(self, body: bytes) -> RestPage:
        page = self._decoder.decode(body)
        careful = b"\\u0000" in body or b'""' in body
        records = map(self._careful if careful else self._fast, map(_astuple, page.records))
        return RestPage(page.totalSize, page.done, page.nextRecordsUrl, records)


class RecordShape:
    """Which converted values make the record and which one is the stamp."""

    def __init__(self, fields: Sequence[QueryField], stamp_property: str | None, hidden: Iterable[str]):
        hidden = set(hidden)
        names = [field.property_name for field in fields]
        if stamp_property is not None and stamp_property not in names:
            raise ValueError(f"the stamp property {stamp_property} is not among the fields")
        self.stamp_index = names.index(stamp_property) if stamp_property is not None else None
        self.emitted = [i for i, name in enumerate(names) if name not in hidden]
        self.record_type = output_record_type([names[i] for i in self.emitted])


# --- compiled converters ---------------------------------------------------------------------------

REST = "rest"
REST_CAREFUL = "rest-careful"
CSV = "csv"

# Per describe type, the expression that converts `v` (a REST JSON value, or a non-empty CSV text).
# The usual spellings are handled inline (no call); anything else goes through the functions above.
_REST_EXPRESSIONS = {
    "datetime": "(v[:23] + '000Z' if len(v) == 28 and v[23:] == '+0000' else _datetime(v))",
    "time": "_time(v)",
    "number": "(v if v.__class__ is int else _exact(v))",
    "integer": "(v if v.__class__ is int else _integer_json(v))",
    "anyType": "_any(v)",
}
_CSV_EXPRESSIONS = {
    "datetime": "(v[:23] + '000Z' if len(v) == 24 and v[23] == 'Z' else _datetime(v))",
    "time": "_time(v)",
    "number": "_number(v)",
    "integer": "_integer_text(v)",
    "boolean": "(True if v == 'true' else False if v == 'false' else _boolean(v))",
    "anyType": "_any(v)",
}
_HELPERS = {
    "_datetime": convert_datetime,
    "_time": convert_time,
    "_exact": exact_number,
    "_integer_json": integer_from_json,
    "_number": number_from_text,
    "_integer_text": integer_from_text,
    "_boolean": boolean_from_text,
    "_any": any_text,
    "_text": strip_text,
}


def _type_key(sf_type: str) -> str:
    if sf_type in NUMBER_TYPES:
        return "number"
    if sf_type in INTEGER_TYPES:
        return "integer"
    return sf_type


def _value_source(variable: str, sf_type: str, flavour: str) -> str:
    """Source of the expression converting one value held in `variable`."""
    key = _type_key(sf_type)
    if flavour == CSV:
        template = _CSV_EXPRESSIONS.get(key)
        if template is None:  # text (and date): empty is null
            return f"({variable} or None)"
        return f"({_substitute(template, variable)} if {variable} else None)"
    template = _REST_EXPRESSIONS.get(key)
    if template is None and flavour == REST_CAREFUL and is_text_type(sf_type):
        template = "_text(v)"
    if template is None:
        return variable
    return f"({_substitute(template, variable)} if {variable} is not None else None)"


def compile_converter(
    fields: Sequence[QueryField], flavour: str, *, shape: RecordShape
) -> Callable[[Sequence[Any]], tuple[str | None, Any]]:
    """A function turning one row of REST values (a Struct tuple) into `(stamp, record)`.

    It is generated once per query shape: unpacking the row into locals, converting each value with
    an inline expression and building the record Struct in one call is several times faster than a
    loop over the columns and a dict. The generated source holds only fixed templates and indexes
    (names stay in the Struct type), so catalog contents cannot inject code.
    """
    targets = ", ".join(f"v{i}" for i in range(len(fields)))
    lines = ["def convert(row):", f"    ({targets},) = row"]
    lines.extend(
        f"    v{i} = {_value_source(f'v{i}', field.type, flavour)}" for i, field in enumerate(fields)
    )
    stamp = "None" if shape.stamp_index is None else f"v{shape.stamp_index}"
    values = ", ".join(f"v{i}" for i in shape.emitted)
    lines.append(f"    return {stamp}, _Record({values})")
    namespace = dict(_HELPERS, _Record=shape.record_type)
    exec(compile("\n".join(lines), f"<{flavour} converter>", "exec"), namespace)
    return namespace["convert"]


@functools.cache
def csv_value_converter(sf_type: str) -> Callable[[str | None], Any]:
    """The function converting one Bulk CSV value of this describe type (None or empty -> None).

    Bulk pages are converted column by column (extract/bulk_pages.py); this is what a column whose
    values do not all have the usual spelling goes through, value by value, and what defines the
    result of the column-wise paths. Built from the same fixed templates as `compile_converter`.
    """
    source = f"def convert(v):\n    return {_value_source('v', sf_type, CSV)}"
    namespace = dict(_HELPERS)
    exec(compile(source, "<csv value converter>", "exec"), namespace)
    return namespace["convert"]


def _substitute(template: str, variable: str) -> str:
    """The template with its value placeholder `v` replaced by `variable` (whole word only)."""
    return re.sub(r"\bv\b", variable, template)
