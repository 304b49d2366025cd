"""Stored values equal the input, on both engines: text, exact numbers, time zones, structures."""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal

import pytest
from conftest import Warehouse, record, schema, state

UTC = dt.UTC
PROPERTIES = {
    "id": {"type": "string"},
    "text": {"type": ["null", "string"]},
    "amount": {"type": ["null", "number"]},
    "count": {"type": ["null", "integer"]},
    "flag": {"type": ["null", "boolean"]},
    "created": {"type": ["null", "string"], "format": "date-time"},
    "day": {"type": ["null", "string"], "format": "date"},
    "at": {"type": ["null", "string"], "format": "time"},
    "doc": {"type": ["null", "object"]},
    "tags": {"type": ["null", "array"], "items": {"type": "string"}},
    "mixed": {"type": ["null", "integer", "string"]},
    "anything": {},
}
TRICKY_TEXT = "Zoë ☃ 日本語 🎉 \"quoted\" 'single' back\\slash\ttab\nnewline\r\nend"
DATE_OR_DATE_TIME = {
    "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]
}
# Written as raw JSON so that numbers keep every digit (no float anywhere in the test either).
LINES = [
    json.dumps(schema("values", PROPERTIES)),
    '{"type": "RECORD", "stream": "values", "record": {"id": "a", "text": '
    + json.dumps(TRICKY_TEXT)
    + ', "amount": 12345678901234567.89, "count": 9223372036854775807, "flag": true, '
    '"created": "2024-06-30T23:30:00+05:30", "day": "2024-02-29", "at": "13:45:30.5", '
    '"doc": {"ключ": "значение", "n": 1.50, "nested": {"x": [1, null, "\\"q\\""]}}, "tags": ["a", "b"], '
    '"mixed": 5, "anything": [1, "two"]}, "time_extracted": "2024-07-01T00:00:00Z"}',
    '{"type": "RECORD", "stream": "values", "record": {"id": "b", "text": "", '
    '"amount": -0.000000000000000001, "count": -9223372036854775808, "flag": false, '
    '"created": "2024-01-02T03:04:05.123456Z", '
    '"day": "1900-01-01", "at": "00:00:00", "doc": {}, "tags": [], "mixed": "five", "anything": "x"}}',
    '{"type": "RECORD", "stream": "values", "record": {"id": "c", "amount": 0.1, "created": '
    '"2024-01-02T03:04:05"}}',
    '{"type": "RECORD", "stream": "values", "record": {"id": "d", "text": null, "amount": 1E+5, "count": 0, '
    '"created": "2024-01-02"}}',
    json.dumps(state({"bookmarks": {"values": {"replication_key_value": "x"}}})),
]


def test_values_round_trip(warehouse: Warehouse) -> None:
    run = warehouse.run(LINES)
    assert run.error is None
    assert run.states == [{"bookmarks": {"values": {"replication_key_value": "x"}}}]
    rows = {row["id"]: row for row in warehouse.rows("values")}
    a, b, c, d = rows["a"], rows["b"], rows["c"], rows["d"]
    assert a["text"] == TRICKY_TEXT
    assert b["text"] == "" and d["text"] is None and c["text"] is None
    assert a["amount"] == Decimal("12345678901234567.89")
    assert b["amount"] == Decimal("-0.000000000000000001")
    assert c["amount"] == Decimal("0.1")
    assert d["amount"] == Decimal("100000")
    assert (a["count"], b["count"], d["count"]) == (9223372036854775807, -9223372036854775808, 0)
    assert (a["flag"], b["flag"], c["flag"]) == (True, False, None)
    assert a["created"] == dt.datetime(2024, 6, 30, 18, 0, tzinfo=UTC)
    assert b["created"] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert c["created"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)  # no zone means UTC
    assert d["created"] == dt.datetime(2024, 1, 2, tzinfo=UTC)  # a bare date is midnight UTC
    assert (a["day"], b["day"]) == (dt.date(2024, 2, 29), dt.date(1900, 1, 1))
    assert (a["at"], b["at"]) == (dt.time(13, 45, 30, 500000), dt.time(0))
    assert warehouse.json(a["doc"]) == {"ключ": "значение", "n": 1.5, "nested": {"x": [1, None, '"q"']}}
    assert warehouse.json(b["doc"]) == {}
    assert warehouse.json(a["tags"]) == ["a", "b"] and warehouse.json(b["tags"]) == []
    assert (a["mixed"], b["mixed"]) == ("5", "five")
    assert warehouse.json(a["anything"]) == [1, "two"] and warehouse.json(b["anything"]) == "x"
    assert a["received_at"] == dt.datetime(2024, 7, 1, tzinfo=UTC)
    now = dt.datetime.now(UTC)
    assert all(abs((row["received_at"] - now).total_seconds()) < 300 for row in (b, c, d))
    assert all(abs((row["uuid_ts"] - now).total_seconds()) < 300 for row in rows.values())


