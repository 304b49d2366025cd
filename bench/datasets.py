"""Deterministic benchmark datasets, written as Singer files and as the same rows in CSV.

Every value is a pure function of (dataset, row index, phase), so a file can be regenerated bit for bit,
a prefix of a dataset is the same rows as the start of the whole one, and a benchmark can verify what a
loader stored by recomputing the expected row for any key.

Phases: `inserts` gives every row for the first time; `updates` gives the same keys with changed values and
a newer `system_modstamp`, to be loaded into the table the inserts made.

    python bench/datasets.py --dataset a --phase inserts --out /tmp/a    # writes .singer and .csv

Column counts include `id` and `system_modstamp`. CSV files have no header, quote every string (so an
empty string stays distinct from NULL, which is an unquoted empty field), and end each row with the
record's `time_extracted` (the warehouse's `received_at`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

PHASES = ("inserts", "updates")
KINDS = ("id", "string", "text", "integer", "number", "boolean", "datetime")
NULL_SHARE = 0.10

# Epoch seconds of 2024-01-02T03:04:05Z; updates are stamped a day later, so always newer.
_BASE_EPOCH = 1704164645
_UPDATE_SHIFT_SECONDS = 86_400
_EXTRACTED_EPOCH = {"inserts": 1717200000, "updates": 1717286400}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # one of KINDS

    def json_schema(self) -> dict:
        if self.kind == "id":
            return {"type": "string"}
        if self.kind == "datetime":
            return {"type": ["null", "string"], "format": "date-time"}
        json_type = {
            "string": "string",
            "text": "string",
            "integer": "integer",
            "number": "number",
            "boolean": "boolean",
        }[self.kind]
        return {"type": ["null", json_type]}


@dataclass(frozen=True)
class DatasetSpec:
    key: str  # a, b, c
    stream: str
    rows: int
    columns: tuple[Column, ...]
    description: str
    seed: int

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def with_rows(self, rows: int) -> DatasetSpec:
        """The same dataset cut (or grown) to `rows`; its rows are a prefix of the full dataset's."""
        return dataclasses.replace(self, rows=max(1, rows))

    def scaled(self, factor: float) -> DatasetSpec:
        return self.with_rows(round(self.rows * factor))

    def schema_message(self) -> dict:
        return {
            "type": "SCHEMA",
            "stream": self.stream,
            "schema": {
                "type": "object",
                "properties": {column.name: column.json_schema() for column in self.columns},
                "required": ["id"],
            },
            "key_properties": ["id"],
            "bookmark_properties": ["system_modstamp"],
        }


# ---------------------------------------------------------------------------------------------------------
# The three datasets of issue 4's benchmark


def _mixed_columns() -> tuple[Column, ...]:
    """(a) 40 columns: ids, strings, integers, numbers, booleans, datetimes."""
    kinds = (
        ["string"] * 14 + ["text"] * 2 + ["integer"] * 6 + ["number"] * 6 + ["boolean"] * 5 + ["datetime"] * 5
    )
    named = [Column("id", "id"), Column("system_modstamp", "datetime")]
    counters: dict[str, int] = {}
    for kind in kinds:
        counters[kind] = counters.get(kind, 0) + 1
        named.append(Column(f"{kind}_{counters[kind]:02d}", kind))
    return tuple(named)


_WIDE_WORDS = (
    "account",
    "billing",
    "region",
    "tier",
    "renewal",
    "partner",
    "support",
    "legal",
    "score",
    "segment",
    "owner",
    "channel",
    "contract",
    "product",
    "territory",
    "risk",
    "health",
)


def _wide_columns() -> tuple[Column, ...]:
    """(b) 300 columns like a customised Salesforce object: mostly booleans and strings, `..._c` names."""
    head = [
        Column("id", "id"),
        Column("system_modstamp", "datetime"),
        Column("is_deleted", "boolean"),
        Column("name", "string"),
        Column("created_date", "datetime"),
        Column("owner_id", "string"),
    ]
    pattern = ["boolean"] * 9 + ["string"] * 7 + ["number"] * 2 + ["integer", "datetime"]
    columns = list(head)
    for index in range(300 - len(head)):
        kind = pattern[index % len(pattern)]
        word = _WIDE_WORDS[index % len(_WIDE_WORDS)]
        prefix = "is_" if kind == "boolean" else ""
        columns.append(Column(f"{prefix}{word}_{kind}_{index:03d}_c", kind))
    return tuple(columns)


