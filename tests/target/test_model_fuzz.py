"""A seeded, model-based randomized test of the target's data semantics, on both engines.

Each seed generates a random Singer input spread over two or three runs against one warehouse, and a
pure-Python model of what the warehouse must hold after every run; the real target loads the runs (the
last one through the console script) and every table is compared with the model row for row and value for
value, and the STATE lines with the STATEs sent.

The model's rules come from the spec (issue 4) and the target's README, not from the code:
- keyed streams are upserted: with a replication key (``bookmark_properties``: ``system_modstamp``, or
  another date-time property) the row kept for a key is the version with the newest replication key
  (compared as instants, whatever the offset), the later one among equals, and a NULL is older than any
  date; without one the last version read wins;
- a version that loses writes nothing (its row keeps its ``uuid_ts``); the winner writes its whole row:
  properties it lacks, or that its SCHEMA no longer has, are NULL; properties not in its SCHEMA are ignored;
- with ``hard_delete`` a winning version with ``is_deleted = true`` deletes the row, and with a replication
  key every version with ``is_deleted = true`` leaves its key a tombstone at the newest replication key
  deleted at: while ``hard_delete`` is on, a version of a key that is not stored and is older than its
  tombstone is not stored (older versions after a hard delete are generated on purpose);
- streams without key properties append every record;
- new properties add columns (NULL in earlier rows), vanished ones keep theirs, types only widen
  (integer -> number -> text, date -> date-time -> text) and stored values keep their value (compared as
  numbers or instants once they are text, whose exact spelling the spec leaves open); an integer beyond
  bigint widens its column to number;
- values read back exactly: text (unicode, quotes, newlines, control characters; NULs removed), integers
  to the int64 bounds, decimals of up to 20 + 18 digits however they are written (also as singer-sdk's
  decimal text, a string of format singer.decimal or x-singer.decimal), date-times in any offset
  as the same instant, dates, times (wall clock), booleans, JSON objects and arrays, an integer sent for a
  text property as its digits; ``received_at`` is the winning version's ``time_extracted``;
- with ``on_invalid_record: quarantine`` a record that breaks the rules (missing or NULL key, a value
  that does not fit its property, no SCHEMA yet) changes nothing but adds its (stream, line) to
  ``_rejected_records``;
- STATE lines are STATEs that were sent, in order, each at most once, the last one the last one sent.

Some seeds (4 in 10) first make some of the tables by hand, as a warehouse moving to the target has them:
columns of types narrower than the target's (an integer, a varchar(2), a numeric(5,0)), comments someone
wrote, and sometimes no system columns; the target takes them over, and the model is the same.

Sizes: 10 seeds per engine, each 1-3 streams over 2-3 runs of 20-220 records (batch_size_rows 1-500).

Reproduce a failing seed's input with ``python tests/target/test_model_fuzz.py SEED OUTDIR``.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import subprocess
import sys
import time
import typing as t
from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import Context, Decimal, InvalidOperation
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import Warehouse, schema, to_lines

SEEDS = range(10)
UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
OLDEST = (0, dt.datetime.min.replace(tzinfo=UTC))  # the order of a NULL modstamp
NO_STAMP = (None, "date-time")  # a row without a replication key

# Value generators --------------------------------------------------------------------------------------

TEXT_PIECES = (
    "",
    "plain",
    "Zoë ☃ 日本語",
    "🎉😀",
    '"quoted"',
    "'single'",
    "back\\slash",
    "tab\there",
    "new\nline",
    "cr\r\nlf",
    "comma,semi;pipe|",
    "NULL",
    "null",
    "\\N",
    " padded ",
    "nul\u0000inside",
    "\u2028sep\u2029",
    "\x01ctl\x1f",
    "ß ümlaut",
    '{"not": json',
)
INTEGERS = (0, 1, -1, 42, 2**31 - 1, -(2**31), 2**53 + 1, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1)
OFFSET_MINUTES = (0, 0, 330, -480, 840, -720, 60, -150, 345)
JSON_KEYS = ("a", "ключ", "with space", 'q"uote', "n", "nested", "emoji🎉", "")
JSON_FLOATS = (0.5, -1.25, 1234.5678, 0.001)
KINDS_TO_ADD = (
    "string",
    "integer",
    "number",
    "boolean",
    "date-time",
    "date",
    "time",
    "object",
    "array",
    "mixed",
    "either",
    "decimal",  # singer-sdk's decimal text: a string of format (x-)singer.decimal holding a number
)
FORMATTED = ("date-time", "date", "time")  # strings with a format
EITHER_FORMATS = [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]
BASE_PROPERTIES = {
    "name": "string",
    "amount": "number",
    "price": "decimal",
    "count": "integer",
    "flag": "boolean",
    "created": "date-time",
    "doc": "object",
    "tags": "array",
    "user": "string",  # a reserved word in PostgreSQL
    "LastName": "string",  # conformed to lastname
    "Billing City": "string",  # conformed to billing_city
}
BAD_VALUES = {  # values that do not fit a property of the kind
    "integer": ("twelve", {"x": 1}),
    "number": ("12.50", True, [1]),
    "decimal": ("twelve", "NaN", "1,5", " 12", True),
    "boolean": ("yes", {"b": True}),
    "date-time": ("2024-02-30T00:00:00Z", "not a date", 20240101),
    "date": ("2024-02-30", "tomorrow"),
    "time": ("25:61:00", "noon"),
    "either": ("2024-02-30", "now", "epoch", "infinity"),  # words a database would read as date-times
}
FIXED = {"system_modstamp", "updated_at", "is_deleted", "rid", "n", "d", "j"}  # never dropped from a SCHEMA
# Each a property's kinds, in widening order. "j" starts as an object: its JSON column then holds the
# later kinds' values as their JSON (the string "123" a JSON string, a date-time the string as sent).
WIDENING = {
    "n": ("integer", "number", "string"),
    "d": ("date", "date-time", "string"),
    "j": ("object", "string", "date-time", "boolean"),
}


@dataclass(frozen=True)
class RawNumber:
    """A JSON number written exactly as `text` (exponents, trailing zeros), whose value is `value`."""

    text: str
    value: Decimal


@dataclass(frozen=True)
class DecimalText(RawNumber):
    """A number sent as singer-sdk's decimal text: the JSON string of `text`."""


