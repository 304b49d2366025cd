"""Tables the target did not make: created by hand, by another tool or by an earlier loader, then loaded
by the target (a warehouse moving to it). Their columns may lack the system columns and have types the
target does not make; the run must load them exactly, on both engines."""

from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path

from tests.target.conftest import CliRun, Warehouse, record, schema, state, to_lines

UTC = datetime.UTC
MODSTAMP = {"type": ["null", "string"], "format": "date-time"}


def _create(warehouse: Warehouse, columns: str, *, system_columns: bool = True) -> None:
    if system_columns:  # as the target makes them, so that a test shows what it is about alone
        columns += ", received_at TIMESTAMPTZ, uuid_ts TIMESTAMPTZ"
    warehouse.execute(
        f'CREATE SCHEMA IF NOT EXISTS "{warehouse.schema_name}"',
        f'CREATE TABLE "{warehouse.schema_name}"."accounts" ({columns}, PRIMARY KEY (id))',
    )


def test_a_table_without_the_system_columns_gets_them(warehouse: Warehouse) -> None:
    """Before, the first load of such a table ended the run in a KeyError traceback."""
    _create(warehouse, "id VARCHAR, name VARCHAR", system_columns=False)
    warehouse.execute(f"INSERT INTO \"{warehouse.schema_name}\".accounts (id, name) VALUES ('a', 'stored')")
    stream = schema("accounts", {"id": {"type": "string"}, "name": {"type": ["null", "string"]}})
    messages = [stream, record("accounts", {"id": "b", "name": "new"}), state({"n": 1})]
    done = warehouse.cli(to_lines(messages))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.states == [{"n": 1}]
    assert list(warehouse.columns("accounts")) == ["id", "name", "received_at", "uuid_ts"]
    rows = warehouse.rows("accounts")
    assert [(row["id"], row["name"]) for row in rows] == [("a", "stored"), ("b", "new")]
    assert rows[0]["uuid_ts"] is None and rows[1]["uuid_ts"] is not None
    again = warehouse.cli(to_lines([stream, record("accounts", {"id": "a", "name": "updated"})]))
    assert again.returncode == 0, again.stderr[-2000:]
    assert [row["name"] for row in warehouse.rows("accounts")] == ["updated", "new"]


NARROW = {
    "postgres": "id varchar(18), n integer, small smallint, amount numeric(10,2), name varchar(5), "
    "modified timestamp(0) with time zone, at_time time(0) without time zone",
    "duckdb": "id VARCHAR, n INTEGER, small SMALLINT, amount DECIMAL(10,2), name VARCHAR, "
    "modified TIMESTAMPTZ, at_time TIME",
}
OURS = {
    "postgres": [
        "text",
        "bigint",
        "bigint",
        "numeric",
        "text",
        "timestamp with time zone",
        "time without time zone",
    ],
    "duckdb": [
        "varchar",
        "bigint",
        "bigint",
        "decimal(38,18)",
        "varchar",
        "timestamp with time zone",
        "time",
    ],
}