def _strings_columns() -> tuple[Column, ...]:
    """(c) 10 columns, all JSON strings (system_modstamp is a date-time string)."""
    return (
        Column("id", "id"),
        Column("system_modstamp", "datetime"),
        *(Column(f"string_{index:02d}", "string") for index in range(1, 9)),
    )


SPECS: dict[str, DatasetSpec] = {
    "a": DatasetSpec(
        "a",
        "bench_mixed",
        200_000,
        _mixed_columns(),
        "200,000 rows x 40 columns (strings, integers, numbers, booleans, datetimes, 10% nulls)",
        seed=101,
    ),
    "b": DatasetSpec(
        "b",
        "bench_wide",
        20_000,
        _wide_columns(),
        "20,000 rows x 300 columns (a wide Salesforce-like object, mostly booleans/strings)",
        seed=202,
    ),
    "c": DatasetSpec(
        "c",
        "bench_strings",
        1_000_000,
        _strings_columns(),
        "1,000,000 rows x 10 string columns (MeltanoLabs target-postgres' benchmark shape)",
        seed=303,
    ),
}


# ---------------------------------------------------------------------------------------------------------
# Values


def _string_pool() -> tuple[str, ...]:
    """Short texts that exercise quoting: unicode, quotes, commas, newlines, tabs, backslashes, empties."""
    words = [
        "Acme",
        "Globex",
        "Initech",
        "Umbrella",
        "Stark",
        "Wayne",
        "Hooli",
        "Vandelay",
        "Soylent",
        "Müller",
        "Zoë",
        "Ørsted",
        "São Paulo",
        "Kraków",
        "東京",
        "北京市",
        "Δelta",
        "Привет",
        "مرحبا",
        "🚀",
        "naïve café",
        "O'Brien",
        'say "hi"',
        "a, b, c",
        "line1\nline2",
        "tab\there",
        "back\\slash",
        "semi;colon",
        "pipe|bar",
        "crlf\r\nend",
        "   padded   ",
        "",
        "NULL",
        "\\N",
        "<b>html</b>",
        '{"json": 1}',
        "100%",
        "#hash",
        "e=mc²",
    ]
    rng = random.Random(7)
    pool = []
    for _ in range(997):
        pool.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 4))))
    pool.extend(words)
    return tuple(pool)


_STRINGS = _string_pool()
# Description-like texts of a few hundred characters, with line breaks.
_LONG_TEXT = tuple(
    "\n".join(_STRINGS[(index * 7 + part) % len(_STRINGS)] + "." for part in range(4 + index % 5))
    for index in range(211)
)


def format_datetime(epoch_seconds: int, microseconds: int = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_seconds)) + f".{microseconds:06d}Z"


def make_id(index: int) -> str:
    """An 18-character Salesforce-looking id, unique per row index."""
    return f"a0B5g{index:013d}"


def _row_rng(spec: DatasetSpec, index: int, phase: str) -> random.Random:
    return random.Random(spec.seed * 10_000_000_000 + index * 2 + PHASES.index(phase))


def row_values(spec: DatasetSpec, index: int, phase: str) -> list:
    """The row `index` of `spec` in `phase`, as JSON-ready Python values in column order."""
    rng = _row_rng(spec, index, phase)
    stamp = _BASE_EPOCH + index + (_UPDATE_SHIFT_SECONDS if phase == "updates" else 0)
    values: list = []
    for column in spec.columns:
        kind = column.kind
        if kind == "id":
            values.append(make_id(index))
            continue
        if column.name == "system_modstamp":
            values.append(format_datetime(stamp, (index * 1000) % 1_000_000))
            continue
        if rng.random() < NULL_SHARE:
            values.append(None)
        elif kind == "string":
            values.append(_STRINGS[rng.randrange(len(_STRINGS))])
        elif kind == "text":
            values.append(_LONG_TEXT[rng.randrange(len(_LONG_TEXT))])
        elif kind == "integer":
            values.append(rng.randrange(-2_000_000_000_000, 9_000_000_000_000_000))
        elif kind == "number":
            # Cents as exact decimals: repr() of such a float prints the same digits JSON carries.
            values.append(rng.randrange(-10_000_000_00, 90_000_000_000_00) / 100)
        elif kind == "boolean":
            values.append(rng.random() < 0.5)
        elif kind == "datetime":
            values.append(format_datetime(_BASE_EPOCH - rng.randrange(400_000_000), rng.randrange(1_000_000)))
        else:  # pragma: no cover - KINDS is closed
            raise ValueError(f"unknown column kind {kind!r}")
    return values