def encode(value: t.Any) -> str:
    """JSON with numbers written as given (never through a float)."""
    if value is None:
        return "null"
    if isinstance(value, DecimalText):
        return json.dumps(value.text)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, RawNumber):
        return value.text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=len(value) % 2 == 0)  # both escaped and raw UTF-8
    if isinstance(value, list):
        return "[" + ", ".join(encode(item) for item in value) + "]"
    return "{" + ", ".join(f"{encode(key)}: {encode(item)}" for key, item in value.items()) + "}"


class Values:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def text(self) -> str:
        pieces = [self.rng.choice(TEXT_PIECES) for _ in range(self.rng.randint(1, 3))]
        if self.rng.random() < 0.3:
            pieces.append(str(self.rng.randint(0, 999)))
        if self.rng.random() < 0.02:
            pieces.append("long " * 800)
        return "".join(pieces)

    def integer(self) -> int:
        if self.rng.random() < 0.4:
            return self.rng.choice(INTEGERS)
        return self.rng.randint(-(10**12), 10**12)

    def number(self) -> RawNumber | int:
        rng = self.rng
        if rng.random() < 0.1:
            return self.integer()
        digits = "0123456789"
        # Now and then more digits than DuckDB's DECIMAL(38,18) holds (21+ before the point, 19+ after).
        wide = rng.random() < 0.02
        whole_digits = rng.randint(21, 24) if wide and rng.random() < 0.5 else rng.randint(0, 20)
        whole = "".join(rng.choice(digits) for _ in range(whole_digits)).lstrip("0") or "0"
        fraction_digits = (
            rng.randint(19, 22) if wide and whole_digits <= 20 else rng.choice((0, 1, 2, 2, 5, 17, 18))
        )
        fraction = "".join(rng.choice(digits) for _ in range(fraction_digits))
        sign = "-" if rng.random() < 0.3 else ""
        plain = sign + whole + (f".{fraction}" if fraction else "")
        value = Decimal(plain)
        form = rng.random()
        text = plain if form < 0.6 else format(value, "E" if form < 0.8 else "e")
        assert Decimal(json.loads(text, parse_float=Decimal, parse_int=Decimal)) == value
        return RawNumber(text, value)

    def instant(self) -> dt.datetime:
        micro = self.rng.choice((0, 0, self.rng.randint(0, 999) * 1000, self.rng.randint(0, 999_999)))
        return EPOCH + dt.timedelta(
            seconds=self.rng.randint(-2_000_000_000, 4_000_000_000), microseconds=micro
        )

    def datetime_text(self, instant: dt.datetime) -> str:
        rng = self.rng
        minutes = rng.choice(OFFSET_MINUTES)
        local = instant.astimezone(dt.timezone(dt.timedelta(minutes=minutes)))
        text = local.strftime("%Y-%m-%dT%H:%M:%S")
        if local.microsecond % 1000:
            text += f".{local.microsecond:06d}"
        elif local.microsecond or rng.random() < 0.2:
            text += f".{local.microsecond // 1000:03d}"
        if minutes == 0:
            return text + rng.choice(("Z", "+00:00", ""))  # no offset means UTC
        sign = "+" if minutes > 0 else "-"
        return text + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    def date_text(self) -> str:
        if self.rng.random() < 0.1:
            return "2024-02-29"
        return (dt.date(1900, 1, 1) + dt.timedelta(days=self.rng.randint(0, 73_000))).isoformat()

    def time_text(self) -> str:
        """A time of day; an offset is dropped (the README: ``time`` keeps its wall-clock value)."""
        text = f"{self.rng.randint(0, 23):02d}:{self.rng.randint(0, 59):02d}:{self.rng.randint(0, 59):02d}"
        text += self.rng.choice(("", "", ".5", ".123456", ".001"))
        return text + self.rng.choice(("", "", "", "Z", "+02:00"))

    def json_value(self, depth: int = 0) -> t.Any:
        rng = self.rng
        choice = rng.random()
        if depth < 2 and choice < 0.2:
            return {rng.choice(JSON_KEYS): self.json_value(depth + 1) for _ in range(rng.randint(0, 3))}
        if depth < 2 and choice < 0.3:
            return [self.json_value(depth + 1) for _ in range(rng.randint(0, 3))]
        return rng.choice(
            (None, True, False, self.integer(), rng.choice(JSON_FLOATS), self.text().replace("\u0000", ""))
        )

    def of_kind(self, kind: str) -> t.Any:
        """A value for a nullable property of this kind (sometimes NULL)."""
        rng = self.rng
        if rng.random() < 0.1:
            return None
        if kind == "string":
            return self.text() if rng.random() < 0.9 else self.integer()  # numbers are fine for text
        if kind == "integer":
            return self.integer()
        if kind == "number":
            return self.number()
        if kind == "decimal":
            number = self.number()
            if isinstance(number, int):
                return DecimalText(str(number), Decimal(number))
            return DecimalText(number.text, number.value) if rng.random() < 0.9 else number
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "date-time":
            return self.date_text() if rng.random() < 0.05 else self.datetime_text(self.instant())
        if kind == "date":
            return self.date_text()
        if kind == "time":
            return self.time_text()
        if kind == "array":
            return [self.json_value(1) for _ in range(rng.randint(0, 4))]
        if kind == "either":
            return self.date_text() if rng.random() < 0.5 else self.datetime_text(self.instant())
        if kind == "mixed":  # integer or string: a text column
            return self.integer() if rng.random() < 0.5 else self.text()
        return {rng.choice(JSON_KEYS): self.json_value(1) for _ in range(rng.randint(0, 4))}


# The model's reading of values ---------------------------------------------------------------------------


def parse_instant(text: str) -> dt.datetime:
    """A date-time (or a bare date, midnight) as an aware instant; no offset means UTC."""
    if len(text) == 10:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), UTC)
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def is_date_text(value: t.Any) -> bool:
    if not isinstance(value, str) or len(value) != 10:
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_datetime_text(value: t.Any) -> bool:
    if not isinstance(value, str) or not value[:4].isdigit():
        return False
    try:
        parse_instant(value)
    except ValueError:
        return False
    return True


