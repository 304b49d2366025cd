"""Schema evolution and identifier edge cases, on both engines."""

from __future__ import annotations

import datetime as dt
import logging
import typing as t
from decimal import Decimal

import pytest
from conftest import Warehouse, record, schema, state

from target_warehouse_seg.errors import SchemaConflict


def test_a_new_property_adds_a_column(warehouse: Warehouse) -> None:
    first = schema("s", {"id": {"type": "integer"}, "a": {"type": "string"}})
    second = schema("s", {"id": {"type": "integer"}, "a": {"type": "string"}, "b": {"type": "boolean"}})
    run = warehouse.run(
        [first, record("s", {"id": 1, "a": "x"}), second, record("s", {"id": 2, "a": "y", "b": True})]
    )
    assert run.error is None
    assert [(r["id"], r["a"], r["b"]) for r in warehouse.rows("s")] == [(1, "x", None), (2, "y", True)]


def test_types_widen_keeping_every_value(warehouse: Warehouse) -> None:
    def props(n: str, d: str) -> dict:
        return {"id": {"type": "integer"}, "n": {"type": n}, "d": {"type": "string", "format": d}}

    as_int = schema("w", props("integer", "date"))
    assert warehouse.run([as_int, record("w", {"id": 1, "n": 7, "d": "2024-03-01"})]).error is None
    as_number = schema("w", props("number", "date-time"))
    assert (
        warehouse.run(
            [
                as_number,
                '{"type": "RECORD", "stream": "w", "record": {"id": 2, "n": 7.25, '
                '"d": "2024-03-02T10:00:00+01:00"}}',
            ]
        ).error
        is None
    )
    rows = {r["id"]: r for r in warehouse.rows("w")}
    assert rows[1]["n"] == 7 and rows[2]["n"] == Decimal("7.25")
    assert rows[1]["d"] == dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    assert rows[2]["d"] == dt.datetime(2024, 3, 2, 9, tzinfo=dt.UTC)
    as_text = schema("w", {"id": {"type": "integer"}, "n": {"type": "string"}, "d": {"type": "string"}})
    assert warehouse.run([as_text, record("w", {"id": 3, "n": "seven", "d": "someday"})]).error is None
    rows = {r["id"]: r for r in warehouse.rows("w")}
    assert warehouse.columns("w")["n"] in ("text", "varchar")
    assert Decimal(rows[1]["n"]) == 7 and Decimal(rows[2]["n"]) == Decimal("7.25") and rows[3]["n"] == "seven"
    # Instants as RFC 3339 UTC text (on both engines, sorting as the instants do).
    assert (rows[1]["d"], rows[2]["d"]) == ("2024-03-01T00:00:00.000000Z", "2024-03-02T09:00:00.000000Z")
    assert rows[3]["d"] == "someday"
    # Narrower types later never narrow the column: integers go into the text column as text.
    assert warehouse.run([as_int, record("w", {"id": 4, "n": 8, "d": "2024-03-04"})]).error is None
    assert {r["id"]: r["n"] for r in warehouse.rows("w")}[4] == "8"


@pytest.mark.parametrize("to", ["date-time", "text"])
def test_dates_widen_alike_whatever_the_servers_date_style_and_zone(warehouse: Warehouse, to: str) -> None:
    """A database set to `DateStyle 'SQL, DMY'` (and a zone east of UTC): a date column widened to text
    held 03/02/2024 for 2024-02-03 on PostgreSQL, where DuckDB held 2024-02-03."""
    if warehouse.engine == "postgres":
        database = warehouse.config()["sqlalchemy_url"].rpartition("/")[2]
        warehouse.execute(
            f"ALTER DATABASE \"{database}\" SET datestyle = 'SQL, DMY'",
            f"ALTER DATABASE \"{database}\" SET timezone = 'Asia/Kolkata'",
        )
    dated = {"id": {"type": "integer"}, "d": {"type": "string", "format": "date"}}
    assert warehouse.run([schema("w", dated), record("w", {"id": 1, "d": "2024-02-03"})]).error is None
    wider = {"type": "string", "format": "date-time"} if to == "date-time" else {"type": "string"}
    run = warehouse.run([schema("w", {**dated, "d": wider}), record("w", {"id": 2, "d": None})])
    assert run.error is None, run.error
    if warehouse.engine == "postgres":  # for this test's own reading (psycopg reads ISO only)
        warehouse.execute(f'ALTER DATABASE "{database}" RESET datestyle')
    stored = {r["id"]: r["d"] for r in warehouse.rows("w")}[1]
    if to == "text":
        assert stored == "2024-02-03"
    else:
        assert stored == dt.datetime(2024, 2, 3, tzinfo=dt.UTC)


