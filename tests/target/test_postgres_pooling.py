"""PostgreSQL behind PgBouncer in transaction pooling mode, as many production warehouses run it: each
transaction may land on another server connection, so nothing a session sets outlives its transaction.
A run through it stores exactly what a direct run stores (before, the fifth unit failed on `prepared
statement "_pg3_0" does not exist`)."""

from __future__ import annotations

import random
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Warehouse, record, schema, state, to_lines
from pgbouncer import PgBouncer

PROPERTIES = {
    "id": {"type": "string"},
    "name": {"type": ["null", "string"]},
    "amount": {"type": ["null", "number"]},
    "closed_at": {"type": ["null", "string"], "format": "date-time"},
    "signed_on": {"type": ["null", "string"], "format": "date"},
    "is_deleted": {"type": ["null", "boolean"]},
    "system_modstamp": {"type": "string", "format": "date-time"},
}


@pytest.fixture
def pooled(
    postgres_url: str, postgres_database: str, tmp_path: Path
) -> Iterator[tuple[Warehouse, Warehouse]]:
    """The same fresh database reached directly and through PgBouncer; its sessions start in a time zone
    other than UTC (stored instants must not depend on the session's zone)."""
    direct = Warehouse(
        "postgres", {"engine": "postgres", "sqlalchemy_url": postgres_database}, tmp_path=tmp_path
    )
    database = postgres_database.rpartition("/")[2]
    direct.execute(f"ALTER DATABASE \"{database}\" SET timezone = 'Asia/Kolkata'")
    bouncer = PgBouncer(postgres_url).start()
    try:
        through = Warehouse(
            "postgres",
            {"engine": "postgres", "sqlalchemy_url": bouncer.url_for(postgres_database)},
            tmp_path=tmp_path,
        )
        yield direct, through
    finally:
        bouncer.stop()


def tap_output(rows: int, seed: int) -> list[t.Any]:
    """Many small units: inserts, updates, soft and hard deletes, a date-time without offset (read as
    UTC), a property added and a date widened to a date-time half way, an invalid record."""
    rng = random.Random(seed)
    properties = dict(PROPERTIES)
    messages: list[t.Any] = [schema("deals", properties, bookmark=["system_modstamp"])]
    for index in range(rows):
        if index == rows // 2:  # a new property, and a date that widens to a date-time
            properties["stage"] = {"type": ["null", "string"]}
            properties["signed_on"] = {"type": ["null", "string"], "format": "date-time"}
            messages.append(schema("deals", dict(properties), bookmark=["system_modstamp"]))
        values: dict[str, t.Any] = {
            "id": f"k{rng.randrange(rows // 3)}",
            "name": rng.choice([None, "Ünïcode 'quoted'", f"deal {index}"]),
            "amount": rng.choice([None, 12.5, 1000, -0.01]),
            "closed_at": rng.choice(["2024-03-01T10:00:00", "2024-03-01T10:00:00+05:30", None]),
            "is_deleted": rng.random() < 0.1,
            "system_modstamp": f"2024-01-01T00:{index // 60 % 60:02d}:{index % 60:02d}Z",
        }
        if "stage" in properties:
            values["stage"] = "won"
        else:
            values["signed_on"] = "2024-02-29"
        if index == rows // 3:
            values["amount"] = "not a number"
        messages.append(record("deals", values))
        if index % 50 == 49:
            messages.append(state({"position": index}))
    return messages


def exists(warehouse: Warehouse, schema_name: str, table: str) -> bool:
    query = (
        "SELECT count(*) FROM information_schema.tables "
        f"WHERE table_schema = '{schema_name}' AND table_name = '{table}'"
    )
    return warehouse.query(query) == [(1,)]


def dump(warehouse: Warehouse, schema_name: str) -> dict[str, list[tuple]]:
    tables = {}
    for table in ("deals", "_deleted_keys"):
        if not exists(warehouse, schema_name, table):
            tables[table] = []
            continue
        columns = [
            name
            for (name,) in warehouse.query(
                "SELECT column_name FROM information_schema.columns "
                f"WHERE table_schema = '{schema_name}' AND table_name = '{table}' ORDER BY column_name"
            )
            if name not in ("uuid_ts", "deleted_at", "received_at")
        ]
        selected = ", ".join(f'"{name}"' for name in columns)
        tables[table] = warehouse.query(f'SELECT {selected} FROM "{schema_name}"."{table}" ORDER BY 1, 2')
    tables["rejected"] = warehouse.query(
        f'SELECT stream, field, error, record FROM "{schema_name}"."_rejected_records" ORDER BY line'
    )
    return tables


@pytest.mark.parametrize("hard_delete", [False, True])
def test_a_run_through_a_transaction_pooler_stores_what_a_direct_run_stores(
    pooled: tuple[Warehouse, Warehouse], hard_delete: bool
) -> None:
    direct, through = pooled
    text = to_lines(tap_output(1500, seed=7))
    settings = {"batch_size_rows": 100, "hard_delete": hard_delete, "on_invalid_record": "quarantine"}
    for warehouse, schema_name in ((through, "pooled"), (direct, "direct")):
        done = warehouse.cli(text, schema=schema_name, **settings)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.states[-1] == {"position": 1499}
    pooled_tables, direct_tables = dump(direct, "pooled"), dump(direct, "direct")
    assert pooled_tables == direct_tables
    assert len(direct_tables["rejected"]) == 1
    # Instants are stored as sent (a date-time without offset is UTC), whatever the session's zone.
    closed = {
        text
        for (text,) in direct.query("SELECT closed_at::text FROM pooled.deals WHERE closed_at IS NOT NULL")
    }
    assert closed == {"2024-03-01 10:00:00+00", "2024-03-01 04:30:00+00"}  # read in UTC
    # The dates stored before the widening are the same days' midnight in UTC.
    signed = direct.query("SELECT DISTINCT signed_on::text FROM pooled.deals WHERE signed_on IS NOT NULL")
    assert signed == [("2024-02-29 00:00:00+00",)]
