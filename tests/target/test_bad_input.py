"""Bad input: one clear line, a non-zero exit, nothing of the failing batch written, no state beyond the
last commit; or, with ``on_invalid_record: quarantine``, the record set aside with its error."""

from __future__ import annotations

import json

import pytest
from conftest import Warehouse, record, schema, state, to_lines

from target_warehouse_seg.errors import InvalidRecord

PROPERTIES = {
    "id": {"type": "integer"},
    "n": {"type": ["null", "integer"]},
    "amount": {"type": ["null", "number"]},
    "when": {"type": ["null", "string"], "format": "date-time"},
    "day_or_time": {
        "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]
    },
    "note": {"type": ["null", "string"]},
}


def good(key: int) -> dict:
    return record("s", {"id": key, "n": key, "amount": key, "when": "2024-01-01T00:00:00Z"})


# Each case: the bad line (line 6 of the input), and what the error line must say.
CASES = {
    "not json": ('{"type": "RECORD", "stream": "s", "record": {"id": 4', "line 6: not valid JSON"),
    "record before schema": (
        json.dumps(record("other", {"id": 4})),
        "line 6, stream other: RECORD arrived before the stream's SCHEMA",
    ),
    "missing key": (
        json.dumps(record("s", {"n": 4})),
        "line 6, stream s, field id: record is missing key property 'id'",
    ),
    "null key": (
        json.dumps(record("s", {"id": None, "n": 4})),
        "line 6, stream s, field id: record is missing key property 'id'",
    ),
    "text in integer": (
        json.dumps(record("s", {"id": 4, "n": "four"})),
        "line 6, stream s, key id=4, field n: expected an integer, got text 'four'",
    ),
    "impossible date": (
        json.dumps(record("s", {"id": 4, "when": "2024-02-30T00:00:00Z"})),
        "line 6, stream s, key id=4, field when: expected a date-time",
    ),
    "text in number": (
        json.dumps(record("s", {"id": 4, "amount": "12.50"})),
        "line 6, stream s, key id=4, field amount: expected a number",
    ),
    "object in integer": (
        json.dumps(record("s", {"id": 4, "n": {"x": 1}})),
        "line 6, stream s, key id=4, field n: expected an integer",
    ),
    # Bytes that are not UTF-8 in a text property (a lone surrogate, as the input is encoded here).
    "text that is not UTF-8": (
        '{"type": "RECORD", "stream": "s", "record": {"id": 4, "note": "caf\udce9"}}',
        "line 6, stream s: record holds text that is not UTF-8",
    ),
    "envelope that is not UTF-8": (
        '{"type": "RECORD", "stream": "s\udcff", "record": {"id": 4}}',
        "line 6: not UTF-8 text",
    ),
    "state without a value": ('{"type": "STATE"}', "line 6: malformed STATE message"),
    # Valid JSON that msgspec (and so Python) cannot read: deeper than the recursion limit, or an
    # integer longer than Python reads from text.
    "nested too deeply": (
        # Deeper than the limit of every Python: 1,000 levels up to 3.11, about 10,000 from 3.12.
        '{"type": "RECORD", "stream": "s", "record": {"id": 4, "note": ' + "[" * 20000 + "]" * 20000 + "}}",
        "line 6: not readable: objects or arrays nested deeper than Python's recursion limit",
    ),
    "integer of 5,000 digits": (
        '{"type": "RECORD", "stream": "s", "record": {"id": 4, "n": ' + "7" * 5000 + "}}",
        "line 6, stream s: record is not readable: an integer of more than 4,300 digits",
    ),
    # A property that may hold a date or a date-time is read by the target too, not left to the database.
    "impossible date in a date-or-date-time property": (
        json.dumps(record("s", {"id": 4, "day_or_time": "2024-02-30"})),
        "line 6, stream s, key id=4, field day_or_time: expected a date or date-time, got text '2024-02-30'",
    ),
    "a word the database would read as a date-time": (
        json.dumps(record("s", {"id": 4, "day_or_time": "now"})),
        "line 6, stream s, key id=4, field day_or_time: expected a date or date-time, got text 'now'",
    ),
}


def messages(bad_line: str) -> list:
    # Lines 1-5 commit as a first batch (batch_size_rows=2) with state 1; the bad line is line 6.
    return [
        schema("s", PROPERTIES),
        good(1),
        state({"n": 1}),
        good(2),
        state({"n": 2}),
        bad_line,
        good(3),
        state({"n": 3}),
    ]