def test_numbers_widened_to_text_are_written_without_trailing_zeros(warehouse: Warehouse) -> None:
    """Both engines write a stored number that widens to text in its shortest form (DuckDB's DECIMAL
    wrote 7.000000000000000000), key columns included, so that a number key 1.0 meets the text key "1"
    sent after the change, and a hard-deleted key's tombstone still meets it."""

    def props(kind: str) -> dict:
        return {
            "id": {"type": kind},
            "amount": {"type": ["null", kind]},
            "system_modstamp": {"type": "string", "format": "date-time"},
            "is_deleted": {"type": "boolean"},
        }

    def version(key: t.Any, amount: t.Any, second: int, deleted: bool = False) -> str:
        stamp = f"2024-01-01T00:00:{second:02d}Z"
        return (
            f'{{"type": "RECORD", "stream": "n", "record": {{"id": {key}, "amount": {amount}, '
            f'"system_modstamp": "{stamp}", "is_deleted": {str(deleted).lower()}}}}}'
        )

    as_numbers = schema("n", props("number"), bookmark=["system_modstamp"])
    first = [as_numbers, version("1.0", "2.50", 1), version("2.50", "7", 1), version("3", "0.000100", 1)]
    assert warehouse.run([*first, version("4", "1", 5, deleted=True)], hard_delete=True).error is None
    as_text = schema("n", props("string"), bookmark=["system_modstamp"])
    later = [version('"1"', '"one"', 2), version('"4"', '"older than its deletion"', 3)]
    assert warehouse.run([as_text, *later], hard_delete=True).error is None
    assert warehouse.columns("n")["id"] in ("text", "varchar")
    rows = {r["id"]: r["amount"] for r in warehouse.rows("n")}
    assert rows == {"1": "one", "2.5": "7", "3": "0.0001"}


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("7.50", "7.5"),
        ("1e-07", "0.0000001"),
        ("1E+3", "1000"),
        ("-0.0", "0"),
        ("10", "10"),
        ("-68550893.10", "-68550893.1"),
        ("0.000000000000000001", "0.000000000000000001"),
        ("123456789012345678901234567890.1200", "123456789012345678901234567890.12"),
        ("1e999999999", "1e999999999"),  # no number column holds it: kept as it came
    ],
)
def test_a_number_in_a_text_column_is_spelled_as_a_widened_number(
    warehouse: Warehouse, sent: str, stored: str
) -> None:
    """A number property whose column is text (widened before, or a key widened to text) writes its
    values as a number column widened to text writes them, whatever the JSON's spelling."""
    properties = {"id": {"type": "string"}, "amount": {"type": ["null", "string"]}}
    assert warehouse.run([schema("n", properties), record("n", {"id": "a", "amount": "x"})]).error is None
    properties["amount"] = {"type": ["null", "number"]}  # the column stays text
    line = f'{{"type": "RECORD", "stream": "n", "record": {{"id": "b", "amount": {sent}}}}}'
    assert warehouse.run([schema("n", properties), line]).error is None
    assert {r["id"]: r["amount"] for r in warehouse.rows("n")} == {"a": "x", "b": stored}