def time_extracted(index: int, phase: str) -> str:
    return format_datetime(_EXTRACTED_EPOCH[phase] + index // 1000, (index % 1000) * 1000)


def iter_rows(spec: DatasetSpec, phase: str) -> Iterator[tuple[int, list]]:
    for index in range(spec.rows):
        yield index, row_values(spec, index, phase)


# ---------------------------------------------------------------------------------------------------------
# Files


@dataclass(frozen=True)
class DatasetFiles:
    spec: DatasetSpec
    phase: str
    singer: Path
    csv: Path
    final_state: dict

    @property
    def rows(self) -> int:
        return self.spec.rows


def state_message(spec: DatasetSpec, modstamp: str) -> dict:
    return {
        "type": "STATE",
        "value": {
            "bookmarks": {
                spec.stream: {"replication_key": "system_modstamp", "replication_key_value": modstamp}
            }
        },
    }


def _csv_field(value: object, kind: str) -> str:
    if value is None:
        return ""
    if kind in ("id", "string", "text"):
        return '"' + value.replace('"', '""') + '"'  # type: ignore[union-attr]
    if kind == "boolean":
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def write_files(spec: DatasetSpec, phase: str, directory: Path, states: int = 4) -> DatasetFiles:
    """Write `<stream>-<rows>-<phase>.singer` and `.csv` into `directory` (reused when already complete)."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, not {phase!r}")
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{spec.stream}-{spec.rows}-{phase}"
    singer_path, csv_path = directory / f"{stem}.singer", directory / f"{stem}.csv"
    done_marker = directory / f"{stem}.done"
    modstamp_position = spec.column_names.index("system_modstamp")
    final_state = state_message(spec, row_values(spec, spec.rows - 1, phase)[modstamp_position])
    if done_marker.exists() and singer_path.exists() and csv_path.exists():
        return DatasetFiles(spec, phase, singer_path, csv_path, final_state)

    encoder = msgspec.json.Encoder()
    kinds = [column.kind for column in spec.columns]
    names = spec.column_names
    state_every = max(1, spec.rows // states)
    with singer_path.open("wb") as singer, csv_path.open("w", encoding="utf-8", newline="") as csv:
        singer.write(encoder.encode(spec.schema_message()) + b"\n")
        for index, values in iter_rows(spec, phase):
            extracted = time_extracted(index, phase)
            record = {
                "type": "RECORD",
                "stream": spec.stream,
                "record": dict(zip(names, values, strict=True)),
                "time_extracted": extracted,
            }
            singer.write(encoder.encode(record) + b"\n")
            fields = [_csv_field(value, kind) for value, kind in zip(values, kinds, strict=True)]
            fields.append(extracted)
            csv.write(",".join(fields) + "\n")
            if (index + 1) % state_every == 0 and index + 1 < spec.rows:
                singer.write(encoder.encode(state_message(spec, values[modstamp_position])) + b"\n")
        singer.write(encoder.encode(final_state) + b"\n")
    done_marker.touch()
    return DatasetFiles(spec, phase, singer_path, csv_path, final_state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=sorted(SPECS), required=True)
    parser.add_argument("--phase", choices=PHASES, default="inserts")
    parser.add_argument("--rows", type=int, help="cut the dataset to this many rows (a prefix)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the files")
    args = parser.parse_args(argv)
    spec = SPECS[args.dataset] if args.rows is None else SPECS[args.dataset].with_rows(args.rows)
    started = time.monotonic()
    files = write_files(spec, args.phase, args.out)
    print(
        json.dumps(
            {
                "singer": str(files.singer),
                "csv": str(files.csv),
                "rows": files.rows,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