def fits(value: t.Any, kind: str) -> bool:
    """Whether the value is valid for a property of this kind (what a replay can keep)."""
    if value is None:
        return True
    if kind == "string":
        return isinstance(value, (str, RawNumber)) or (isinstance(value, int) and not isinstance(value, bool))
    if kind == "mixed":
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("number", "decimal"):  # a decimal-text property takes numbers too
        return isinstance(value, RawNumber) or (isinstance(value, int) and not isinstance(value, bool))
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "date-time":
        return is_datetime_text(value)
    if kind == "date":
        return is_date_text(value)
    if kind == "either":
        return is_date_text(value) or is_datetime_text(value)
    if kind == "time":
        return isinstance(value, str) and value[2:3] == ":"
    return isinstance(value, list if kind == "array" else dict)


Tagged = tuple[str, t.Any] | None  # (what the value is, its expected value), None for NULL


def tag(value: t.Any, kind: str, column_kind: str | None = None) -> Tagged:
    """What a value sent for a property of this kind must read back as (from its column, of
    ``column_kind``)."""
    if value is None:
        return None
    if column_kind in JSON_KINDS:  # the JSON of the value as sent, whatever the property's kind
        return ("json", without_nul(json.loads(json.dumps(value))))
    if isinstance(value, RawNumber):
        return ("num", value.value)
    if isinstance(value, int) and not isinstance(value, bool):
        if kind in ("string", "mixed"):
            return ("text", str(value))  # as tests/target/test_values.py and test_schema_changes.py expect
        return ("int", value) if kind == "integer" else ("num", Decimal(value))
    if kind in ("string", "mixed"):
        return ("text", value.replace("\u0000", ""))  # NUL characters are removed
    if kind == "boolean":
        return ("bool", value)
    if kind == "date-time":
        return ("dt", parse_instant(value))
    if kind == "either":  # a text column keeps the text as it came
        return ("either", (value, parse_instant(value)))
    if kind == "date":
        return ("date", dt.date.fromisoformat(value))
    if kind == "time":
        return ("time", dt.time.fromisoformat(value[:8] + value[8:].split("+")[0].rstrip("Z")))
    return ("json", json.loads(json.dumps(value)))


def without_nul(value: t.Any) -> t.Any:
    """A JSON value with NUL characters removed from its strings (the target removes them)."""
    if isinstance(value, str):
        return value.replace("\u0000", "")
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    return value


def column_name(prop: str) -> str:
    """The column of a property: lower case, characters outside [a-z0-9_] replaced (no collisions here)."""
    return re.sub(r"[^a-z0-9_]", "_", prop.lower())


JSON_KINDS = ("object", "array")


def widen(old: str | None, new: str) -> str:
    """The kind of a column that held `old` and now takes `new` ("mixed", integer or string, is text)."""
    new = {"mixed": "string", "either": "date-time", "decimal": "number"}.get(new, new)
    if old is None or old == new:
        return new
    if old in JSON_KINDS:  # a JSON column holds every value
        return old
    if {old, new} == {"integer", "number"}:
        return "number"
    if {old, new} == {"date", "date-time"}:
        return "date-time"
    return "string"


# Messages and scenarios ---------------------------------------------------------------------------------


@dataclass
class SchemaMessage:
    stream: str
    keys: dict[str, str]
    properties: dict[str, str]
    replication_key: str | None

    def line(self) -> str:
        properties = {name: {"type": kind} for name, kind in self.keys.items()}
        for name, kind in self.properties.items():
            formatted = kind in FORMATTED
            properties[name] = {"type": ["null", "string" if formatted else kind]}
            if kind == "mixed":
                properties[name]["type"] = ["null", "integer", "string"]
            if kind == "either":  # a date or a date-time: a timestamp column
                properties[name] = {"anyOf": [{"type": "null"}, *EITHER_FORMATS]}
            if kind == "decimal":  # a numeric column; both spellings of singer-sdk's format
                decimal_format = "x-singer.decimal" if len(name) % 2 else "singer.decimal"
                properties[name] = {"type": ["null", "string"], "format": decimal_format}
            if formatted:
                properties[name]["format"] = kind
            if kind == "array":
                properties[name]["items"] = {}
        return json.dumps(
            schema(
                self.stream,
                properties,
                key=list(self.keys),
                bookmark=[self.replication_key] if self.replication_key else None,
            )
        )


@dataclass
class RecordMessage:
    stream: str
    values: dict[str, t.Any]
    time_extracted: str | None
    invalid: bool = False  # the target must set it aside (``on_invalid_record: quarantine``)

    def line(self) -> str:
        extracted = f', "time_extracted": "{self.time_extracted}"' if self.time_extracted else ""
        return f'{{"type": "RECORD", "stream": "{self.stream}", "record": {encode(self.values)}{extracted}}}'


@dataclass
class StateMessage:
    value: dict[str, t.Any]

    def line(self) -> str:
        return json.dumps({"type": "STATE", "value": self.value}, ensure_ascii=False)


Message = SchemaMessage | RecordMessage | StateMessage


@dataclass
class RunInput:
    messages: list[Message]
    settings: dict[str, t.Any]

    @property
    def states(self) -> list[dict[str, t.Any]]:
        return [m.value for m in self.messages if isinstance(m, StateMessage)]

    @property
    def rejected(self) -> list[tuple[str, int]]:
        """(stream, line) of every record the target must quarantine."""
        return [
            (m.stream, line)
            for line, m in enumerate(self.messages, start=1)
            if isinstance(m, RecordMessage) and m.invalid
        ]

    def text(self) -> str:
        return to_lines(m.line() for m in self.messages)