def test_input_that_starts_with_a_byte_order_mark_loads(warehouse: Warehouse) -> None:
    lines = ["\ufeff" + json.dumps(schema("s", PROPERTIES)), json.dumps(good(1)), json.dumps(state(1))]
    run = warehouse.run(lines)
    assert run.error is None and run.states == [1]
    assert [row["id"] for row in warehouse.rows("s")] == [1]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_stops_the_run(warehouse: Warehouse, case: str) -> None:
    bad_line, expected = CASES[case]
    run = warehouse.run(messages(bad_line), batch_size_rows=2)
    assert isinstance(run.error, InvalidRecord), run.error
    assert str(run.error).startswith(f"Invalid input: {expected}"), str(run.error)
    assert "\n" not in str(run.error)
    assert run.states == [{"n": 1}, {"n": 2}]  # never beyond the last commit
    assert [row["id"] for row in warehouse.rows("s")] == [1, 2]  # nothing of the failing batch


@pytest.mark.parametrize("case", list(CASES))
def test_quarantine_sets_the_record_aside_and_goes_on(warehouse: Warehouse, case: str) -> None:
    bad_line, expected = CASES[case]
    run = warehouse.run(messages(bad_line), batch_size_rows=2, on_invalid_record="quarantine")
    assert run.error is None, run.error
    assert run.states[-1] == {"n": 3}
    assert [row["id"] for row in warehouse.rows("s")] == [1, 2, 3]
    rejected = warehouse.rows("_rejected_records", order_by="line")
    assert len(rejected) == 1
    row = rejected[0]
    assert row["line"] == 6
    where = expected.split(": ", 1)[0]
    if ", stream " in where or where.startswith("line 6, stream"):
        assert row["stream"] == where.split("stream ")[1].split(",")[0]
    if "field " in where:
        assert row["field"] == where.split("field ")[1]
    if ": " in expected:
        assert row["error"].startswith(expected.split(": ", 1)[1])
    assert row["record"]  # the record (or line) itself, to replay once fixed
    assert row["rejected_at"] is not None


def test_a_row_the_database_refuses_is_located(warehouse: Warehouse) -> None:
    """The database may refuse a row the target found valid, for reasons of its own (here a CHECK
    constraint someone put on the table): the unit is rolled back, and the refused row is found by
    trying its batch in parts, so the error names its line and key."""
    warehouse.execute(
        "CREATE SCHEMA salesforce",
        "CREATE TABLE salesforce.s (id BIGINT PRIMARY KEY, n BIGINT CHECK (n < 100), "
        "received_at TIMESTAMP WITH TIME ZONE, uuid_ts TIMESTAMP WITH TIME ZONE)",
    )
    properties = {"id": {"type": "integer"}, "n": {"type": ["null", "integer"]}}
    lines = [schema("s", properties)]
    lines += [record("s", {"id": key, "n": 500 if key == 24 else key}) for key in range(1, 40)]
    lines += [state({"n": 39})]
    run = warehouse.run(lines)
    assert isinstance(run.error, InvalidRecord), run.error
    assert str(run.error).startswith("Invalid input: line 25, stream s, key id=24"), str(run.error)
    assert "\n" not in str(run.error)
    assert run.states == [] and warehouse.count("s") == 0  # the unit was rolled back whole

    quarantined = warehouse.run(lines, on_invalid_record="quarantine")
    assert quarantined.error is None and quarantined.states == [{"n": 39}]
    assert [row["id"] for row in warehouse.rows("s")] == [key for key in range(1, 40) if key != 24]
    rejected = warehouse.rows("_rejected_records", order_by="line")
    assert [(row["line"], json.loads(row["record"])) for row in rejected] == [(25, {"id": 24, "n": 500})]


def test_cli_reports_one_line_and_exits_non_zero(warehouse: Warehouse) -> None:
    bad_line, expected = CASES["text in integer"]
    done = warehouse.cli(to_lines(messages(bad_line)), batch_size_rows=2)
    assert done.returncode == 1
    assert done.states == [{"n": 1}, {"n": 2}]
    errors = done.error_lines
    assert len(errors) == 1 and errors[0].endswith(f"Invalid input: {expected}"), done.stderr
    assert "Traceback" not in done.stderr
    assert [row["id"] for row in warehouse.rows("s")] == [1, 2]


def test_a_schema_without_properties_is_refused(warehouse: Warehouse) -> None:
    run = warehouse.run(
        [{"type": "SCHEMA", "stream": "x", "schema": {"type": "object"}, "key_properties": []}]
    )
    assert run.error is not None and "stream x" in str(run.error) and "properties" in str(run.error)