def test_narrow_types_made_elsewhere_widen_to_the_targets_own(warehouse: Warehouse) -> None:
    """An integer, a smallint, a numeric(10,2) or a varchar(5) holds only some of the values a stream
    of integers, numbers or strings sends: before, a value past one (2**40, 70000, 12 digits, a long
    name) was refused as invalid input, and with quarantine set aside."""
    _create(warehouse, NARROW[warehouse.engine])
    warehouse.execute(
        f'INSERT INTO "{warehouse.schema_name}".accounts (id, n, small, amount, name, modified, at_time) '
        "VALUES ('a', 7, 3, 12345678.91, 'abc', '2024-01-02 03:04:05+00', '10:11:12')"
    )
    properties = {
        "id": {"type": "string"},
        "n": {"type": ["null", "integer"]},
        "small": {"type": ["null", "integer"]},
        "amount": {"type": ["null", "number"]},
        "name": {"type": ["null", "string"]},
        "modified": MODSTAMP,
        "at_time": {"type": ["null", "string"], "format": "time"},
    }
    big = {
        "id": "b" * 30,
        "n": 2**40,
        "small": 70000,
        "amount": 424242,  # written as 123456789012.123456 below (exact, not through a float)
        "name": "a name longer than five",
        "modified": "2024-05-01T10:00:00.123456Z",
        "at_time": "10:11:12.654321",
    }
    messages = [schema("accounts", properties, bookmark=["modified"]), record("accounts", big), state(1)]
    done = warehouse.cli(to_lines(messages).replace("424242", "123456789012.123456"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.states == [1]
    assert "column n is integer" in done.stderr or "column n is INTEGER" in done.stderr
    assert list(warehouse.columns("accounts").values())[:7] == OURS[warehouse.engine]
    stored, loaded = warehouse.rows("accounts")
    assert (stored["id"], stored["n"], stored["small"], stored["amount"], stored["name"]) == (
        "a",
        7,
        3,
        Decimal("12345678.91"),
        "abc",
    )
    assert stored["modified"] == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert stored["at_time"] == datetime.time(10, 11, 12)
    assert (loaded["id"], loaded["n"], loaded["small"], loaded["amount"], loaded["name"]) == (
        "b" * 30,
        2**40,
        70000,
        Decimal("123456789012.123456"),
        "a name longer than five",
    )
    assert loaded["modified"] == datetime.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert loaded["at_time"] == datetime.time(10, 11, 12, 654321)


FOREIGN = {
    "postgres": ("amount double precision, modified timestamp without time zone", "double precision"),
    "duckdb": ("amount DOUBLE, modified TIMESTAMP", "double"),
}


def test_other_types_made_elsewhere_are_kept_and_instants_stored_in_utc(warehouse: Warehouse) -> None:
    """A float or a timestamp without time zone holds other values than the target's types, not fewer:
    they keep their types (the run says so), a date-time goes in as its instant's UTC wall time on both
    engines (DuckDB kept the text's wall time before: 09:00+02:00 as 09:00), and as the replication key
    such a column still keeps older versions out."""
    columns, float_type = FOREIGN[warehouse.engine]
    _create(warehouse, f"id VARCHAR, {columns}")
    properties = {"id": {"type": "string"}, "amount": {"type": ["null", "number"]}, "modified": MODSTAMP}
    stream = schema("accounts", properties, bookmark=["modified"])
    first = [
        stream,
        record("accounts", {"id": "a", "amount": 1.5, "modified": "2024-05-01T09:00:00+02:00"}),
        record("accounts", {"id": "b", "amount": 2.5, "modified": "2024-05-01T10:00:00.000+0000"}),
    ]
    done = warehouse.cli(to_lines(first))
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(warehouse.columns("accounts").values())[1:3] == [
        float_type,
        "timestamp without time zone" if warehouse.engine == "postgres" else "timestamp",
    ]
    replay = [
        stream,
        record("accounts", {"id": "a", "amount": 9.5, "modified": "2024-05-01T06:59:59Z"}),  # older
        record("accounts", {"id": "b", "amount": 3.5, "modified": "2024-05-01T12:30:00+02:00"}),  # newer
    ]
    again = warehouse.cli(to_lines(replay))
    assert again.returncode == 0, again.stderr[-2000:]
    rows = [(row["id"], row["amount"], row["modified"]) for row in warehouse.rows("accounts")]
    assert rows == [
        ("a", 1.5, datetime.datetime(2024, 5, 1, 7, 0)),
        ("b", 3.5, datetime.datetime(2024, 5, 1, 10, 30)),
    ]
    assert "types this target does not make (amount" in done.stderr


def test_a_duckdb_decimal_wider_than_the_targets_keeps_its_type(duckdb_warehouse: Warehouse) -> None:
    """DECIMAL(38,30) holds digits that the target's DECIMAL(38,18) does not: it is not narrow, it
    stays, and its values keep their 30 decimals."""
    _create(duckdb_warehouse, "id VARCHAR, amount DECIMAL(38,30)")
    properties = {"id": {"type": "string"}, "amount": {"type": ["null", "number"]}}
    text = to_lines([schema("accounts", properties), record("accounts", {"id": "a", "amount": 1})])
    done = duckdb_warehouse.cli(text.replace('"amount": 1', '"amount": 0.123456789012345678901234567891'))
    assert done.returncode == 0, done.stderr[-2000:]
    assert duckdb_warehouse.columns("accounts")["amount"] == "decimal(38,30)"
    assert duckdb_warehouse.rows("accounts")[0]["amount"] == Decimal("0.123456789012345678901234567891")


def test_postgres_character_keeps_its_type(postgres_database: str, tmp_path: Path) -> None:
    """character(n) is not narrow text: its cast to text drops the padding, so it stays."""
    warehouse = Warehouse(
        "postgres", {"engine": "postgres", "sqlalchemy_url": postgres_database}, tmp_path=tmp_path
    )
    _create(warehouse, "id character(3)")
    text = to_lines([schema("accounts", {"id": {"type": "string"}}), record("accounts", {"id": "ab"})])
    done = warehouse.cli(text)
    assert done.returncode == 0, done.stderr[-2000:]
    assert warehouse.columns("accounts")["id"] == "character"
    assert [row["id"] for row in warehouse.rows("accounts")] == ["ab "]


def test_a_table_without_a_primary_key_stops_the_run_saying_how_to_give_it_one(warehouse: Warehouse) -> None:
    warehouse.execute(
        f'CREATE SCHEMA IF NOT EXISTS "{warehouse.schema_name}"',
        f'CREATE TABLE "{warehouse.schema_name}"."accounts" (id VARCHAR, name VARCHAR)',
    )
    stream = schema("accounts", {"id": {"type": "string"}, "name": {"type": ["null", "string"]}})
    done = warehouse.cli(to_lines([stream, record("accounts", {"id": "a", "name": "x"})]))
    assert done.returncode == 1
    assert len(done.error_lines) == 1, done.stderr[-2000:]
    assert "has no primary key" in done.error_lines[0]
    assert 'ALTER TABLE salesforce.accounts ADD PRIMARY KEY ("id")' in done.error_lines[0]
    assert warehouse.count("accounts") == 0
    warehouse.execute(f'ALTER TABLE "{warehouse.schema_name}"."accounts" ADD PRIMARY KEY (id)')
    again = warehouse.cli(to_lines([stream, record("accounts", {"id": "a", "name": "x"})]))
    assert again.returncode == 0, again.stderr[-2000:]
    assert [(row["id"], row["name"]) for row in warehouse.rows("accounts")] == [("a", "x")]
    update = [
        stream,
        record("accounts", {"id": "a", "name": "y"}),
        record("accounts", {"id": "b", "name": "z"}),
    ]
    third = warehouse.cli(to_lines(update))
    assert third.returncode == 0, third.stderr[-2000:]
    assert [(row["id"], row["name"]) for row in warehouse.rows("accounts")] == [("a", "y"), ("b", "z")]


def _comments(warehouse: Warehouse) -> dict[str, str | None]:
    """The table's comment (under "") and its columns' comments."""
    if warehouse.engine == "postgres":
        table = warehouse.query(
            f"SELECT obj_description('{warehouse.schema_name}.accounts'::regclass, 'pg_class')"
        )
        columns = warehouse.query(
            f"SELECT attname, col_description(attrelid, attnum) FROM pg_attribute "
            f"WHERE attrelid = '{warehouse.schema_name}.accounts'::regclass AND attnum > 0"
        )
    else:
        table = warehouse.query("SELECT comment FROM duckdb_tables() WHERE table_name = 'accounts'")
        columns = warehouse.query(
            "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'accounts'"
        )
    return {"": table[0][0], **dict(columns)}


def test_comments_someone_wrote_are_notes_not_owners(warehouse: Warehouse) -> None:
    """The target keeps, in each table's and column's comment, the stream or property it was made
    for. A table made elsewhere whose comment describes it was taken for another stream's: the run
    passed it over and loaded a new table beside it (`accounts_10db2797`), leaving it stale; and a
    column of its own whose comment describes it was taken for a property that had left the SCHEMA,
    so every upsert set it to NULL. Comments that could not have named them are notes: kept, not
    owners."""
    _create(warehouse, "id VARCHAR, name VARCHAR, notes VARCHAR")
    warehouse.execute(
        f"COMMENT ON TABLE {warehouse.schema_name}.accounts IS 'Salesforce accounts, loaded hourly'",
        f"COMMENT ON COLUMN {warehouse.schema_name}.accounts.name IS 'The account''s legal name'",
        f"COMMENT ON COLUMN {warehouse.schema_name}.accounts.notes IS 'Kept by the sales team'",
        f"INSERT INTO {warehouse.schema_name}.accounts (id, name, notes) VALUES ('a', 'old', 'call back')",
    )
    before = _comments(warehouse)
    stream = schema("accounts", {"id": {"type": "string"}, "name": {"type": ["null", "string"]}})
    done = warehouse.cli(to_lines([stream, record("accounts", {"id": "a", "name": "new"})]))
    assert done.returncode == 0, done.stderr[-2000:]
    assert warehouse.tables() == {"accounts"}
    assert [(row["id"], row["name"], row["notes"]) for row in warehouse.rows("accounts")] == [
        ("a", "new", "call back")
    ]
    # The target claims the table and the columns its properties take, beside the notes (see the test
    # below); the column it does not write keeps its note alone.
    claimed = {"": "accounts", "id": "id", "name": "name"}
    assert _comments(warehouse) == {
        name: f"{note}\n[target-warehouse-seg: {claimed[name]}]"
        if name in claimed and note
        else claimed.get(name, note)
        for name, note in before.items()
    }
    again = warehouse.cli(to_lines([stream, record("accounts", {"id": "a", "name": "newer"})]))
    assert again.returncode == 0, again.stderr[-2000:]
    assert [(row["name"], row["notes"]) for row in warehouse.rows("accounts")] == [("newer", "call back")]


def test_a_duckdb_rebuild_keeps_the_notes(duckdb_warehouse: Warehouse) -> None:
    """Widening a key column, DuckDB rebuilds the table: the comments others wrote come along."""
    _create(duckdb_warehouse, "id INTEGER, name VARCHAR")
    duckdb_warehouse.execute(
        "COMMENT ON TABLE salesforce.accounts IS 'Accounts by number'",
        "COMMENT ON COLUMN salesforce.accounts.id IS 'The number'",
        "INSERT INTO salesforce.accounts (id, name) VALUES (1, 'one')",
    )
    before = _comments(duckdb_warehouse)
    stream = schema("accounts", {"id": {"type": "integer"}, "name": {"type": ["null", "string"]}})
    done = duckdb_warehouse.cli(to_lines([stream, record("accounts", {"id": 2**40, "name": "big"})]))
    assert done.returncode == 0, done.stderr[-2000:]
    assert duckdb_warehouse.columns("accounts")["id"] == "bigint"
    assert [(row["id"], row["name"]) for row in duckdb_warehouse.rows("accounts")] == [
        (1, "one"),
        (2**40, "big"),
    ]
    after = _comments(duckdb_warehouse)
    assert after[""] == "Accounts by number\n[target-warehouse-seg: accounts]"
    assert after["id"] == "The number\n[target-warehouse-seg: id]"
    assert before[""] == "Accounts by number" and before["id"] == "The number"


def test_a_column_a_property_took_is_nulled_once_the_property_leaves(warehouse: Warehouse) -> None:
    """A property that leaves the SCHEMA leaves NULL in the rows written from then on. In a table made
    elsewhere the column it took had no owner recorded, so it kept the old value: a stale field."""
    _create(warehouse, "id VARCHAR, name VARCHAR, title VARCHAR")
    warehouse.execute(f"COMMENT ON COLUMN {warehouse.schema_name}.accounts.title IS 'Job title'")
    both = {
        "id": {"type": "string"},
        "name": {"type": ["null", "string"]},
        "title": {"type": ["null", "string"]},
    }
    first = [schema("accounts", both), record("accounts", {"id": "a", "name": "n1", "title": "t1"})]
    assert warehouse.cli(to_lines(first)).returncode == 0
    without_title = {name: value for name, value in both.items() if name != "title"}
    second = [schema("accounts", without_title), record("accounts", {"id": "a", "name": "n2"})]
    done = warehouse.cli(to_lines(second))
    assert done.returncode == 0, done.stderr[-2000:]
    assert [(row["name"], row["title"]) for row in warehouse.rows("accounts")] == [("n2", None)]


def test_a_table_another_role_owns_is_loaded_as_it_is(postgres_database: str, tmp_path: Path) -> None:
    """Changing a table's column types or comments takes owning it. A table another role owns, on which
    the run's user may only write rows, keeps its types and comments, and loads (values cast to them)."""
    admin = Warehouse(
        "postgres", {"engine": "postgres", "sqlalchemy_url": postgres_database}, tmp_path=tmp_path
    )
    _create(admin, "id varchar(18), n integer, name varchar(40)")
    admin.execute(
        "COMMENT ON COLUMN salesforce.accounts.name IS 'The name'",
        "CREATE ROLE writer_only_role",
        "GRANT USAGE ON SCHEMA salesforce TO writer_only_role",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON salesforce.accounts TO writer_only_role",
    )
    properties = {
        "id": {"type": "string"},
        "n": {"type": ["null", "integer"]},
        "name": {"type": ["null", "string"]},
    }
    messages = [
        schema("accounts", properties),
        record("accounts", {"id": "a", "n": 7, "name": "x"}),
        state(1),
    ]
    url = postgres_database + ("&" if "?" in postgres_database else "?") + "options=-crole%3Dwriter_only_role"
    done = admin.cli(to_lines(messages), sqlalchemy_url=url)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.states == [1]
    assert "types this target does not make (id character varying(18), n integer" in done.stderr
    assert [(row["id"], row["n"], row["name"]) for row in admin.rows("accounts")] == [("a", 7, "x")]
    assert list(admin.columns("accounts").values())[:3] == [
        "character varying",
        "integer",
        "character varying",
    ]
    assert _comments(admin)["name"] == "The name"


def test_a_view_named_like_the_streams_table_stops_the_run_with_one_line(warehouse: Warehouse) -> None:
    """Before: PostgreSQL said the view had no primary key, DuckDB that a view of that name exists."""
    warehouse.execute(
        f'CREATE SCHEMA IF NOT EXISTS "{warehouse.schema_name}"',
        f"CREATE TABLE {warehouse.schema_name}.other (id VARCHAR PRIMARY KEY, name VARCHAR)",
        f"CREATE VIEW {warehouse.schema_name}.accounts AS SELECT id, name FROM {warehouse.schema_name}.other",
    )
    stream = schema("accounts", {"id": {"type": "string"}, "name": {"type": ["null", "string"]}})
    done = warehouse.cli(to_lines([stream, record("accounts", {"id": "a", "name": "x"}), state(1)]))
    assert done.returncode == 1 and done.states == []
    assert len(done.error_lines) == 1, done.stderr[-2000:]
    assert "salesforce.accounts is a view" in done.error_lines[0]
    assert warehouse.count("other") == 0


def _raising_trigger(pg: Warehouse, errcode: str, hint: str) -> None:
    """A table with a row, and a trigger a DBA added to it: every insert fails with ``errcode`` and
    ``hint``, as the server itself raises a full disk ("could not extend file ...", HINT: Check free disk
    space.)."""
    _create(pg, "id VARCHAR, name VARCHAR")
    pg.execute(
        "INSERT INTO salesforce.accounts (id, name) VALUES ('a', 'stored')",
        "CREATE FUNCTION salesforce.refuse() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION 'no room for rows' USING ERRCODE = '{errcode}', HINT = '{hint}'; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON salesforce.accounts "
        "FOR EACH STATEMENT EXECUTE FUNCTION salesforce.refuse()",
    )


def _load_one_more(pg: Warehouse) -> CliRun:
    return pg.cli(
        to_lines(
            [
                schema("accounts", {"id": {"type": "string"}, "name": {"type": ["null", "string"]}}),
                record("accounts", {"id": "b", "name": "new"}),
                state(1),
            ]
        )
    )


def test_a_full_disk_on_the_server_stops_the_run_saying_so(pg: Warehouse) -> None:
    """Before, the line gave only the server's message (`could not extend file ...: wrote only 4096 of
    8192 bytes`), which does not say the disk is full."""
    _raising_trigger(pg, "53100", "Check free disk space.")
    done = _load_one_more(pg)
    assert done.returncode != 0
    assert done.states == []
    [error] = done.error_lines
    assert "no room for rows" in error
    assert "the database server's disk is full (nothing of this batch was written)" in error
    assert [row["id"] for row in pg.rows("accounts")] == ["a"]


def test_the_servers_hint_is_on_the_error_line(pg: Warehouse) -> None:
    _raising_trigger(pg, "P0001", "Ask the DBA for the loading window.")
    done = _load_one_more(pg)
    assert done.returncode != 0
    assert done.states == []
    [error] = done.error_lines
    assert error.endswith(
        'no room for rows (stream accounts, table "salesforce"."accounts") '
        "(hint: Ask the DBA for the loading window.)"
    )
    assert [row["id"] for row in pg.rows("accounts")] == ["a"]


def test_a_duckdb_table_named_in_other_case_is_the_streams_table(duckdb_warehouse: Warehouse) -> None:
    """DuckDB's names are case-insensitive: a schema "Salesforce" holding a table "Accounts" with columns
    "Id" and "Amount" (made by another loader that kept Salesforce's spelling) is where `accounts`
    goes. Before, the run saw no table and stopped on `Table with name "accounts" already exists!`."""
    duckdb_warehouse.execute(
        'CREATE SCHEMA "Salesforce"',
        'CREATE TABLE "Salesforce"."Accounts" ("Id" VARCHAR PRIMARY KEY, "Amount" INTEGER, "SystemModstamp" '
        "TIMESTAMPTZ)",
        """INSERT INTO "Salesforce"."Accounts" VALUES ('a', 1, '2024-01-02T00:00:00Z'), ('b', 2, NULL)""",
    )
    properties = {
        "id": {"type": "string"},
        "amount": {"type": ["null", "number"]},
        "systemmodstamp": MODSTAMP,
        "name": {"type": ["null", "string"]},
    }
    messages = [
        schema("accounts", properties, bookmark=["systemmodstamp"]),
        # Older than the stored row: never regresses it. Then a number that widens "Amount".
        record("accounts", {"id": "a", "amount": 9, "systemmodstamp": "2024-01-01T00:00:00Z"}),
        record(
            "accounts", {"id": "b", "amount": 2.5, "name": "new", "systemmodstamp": "2024-01-03T00:00:00Z"}
        ),
        record("accounts", {"id": "c", "amount": 3, "systemmodstamp": "2024-01-03T00:00:00Z"}),
        state(1),
    ]
    for _ in range(2):  # and again, on the table as the first run left it
        done = duckdb_warehouse.cli(to_lines(messages))
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.states == [1]
    rows = duckdb_warehouse.query('SELECT "Id", "Amount", name FROM "Salesforce"."Accounts" ORDER BY 1')
    assert rows == [("a", Decimal(1), None), ("b", Decimal("2.5"), "new"), ("c", Decimal(3), None)]
    tables = duckdb_warehouse.query("SELECT table_schema, table_name FROM information_schema.tables")
    assert tables == [("Salesforce", "Accounts")]