def test_numbers_of_a_string_or_number_property_are_spelled_alike(warehouse: Warehouse) -> None:
    """A property that is a string or a number has a text column: its numbers are spelled as above,
    its strings kept as they came (the string "7.50" stays 7.50)."""
    properties = {"id": {"type": "string"}, "v": {"type": ["null", "string", "number"]}}
    lines = [
        schema("n", properties),
        '{"type": "RECORD", "stream": "n", "record": {"id": "a", "v": 7.50}}',
        '{"type": "RECORD", "stream": "n", "record": {"id": "b", "v": "7.50"}}',
        '{"type": "RECORD", "stream": "n", "record": {"id": "c", "v": 1e-07}}',
        '{"type": "RECORD", "stream": "n", "record": {"id": "d", "v": 12}}',
    ]
    assert warehouse.run(lines).error is None
    stored = {r["id"]: r["v"] for r in warehouse.rows("n")}
    assert stored == {"a": "7.5", "b": "7.50", "c": "0.0000001", "d": "12"}


def test_singer_decimal_text_widens_and_is_spelled_as_any_number(warehouse: Warehouse) -> None:
    """singer-sdk's decimal text (a numeric column) widened to text by a later plain string, then sent
    again as decimal text: its numbers are spelled as numbers widened to text are."""
    decimal = {"type": ["null", "string"], "format": "x-singer.decimal"}
    properties = {"id": {"type": "string"}, "amount": decimal}
    assert warehouse.run([schema("d", properties), record("d", {"id": "a", "amount": "7.50"})]).error is None
    properties["amount"] = {"type": ["null", "string"]}  # widens the numeric column to text
    assert warehouse.run([schema("d", properties), record("d", {"id": "b", "amount": "x"})]).error is None
    properties["amount"] = decimal  # the column stays text
    assert warehouse.run([schema("d", properties), record("d", {"id": "c", "amount": "1.250"})]).error is None
    assert {r["id"]: r["amount"] for r in warehouse.rows("d")} == {"a": "7.5", "b": "x", "c": "1.25"}


def test_a_replay_after_a_number_column_widened_to_text_stores_what_a_clean_load_does(
    warehouse: Warehouse,
) -> None:
    """Found by replaying input from an earlier STATE: records sent before a number property became a
    string, replayed after its column widened to text, overwrote the widened `7.5` with `7.50`, their
    JSON's text (the same replication key: the later of equals wins), so the table differed from a
    clean load. A number key sent into a key column widened to text, likewise, took a second row."""

    def props(kind: str) -> dict:
        return {
            "id": {"type": kind},
            "amount": {"type": ["null", kind]},
            "system_modstamp": {"type": "string", "format": "date-time"},
        }

    def version(key: str, amount: str, second: int) -> str:
        return (
            f'{{"type": "RECORD", "stream": "n", "record": {{"id": {key}, "amount": {amount}, '
            f'"system_modstamp": "2024-01-01T00:00:{second:02d}Z"}}}}'
        )

    before = [schema("n", props("number"), bookmark=["system_modstamp"]), version("1.50", "7.50", 1)]
    change = [schema("n", props("string"), bookmark=["system_modstamp"]), version('"2"', '"x"', 2)]
    assert warehouse.run([*before, *change]).error is None
    clean = warehouse.rows("n", columns="id, amount, system_modstamp")
    assert warehouse.run([*before, *change]).error is None  # the scheduler replays from an earlier STATE
    assert warehouse.rows("n", columns="id, amount, system_modstamp") == clean
    assert [(row["id"], row["amount"]) for row in clean] == [("1.5", "7.5"), ("2", "x")]