def test_object_and_array_properties_store_any_json_as_it_came(warehouse: Warehouse) -> None:
    # Taps declare them loosely: MeltanoLabs' tap-postgres declares a json column an object and sends
    # the arrays and scalars it holds (tests/e2e/test_interop.py); refusing them would stop such a sync.
    properties = {"id": {"type": "integer"}, "doc": {"type": ["null", "object"]}, "list": {"type": "array"}}
    values = {1: ([], {"a": 1}), 2: ("text", 5), 3: (1.5, None), 4: ({"k": [True]}, [1, "x"])}
    lines = [json.dumps(schema("loose", properties))]
    lines += [json.dumps(record("loose", {"id": k, "doc": d, "list": v})) for k, (d, v) in values.items()]
    assert warehouse.run(lines).error is None
    rows = warehouse.rows("loose")
    stored = {row["id"]: (warehouse.json(row["doc"]), warehouse.json(row["list"])) for row in rows}
    assert stored == values


def test_column_types(warehouse: Warehouse) -> None:
    assert warehouse.run(LINES).error is None
    columns = warehouse.columns("values")
    expected_postgres = {
        "id": "text",
        "text": "text",
        "amount": "numeric",
        "count": "bigint",
        "flag": "boolean",
        "created": "timestamp with time zone",
        "day": "date",
        "at": "time without time zone",
        "doc": "jsonb",
        "tags": "jsonb",
        "mixed": "text",
        "anything": "jsonb",
        "received_at": "timestamp with time zone",
        "uuid_ts": "timestamp with time zone",
    }
    expected_duckdb = {
        "id": "varchar",
        "text": "varchar",
        "amount": "decimal(38,18)",
        "count": "bigint",
        "flag": "boolean",
        "created": "timestamp with time zone",
        "day": "date",
        "at": "time",
        "doc": "json",
        "tags": "json",
        "mixed": "varchar",
        "anything": "json",
        "received_at": "timestamp with time zone",
        "uuid_ts": "timestamp with time zone",
    }
    assert columns == (expected_postgres if warehouse.engine == "postgres" else expected_duckdb)
    key = warehouse.query(
        "SELECT kcu.column_name FROM information_schema.table_constraints tc "
        "JOIN information_schema.key_column_usage kcu ON tc.constraint_name = kcu.constraint_name "
        "AND tc.table_schema = kcu.table_schema AND tc.table_name = kcu.table_name "
        "WHERE tc.table_schema = 'salesforce' AND tc.table_name = 'values' "
        "AND tc.constraint_type = 'PRIMARY KEY'"
    )
    assert key == [("id",)]


def test_integers_beyond_bigint_widen_and_stay_exact(warehouse: Warehouse) -> None:
    lines = [
        json.dumps(schema("big", {"id": {"type": "integer"}, "n": {"type": ["null", "integer"]}})),
        '{"type": "RECORD", "stream": "big", "record": {"id": 1, "n": 5}}',
        '{"type": "RECORD", "stream": "big", "record": {"id": 2, "n": 12345678901234567890}}',
        '{"type": "RECORD", "stream": "big", "record": {"id": 3, "n": -9223372036854775809}}',
    ]
    assert warehouse.run(lines).error is None
    values = {row["id"]: row["n"] for row in warehouse.rows("big")}
    assert values == {1: 5, 2: 12345678901234567890, 3: -9223372036854775809}
    assert warehouse.columns("big")["n"] in ("numeric", "decimal(38,18)")
    # Beyond what DuckDB's DECIMAL(38,18) holds: the column keeps exact text there.
    more = [lines[0], '{"type": "RECORD", "stream": "big", "record": {"id": 4, "n": 1' + "0" * 30 + "}}"]
    assert warehouse.run(more).error is None
    stored = {row["id"]: row["n"] for row in warehouse.rows("big")}
    assert Decimal(str(stored[4])) == Decimal(10**30)
    assert Decimal(str(stored[2])) == 12345678901234567890


