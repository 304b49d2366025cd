"""PostgreSQL types the target keeps in tables it finds (a table another role owns, whose types the run may
not change; `character(n)` anywhere) and that hold a length or a scale. PostgreSQL's explicit cast to
them cuts text and rounds numbers without a word: `much too long` was stored as `much too l`, two ids
longer than their varchar(18) key became one row. A value such a type cannot hold whole is invalid input:
the run stops naming its line, or quarantines it and goes on."""

from __future__ import annotations

import json
import typing as t
from decimal import Decimal

import pytest
from conftest import Warehouse, record, schema, state

from target_warehouse_seg.errors import InvalidRecord

PROPERTIES = {
    "id": {"type": "string"},
    "name": {"type": ["null", "string"]},
    "amount": {"type": ["null", "number"]},
    "code": {"type": ["null", "string"]},
}
GOOD = {"id": "a", "name": "fits", "amount": 1.5, "code": "ab"}
# A value each kept type cannot hold whole, and the start of its refusal.
CASES = {
    "varchar": ("name", "much too long", "value too long for type character varying(10) (13 characters)"),
    "numeric": ("amount", 1.234, "value 1.234 has more decimal places than numeric(10,2) holds"),
    "character": ("code", "abcdefg", "value too long for type character(4) (7 characters)"),
}


def _writer_only(pg: Warehouse, columns: str) -> str:
    """A table `accounts` another role owns, and the URL of a session that may only write its rows (and
    create tables in the schema: `_rejected_records`)."""
    pg.execute(
        "CREATE SCHEMA salesforce",
        f"CREATE TABLE salesforce.accounts ({columns}, received_at timestamptz, uuid_ts timestamptz)",
        "CREATE ROLE kept_types_writer",
        "GRANT USAGE, CREATE ON SCHEMA salesforce TO kept_types_writer",
        "GRANT SELECT, INSERT, UPDATE ON salesforce.accounts TO kept_types_writer",
    )
    url = pg.base_config["sqlalchemy_url"]
    return url + ("&" if "?" in url else "?") + "options=-crole%3Dkept_types_writer"


@pytest.fixture
def writer_url(pg: Warehouse) -> t.Iterator[str]:
    columns = "id varchar(18) PRIMARY KEY, name varchar(10), amount numeric(10,2), code character(4)"
    try:
        yield _writer_only(pg, columns)
    finally:
        pg.execute("DROP OWNED BY kept_types_writer CASCADE", "DROP ROLE kept_types_writer")


def _messages(values: dict[str, t.Any]) -> list[t.Any]:
    return [
        schema("accounts", PROPERTIES),
        record("accounts", GOOD),
        record("accounts", {**GOOD, "id": "b", **values}),
        record("accounts", {**GOOD, "id": "c"}),
        state({"n": 1}),
    ]


@pytest.mark.parametrize("case", list(CASES))
def test_a_value_a_kept_type_cannot_hold_stops_the_run(pg: Warehouse, writer_url: str, case: str) -> None:
    field, value, refusal = CASES[case]
    run = pg.run(_messages({field: value}), sqlalchemy_url=writer_url)
    assert isinstance(run.error, InvalidRecord), run.error
    assert str(run.error).startswith(
        f"Invalid input: line 3, stream accounts, key id='b', field {field}: {refusal}"
    ), str(run.error)
    assert "\n" not in str(run.error)
    assert run.states == [] and pg.count("accounts") == 0


@pytest.mark.parametrize("case", list(CASES))
def test_a_value_a_kept_type_cannot_hold_is_quarantined(pg: Warehouse, writer_url: str, case: str) -> None:
    field, value, refusal = CASES[case]
    # Zeros past the scale round nothing away; trailing spaces are character(n)'s own padding.
    whole = json.dumps(record("accounts", {**GOOD, "id": "d", "amount": 1, "code": "abcd   "}))
    lines = [
        *_messages({field: value})[:-1],
        whole.replace('"amount": 1', '"amount": 1.230'),
        state({"n": 1}),
    ]
    run = pg.run(lines, sqlalchemy_url=writer_url, on_invalid_record="quarantine")
    assert run.error is None, run.error
    assert run.states == [{"n": 1}]
    rows = pg.rows("accounts", columns="id, name, amount, code")
    assert rows == [
        {"id": "a", "name": "fits", "amount": Decimal("1.50"), "code": "ab  "},
        {"id": "c", "name": "fits", "amount": Decimal("1.50"), "code": "ab  "},
        {"id": "d", "name": "fits", "amount": Decimal("1.23"), "code": "abcd"},
    ]
    (rejected,) = pg.rows("_rejected_records", order_by="line")
    assert (rejected["line"], rejected["field"]) == (3, field)
    assert rejected["error"].startswith(refusal), rejected["error"]
    assert str(json.loads(rejected["record"])[field]) == str(value)  # numbers as their exact text