@pytest.mark.parametrize("name", ["", "  "])
def test_a_schema_without_a_stream_name_is_refused(warehouse: Warehouse, name: str) -> None:
    """It loaded into a table named "_" (or "__" for two blanks), which no stream can name on purpose."""
    run = warehouse.run([schema(name, PROPERTIES), record(name, {"id": 1}), state(1)])
    assert str(run.error) == f"a SCHEMA message names no stream (`stream` is {name!r})"
    assert run.states == [] and warehouse.tables() == set()


@pytest.mark.parametrize("name", ["c\\d", 'say "hi"', "tab\there"])
def test_a_property_name_records_cannot_be_read_by_is_refused_in_one_line(
    warehouse: Warehouse, name: str
) -> None:
    """Legal JSON keys that the record decoder cannot match (it ended in a Python traceback)."""
    properties = {"id": {"type": "integer"}, name: {"type": ["null", "string"]}}
    done = warehouse.cli(to_lines([schema("s", properties), record("s", {"id": 1, name: "x"}), state(1)]))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.error_lines) == 1 and done.error_lines[0].endswith(
        f"stream s: property {name!r} has a backslash, a double quote or a control character in its "
        "name, which the target cannot read records by: rename the property in the tap (a stream map's "
        "alias, for a singer-sdk tap)"
    ), done.stderr
    assert done.states == [] and warehouse.tables() <= {"_rejected_records"}


# Two invalid records of one chunk, each found by another check: the date-times are read before the
# numbers are checked, and before, the error named line 4.
FIRST_AND_SECOND = {
    "number, then date-time": ({"amount": "12.50"}, {"when": "2024-02-30T00:00:00Z"}, "amount"),
    "number, then key": ({"amount": "12.50"}, {"id": None}, "amount"),
    "key, then date-time": ({"id": None}, {"when": "2024-02-30T00:00:00Z"}, "id"),
}


@pytest.mark.parametrize("case", list(FIRST_AND_SECOND))
def test_the_first_invalid_record_of_a_chunk_is_the_one_named(warehouse: Warehouse, case: str) -> None:
    first, second, field = FIRST_AND_SECOND[case]
    lines = [schema("s", PROPERTIES), good(1), {**good(2), "record": {**good(2)["record"], **first}}]
    lines += [{**good(3), "record": {**good(3)["record"], **second}}, good(4), state(1)]
    run = warehouse.run(lines)
    assert isinstance(run.error, InvalidRecord), run.error
    assert str(run.error).startswith("Invalid input: line 3, stream s"), str(run.error)
    assert f"field {field}: " in str(run.error)
    assert run.states == [] and warehouse.count("s") == 0


@pytest.mark.parametrize("mode", ["fail", "quarantine"])
def test_input_that_ends_in_the_middle_of_a_line_says_so(warehouse: Warehouse, mode: str) -> None:
    """A tap killed while writing a line leaves the input's last line cut short, without its newline:
    it was reported as bad JSON ("Input data was truncated"), pointing at the data, and with quarantine
    stored in _rejected_records as if it were a bad record. Now the run stops saying what happened."""
    whole = to_lines([schema("s", PROPERTIES), good(1), state({"n": 1}), good(2), state({"n": 2})])
    run = warehouse.cli(whole + '{"type": "RECORD", "stream": "s", "record": {"id": 3', batch_size_rows=2,
                        on_invalid_record=mode)  # fmt: skip
    assert run.returncode == 1
    assert len(run.error_lines) == 1, run.stderr[-2000:]
    assert run.error_lines[0].endswith(
        "Invalid input: line 6: the input ended in the middle of this line (the program writing it "
        "stopped, or the input was cut)"
    ), run.error_lines
    assert run.states == [{"n": 1}, {"n": 2}]
    assert [row["id"] for row in warehouse.rows("s")] == [1, 2]
    assert "_rejected_records" not in warehouse.tables() or warehouse.rows("_rejected_records", "line") == []


def test_a_last_line_without_its_newline_that_is_whole_is_loaded(warehouse: Warehouse) -> None:
    text = to_lines([schema("s", PROPERTIES), good(1)]) + json.dumps(good(2))
    run = warehouse.cli(text)
    assert run.returncode == 0, run.stderr[-2000:]
    assert [row["id"] for row in warehouse.rows("s")] == [1, 2]
