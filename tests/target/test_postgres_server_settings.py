"""Server, database and role settings a DBA may have set, and tables a DBA changed, which the target's
loading must not depend on.

With `standard_conforming_strings = off` (kept for old applications) a backslash in a plain `'...'`
literal escapes the next character, so a stream named `x\\'; CREATE TABLE ...` ended the table comment's
literal early and ran the rest as SQL. A `password=` parameter in `sqlalchemy_url` (libpq takes it as
well as the `user:password@` form) was shown in the `connected to` line and in every message."""

from __future__ import annotations

from pathlib import Path

from conftest import Warehouse, record, schema, state, to_lines


def test_stream_names_with_backslashes_stay_text_with_standard_conforming_strings_off(pg: Warehouse) -> None:
    database = pg.config()["sqlalchemy_url"].rpartition("/")[2]
    pg.execute(f'ALTER DATABASE "{database}" SET standard_conforming_strings = off')
    hostile = "x\\'; CREATE TABLE public.injected_by_stream_name (); --"
    plain = "acct\\"
    lines = []
    for stream in (hostile, plain):
        lines += [schema(stream, {"id": {"type": "string"}}), record(stream, {"id": "1"})]
    run = pg.run(lines)
    assert run.error is None, run.error
    assert pg.query("SELECT to_regclass('public.injected_by_stream_name')") == [(None,)]
    comments = pg.query(
        "SELECT obj_description(c.oid, 'pg_class') FROM pg_class AS c JOIN pg_namespace AS n "
        f"ON n.oid = c.relnamespace WHERE n.nspname = '{pg.schema_name}' AND c.relkind = 'r'"
    )
    stored = {comment for (comment,) in comments if comment}
    assert any(hostile in comment for comment in stored) and any(plain in comment for comment in stored)
    assert sum(pg.count(table) for table in pg.tables()) == 2


def test_a_password_given_as_a_url_parameter_is_never_shown(postgres_database: str, tmp_path: Path) -> None:
    secret = "Sekr3t-pw-4c1d"
    url = f"{postgres_database}?password={secret}&application_name=x"  # the test cluster trusts
    warehouse = Warehouse("postgres", {"engine": "postgres", "sqlalchemy_url": url}, tmp_path=tmp_path)
    done = warehouse.cli(
        to_lines([schema("accounts", {"id": {"type": "integer"}}), record("accounts", {"id": "x"})])
    )
    assert done.returncode == 1
    assert "connected to PostgreSQL at" in done.stderr and "password=***" in done.stderr
    assert secret not in done.stderr and secret not in done.stdout


def test_a_not_null_column_the_stream_does_not_write_stops_the_run_whole(pg: Warehouse) -> None:
    """A DBA's `NOT NULL` column without a default: no record can fill it, so it is the table's fault.
    With quarantine every record was set aside (one by one, in time growing with the square of the
    batch) while STATE moved past them all."""
    properties = {"id": {"type": "string"}, "name": {"type": ["null", "string"]}}
    first = pg.run([schema("accounts", properties), record("accounts", {"id": "1", "name": "one"}), state(1)])
    assert first.error is None
    pg.execute(f"ALTER TABLE \"{pg.schema_name}\".accounts ADD COLUMN loaded_by text NOT NULL DEFAULT 'x'")
    pg.execute(f'ALTER TABLE "{pg.schema_name}".accounts ALTER COLUMN loaded_by DROP DEFAULT')
    rows = [record("accounts", {"id": str(n), "name": f"n{n}"}) for n in range(2, 202)]
    run = pg.run([schema("accounts", properties), *rows, state(2)], on_invalid_record="quarantine")
    assert str(run.error).endswith(
        f"column loaded_by of table {pg.schema_name}.accounts is NOT NULL, and stream accounts does not "
        "write it (a column added by hand?): give it a DEFAULT or drop its NOT NULL"
    )
    assert run.states == [] and pg.count("accounts") == 1 and pg.count("_rejected_records") == 0


def test_a_read_only_database_stops_the_run_with_what_to_do(pg: Warehouse) -> None:
    """A standby, or default_transaction_read_only on: one line naming the stream and table, and advice."""
    first = pg.run([schema("s", {"id": {"type": "string"}}), record("s", {"id": "a"}), state(1)])
    assert first.error is None, first.error
    database = pg.config()["sqlalchemy_url"].rpartition("/")[2]
    pg.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    done = pg.cli(to_lines([schema("s", {"id": {"type": "string"}}), record("s", {"id": "b"}), state(2)]))
    assert done.returncode == 1
    assert done.states == []
    [line] = done.error_lines
    assert "in a read-only transaction" in line
    assert 'stream s, table "salesforce"."s"' in line
    assert "point the target at the primary" in line and "target_session_attrs=read-write" in line