@dataclass
class StreamGenerator:
    name: str
    keys: dict[str, str]
    replication_key: str | None
    properties: dict[str, str]
    key_pool: list[tuple]
    stamp_pool: list[dt.datetime]
    dropped: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, t.Any]] = field(default_factory=list)
    recent: deque = field(default_factory=lambda: deque(maxlen=6))
    added: int = 0
    next_rid: int = 0

    def schema(self) -> SchemaMessage:
        return SchemaMessage(self.name, dict(self.keys), dict(self.properties), self.replication_key)


class Scenario:
    """The random input of one seed: streams, then runs of messages."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.values = Values(self.rng)
        names = self.rng.sample(["accounts", "contacts", "opportunity_history", "events", "cases"], 3)
        self.streams = [self._stream(name) for name in names[: self.rng.randint(1, 3)]]
        self.first_schemas = [stream.schema() for stream in self.streams]
        sizes = [self.rng.randint(100, 220), self.rng.randint(50, 130), self.rng.randint(20, 70)]
        self.runs = [self._run(index, size) for index, size in enumerate(sizes[: self.rng.choice((2, 2, 3))])]

    # Streams ---------------------------------------------------------------------------------------

    def _stream(self, name: str) -> StreamGenerator:
        rng = self.rng
        keyed = rng.random() < 0.8
        keys: dict[str, str] = {}
        if keyed:
            keys["id"] = rng.choice(("string", "integer"))
            if rng.random() < 0.35:
                keys["region"] = rng.choice(("string", "integer"))
        replication_key = rng.choices((None, "system_modstamp", "updated_at"), (2, 7, 1))[0]
        properties = {"system_modstamp": "date-time"}
        if replication_key == "updated_at":
            properties["updated_at"] = "date-time"
        if rng.random() < 0.6:
            properties["is_deleted"] = "boolean"
        if not keyed:
            properties["rid"] = "integer"  # identifies appended records for the comparison
        chosen = rng.sample(sorted(BASE_PROPERTIES), rng.randint(2, len(BASE_PROPERTIES)))
        properties.update({prop: BASE_PROPERTIES[prop] for prop in sorted(chosen)})
        for prop, kinds in WIDENING.items():
            if rng.random() < 0.7:
                properties[prop] = kinds[0]
        base = self.values.instant()
        stamps = [
            base + dt.timedelta(seconds=rng.randint(0, 40), microseconds=rng.choice((0, 0, 0, 1000, 7)))
            for _ in range(rng.randint(3, 25))
        ]
        return StreamGenerator(
            name=name,
            keys=keys,
            replication_key=replication_key,
            properties=properties,
            key_pool=self._key_pool(keys) if keys else [],
            stamp_pool=stamps,
        )

    def _key_values(self, kind: str, size: int) -> list[t.Any]:
        rng = self.rng
        if kind == "integer":
            chosen = {
                rng.choice(INTEGERS) if rng.random() < 0.3 else rng.randint(-50, 10**6) for _ in range(size)
            }
            return sorted(chosen)
        prefixes = ("k", "K", "k ", "ключ-", "k'", 'k"', "k\\", "a\nb", "🎉", "")
        return sorted({f"{rng.choice(prefixes)}{rng.randint(0, size)}" for _ in range(size)})

    def _key_pool(self, keys: dict[str, str]) -> list[tuple]:
        size = self.rng.choice((3, 8, 20, 60))
        columns = [self._key_values(kind, size) for kind in keys.values()]
        pool = {tuple(self.rng.choice(column) for column in columns) for _ in range(size)}
        return sorted(pool, key=repr)

    # Runs ------------------------------------------------------------------------------------------

    def _run(self, index: int, size: int) -> RunInput:
        rng = self.rng
        hard_delete = rng.random() < 0.5
        settings = {
            "batch_size_rows": rng.choice((1, 2, 3, 5, 8, 13, 25, 50, 500)),
            "hard_delete": hard_delete,
        }
        quarantine = rng.random() < 0.35
        if quarantine:
            settings["on_invalid_record"] = "quarantine"
        messages: list[Message] = []
        announced: set[str] = set()
        weights = [rng.random() + 0.2 for _ in self.streams]
        for position in range(size):
            stream = rng.choices(self.streams, weights)[0]
            if stream.name in announced and rng.random() < 0.04:
                self._change_schema(stream)
                announced.discard(stream.name)
            if stream.name not in announced:
                messages.append(stream.schema())
                announced.add(stream.name)
            messages.append(self._record(stream, hard_delete))
            if quarantine and rng.random() < 0.05:
                messages.append(self._invalid(stream))
            if rng.random() < 0.08:
                messages.append(StateMessage(self._state(index, position)))
        if rng.random() < 0.7:
            messages.append(StateMessage(self._state(index, size)))
        return RunInput(messages, settings)

    def _state(self, run: int, position: int) -> dict[str, t.Any]:
        # No U+2028/U+2029 here: they may stay raw in a JSON line, and conftest reads lines with splitlines().
        text = self.values.text().replace("\u0000", "").replace("\u2028", "").replace("\u2029", "")
        return {"run": run, "position": position, "bookmarks": {"x": text}}

    def _change_schema(self, stream: StreamGenerator) -> None:
        rng = self.rng
        droppable = sorted(set(stream.properties) - FIXED)
        change = rng.choice(("add", "drop", "readd", "widen", "widen", "narrow", "widen key", "retype rk"))
        integer_keys = sorted(name for name, kind in stream.keys.items() if kind == "integer")
        if change == "widen key" and integer_keys:
            # An integer key property turns to text (its column widens: DuckDB rebuilds the table);
            # later records send its values as text, replays of older ones as integers.
            name = rng.choice(integer_keys)
            stream.keys[name] = "string"
            at = list(stream.keys).index(name)
            stream.key_pool = [(*key[:at], str(key[at]), *key[at + 1 :]) for key in stream.key_pool]
        elif change == "retype rk" and stream.replication_key:
            # The replication key turns into a plain string (its column widens to text, where the
            # target orders its values as text) or back into a date-time (the column stays text).
            kind = stream.properties[stream.replication_key]
            stream.properties[stream.replication_key] = "string" if kind == "date-time" else "date-time"
        elif change == "add":
            stream.added += 1
            stream.properties[f"extra_{stream.added}"] = rng.choice(KINDS_TO_ADD)
        elif change == "drop" and droppable:
            prop = rng.choice(droppable)
            stream.dropped[prop] = stream.properties.pop(prop)
        elif change == "readd" and stream.dropped:
            prop = rng.choice(sorted(stream.dropped))
            stream.properties[prop] = stream.dropped.pop(prop)
        elif change in ("widen", "narrow"):
            present = [prop for prop in WIDENING if prop in stream.properties]
            if present:
                prop = rng.choice(present)
                kinds = WIDENING[prop]
                at = kinds.index(stream.properties[prop])
                step = 1 if change == "widen" else -1
                stream.properties[prop] = kinds[min(max(at + step, 0), len(kinds) - 1)]

    def _invalid(self, stream: StreamGenerator) -> RecordMessage:
        """A record that breaks the rules: a missing or NULL key, a value that does not fit its property,
        or a record of a stream without a SCHEMA. It holds nothing else (such as an integer beyond bigint,
        whose widening of its column before the record is set aside the spec leaves open)."""
        rng = self.rng
        values = dict(zip(stream.keys, rng.choice(stream.key_pool), strict=True)) if stream.keys else {}
        checked = [
            prop
            for prop, kind in stream.properties.items()
            if prop not in WIDENING and prop != "rid" and kind in BAD_VALUES
        ]
        choice = rng.random()
        if stream.keys and (choice < 0.2 or not checked):
            name = rng.choice(sorted(stream.keys))
            if rng.random() < 0.5:
                del values[name]
            else:
                values[name] = None
        elif choice < 0.3:
            return RecordMessage("ghost", values, None, invalid=True)
        elif checked:
            prop = rng.choice(checked)
            values[prop] = rng.choice(BAD_VALUES[stream.properties[prop]])
        else:
            return RecordMessage("ghost", values, None, invalid=True)
        return RecordMessage(stream.name, values, None, invalid=True)

    def _stamp(self, stream: StreamGenerator) -> str | None:
        if self.rng.random() < 0.07:
            return None
        return self.values.datetime_text(self.rng.choice(stream.stamp_pool))

    def _record(self, stream: StreamGenerator, hard_delete: bool) -> RecordMessage:
        rng = self.rng
        values: dict[str, t.Any] | None = None
        if stream.history and rng.random() < 0.25:
            values = self._replay(stream, rng.choice(stream.history))
        if values is None:
            values = self._fresh(stream)
        if not stream.keys:
            stream.next_rid += 1
            values["rid"] = stream.next_rid if rng.random() < 0.95 else max(stream.next_rid - 1, 1)
        stream.history.append(values)
        stream.recent.append(values)
        extracted = None
        if rng.random() < 0.95:
            extracted = self.values.datetime_text(self.values.instant())
        return RecordMessage(stream.name, values, extracted)

    def _replay(self, stream: StreamGenerator, old: dict[str, t.Any]) -> dict[str, t.Any] | None:
        """An earlier record again (a lookback or a replayed run), fitted to the current SCHEMA."""
        values = {name: old[name] for name in stream.keys}
        for prop, kind in stream.properties.items():
            kept = old.get(prop)
            values[prop] = kept if prop in old and fits(kept, kind) else self.values.of_kind(kind)
        return values

    def _fresh(self, stream: StreamGenerator) -> dict[str, t.Any]:
        rng = self.rng
        values: dict[str, t.Any] = {}
        if stream.keys:
            source = stream.recent if stream.recent and rng.random() < 0.4 else None
            if source:
                key = tuple(rng.choice(list(source))[name] for name in stream.keys)
            else:
                key = rng.choice(stream.key_pool)
            values.update(zip(stream.keys, key, strict=True))
        for prop, kind in stream.properties.items():
            if rng.random() < 0.04:
                continue  # a property the record does not have: NULL
            values[prop] = self._value(prop, kind)
        if "is_deleted" in stream.properties:
            values["is_deleted"] = rng.choices((True, False, None), (2, 6, 1))[0]
        stamped = stream.replication_key or "system_modstamp"
        values[stamped] = self._stamp(stream)
        if stream.dropped and rng.random() < 0.2:
            prop = rng.choice(sorted(stream.dropped))
            values[prop] = self._value(prop, stream.dropped[prop])  # not in the SCHEMA: ignored
        return values

    def _value(self, prop: str, kind: str) -> t.Any:
        if prop == "n" and kind == "integer" and self.rng.random() < 0.03:
            return self.rng.choice((2**63, -(2**63) - 1, 12345678901234567890))  # widens the column
        return self.values.of_kind(kind)


Stamp = tuple[t.Any, str]  # a replication key's value as sent, and its property's kind then


def instant_text(instant: dt.datetime) -> str:
    """An instant as the target writes it in a text column: RFC 3339 in UTC, with microseconds."""
    i = instant.astimezone(UTC)
    return f"{i.year:04d}-{i.month:02d}-{i.day:02d}T{i:%H:%M:%S}.{i.microsecond:06d}Z"


def order_of(stamp: Stamp, as_text: bool) -> tuple:
    """A replication key's place in its column's order: as an instant, or as the column's text once the
    column is text (an instant sent as a date-time is written as ``instant_text``); NULL is oldest."""
    value, kind = stamp
    if value is None:
        return OLDEST
    if not as_text:
        return (1, parse_instant(value))
    return (1, instant_text(parse_instant(value)) if kind == "date-time" else str(value))


# The model -----------------------------------------------------------------------------------------------


@dataclass
class Row:
    values: dict[str, Tagged]
    stamp: Stamp  # its replication key (None without one)
    received_at: dt.datetime | None
    written_in: int


@dataclass
class Table:
    keys: list[str]
    replication_key: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    widened_by_value: set[str] = field(default_factory=set)
    # Number columns sent a value that DuckDB's DECIMAL(38,18) cannot hold exactly (DuckDB keeps text).
    past_decimal: set[str] = field(default_factory=set)
    rows: dict[tuple, Row] = field(default_factory=dict)
    appended: list[Row] = field(default_factory=list)
    tombstones: dict[tuple, Stamp] = field(default_factory=dict)  # key -> stamp of its newest hard delete

    def order(self, stamp: Stamp) -> tuple:
        """A stamp's order in the replication key's column as it is now (its type may have widened)."""
        text = (
            self.replication_key is not None
            and self.columns.get(column_name(self.replication_key)) == "string"
        )
        return order_of(stamp, text)


def fits_decimal_38_18(value: t.Any) -> bool:
    """Whether DuckDB's DECIMAL(38,18) holds a number exactly (None and non-numbers: nothing to hold)."""
    if isinstance(value, RawNumber):
        number = value.value
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    else:
        return True
    return abs(number) < 10**20 and number == number.quantize(Decimal("1e-18"), context=Context(prec=38))