def test_a_replication_key_widened_to_text_keeps_its_order(
    warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    """The replication key's column widens to text (its property turned into a plain string): the
    stored instants are written as RFC 3339 UTC text, which sorts as they do against the ISO text sent
    from then on, and the tombstones' replication keys are written again alike. Before, stored
    ``2024-01-01 00:00:05+00`` sorted before ``2024-01-01T00:00:03Z`` on both engines: older versions
    overwrote newer rows and came back after hard deletes."""

    def props(updated: dict) -> dict:
        return {
            "id": {"type": "string"},
            "v": {"type": "string"},
            "updated": updated,
            "is_deleted": {"type": "boolean"},
        }

    def version(key: str, v: str, updated: str, deleted: bool = False) -> dict:
        return record("r", {"id": key, "v": v, "updated": updated, "is_deleted": deleted})

    as_instants = schema("r", props({"type": "string", "format": "date-time"}), bookmark=["updated"])
    first = [
        as_instants,
        version("1", "new", "2024-01-01T00:00:05Z"),
        version("2", "gone", "2024-01-01T00:00:05Z", True),
    ]
    assert warehouse.run(first, hard_delete=True).error is None
    caplog.set_level(logging.WARNING, logger="target-warehouse-seg")
    as_text = schema("r", props({"type": "string"}), bookmark=["updated"])
    replays = [
        version("1", "older", "2024-01-01T00:00:03.000Z"),
        version("2", "older than its deletion", "2024-01-01T00:00:04Z"),
        version("3", "third", "2024-01-01T00:00:01Z"),
    ]
    assert warehouse.run([as_text, *replays], hard_delete=True).error is None
    assert warehouse.columns("r")["updated"] in ("text", "varchar")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("replication key's column updated is now text" in message for message in warned)
    rows = {r["id"]: (r["v"], r["updated"]) for r in warehouse.rows("r")}
    assert rows == {"1": ("new", "2024-01-01T00:00:05.000000Z"), "3": ("third", "2024-01-01T00:00:01Z")}
    # A date-time property into the text column: the instant's RFC 3339 UTC text, in its order.
    newer = [
        as_instants,
        version("1", "newer", "2024-01-01T01:00:06+01:00"),
        version("3", "old", "2023-12-31T23:59:59Z"),
    ]
    assert warehouse.run(newer, hard_delete=True).error is None
    rows = {r["id"]: (r["v"], r["updated"]) for r in warehouse.rows("r")}
    assert rows == {"1": ("newer", "2024-01-01T00:00:06.000000Z"), "3": ("third", "2024-01-01T00:00:01Z")}


def test_a_json_column_stores_later_scalar_values_as_json(warehouse: Warehouse) -> None:
    """A property that was an object, then declared a string (or a date-time...): its JSON column holds
    each value as the JSON of what was sent, so the string "123" stays a string (it became the number
    123, and "text" stopped the run as malformed JSON)."""
    names = ("s", "d", "t", "n", "b")
    as_objects = schema(
        "j", {"id": {"type": "integer"}, **{name: {"type": ["null", "object"]} for name in names}}
    )
    first = record("j", {"id": 1, **{name: {"k": [1, "v"]} for name in names}})
    assert warehouse.run([as_objects, first]).error is None
    as_scalars = schema(
        "j",
        {
            "id": {"type": "integer"},
            "s": {"type": ["null", "string"]},
            "d": {"type": ["null", "string"], "format": "date-time"},
            "t": {"type": ["null", "string"], "format": "time"},
            "n": {"type": ["null", "number"]},
            "b": {"type": ["null", "boolean"]},
        },
    )
    sent = [
        {"id": 2, "s": "123", "d": "2024-01-02T03:04:05+01:00", "t": "04:05:06", "n": 2.5, "b": True},
        {"id": 3, "s": '{"x": 2}', "d": None, "t": None, "n": None, "b": False},
        {"id": 4, "s": "null", "d": None, "t": None, "n": None, "b": None},
        {"id": 5, "s": "text", "d": None, "t": None, "n": None, "b": None},
    ]
    run = warehouse.run([as_scalars, *(record("j", values) for values in sent)])
    assert run.error is None
    assert {name: warehouse.columns("j")[name] for name in names} == {
        name: "json" if warehouse.engine == "duckdb" else "jsonb" for name in names
    }
    rows = {r["id"]: {name: warehouse.json(r[name]) for name in names} for r in warehouse.rows("j")}
    assert rows[1] == {name: {"k": [1, "v"]} for name in names}
    assert rows[2] == {"s": "123", "d": "2024-01-02T03:04:05+01:00", "t": "04:05:06", "n": 2.5, "b": True}
    assert rows[3]["s"] == '{"x": 2}' and rows[3]["b"] is False
    assert rows[4]["s"] == "null" and rows[5]["s"] == "text"
    type_of, string = ("json_type", "varchar") if warehouse.engine == "duckdb" else ("jsonb_typeof", "string")
    kinds = warehouse.query(
        f"SELECT {type_of}(s) FROM {warehouse.schema_name}.j WHERE id IN (2, 4) ORDER BY id"
    )
    assert [kind.lower() for (kind,) in kinds] == [string, string]


def test_an_integer_beyond_bigint_widens_its_column_keeping_every_value(warehouse: Warehouse) -> None:
    props = {"id": {"type": "integer"}, "n": {"type": "integer"}}
    huge, tiny = 2**64 + 1, -(2**63) - 1  # the typed decoder refuses them: they are read leniently
    records = [record("b", {"id": i, "n": n}) for i, n in ((1, 5), (2, huge), (3, 2**63 - 1), (4, tiny))]
    run = warehouse.run([schema("b", props), *records, state(1)])
    assert run.error is None and run.states == [1]
    assert warehouse.columns("b")["n"] not in ("bigint", "BIGINT")
    stored = {r["id"]: r["n"] for r in warehouse.rows("b")}
    assert {key: Decimal(value) for key, value in stored.items()} == {1: 5, 2: huge, 3: 2**63 - 1, 4: tiny}
    # Later batches of ordinary integers load into the widened column.
    assert warehouse.run([schema("b", props), record("b", {"id": 5, "n": 6})]).error is None
    assert Decimal({r["id"]: r["n"] for r in warehouse.rows("b")}[5]) == 6


def test_a_huge_integer_in_a_column_widened_before_is_no_new_widening(
    warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    props = {"id": {"type": "integer"}, "n": {"type": "integer"}}
    assert warehouse.run([schema("b", props), record("b", {"id": 1, "n": 2**64})]).error is None
    caplog.clear()
    caplog.set_level(logging.INFO, logger="target-warehouse-seg")
    # A later run's SCHEMA still says integer; its huge value needs no change to the (numeric) column.
    assert warehouse.run([schema("b", props), record("b", {"id": 2, "n": -(2**63) - 5})]).error is None
    assert {r["id"]: Decimal(r["n"]) for r in warehouse.rows("b")} == {1: 2**64, 2: -(2**63) - 5}
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "widening" in m], messages
    assert any(
        "column n: an integer beyond bigint's range; its values are read as number" in m for m in messages
    )


def test_a_changed_key_is_refused_before_anything_is_written(warehouse: Warehouse) -> None:
    props = {"id": {"type": "integer"}, "code": {"type": "string"}}
    assert warehouse.run([schema("k", props), record("k", {"id": 1, "code": "a"}), state(1)]).error is None
    run = warehouse.run([schema("k", props, key=["code"]), record("k", {"id": 2, "code": "b"}), state(2)])
    assert isinstance(run.error, SchemaConflict)
    message = str(run.error)
    assert "stream k" in message and "(code)" in message and "(id)" in message and "rename or drop" in message
    assert run.states == []
    assert warehouse.count("k") == 1


@pytest.mark.parametrize("cause", ["schema", "value"])
def test_a_key_column_that_must_widen(warehouse: Warehouse, cause: str) -> None:
    props = {"id": {"type": "integer"}, "code": {"type": "string"}}
    first = [schema("k", props), record("k", {"id": 1, "code": "a"}), record("k", {"id": 3, "code": "c"})]
    assert warehouse.run([*first, state(1)]).error is None
    if cause == "schema":  # the key property turns to text
        props = {**props, "id": {"type": "string"}}
        new_key: object = "x-2"
    else:  # an integer beyond bigint (and beyond DuckDB's DECIMAL(38,18))
        new_key = 10**30
    lines = [
        schema("k", props),
        record("k", {"id": new_key, "code": "b"}),
        record("k", {"id": 3, "code": "C"}),
    ]
    run = warehouse.run([*lines, state(2)])
    # PostgreSQL changes the key column's type in place; DuckDB, which cannot, rebuilds the table.
    assert run.error is None and run.states == [2]
    stored = {str(row["id"]): row["code"] for row in warehouse.rows("k", order_by="code")}
    assert stored == {"1": "a", str(new_key): "b", "3": "C"}  # stored rows kept, upserts on the wider key
    # 10**30 fits PostgreSQL's numeric, not DuckDB's DECIMAL(38,18) (the exact text there).
    text_type = "varchar" if warehouse.engine == "duckdb" else "text"
    assert warehouse.columns("k")["id"] == (
        "numeric" if str(new_key) == "1" + "0" * 30 and warehouse.engine == "postgres" else text_type
    )
    assert warehouse.key_columns("k") == ["id"]
    # The rebuilt table is the stream's as before: a later run upserts into it, and keeps its columns.
    again = [schema("k", {**props, "id": {"type": "string"}}), record("k", {"id": "3", "code": "c3"})]
    assert warehouse.run([*again, state(3)]).error is None
    assert {str(row["id"]): row["code"] for row in warehouse.rows("k", order_by="code")}["3"] == "c3"
    assert list(warehouse.columns("k")) == ["id", "code", "received_at", "uuid_ts"]


def test_a_key_column_widened_by_a_value_is_undone_with_its_failed_unit(warehouse: Warehouse) -> None:
    # The widening (DuckDB: the table's rebuild) happens in the unit's transaction; when the database
    # refuses another row of that unit (a CHECK constraint someone put on another stream's table), it
    # is undone with the rest.
    warehouse.execute(
        "CREATE SCHEMA salesforce",
        "CREATE TABLE salesforce.c (id BIGINT PRIMARY KEY, n BIGINT CHECK (n < 100), "
        "received_at TIMESTAMP WITH TIME ZONE, uuid_ts TIMESTAMP WITH TIME ZONE)",
    )
    props = {"id": {"type": "integer"}, "n": {"type": ["null", "integer"]}}
    assert warehouse.run([schema("k", props), record("k", {"id": 1, "n": 1}), state(1)]).error is None
    lines = [schema("k", props), schema("c", props), record("k", {"id": 10**30, "n": 2})]
    run = warehouse.run([*lines, record("c", {"id": 1, "n": 500}), state(2)])
    assert run.error is not None and str(run.error).startswith("Invalid input: line 4, stream c, key id=1")
    assert run.states == []
    assert warehouse.columns("k")["id"] == "bigint" and warehouse.key_columns("k") == ["id"]
    assert [(row["id"], row["n"]) for row in warehouse.rows("k")] == [(1, 1)]
    assert warehouse.count("c") == 0


def test_duckdb_keeps_what_others_added_to_a_table_over_widening_its_key(duckdb_warehouse: Warehouse) -> None:
    # Rebuilding the table would lose an index someone made: one clear line instead, nothing written.
    warehouse = duckdb_warehouse
    props = {"id": {"type": "integer"}, "code": {"type": "string"}}
    assert warehouse.run([schema("k", props), record("k", {"id": 1, "code": "a"}), state(1)]).error is None
    warehouse.execute("CREATE INDEX by_code ON salesforce.k (code)")
    for lines in (
        [schema("k", {**props, "id": {"type": "string"}}), record("k", {"id": "x-2", "code": "b"})],
        [schema("k", props), record("k", {"id": 10**30, "code": "b"})],
    ):
        run = warehouse.run([*lines, state(2)])
        assert isinstance(run.error, SchemaConflict)
        message = str(run.error)
        assert message.startswith("stream k: column id of table ") and "from integer to" in message
        assert "rebuilding the table, which would lose what others added to it (index by_code)" in message
        assert "\n" not in message and run.states == []
        assert [(row["id"], row["code"]) for row in warehouse.rows("k")] == [(1, "a")]


@pytest.mark.parametrize("cause", ["schema", "value"])
def test_a_column_that_a_view_uses(warehouse: Warehouse, cause: str) -> None:
    # PostgreSQL cannot change a column's type under a view: one clear line naming the view and what
    # to do, nothing written. DuckDB binds views when they are read: the column widens.
    props = {"id": {"type": "integer"}, "n": {"type": ["null", "integer"]}}
    assert warehouse.run([schema("s", props), record("s", {"id": 1, "n": 1}), state(1)]).error is None
    warehouse.execute("CREATE VIEW salesforce.v_s AS SELECT id, n FROM salesforce.s")
    if cause == "schema":
        lines = [schema("s", {**props, "n": {"type": ["null", "number"]}}), record("s", {"id": 2, "n": 1.5})]
    else:
        lines = [schema("s", props), record("s", {"id": 2, "n": 2**63})]
    run = warehouse.run([*lines, state(2)])
    if warehouse.engine == "duckdb":
        assert run.error is None and run.states == [2]
        assert sorted(Decimal(n) for (n,) in warehouse.query("SELECT n FROM salesforce.v_s")) == [
            1,
            Decimal(lines[1]["record"]["n"]),
        ]
        return
    assert isinstance(run.error, SchemaConflict), run.error
    message = str(run.error)
    assert message.startswith(
        "stream s: column n of table salesforce.s would have to widen from integer to number "
    )
    assert "(its SCHEMA's type)" in message if cause == "schema" else "(a value of this run)" in message
    assert "views use (salesforce.v_s); drop them for this run and create them again after it" in message
    assert "\n" not in message and run.states == []
    assert [(row["id"], row["n"]) for row in warehouse.rows("s")] == [(1, 1)]


def test_postgres_column_limit_is_refused_before_anything_is_written(warehouse: Warehouse) -> None:
    wide = {"id": {"type": "integer"}, **{f"c{i}": {"type": "string"} for i in range(1, 1600)}}
    run = warehouse.run([schema("wide", wide), record("wide", {"id": 1, "c1": "x"}), state(1)])
    if warehouse.engine == "duckdb":  # DuckDB has no such limit
        assert run.error is None and warehouse.count("wide") == 1
        return
    assert isinstance(run.error, SchemaConflict)
    assert (
        "stream wide" in str(run.error) and "1600" in str(run.error) and "fewer properties" in str(run.error)
    )
    assert run.states == [] and "wide" not in warehouse.tables()


def test_identifier_edge_cases(warehouse: Warehouse) -> None:
    long_name = "x" * 70
    props = {
        "Id": {"type": "integer"},
        "select": {"type": "string"},
        "order": {"type": "string"},
        "user": {"type": "string"},
        long_name: {"type": "string"},
        "Amount": {"type": "string"},
        "amount": {"type": "string"},
        "received_at": {"type": "string"},
        "agent:os:version": {"type": "string"},
        "2ndPhone": {"type": "string"},
    }
    values = {
        "Id": 1,
        "select": "s",
        "order": "o",
        "user": "u",
        long_name: "long",
        "Amount": "upper",
        "amount": "lower",
        "received_at": "mine",
        "agent:os:version": "10.1",
        "2ndPhone": "555",
    }
    run = warehouse.run([schema("Weird Stream!", props, key=["Id"]), record("Weird Stream!", values)])
    assert run.error is None
    assert "weird_stream_" in warehouse.tables()
    row = warehouse.rows("weird_stream_")[0]
    by_value = {value: name for name, value in row.items()}
    assert by_value["s"] == "select" and by_value["o"] == "order" and by_value["u"] == "user"
    assert by_value["lower"] == "amount" and by_value["upper"].startswith("amount_")
    assert by_value["long"].startswith("x" * 54) and len(by_value["long"]) <= 63
    assert by_value["mine"].startswith("received_at_") and isinstance(row["received_at"], dt.datetime)
    assert by_value["10.1"] == "agent_os_version" and by_value["555"] == "2ndphone"
    assert row["id"] == 1
    # Another run, properties in another order: every value lands in the same column again.
    reordered = dict(reversed(list(props.items())))
    values2 = {name: f"{value}-2" if isinstance(value, str) else value for name, value in values.items()}
    assert (
        warehouse.run(
            [schema("Weird Stream!", reordered, key=["Id"]), record("Weird Stream!", values2)]
        ).error
        is None
    )
    row2 = warehouse.rows("weird_stream_")[0]
    assert {name: value for name, value in row2.items() if isinstance(value, str)} == {
        name: f"{value}-2" for name, value in row.items() if isinstance(value, str)
    }


def test_names_that_conform_alike_stay_apart_across_runs(warehouse: Warehouse) -> None:
    # Run 1 knows only `Amount`; run 2 adds `amount`: the new property gets its own column.
    assert (
        warehouse.run(
            [
                schema("m", {"id": {"type": "integer"}, "Amount": {"type": "string"}}),
                record("m", {"id": 1, "Amount": "A1"}),
            ]
        ).error
        is None
    )
    both = schema(
        "m", {"id": {"type": "integer"}, "amount": {"type": "string"}, "Amount": {"type": "string"}}
    )
    assert warehouse.run([both, record("m", {"id": 2, "amount": "a2", "Amount": "A2"})]).error is None
    rows = {r["id"]: r for r in warehouse.rows("m")}
    assert rows[1]["amount"] == "A1" and rows[2]["amount"] == "A2"
    other = next(name for name in warehouse.columns("m") if name.startswith("amount_"))
    assert rows[2][other] == "a2" and rows[1][other] is None


def test_streams_that_conform_alike_get_separate_tables(warehouse: Warehouse) -> None:
    props = {"id": {"type": "integer"}}
    run = warehouse.run(
        [
            schema("Accounts", props),
            record("Accounts", {"id": 1}),
            schema("accounts", props),
            record("accounts", {"id": 2}),
            record("accounts", {"id": 3}),
        ]
    )
    assert run.error is None
    tables = warehouse.tables()
    assert "accounts" in tables
    other = next(name for name in tables if name.startswith("accounts_"))
    assert {warehouse.count("accounts"), warehouse.count(other)} == {1, 2}


@pytest.mark.parametrize(
    ("column", "sent", "widening"),
    [
        ("varchar(18)", {"type": "string"}, "from character varying(18) to text"),
        ("integer", {"type": "integer"}, "from integer to the target's own integer type"),
    ],
)
def test_a_narrow_column_that_a_view_uses_is_named_by_its_type(
    pg: Warehouse, column: str, sent: dict[str, t.Any], widening: str
) -> None:
    """A narrow column widens to the target's type once a stream writes it; under a view it cannot, and
    the line said "from text to text" of a varchar(18)."""
    pg.execute(
        "CREATE SCHEMA salesforce",
        f"CREATE TABLE salesforce.accounts (id {column} PRIMARY KEY, received_at timestamptz, "
        "uuid_ts timestamptz)",
        "CREATE VIEW salesforce.v_accounts AS SELECT id FROM salesforce.accounts",
    )
    run = pg.run(
        [schema("accounts", {"id": sent}), record("accounts", {"id": 1 if "int" in column else "a"})]
    )
    assert isinstance(run.error, SchemaConflict), run.error
    assert str(run.error).startswith(
        f"stream accounts: column id of table salesforce.accounts would have to widen {widening} "
        "(its SCHEMA's type), and nothing was written: PostgreSQL cannot change the type of a column "
        "that views use (salesforce.v_accounts)"
    ), str(run.error)
    assert pg.count("accounts") == 0
