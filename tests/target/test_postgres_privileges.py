"""PostgreSQL as a production database sets it up: the target logs in as a role of its own, which owns
the schema a DBA made for it and nothing else. A privilege the role lacks stops the run with one line that
says what the target was doing and what it needs; it is never taken for a record's fault (which, with
`on_invalid_record: quarantine`, set every record aside while STATE moved past them)."""

from __future__ import annotations

import typing as t
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from conftest import CliRun, Warehouse, record, schema, state, to_lines
from psycopg.conninfo import conninfo_to_dict

PASSWORD = "role-secret-8d41"
PROPERTIES = {
    "id": {"type": "string"},
    "amount": {"type": ["null", "integer"]},
    "is_deleted": {"type": ["null", "boolean"]},
    "system_modstamp": {"type": ["null", "string"], "format": "date-time"},
}


@dataclass
class Role:
    name: str
    admin: Warehouse  # the database seen by its superuser
    target: Warehouse  # the target's settings, logging in as the role

    def admin_execute(self, *statements: str) -> None:
        self.admin.execute(*statements)


@pytest.fixture
def loader_role(postgres_database: str, postgres_url: str, tmp_path) -> Iterator[Role]:
    """A login role that owns the schema `sfdc` and has no other privilege (no CREATE on the database)."""
    name = f"loader_{uuid.uuid4().hex[:10]}"
    admin = Warehouse(
        "postgres", {"engine": "postgres", "sqlalchemy_url": postgres_database}, "sfdc", tmp_path
    )
    admin.execute(
        f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'", f"CREATE SCHEMA sfdc AUTHORIZATION {name}"
    )
    parts = conninfo_to_dict(postgres_database)
    config = {
        "engine": "postgres",
        "host": parts.get("host", "127.0.0.1"),
        "port": int(parts.get("port", 5432)),
        "database": parts["dbname"],
        "user": name,
        "password": PASSWORD,
        "schema": "sfdc",
    }
    try:
        yield Role(name, admin, Warehouse("postgres", config, "sfdc", tmp_path))
    finally:
        with psycopg.connect(postgres_database, autocommit=True) as connection:
            connection.execute(f"DROP OWNED BY {name} CASCADE")
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(f"DROP ROLE {name}")


def run_as(role: Role, messages: list[t.Any], **settings: t.Any) -> CliRun:
    return role.target.cli(to_lines(messages), **settings)


def first_load(role: Role) -> None:
    done = run_as(
        role,
        [
            schema("s", PROPERTIES, bookmark=["system_modstamp"]),
            record("s", {"id": "a", "amount": 1, "system_modstamp": "2024-01-01T00:00:00Z"}),
            state({"bookmark": 1}),
        ],
    )
    assert done.returncode == 0, done.stderr
    assert done.states == [{"bookmark": 1}]


@pytest.mark.parametrize("on_invalid_record", ["fail", "quarantine"])
def test_a_table_the_role_may_not_write_stops_the_run(loader_role: Role, on_invalid_record: str) -> None:
    first_load(loader_role)
    # A DBA takes the table over and leaves the role reading it.
    loader_role.admin_execute(
        "ALTER TABLE sfdc.s OWNER TO CURRENT_USER", f"GRANT SELECT ON sfdc.s TO {loader_role.name}"
    )
    done = run_as(
        loader_role,
        [
            schema("s", PROPERTIES, bookmark=["system_modstamp"]),
            record("s", {"id": "a", "amount": 2, "system_modstamp": "2024-02-01T00:00:00Z"}),
            record("s", {"id": "b", "amount": 3, "system_modstamp": "2024-02-01T00:00:00Z"}),
            state({"bookmark": 2}),
        ],
        on_invalid_record=on_invalid_record,
    )
    assert done.returncode != 0
    assert done.states == []  # nothing was committed, so no STATE
    assert "quarantined" not in done.stderr
    [error] = done.error_lines
    assert "permission denied for table s" in error
    assert "Invalid input" not in error  # not a record's fault
    assert "USAGE and CREATE on the schema" in error
    assert PASSWORD not in done.stderr
    assert loader_role.admin.rows("s", columns="id, amount") == [{"id": "a", "amount": 1}]
    rejected = loader_role.admin.query(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'sfdc' "
        "AND table_name = '_rejected_records'"
    )
    if rejected[0][0]:
        assert loader_role.admin.query("SELECT count(*) FROM sfdc._rejected_records") == [(0,)]


def test_a_schema_the_role_may_not_create_is_named(loader_role: Role) -> None:
    done = run_as(
        loader_role,
        [schema("s", PROPERTIES), record("s", {"id": "a", "amount": 1}), state({"bookmark": 1})],
        schema="sfdc_prod",
    )
    assert done.returncode != 0
    assert done.states == []
    [error] = done.error_lines
    assert "permission denied for database" in error
    assert 'creating the schema "sfdc_prod"' in error
    assert "CREATE on the database" in error
    assert PASSWORD not in done.stderr


def test_a_table_the_role_does_not_own_cannot_gain_a_column(loader_role: Role) -> None:
    first_load(loader_role)
    loader_role.admin_execute(
        "ALTER TABLE sfdc.s OWNER TO CURRENT_USER",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON sfdc.s TO {loader_role.name}",
    )
    widened = {**PROPERTIES, "stage_name": {"type": ["null", "string"]}}
    done = run_as(
        loader_role,
        [
            schema("s", widened, bookmark=["system_modstamp"]),
            record("s", {"id": "a", "stage_name": "x", "system_modstamp": "2024-02-01T00:00:00Z"}),
            state({"bookmark": 2}),
        ],
    )
    assert done.returncode != 0
    assert done.states == []
    [error] = done.error_lines
    assert "must be owner of table s" in error
    assert 'ALTER TABLE "sfdc"."s" ADD COLUMN "stage_name"' in error
    assert "to own the tables it creates or changes" in error


def test_the_role_loads_when_it_owns_its_schema(loader_role: Role) -> None:
    """The least a run needs: the schema's ownership (no CREATE on the database, no superuser)."""
    first_load(loader_role)
    done = run_as(
        loader_role,
        [
            schema("s", PROPERTIES, bookmark=["system_modstamp"]),
            record(
                "s", {"id": "a", "amount": 5, "is_deleted": True, "system_modstamp": "2024-03-01T00:00:00Z"}
            ),
            record("s", {"id": "b", "amount": "not a number", "system_modstamp": "2024-03-01T00:00:00Z"}),
            state({"bookmark": 3}),
        ],
        hard_delete=True,
        on_invalid_record="quarantine",
    )
    assert done.returncode == 0, done.stderr
    assert done.states == [{"bookmark": 3}]
    assert loader_role.admin.rows("s", columns="id") == []  # a deleted, b set aside
    assert loader_role.admin.query("SELECT count(*) FROM sfdc._rejected_records") == [(1,)]