class Model:
    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}
        self.schemas: dict[str, SchemaMessage] = {}
        self.rejected: Counter[tuple[str, int]] = Counter()  # (stream, line) in _rejected_records

    def apply(self, message: Message, hard_delete: bool, run: int) -> None:
        if isinstance(message, SchemaMessage):
            self.schemas[message.stream] = message
        elif isinstance(message, RecordMessage) and not message.invalid:
            self._record(message, hard_delete, run)

    @staticmethod
    def _key_reader(table: Table) -> t.Callable[[tuple], tuple]:
        texts = [table.columns.get(column_name(name)) == "string" for name in table.keys]

        def key_of(key: tuple) -> tuple:
            return tuple(
                str(value) if text and isinstance(value, int) and not isinstance(value, bool) else value
                for text, value in zip(texts, key, strict=True)
            )

        return key_of

    def _record(self, message: RecordMessage, hard_delete: bool, run: int) -> None:
        declared = self.schemas[message.stream]
        table = self.tables.setdefault(message.stream, Table(list(declared.keys)))
        table.replication_key = declared.replication_key
        kinds = {**declared.keys, **declared.properties}
        for prop, kind in kinds.items():  # the columns of a SCHEMA that records were sent under
            table.columns[column_name(prop)] = widen(table.columns.get(column_name(prop)), kind)
        # Keys as their columns hold them: an integer in a text key column is its text.
        key_of = self._key_reader(table)
        table.rows = {key_of(key): row for key, row in table.rows.items()}
        table.tombstones = {key_of(key): order for key, order in table.tombstones.items()}
        values = message.values
        for prop, kind in kinds.items():
            value = values.get(prop)
            if kind == "integer" and isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
                table.columns[column_name(prop)] = widen(table.columns[column_name(prop)], "number")
                table.widened_by_value.add(column_name(prop))
            if kind in ("number", "decimal") and not fits_decimal_38_18(value):
                table.past_decimal.add(column_name(prop))
        row = Row(
            values={
                column_name(prop): tag(values.get(prop), kind, table.columns[column_name(prop)])
                for prop, kind in kinds.items()
            },
            stamp=(values.get(declared.replication_key), kinds[declared.replication_key])
            if declared.replication_key
            else NO_STAMP,
            received_at=parse_instant(message.time_extracted) if message.time_extracted else None,
            written_in=run,
        )
        if not declared.keys:
            table.appended.append(row)
            return
        key = key_of(tuple(values[name] for name in declared.keys))
        stored = table.rows.get(key)
        deletes = hard_delete and declared.properties.get("is_deleted") == "boolean"
        tombstones = deletes and declared.replication_key is not None
        deleted = deletes and values.get("is_deleted") is True
        order = table.order(row.stamp)
        tombstone = table.order(table.tombstones.get(key, NO_STAMP))
        if tombstones and deleted and order >= tombstone:
            table.tombstones[key] = row.stamp
        if stored is not None and order < table.order(stored.stamp):
            return  # never regress
        if deleted:
            table.rows.pop(key, None)
        elif stored is None and tombstones and order < tombstone:
            return  # an older version of a hard-deleted record
        else:
            table.rows[key] = row


