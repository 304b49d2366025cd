"""Upserts, never regressing, appends and hard deletes, on both engines."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from conftest import Warehouse, record, schema, state

PROPERTIES = {
    "id": {"type": "string"},
    "name": {"type": ["null", "string"]},
    "is_deleted": {"type": ["null", "boolean"]},
    "system_modstamp": {"type": ["null", "string"], "format": "date-time"},
}


def accounts_schema() -> dict:
    return schema("accounts", PROPERTIES, bookmark=["system_modstamp"])


def account(key: str, name: str, stamp: str | None, deleted: bool = False) -> dict:
    return record(
        "accounts",
        {
            "id": key,
            "name": name,
            "is_deleted": deleted,
            "system_modstamp": None if stamp is None else f"2024-01-01T00:00:{stamp}Z",
        },
    )


def names(warehouse: Warehouse) -> dict[str, str]:
    return {row["id"]: row["name"] for row in warehouse.rows("accounts", columns="id, name")}


def test_upsert_updates_and_inserts(warehouse: Warehouse) -> None:
    assert (
        warehouse.run([accounts_schema(), account("a", "one", "01"), account("b", "two", "01")]).error is None
    )
    assert (
        warehouse.run([accounts_schema(), account("b", "two v2", "02"), account("c", "three", "01")]).error
        is None
    )
    assert names(warehouse) == {"a": "one", "b": "two v2", "c": "three"}


def test_duplicates_in_a_batch_collapse(warehouse: Warehouse) -> None:
    messages = [
        accounts_schema(),
        account("a", "first", "01"),
        account("a", "second (same stamp, read later)", "01"),
        account("b", "newest", "05"),
        account("b", "older, read later", "03"),
        account("c", "x", "01"),
        account("c", "y", "02"),
        account("c", "z", "03"),
    ]
    assert warehouse.run(messages).error is None
    assert names(warehouse) == {"a": "second (same stamp, read later)", "b": "newest", "c": "z"}


def _text_key(i: int) -> dict:
    return {"id": f"k{i}"}


def _integer_key(i: int) -> dict:
    return {"id": i}


def _composite_key(i: int) -> dict:
    return {"region": "eu" if i % 2 else "us", "id": i // 2}


def _number_key(i: int, again: bool = False) -> dict:
    return {"id": float(i) if again else i}  # 3.0 and 3: written differently, one key


def _untyped_key(i: int) -> dict:
    # A key property whose schema gives no type is a JSON column; any JSON value can be a key.
    return {"id": [i, {"k": f"v{i}"}] if i % 3 == 0 else i if i % 3 == 1 else f"k{i}"}


KEY_SHAPES = {
    "text": ({"id": {"type": "string"}}, ["id"], _text_key),
    "integer": ({"id": {"type": "integer"}}, ["id"], _integer_key),
    "text and integer": (
        {"region": {"type": "string"}, "id": {"type": "integer"}},
        ["region", "id"],
        _composite_key,
    ),
    "number": ({"id": {"type": "number"}}, ["id"], _number_key),
    "untyped": ({"id": {}}, ["id"], _untyped_key),
}


@pytest.mark.parametrize("shape", KEY_SHAPES)
def test_a_batch_repeating_its_keys_collapses_them_whatever_the_keys(
    warehouse: Warehouse, shape: str
) -> None:
    key_properties, key, key_of = KEY_SHAPES[shape]
    properties = {**key_properties, "name": {"type": ["null", "string"]}}

    def row(i: int, name: str, again: bool = False) -> dict:
        values = _number_key(i, again) if key_of is _number_key else key_of(i)
        return record("things", {**values, "name": name})

    things = schema("things", properties, key=key)
    assert warehouse.run([things, *(row(i, "v1") for i in range(300))]).error is None
    # Every key twice in one batch (the second time written differently where it can be): the last wins.
    second = [things, *(row(i, "v2") for i in range(200)), *(row(i, "v3", again=True) for i in range(300))]
    assert warehouse.run(second).error is None
    rows = warehouse.rows("things", columns="name")
    assert len(rows) == 300
    assert {row["name"] for row in rows} == {"v3"}


@pytest.mark.parametrize("batch_size_rows", [1, 100])
def test_replays_and_out_of_order_batches_never_regress(warehouse: Warehouse, batch_size_rows: int) -> None:
    assert (
        warehouse.run([accounts_schema(), account("a", "v3", "03"), account("b", "v2", "02")]).error is None
    )
    # A replay of older versions, a lookback re-read of the same version, then one newer change.
    replay = [
        accounts_schema(),
        account("a", "v1", "01"),
        account("a", "v2", "02"),
        account("b", "v2 again", "02"),
        account("b", "v1", "01"),
        account("c", "new", "01"),
        account("a", "v4", "04"),
        account("a", "v3 late", "03"),
    ]
    assert warehouse.run(replay, batch_size_rows=batch_size_rows).error is None
    assert names(warehouse) == {"a": "v4", "b": "v2 again", "c": "new"}


def test_a_null_replication_key_counts_as_oldest(warehouse: Warehouse) -> None:
    assert (
        warehouse.run([accounts_schema(), account("a", "dated", "05"), account("b", "undated", None)]).error
        is None
    )
    later = [
        accounts_schema(),
        account("a", "undated replay", None),
        account("b", "dated now", "01"),
        account("c", "undated", None),
    ]
    assert warehouse.run(later, batch_size_rows=1).error is None
    assert names(warehouse) == {"a": "dated", "b": "dated now", "c": "undated"}
    again = [accounts_schema(), account("c", "undated again", None)]
    assert warehouse.run(again).error is None
    assert names(warehouse)["c"] == "undated again"


def test_streams_without_key_properties_are_appended(warehouse: Warehouse) -> None:
    messages = [
        schema("events", {"id": {"type": "integer"}, "what": {"type": "string"}}, key=[]),
        record("events", {"id": 1, "what": "a"}),
        record("events", {"id": 1, "what": "a"}),
        record("events", {"what": "no id"}),
    ]
    assert warehouse.run(messages).error is None
    assert warehouse.run(messages).error is None
    assert warehouse.count("events") == 6
    assert warehouse.query('SELECT count(*) FROM "salesforce"."events" WHERE "id" IS NULL')[0][0] == 2


def test_soft_deletes_are_an_ordinary_column(warehouse: Warehouse) -> None:
    assert (
        warehouse.run(
            [accounts_schema(), account("a", "x", "01"), account("a", "x", "02", deleted=True)]
        ).error
        is None
    )
    assert [row["is_deleted"] for row in warehouse.rows("accounts")] == [True]


def test_hard_delete(warehouse: Warehouse) -> None:
    setup = [
        accounts_schema(),
        account("a", "keep", "01"),
        account("b", "delete me", "01"),
        account("c", "newer than the delete", "09"),
        account("d", "recreated", "01"),
    ]
    assert warehouse.run(setup, hard_delete=True).error is None
    deletes = [
        accounts_schema(),
        account("b", "deleted", "02", deleted=True),
        account("c", "stale delete", "03", deleted=True),
        account("d", "deleted", "02", deleted=True),
        account("d", "back again", "03"),
        account("e", "born deleted", "01", deleted=True),
    ]
    assert warehouse.run(deletes, hard_delete=True, batch_size_rows=2).error is None
    assert names(warehouse) == {"a": "keep", "c": "newer than the delete", "d": "back again"}


def test_a_hard_deleted_record_does_not_come_back_from_an_older_version_read_later(
    warehouse: Warehouse,
) -> None:
    setup = [accounts_schema(), account("a", "a v1", "01"), account("b", "b v1", "01")]
    assert warehouse.run(setup, hard_delete=True).error is None
    deletes = [
        accounts_schema(),
        account("a", "a deleted", "05", deleted=True),
        account("b", "b deleted", "05", deleted=True),
        account("n", "never stored, deleted", "05", deleted=True),
    ]
    assert warehouse.run(deletes, hard_delete=True).error is None
    # A replay of older input, one row per batch and all in one batch: the deleted records stay gone,
    # a version as new as the delete (Salesforce's undelete gets a newer stamp) or newer comes back.
    replay = [
        accounts_schema(),
        account("a", "a v2, older than its delete", "03"),
        account("n", "n without a stamp", None),
        account("b", "b, as new as its delete", "05"),
        account("n", "n v1, older than its delete", "04"),
    ]
    for batch_size_rows in (1, 100):
        assert warehouse.run(replay, hard_delete=True, batch_size_rows=batch_size_rows).error is None
        assert names(warehouse) == {"b": "b, as new as its delete"}
    assert (
        warehouse.run([accounts_schema(), account("a", "a undeleted", "06")], hard_delete=True).error is None
    )
    assert names(warehouse) == {"a": "a undeleted", "b": "b, as new as its delete"}
    tombstones = warehouse.rows("_deleted_keys", columns="table_name, record_key", order_by="record_key")
    assert [(row["table_name"], row["record_key"]) for row in tombstones] == [
        ("accounts", '["a"]'),
        ("accounts", '["b"]'),
        ("accounts", '["n"]'),
    ]


@pytest.mark.parametrize("wider", ["string", "number", "beyond bigint"])
def test_a_hard_deleted_key_stays_deleted_after_its_key_column_widens(
    warehouse: Warehouse, wider: str
) -> None:
    # Tombstones spell keys from their typed values ([1]); once the key column widens (to text: "1"),
    # they are spelled again, or an older version of a deleted row would come back.
    def properties(key_type: str) -> dict:
        return {
            "id": {"type": key_type},
            "system_modstamp": {"type": "string", "format": "date-time"},
            "is_deleted": {"type": "boolean"},
            "v": {"type": ["null", "string"]},
        }

    def row(key: object, stamp: str, deleted: bool, value: str) -> dict:
        record_values = {"id": key, "system_modstamp": stamp, "is_deleted": deleted, "v": value}
        return record("s", record_values)

    integer_schema = schema("s", properties("integer"), bookmark=["system_modstamp"])
    setup = [
        integer_schema,
        row(1, "2024-01-02T00:00:00Z", False, "v1"),
        row(1, "2024-01-03T00:00:00Z", True, ""),
    ]
    assert (
        warehouse.run([*setup, row(2, "2024-01-02T00:00:00Z", False, "two")], hard_delete=True).error is None
    )
    key_type = "integer" if wider == "beyond bigint" else wider
    late: object = {"string": "1", "number": 1, "beyond bigint": 1}[wider]
    replay = [schema("s", properties(key_type), bookmark=["system_modstamp"])]
    if wider == "beyond bigint":  # widened by a value of the run
        replay.append(row(10**30, "2024-01-01T00:00:00Z", False, "huge"))
    replay += [row(late, "2024-01-01T00:00:00Z", False, "v0, older than the delete")]
    assert warehouse.run(replay, hard_delete=True).error is None
    stored = {int(Decimal(str(row["id"]))): row["v"] for row in warehouse.rows("s", order_by="v")}
    assert 1 not in stored and stored[2] == "two"
    newer = [replay[0], row(late, "2024-01-04T00:00:00Z", False, "v4, newer than the delete")]
    assert warehouse.run(newer, hard_delete=True).error is None
    stored = {int(Decimal(str(row["id"]))): row["v"] for row in warehouse.rows("s", order_by="v")}
    assert stored[1].startswith("v4")


def test_a_stale_delete_keeps_the_newest_tombstone(warehouse: Warehouse) -> None:
    messages = [
        accounts_schema(),
        account("a", "deleted late", "09", deleted=True),
        account("a", "deleted early, read later", "02", deleted=True),
    ]
    assert warehouse.run(messages, hard_delete=True, batch_size_rows=1).error is None
    late = [accounts_schema(), account("a", "older than the newest delete", "05")]
    assert warehouse.run(late, hard_delete=True).error is None
    assert names(warehouse) == {}


def test_a_stored_row_is_updated_whatever_its_keys_tombstone_says(warehouse: Warehouse) -> None:
    # Tombstones are only consulted with hard_delete on: a run without it can store an older version.
    deleted = [accounts_schema(), account("a", "a v1", "01"), account("a", "deleted", "09", deleted=True)]
    assert warehouse.run(deleted, hard_delete=True).error is None
    assert warehouse.run([accounts_schema(), account("a", "a v3, soft run", "03")]).error is None
    newer = [accounts_schema(), account("a", "a v5, newer than the stored row", "05")]
    assert warehouse.run(newer, hard_delete=True).error is None
    assert names(warehouse) == {"a": "a v5, newer than the stored row"}


def test_a_stream_named_like_the_tombstones_table_gets_a_table_of_its_own(warehouse: Warehouse) -> None:
    stream = "_deleted_keys"
    messages = [
        schema(stream, PROPERTIES, bookmark=["system_modstamp"]),
        record(stream, {"id": "x", "is_deleted": True, "system_modstamp": "2024-01-01T00:00:05Z"}),
        record(stream, {"id": "y", "name": "kept", "system_modstamp": "2024-01-01T00:00:05Z"}),
    ]
    assert warehouse.run(messages, hard_delete=True).error is None
    (own,) = warehouse.tables() - {"_deleted_keys"}
    assert own.startswith("_deleted_keys_") and [row["id"] for row in warehouse.rows(own)] == ["y"]
    tombstones = warehouse.rows("_deleted_keys", columns="table_name, record_key", order_by="record_key")
    assert [(row["table_name"], row["record_key"]) for row in tombstones] == [(own, '["x"]')]


def test_a_property_that_disappears_keeps_its_column_with_null_from_then_on(warehouse: Warehouse) -> None:
    full = schema("things", {"id": {"type": "integer"}, "a": {"type": "string"}, "b": {"type": "string"}})
    assert (
        warehouse.run(
            [
                full,
                record("things", {"id": 1, "a": "a1", "b": "b1"}),
                record("things", {"id": 2, "a": "a2", "b": "b2"}),
            ]
        ).error
        is None
    )
    narrow = schema("things", {"id": {"type": "integer"}, "a": {"type": "string"}})
    assert (
        warehouse.run(
            [narrow, record("things", {"id": 1, "a": "a1 v2"}), record("things", {"id": 3, "a": "a3"})]
        ).error
        is None
    )
    rows = {row["id"]: (row["a"], row["b"]) for row in warehouse.rows("things")}
    assert rows == {1: ("a1 v2", None), 2: ("a2", "b2"), 3: ("a3", None)}
    assert "b" in warehouse.columns("things")


def test_states_follow_commits(warehouse: Warehouse) -> None:
    messages = [accounts_schema(), state({"n": 0})]
    for index in range(1, 7):
        messages += [account(f"k{index}", "x", f"{index:02d}"), state({"n": index})]
    run = warehouse.run(messages, batch_size_rows=2)
    assert run.error is None
    # The second record fills a batch: state 1 (all before it committed) follows that commit; state 2
    # arrives with nothing pending and follows it too, and so on.
    assert run.states == [{"n": index} for index in range(7)]
    assert warehouse.count("accounts") == 6


def test_a_bookmark_property_missing_from_the_schema_is_warned_about(
    warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    """A SCHEMA whose bookmark property is not among its properties (a typo, a renamed field) leaves its
    rows without the never-regress guard; before, silently."""
    properties = {"id": {"type": "string"}, "modified": {"type": "string", "format": "date-time"}}
    messages = [
        schema("s", properties, bookmark=["modifed"]),
        record("s", {"id": "a", "modified": "2024-01-02T00:00:00Z"}),
        record("s", {"id": "a", "modified": "2024-01-01T00:00:00Z"}),
    ]
    with caplog.at_level(logging.WARNING, logger="target-warehouse-seg"):
        assert warehouse.run(messages).error is None
    warnings = [message for message in caplog.messages if "bookmark properties (modifed)" in message]
    assert len(warnings) == 1 and warnings[0].startswith("stream s: its bookmark properties"), caplog.messages
    assert [row["modified"].day for row in warehouse.rows("s")] == [1]  # the last read wins, unguarded


def test_a_hard_delete_holds_whatever_the_servers_date_style(warehouse: Warehouse) -> None:
    """A delete's tombstone keeps its replication key as text: written under `DateStyle 'SQL, DMY'` it
    read `01/02/2024 10:00:00 UTC`, which a later run under 'ISO, MDY' took for January 2, so an older
    version of the deleted record came back (and a day past the 12th failed every later run)."""

    def version(name: str, stamp: str, deleted: bool = False) -> dict:
        values = {"id": "a", "name": name, "is_deleted": deleted, "system_modstamp": stamp}
        return record("accounts", values)

    database = ""
    if warehouse.engine == "postgres":
        database = warehouse.config()["sqlalchemy_url"].rpartition("/")[2]
        warehouse.execute(f"ALTER DATABASE \"{database}\" SET datestyle = 'SQL, DMY'")
    first = [accounts_schema(), version("a v1", "2024-01-10T00:00:00Z")]
    first.append(version("a deleted", "2024-02-01T10:00:00Z", deleted=True))
    assert warehouse.run(first, hard_delete=True, batch_size_rows=1).error is None
    if warehouse.engine == "postgres":
        warehouse.execute(f'ALTER DATABASE "{database}" RESET datestyle')
    older = [accounts_schema(), version("a, older than its delete", "2024-01-15T00:00:00Z")]
    assert warehouse.run(older, hard_delete=True).error is None
    assert names(warehouse) == {}
    newer = [accounts_schema(), version("a, undeleted later", "2024-02-13T10:00:00Z")]
    assert warehouse.run(newer, hard_delete=True).error is None
    assert names(warehouse) == {"a": "a, undeleted later"}