def test_numbers_that_duckdb_decimal_cannot_hold_are_never_rounded(warehouse: Warehouse) -> None:
    precise = "0.1234567890123456789012"  # 22 decimals
    lines = [
        json.dumps(schema("precise", {"id": {"type": "integer"}, "x": {"type": "number"}})),
        '{"type": "RECORD", "stream": "precise", "record": {"id": 1, "x": 2.5}}',
        '{"type": "RECORD", "stream": "precise", "record": {"id": 2, "x": ' + precise + "}}",
    ]
    assert warehouse.run(lines).error is None
    stored = {row["id"]: row["x"] for row in warehouse.rows("precise")}
    assert Decimal(str(stored[2])) == Decimal(precise)
    assert Decimal(str(stored[1])) == Decimal("2.5")


def test_numbers_past_twenty_digits_before_the_point_are_kept_exact(warehouse: Warehouse) -> None:
    # DuckDB's DECIMAL(38,18) holds 20 digits before the point: these widen its column to exact text
    # (checking them once raised Python's decimal.InvalidOperation, and the run ended in a traceback).
    big = {2: "123456789012345678901", 3: "-99999999999999999999999999.5", 4: "1E+20", 5: "2.5e400"}
    lines = [
        json.dumps(schema("wide", {"id": {"type": "integer"}, "x": {"type": ["null", "number"]}})),
        '{"type": "RECORD", "stream": "wide", "record": {"id": 1, "x": 2.5}}',
        *(
            f'{{"type": "RECORD", "stream": "wide", "record": {{"id": {i}, "x": {text}}}}}'
            for i, text in big.items()
        ),
    ]
    assert warehouse.run(lines).error is None
    stored = {row["id"]: Decimal(str(row["x"])) for row in warehouse.rows("wide")}
    assert stored == {1: Decimal("2.5"), **{i: Decimal(text) for i, text in big.items()}}


# Numbers at the edges of PostgreSQL's numeric (131,072 digits before the point, 16,383 after, an
# exponent below 2^30 - 1 as written), on both sides.
NUMERIC_EDGES = [
    "1e131071", "1e131072", "9.9e131071", "10e131070", "100e131070", "0.01e131073", "0.1e131073",
    "-1e131071", "1e-16383", "1e-16384", "1.5e-16383", "0e-16383", "0.0e-16383", "1.000e-16380",
    "1.0000e-16380", "0e999999", "0e1073741822", "0e1073741823", "0e-99999", "1e999999999", "2.5",
    "0." + "0" * 16382 + "1", "0." + "0" * 16383 + "1", "1" + "0" * 131071, "1" + "0" * 131072,
]  # fmt: skip


def test_the_numeric_check_agrees_with_postgresql(postgres_database: str) -> None:
    import psycopg

    from target_warehouse_seg.engines.postgres_codec import fits_numeric

    with psycopg.connect(postgres_database, autocommit=True) as connection:
        for text in NUMERIC_EDGES:
            if text == "0e1073741823" and connection.info.server_version >= 160000:
                # PostgreSQL 16 moved its exponent limit by one (it reads this zero, 15 refuses it, as
                # any exponent past 1,073,741,822): the target keeps 15's limit on every server.
                assert fits_numeric(text.encode()) is False
                continue
            try:
                connection.execute("SELECT CAST(%s::text AS numeric)", [text])
                server = True
            except psycopg.DataError:
                server = False
            assert fits_numeric(text.encode()) is server, text[:40]


def test_a_number_numeric_cannot_hold(warehouse: Warehouse) -> None:
    # PostgreSQL refuses it naming the field (its own message names none); DuckDB keeps it as text.
    lines = [
        json.dumps(schema("huge", {"id": {"type": "integer"}, "x": {"type": ["null", "number"]}})),
        '{"type": "RECORD", "stream": "huge", "record": {"id": 1, "x": 2.5}}',
        '{"type": "RECORD", "stream": "huge", "record": {"id": 2, "x": 1e999999999}}',
    ]
    run = warehouse.run(lines)
    if warehouse.engine == "postgres":
        assert str(run.error).startswith(
            "Invalid input: line 3, stream huge, key id=2, field x: a number beyond what PostgreSQL's "
            "numeric holds (131,072 digits before the point, 16,383 after): JSON 1e999999999"
        ), run.error
        assert warehouse.count("huge") == 0
    else:
        assert run.error is None
        assert {row["id"]: row["x"] for row in warehouse.rows("huge")} == {1: "2.5", 2: "1e999999999"}