# Comparing the warehouse with the model ------------------------------------------------------------------

REJECTED = "_rejected_records"
DELETED_KEYS = "_deleted_keys"  # hard deletes' tombstones
SQL_TYPES = {
    "postgres": {
        "string": "text",
        "integer": "bigint",
        "number": "numeric",
        "boolean": "boolean",
        "date-time": "timestamp with time zone",
        "date": "date",
        "time": "time without time zone",
        "object": "jsonb",
        "array": "jsonb",
    },
    "duckdb": {
        "string": "varchar",
        "integer": "bigint",
        "number": "decimal(38,18)",
        "boolean": "boolean",
        "date-time": "timestamp with time zone",
        "date": "date",
        "time": "time",
        "object": "json",
        "array": "json",
    },
}


def as_decimal(value: t.Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def as_instant(text: str) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else None  # text without an offset is not an instant


def matches(expected: Tagged, actual: t.Any, column_kind: str) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    what, value = expected
    if what == "either":  # as it came in a text column, or the instant (a timestamp column's, as text)
        text, instant = value
        if column_kind == "string":
            return isinstance(actual, str) and (actual == text or as_instant(actual) == instant)
        return column_kind == "date-time" and isinstance(actual, dt.datetime) and actual == instant
    if column_kind == "string":
        if not isinstance(actual, str):
            return False
        if what == "text":
            return actual == value
        if what in ("int", "num"):
            return as_decimal(actual) == value
        midnight = dt.datetime.combine(value, dt.time(), UTC) if what == "date" else value
        return (
            actual == value.isoformat()
            if what == "date" and len(actual) == 10
            else as_instant(actual) == midnight
        )
    if column_kind == "integer":
        return type(actual) is int and actual == value
    if column_kind == "number":
        return what in ("int", "num") and as_decimal(actual) == value
    if column_kind == "boolean":
        return actual is value
    if column_kind == "date-time":
        instant = dt.datetime.combine(value, dt.time(), UTC) if what == "date" else value
        return isinstance(actual, dt.datetime) and actual.tzinfo is not None and actual == instant
    if column_kind == "date":
        return type(actual) is dt.date and actual == value
    if column_kind == "time":
        return isinstance(actual, dt.time) and actual == value
    return actual == value  # a JSON value, parsed (Comparison._read)


def short(value: t.Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class Comparison:
    def __init__(self, warehouse: Warehouse, model: Model, run_started: list[float]) -> None:
        self.warehouse, self.model, self.run_started = warehouse, model, run_started
        self.problems: list[str] = []

    def check(self) -> list[str]:
        expected_tables = set(self.model.tables)
        actual_tables = self.warehouse.tables() - {REJECTED, DELETED_KEYS}
        if actual_tables != expected_tables:
            self.problems.append(f"tables {sorted(actual_tables)} != {sorted(expected_tables)}")
        for name in sorted(expected_tables & actual_tables):
            self._table(name, self.model.tables[name])
        self._rejected()
        return self.problems

    def _rejected(self) -> None:
        rows = []
        if REJECTED in self.warehouse.tables():
            rows = self.warehouse.query(
                f'SELECT "stream", "line" FROM "{self.warehouse.schema_name}"."{REJECTED}"'
            )
        rejected = Counter(tuple(row) for row in rows)
        if rejected != self.model.rejected:
            self.problems.append(
                f"{REJECTED}: (stream, line) {sorted(rejected.elements())}, "
                f"expected {sorted(self.model.rejected.elements())}"
            )

    def _table(self, name: str, table: Table) -> None:
        actual_columns = self.warehouse.columns(name)
        expected = {**table.columns, "received_at": "date-time", "uuid_ts": "date-time"}
        if set(actual_columns) != set(expected):
            self.problems.append(f"{name}: columns {sorted(actual_columns)} != {sorted(expected)}")
            return
        types = SQL_TYPES[self.warehouse.engine]
        for column, kind in expected.items():
            allowed = {types[kind]} | ({types["integer"]} if column in table.widened_by_value else set())
            if self.warehouse.engine == "duckdb" and kind == "number" and column in table.past_decimal:
                allowed.add(types["string"])
            if actual_columns[column] not in allowed:
                self.problems.append(f"{name}.{column}: type {actual_columns[column]}, expected {allowed}")
        columns = list(expected)
        selected = ", ".join(f'"{column}"' for column in columns)
        result = self.warehouse.query(f'SELECT {selected} FROM "{self.warehouse.schema_name}"."{name}"')
        rows = [dict(zip(columns, values, strict=True)) for values in result]
        if table.keys:
            self._keyed(name, table, rows)
        else:
            self._appended(name, table, rows)

    def _keyed(self, name: str, table: Table, rows: list[dict[str, t.Any]]) -> None:
        actual = {tuple(row[key] for key in table.keys): row for row in rows}
        if len(actual) != len(rows):
            self.problems.append(f"{name}: {len(rows) - len(actual)} duplicate key(s)")
        missing = [key for key in table.rows if key not in actual]
        extra = [key for key in actual if key not in table.rows]
        if missing:
            self.problems.append(f"{name}: missing rows {short(missing)}")
        if extra:
            self.problems.append(f"{name}: unexpected rows {short([(k, actual[k]) for k in extra])}")
        for key, expected in table.rows.items():
            if key in actual:
                self._row(f"{name}[{key!r}]", table, expected, actual[key])

    def _appended(self, name: str, table: Table, rows: list[dict[str, t.Any]]) -> None:
        if len(rows) != len(table.appended):
            self.problems.append(f"{name}: {len(rows)} rows appended, expected {len(table.appended)}")
        by_rid: dict[t.Any, list[dict[str, t.Any]]] = {}
        for row in rows:
            by_rid.setdefault(row["rid"], []).append(row)
        for expected in table.appended:
            candidates = by_rid.get(expected.values["rid"][1], [])
            found = next((row for row in candidates if not self._differences(table, expected, row)), None)
            if found is None:
                closest = candidates[0] if candidates else None
                where = f"{name}[rid={expected.values['rid'][1]}]"
                if closest is None:
                    self.problems.append(f"{where}: missing row {short(expected.values)}")
                else:
                    self._row(where, table, expected, closest)
            else:
                candidates.remove(found)

    def _differences(self, table: Table, expected: Row, actual: dict[str, t.Any]) -> list[str]:
        found = []
        for column, kind in table.columns.items():
            want = expected.values.get(column)
            if not matches(want, self._read(actual[column], kind), kind):
                found.append(f"{column} ({kind}): expected {short(want)}, got {short(actual[column])}")
        if expected.received_at is not None and actual["received_at"] != expected.received_at:
            found.append(f"received_at: expected {expected.received_at}, got {actual['received_at']}")
        # uuid_ts: written during the run that last wrote the row (a version that loses writes nothing)
        uuid_ts = actual["uuid_ts"]
        bounds = [*self.run_started, float("inf")][expected.written_in : expected.written_in + 2]
        if uuid_ts is None or not bounds[0] - 0.001 <= uuid_ts.timestamp() < bounds[1]:
            found.append(f"uuid_ts {uuid_ts}: the row was last written in run {expected.written_in + 1}")
        return found

    def _read(self, value: t.Any, kind: str) -> t.Any:
        """A JSON column's value parsed: DuckDB hands back its text (PostgreSQL's driver parses it)."""
        if kind in JSON_KINDS and self.warehouse.engine == "duckdb" and value is not None:
            return json.loads(value)
        return value

    def _row(self, where: str, table: Table, expected: Row, actual: dict[str, t.Any]) -> None:
        self.problems.extend(
            f"{where}: {difference}" for difference in self._differences(table, expected, actual)
        )


# Tables made beforehand ----------------------------------------------------------------------------------

# Some seeds load into tables made by hand beforehand, as a warehouse moving to the target has them: the
# first SCHEMA's columns in types that hold fewer values than the target's own (widened by the target
# before any value lands, so the model is unchanged), comments someone wrote on the table and columns
# (notes, not owners), and for some tables no system columns (the target adds them).
NARROW_TYPES = {
    "postgres": {
        "string": ("varchar(2)", "character varying"),
        "mixed": ("varchar(1)",),
        "integer": ("integer", "smallint"),
        "number": ("numeric(12,3)", "numeric(5,0)"),
        "decimal": ("numeric(12,3)",),
        "boolean": ("boolean",),
        "date-time": ("timestamp(0) with time zone", "timestamp(3) with time zone"),
        "either": ("timestamp(0) with time zone",),
        "date": ("date",),
        "time": ("time(0) without time zone",),
        "object": ("jsonb",),
        "array": ("jsonb",),
    },
    "duckdb": {
        "string": ("VARCHAR",),
        "mixed": ("VARCHAR",),
        "integer": ("INTEGER", "SMALLINT", "TINYINT", "UINTEGER"),
        "number": ("DECIMAL(12,3)", "DECIMAL(5,0)"),
        "decimal": ("DECIMAL(12,3)",),
        "boolean": ("BOOLEAN",),
        "date-time": ("TIMESTAMPTZ",),
        "either": ("TIMESTAMPTZ",),
        "date": ("DATE",),
        "time": ("TIME",),
        "object": ("JSON",),
        "array": ("JSON",),
    },
}


def made_beforehand(seed: int, engine: str, scenario: Scenario) -> list[str]:
    """The statements that make a seed's tables beforehand (none for most seeds)."""
    rng = random.Random(f"made beforehand {seed}")  # apart from the scenario's own draws
    if rng.random() >= 0.4:
        return []
    types = NARROW_TYPES[engine]
    statements = ['CREATE SCHEMA IF NOT EXISTS "salesforce"']
    for position, first in enumerate(scenario.first_schemas):
        if position and rng.random() < 0.3:
            continue  # this one the target makes
        table = f'"salesforce"."{column_name(first.stream)}"'
        columns = [f'"{column_name(prop)}" {rng.choice(types[kind])}' for prop, kind in first.keys.items()]
        columns += [
            f'"{column_name(prop)}" {rng.choice(types[kind])}'
            for prop, kind in first.properties.items()
            if prop not in first.keys
        ]
        if rng.random() < 0.5:
            columns += ['"received_at" TIMESTAMPTZ', '"uuid_ts" TIMESTAMPTZ']
        if first.keys:
            columns.append(
                f"PRIMARY KEY ({', '.join(chr(34) + column_name(k) + chr(34) for k in first.keys)})"
            )
        statements.append(f"CREATE TABLE {table} ({', '.join(columns)})")
        statements.append(f"COMMENT ON TABLE {table} IS 'Made by hand for {first.stream} (seed {seed})'")
        for prop in rng.sample(sorted(first.properties), min(2, len(first.properties))):
            statements.append(f"COMMENT ON COLUMN {table}.\"{column_name(prop)}\" IS 'What {prop} means'")
    return statements


# The test ------------------------------------------------------------------------------------------------


def check_states(sent: list[dict[str, t.Any]], emitted: list[t.Any]) -> list[str]:
    positions = []
    for state in emitted:
        if state not in sent:
            return [f"emitted a STATE that was never sent: {short(state)}"]
        positions.append(sent.index(state))
    problems = []
    if positions != sorted(set(positions)):
        problems.append(f"STATEs out of order or repeated: positions {positions}")
    if sent and (not emitted or emitted[-1] != sent[-1]):
        problems.append(f"the last STATE emitted is {short(emitted[-1:])}, expected {short(sent[-1])}")
    if not sent and emitted:
        problems.append("STATEs emitted when none was sent")
    return problems


def load(warehouse: Warehouse, run: RunInput, via_cli: bool) -> tuple[str | None, list[t.Any]]:
    """Run the target on one run's input: (the error, if any; the STATE lines it wrote)."""
    if via_cli:
        done = warehouse.cli(run.text(), **run.settings)
        return (None if done.returncode == 0 else done.stderr[-2000:]), done.states
    result = warehouse.run((m.line() for m in run.messages), **run.settings)
    return (None if result.error is None else repr(result.error)), result.states


def describe(seed: int, warehouse: Warehouse, run: int, scenario: Scenario) -> str:
    settings = scenario.runs[run].settings
    return (
        f"seed {seed}, {warehouse.engine}, run {run + 1} of {len(scenario.runs)} ({settings}); reproduce the "
        f"input with `python tests/target/test_model_fuzz.py {seed} OUTDIR`"
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_random_streams_load_as_the_model_says(warehouse: Warehouse, seed: int) -> None:
    scenario = Scenario(seed)
    model = Model()
    run_started: list[float] = []
    beforehand = made_beforehand(seed, warehouse.engine, scenario)
    if beforehand:
        warehouse.execute(*beforehand)
    for index, run in enumerate(scenario.runs):
        where = describe(seed, warehouse, index, scenario)
        if beforehand:
            where += f"; tables made beforehand: {beforehand}"
        run_started.append(time.time())
        error, emitted = load(warehouse, run, via_cli=index == len(scenario.runs) - 1)
        assert error is None, f"{where}: the target failed: {error}"
        for message in run.messages:
            model.apply(message, run.settings["hard_delete"], index)
        model.rejected.update(run.rejected)
        problems = check_states(run.states, emitted)
        problems += Comparison(warehouse, model, run_started).check()
        assert not problems, f"{where}:\n" + "\n".join(problems[:20])


def write_scenario(seed: int, folder: Path) -> None:
    """The input of a seed as files: runN.jsonl (Singer lines) and runN.settings.json."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, run in enumerate(Scenario(seed).runs, start=1):
        (folder / f"run{index}.jsonl").write_text(run.text())
        (folder / f"run{index}.settings.json").write_text(json.dumps(run.settings))


@pytest.mark.parametrize("script", ["test_model_fuzz.py", "test_replay_fuzz.py"])
def test_a_seeds_input_is_written_by_the_command_failures_name(script: str, tmp_path: Path) -> None:
    """The commands that a failing seed's message names run as plain scripts (outside pytest)."""
    out = tmp_path / ("seed" if script == "test_model_fuzz.py" else "seed.jsonl")
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / script), "3", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    first = (out / "run1.jsonl" if out.is_dir() else out).read_text(encoding="utf-8").splitlines()[0]
    assert json.loads(first)["type"] == "SCHEMA"


if __name__ == "__main__":
    write_scenario(int(sys.argv[1]), Path(sys.argv[2]))