LONG_IDS = ("001Em0000000001IAAXYZ", "001Em0000000001IAAQRS")  # one 18-character prefix


def test_keys_longer_than_a_varchar_key_are_invalid_not_one_row(pg: Warehouse, writer_url: str) -> None:
    """Cut to 18 characters, two ids became one key: the second run overwrote the first's row, and in one
    batch PostgreSQL refused the statement ("cannot affect row a second time")."""
    stream = schema("accounts", PROPERTIES)
    for key in LONG_IDS:  # in two runs
        run = pg.run([stream, record("accounts", {**GOOD, "id": key}), state(key)], sqlalchemy_url=writer_url)
        assert isinstance(run.error, InvalidRecord), run.error
        assert str(run.error).startswith(
            f"Invalid input: line 2, stream accounts, key id='{key}', field id: "
            "value too long for type character varying(18) (21 characters)"
        ), str(run.error)
        assert run.states == []
    together = [stream, *(record("accounts", {**GOOD, "id": key}) for key in LONG_IDS), state(1)]
    run = pg.run(together, sqlalchemy_url=writer_url)
    assert isinstance(run.error, InvalidRecord), run.error
    assert str(run.error).startswith(f"Invalid input: line 2, stream accounts, key id='{LONG_IDS[0]}'")
    assert pg.count("accounts") == 0

    run = pg.run(
        [*together, record("accounts", GOOD)], sqlalchemy_url=writer_url, on_invalid_record="quarantine"
    )
    assert run.error is None, run.error
    assert [row["id"] for row in pg.rows("accounts")] == ["a"]
    rejected = pg.rows("_rejected_records", order_by="line")
    assert [(row["line"], row["field"], json.loads(row["record"])["id"]) for row in rejected] == [
        (2, "id", LONG_IDS[0]),
        (3, "id", LONG_IDS[1]),
    ]


def test_character_n_in_a_table_the_target_owns_is_not_cut(pg: Warehouse) -> None:
    """character(n) stays in the target's own tables too (its cast to text drops the padding)."""
    pg.execute(
        "CREATE SCHEMA salesforce",
        "CREATE TABLE salesforce.accounts (id text PRIMARY KEY, code character(4), "
        "received_at timestamptz, uuid_ts timestamptz)",
    )
    properties = {"id": {"type": "string"}, "code": {"type": ["null", "string"]}}
    lines = [schema("accounts", properties), record("accounts", {"id": "a", "code": "abcdefg"})]
    lines += [record("accounts", {"id": "b", "code": "ab"}), state(1)]
    run = pg.run(lines)
    assert isinstance(run.error, InvalidRecord), run.error
    assert str(run.error).startswith(
        "Invalid input: line 2, stream accounts, key id='a', field code: "
        "value too long for type character(4) (7 characters)"
    ), str(run.error)
    assert run.states == [] and pg.count("accounts") == 0
    run = pg.run(lines, on_invalid_record="quarantine")
    assert run.error is None and run.states == [1]
    assert pg.rows("accounts", columns="id, code") == [{"id": "b", "code": "ab  "}]
    (rejected,) = pg.rows("_rejected_records", order_by="line")
    assert (rejected["line"], rejected["field"]) == (2, "code")


def test_the_first_refused_record_is_named_whatever_its_stream(pg: Warehouse) -> None:
    """A unit holds a batch per stream; the one whose refused record comes first in the input is named,
    not the first stream's. Within one batch, of two refused records the first is named."""
    pg.execute(
        "CREATE SCHEMA salesforce",
        *(
            f"CREATE TABLE salesforce.{table} (id text PRIMARY KEY, code character(2), "
            "received_at timestamptz, uuid_ts timestamptz)"
            for table in ("first", "second")
        ),
    )
    properties = {"id": {"type": "string"}, "code": {"type": ["null", "string"]}}
    lines = [schema("first", properties), schema("second", properties)]
    lines += [record("first", {"id": "a", "code": "ok"})]
    lines += [record("second", {"id": "b", "code": "too long"})]  # line 4
    lines += [record("second", {"id": "c", "code": "also too long"})]
    lines += [record("first", {"id": "d", "code": "too long"}), state(1)]
    run = pg.run(lines)
    assert isinstance(run.error, InvalidRecord), run.error
    assert str(run.error).startswith("Invalid input: line 4, stream second, key id='b', field code: ")
    assert run.states == [] and pg.count("first") == 0 and pg.count("second") == 0