def test_nul_characters_are_removed_and_counted(
    warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [
        json.dumps(
            schema("nul", {"id": {"type": "string"}, "t": {"type": "string"}, "doc": {"type": "object"}})
        ),
        json.dumps(record("nul", {"id": "k\u0000", "t": "a\u0000b\u0000", "doc": {"v\u0000": "x\u0000y"}})),
        json.dumps(record("nul", {"id": "plain", "t": "no nul"})),
    ]
    with caplog.at_level(logging.WARNING, logger="target-warehouse-seg"):
        assert warehouse.run(lines).error is None
    rows = {row["id"]: row for row in warehouse.rows("nul")}
    assert rows["k"]["t"] == "ab"
    assert warehouse.json(rows["k"]["doc"]) == {"v": "xy"}
    assert rows["plain"]["t"] == "no nul"
    assert any("removed 5 NUL" in message for message in caplog.messages)


@pytest.mark.parametrize(
    ("text", "stored"), [("a\\u0000b", "ab"), ("a\\ud83db", "a\ufffdb")], ids=["NUL", "surrogate"]
)
def test_a_deeply_nested_value_beside_a_character_to_clean_is_stored(
    warehouse: Warehouse, text: str, stored: str
) -> None:
    """A record nested 600 levels deep is JSON that msgspec, DuckDB and PostgreSQL read; with a NUL or a
    lone surrogate to clean in it, the cleaning's recursive walk (two Python frames a level) raised
    RecursionError, and the run stopped in a traceback."""
    properties = {"id": {"type": "string"}, "t": {"type": ["null", "string"]}, "doc": {}}
    nested = "[" * 300 + '{"k\\u0000": ' + "[" * 299 + '"deep\\u0000"' + "]" * 299 + "}" + "]" * 300
    lines = [
        json.dumps(schema("deep", properties)),
        '{"type": "RECORD", "stream": "deep", "record": {"id": "r", "t": "'
        + text
        + '", "doc": '
        + nested
        + "}}",
    ]
    run = warehouse.run(lines)
    assert run.error is None, run.error
    [row] = warehouse.rows("deep")
    assert row["t"] == stored
    value = warehouse.json(row["doc"])
    for _ in range(300):
        [value] = value
    assert list(value) == ["k"]  # its NUL removed, as the one in the string 299 levels further in
    value = value["k"]
    for _ in range(299):
        [value] = value
    assert value == "deep"


def test_lone_surrogate_escapes_become_replacement_characters(
    warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    """Python's json.dumps writes a string cut in the middle of a UTF-16 pair (half an emoji) as a
    lone surrogate escape: valid JSON, but no character UTF-8 holds. The run stopped on "not valid
    JSON (Input data was truncated)"; the half character now becomes U+FFFD, as a NUL is removed."""
    properties = {"id": {"type": "string"}, "t": {"type": ["null", "string"]}, "doc": {"type": "object"}}
    many = [record("lone", {"id": f"r{index}", "t": "plain \U0001f600", "doc": {}}) for index in range(300)]
    lines = [
        json.dumps(schema("lone", properties)),
        *map(json.dumps, many),  # a block the fast decoders take, before the line they refuse
        '{"type": "RECORD", "stream": "lone", "record": {"id": "k\\ud83d", "t": "cut \\ud83d|\\ud83d\\ude00|'
        '\\\\ud800|\\udc00", "doc": {"\\udfff": ["\\ud800", 1.10]}}}',
        '{"type": "RECORD", "stream": "lone", "record": {"id": "again", "t": "\\ud83d", "doc": {}}}',
    ]
    with caplog.at_level(logging.WARNING, logger="target-warehouse-seg"):
        assert warehouse.run(lines).error is None
    rows = {row["id"]: row for row in warehouse.rows("lone")}
    assert len(rows) == 302
    assert rows["k\ufffd"]["t"] == "cut \ufffd|\U0001f600|\\ud800|\ufffd"
    assert warehouse.json(rows["k\ufffd"]["doc"]) == {"\ufffd": ["\ufffd", 1.1]}
    assert rows["again"]["t"] == "\ufffd"
    assert rows["r0"]["t"] == "plain \U0001f600"
    first = [
        message for message in caplog.messages if message.startswith("line 302, stream lone: replaced 5")
    ]
    assert len(first) == 1, caplog.messages
    assert "stream lone: replaced 6 lone UTF-16 surrogate escape(s) with U+FFFD in 2 lines" in caplog.messages


# singer-sdk's SQL taps (use_singer_decimal: tap-postgres, tap-mysql, ...) send exact numbers as strings
# of format "singer.decimal" (what their SingerDecimalType writes) or "x-singer.decimal" (what the SDK's
# SQL targets read).
DECIMAL_TEXT = {"type": ["string", "null"], "format": "singer.decimal"}
DECIMALS = {
    "id": {"type": "string", "format": "x-singer.decimal"},
    "amount": DECIMAL_TEXT,
    "either": {"anyOf": [{"type": "number"}, {"type": "string", "format": "x-singer.decimal"}]},
    "note": {"type": ["string", "null"]},
}


def test_singer_decimal_strings_load_as_exact_numbers(warehouse: Warehouse) -> None:
    amounts = {"1": "12.30", "2": "-0.000000000000000001", "3": "1E+5", "4": "0E-8", "5": None}
    lines = [
        json.dumps(schema("decimals", DECIMALS)),
        *(
            json.dumps(record("decimals", {"id": key, "amount": amount, "either": key}))
            for key, amount in amounts.items()
        ),
        '{"type": "RECORD", "stream": "decimals", "record": {"id": "6", "either": 7.25}}',
        # a NUL sends the record down the lenient path: the same numbers come out of it
        json.dumps(
            record(
                "decimals",
                {"id": "7", "amount": "99999999999999999999.5", "either": "-3", "note": "a\u0000b"},
            )
        ),
        json.dumps(record("decimals", {"id": "1.0", "amount": "12.31"})),  # key 1.0 is key 1: an update
    ]
    assert warehouse.run(lines).error is None
    number = "numeric" if warehouse.engine == "postgres" else "decimal(38,18)"
    columns = warehouse.columns("decimals")
    assert [columns[name] for name in ("id", "amount", "either", "note")] == [
        number,
        number,
        number,
        columns["note"],
    ]
    stored = {Decimal(str(row["id"])): row for row in warehouse.rows("decimals")}
    assert stored.keys() == {Decimal(key) for key in ["1", "2", "3", "4", "5", "6", "7"]}

    def exact(value: object) -> Decimal | None:
        return None if value is None else Decimal(str(value))

    assert {key: exact(row["amount"]) for key, row in stored.items()} == {
        Decimal("1"): Decimal("12.31"),
        **{Decimal(key): exact(amount) for key, amount in amounts.items() if key != "1"},
        Decimal("6"): None,
        Decimal("7"): Decimal("99999999999999999999.5"),
    }
    assert exact(stored[Decimal("6")]["either"]) == Decimal("7.25")
    assert exact(stored[Decimal("7")]["either"]) == Decimal("-3")


@pytest.mark.parametrize("lenient", [False, True], ids=["typed", "lenient"])
@pytest.mark.parametrize("text", ["abc", "NaN", "1,5", " 12", "+1", "", "0x10", "null"])
def test_a_singer_decimal_string_that_holds_no_number_is_invalid(
    warehouse: Warehouse, text: str, lenient: bool
) -> None:
    note = "a\u0000b" if lenient else "ab"  # a NUL sends the record down the lenient path
    lines = [
        json.dumps(schema("decimals", DECIMALS)),
        json.dumps(record("decimals", {"id": "1", "amount": "2.5"})),
        json.dumps(record("decimals", {"id": "2", "amount": text, "note": note})),
    ]
    run = warehouse.run(lines)
    assert run.error is not None and "line 3" in str(run.error) and "amount" in str(run.error), run.error
    assert "expected a number" in str(run.error), run.error
    assert warehouse.count("decimals") == 0
    quarantined = warehouse.run(lines, on_invalid_record="quarantine")
    assert quarantined.error is None
    assert [Decimal(str(row["id"])) for row in warehouse.rows("decimals")] == [Decimal("1")]


def test_nan_is_not_json_and_says_so(warehouse: Warehouse) -> None:
    """A lone surrogate is mended; NaN, which Python's json.dumps also writes, is not JSON and has no
    exact value to store: it stays invalid input (even beside a lone surrogate on the same line)."""
    lines = [
        json.dumps(schema("nan", {"id": {"type": "string"}, "x": {"type": ["null", "number"]}})),
        '{"type": "RECORD", "stream": "nan", "record": {"id": "a\\ud83d", "x": NaN}}',
    ]
    run = warehouse.run(lines)
    assert str(run.error).startswith("Invalid input: line 2: not valid JSON"), run.error
    assert warehouse.count("nan") == 0


def test_date_times_keep_their_instant_in_every_form(warehouse: Warehouse) -> None:
    # Offsets of whole minutes come through the fast decoder; one with seconds (which Python reads,
    # RFC 3339 does not) through the lenient one; the last instants of year 9999; a leap day.
    properties = {
        "id": {"type": "integer"},
        "at": {"type": ["null", "string"], "format": "date-time"},
        "note": {"type": ["null", "string"]},
    }
    stamps = {
        1: ("2024-03-10T01:02:03.000004-09:30", dt.datetime(2024, 3, 10, 10, 32, 3, 4, tzinfo=UTC)),
        2: ("2024-03-10T01:02:03+00:00:30", dt.datetime(2024, 3, 10, 1, 1, 33, tzinfo=UTC)),
        3: ("9999-12-31T23:59:59.999999Z", dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        4: ("2000-02-29T23:00:00-01:00", dt.datetime(2000, 3, 1, tzinfo=UTC)),
        # Digits past the microsecond round, on the fast path and on the lenient one (a NUL in `note`).
        5: ("2024-03-10T01:02:03.1234567Z", dt.datetime(2024, 3, 10, 1, 2, 3, 123457, tzinfo=UTC)),
        6: ("2024-03-10T01:02:03.9999995Z", dt.datetime(2024, 3, 10, 1, 2, 4, tzinfo=UTC)),
    }
    notes = {6: "a\u0000b"}
    lines = [schema("forms", properties, bookmark=["at"])]
    lines += [
        record("forms", {"id": key, "at": text, "note": notes.get(key)}) for key, (text, _) in stamps.items()
    ]
    assert warehouse.run(lines).error is None
    assert {row["id"]: row["at"] for row in warehouse.rows("forms")} == {k: v for k, (_, v) in stamps.items()}


def test_a_date_or_date_time_property_stores_the_instant_a_date_time_property_does(
    warehouse: Warehouse,
) -> None:
    # The same text in a property that may hold a date or a date-time (`either`) and in a date-time
    # property (`at`): the forms the target reads (ISO 8601's lowercase, basic, week-date and comma
    # forms, digits past the microsecond) store the same instant in both, whichever forms the
    # database would read itself; what the target does not read as a date-time, the database does
    # not get to read either (PostgreSQL takes `now` as the load's time, DuckDB `infinity` as 9999).
    properties = {
        "id": {"type": "integer"},
        "at": {"type": ["null", "string"], "format": "date-time"},
        "either": DATE_OR_DATE_TIME,
    }
    stamps = {
        1: ("2024-03-10", dt.datetime(2024, 3, 10, tzinfo=UTC)),
        2: ("2024-03-10T01:02:03.1234567Z", dt.datetime(2024, 3, 10, 1, 2, 3, 123457, tzinfo=UTC)),
        3: ("2024-03-10T01:02:03.9999995+05:30", dt.datetime(2024, 3, 9, 19, 32, 4, tzinfo=UTC)),
        4: ("2024-03-10t01:02:03z", dt.datetime(2024, 3, 10, 1, 2, 3, tzinfo=UTC)),
        5: ("20240310T010203", dt.datetime(2024, 3, 10, 1, 2, 3, tzinfo=UTC)),
        6: ("2024-W10-7", dt.datetime(2024, 3, 10, tzinfo=UTC)),
        7: ("2024-03-10T01:02:03,5-01:00", dt.datetime(2024, 3, 10, 2, 2, 3, 500000, tzinfo=UTC)),
        8: ("2024-03-10T01:02:03+00:00:30", dt.datetime(2024, 3, 10, 1, 1, 33, tzinfo=UTC)),
        9: ("0001-01-01T00:00:00Z", dt.datetime(1, 1, 1, tzinfo=UTC)),
    }
    words = ["now", "today", "epoch", "infinity", "-infinity", "2024-03-10 01:02:03 PST", "2024-3-10"]
    lines = [schema("forms", properties)]
    lines += [record("forms", {"id": key, "at": text, "either": text}) for key, (text, _) in stamps.items()]
    lines += [record("forms", {"id": 100 + index, "either": word}) for index, word in enumerate(words)]
    # One record per batch: a batch holding only such a word once reached the database as it came.
    run = warehouse.run(lines, batch_size_rows=1, on_invalid_record="quarantine")
    assert run.error is None, run.error
    stored = {row["id"]: (row["at"], row["either"]) for row in warehouse.rows("forms")}
    assert stored == {key: (instant, instant) for key, (_, instant) in stamps.items()}
    rejected = warehouse.rows("_rejected_records", order_by="line")
    assert [(row["field"], row["error"]) for row in rejected] == [
        ("either", f"expected a date or date-time, got text {word!r}") for word in words
    ]


def test_a_date_or_date_time_property_in_a_text_column_keeps_its_text(warehouse: Warehouse) -> None:
    # A text column (the property was plain text before) keeps each value as it came, once checked.
    first = {"id": {"type": "integer"}, "either": {"type": ["null", "string"]}}
    assert warehouse.run([schema("kept", first), record("kept", {"id": 1, "either": "hello"})]).error is None
    lines = [schema("kept", {**first, "either": DATE_OR_DATE_TIME})]
    lines += [record("kept", {"id": 2, "either": "2024-03-10"}), record("kept", {"id": 3, "either": "soon"})]
    run = warehouse.run(lines, on_invalid_record="quarantine")
    assert run.error is None, run.error
    assert {row["id"]: row["either"] for row in warehouse.rows("kept")} == {1: "hello", 2: "2024-03-10"}
    assert [row["line"] for row in warehouse.rows("_rejected_records", order_by="line")] == [3]


def test_times_of_day_read_alike_on_both_paths(warehouse: Warehouse) -> None:
    # A zoned time takes the lenient path (its zone is dropped); digits past the microsecond round there
    # as on the fast path.
    lines = [schema("times", {"id": {"type": "integer"}, "at": {"type": "string", "format": "time"}})]
    texts = {1: "13:45:30.1234567", 2: "13:45:30.1234567+05:00", 3: "13:45"}
    lines += [record("times", {"id": key, "at": text}) for key, text in texts.items()]
    assert warehouse.run(lines).error is None
    stored = {row["id"]: row["at"] for row in warehouse.rows("times")}
    assert stored == {1: dt.time(13, 45, 30, 123457), 2: dt.time(13, 45, 30, 123457), 3: dt.time(13, 45)}


def test_time_extracted_and_read_time(warehouse: Warehouse) -> None:
    lines = [
        schema("stamps", {"id": {"type": "integer"}}),
        record("stamps", {"id": 1}, time_extracted="2020-05-06T07:08:09.123456+02:00"),
        record("stamps", {"id": 2}),
        record("stamps", {"id": 3}, time_extracted="2021-01-02T03:04:05"),  # no zone: UTC
        record("stamps", {"id": 4}, time_extracted="yesterday"),  # unreadable: the read time
        record("stamps", {"id": 5}, time_extracted="2020-05-06T07:08:09+00:00:30"),  # seconds too
        # Rounded past the microsecond, also when read leniently (no zone, or an offset with seconds).
        record("stamps", {"id": 6}, time_extracted="2020-05-06T07:08:09.9999996"),
        record("stamps", {"id": 7}, time_extracted="2020-05-06T07:08:09.1234565+00:00:30"),
    ]
    before = dt.datetime.now(UTC)
    assert warehouse.run(lines).error is None
    rows = {row["id"]: row for row in warehouse.rows("stamps")}
    assert rows[1]["received_at"] == dt.datetime(2020, 5, 6, 5, 8, 9, 123456, tzinfo=UTC)
    assert before - dt.timedelta(seconds=5) <= rows[2]["received_at"] <= dt.datetime.now(UTC)
    assert rows[3]["received_at"] == dt.datetime(2021, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert before - dt.timedelta(seconds=5) <= rows[4]["received_at"] <= dt.datetime.now(UTC)
    assert rows[5]["received_at"] == dt.datetime(2020, 5, 6, 7, 7, 39, tzinfo=UTC)
    assert rows[6]["received_at"] == dt.datetime(2020, 5, 6, 7, 8, 10, tzinfo=UTC)
    assert rows[7]["received_at"] == dt.datetime(2020, 5, 6, 7, 7, 39, 123457, tzinfo=UTC)
    assert rows[1]["uuid_ts"] >= before - dt.timedelta(seconds=5)
